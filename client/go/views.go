package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// LeaseState is what a lease is doing.
type LeaseState string

const (
	// StateAvailable: never held.
	StateAvailable LeaseState = "available"
	// StateHeld: at least one live holder.
	StateHeld LeaseState = "held"
	// StateReleased: the last holder released it.
	StateReleased LeaseState = "released"
	// StateExpired: the last holder expired.
	StateExpired LeaseState = "expired"
)

// Holder is one holder's tenure. It is live while the server's clock is
// before ExpiresAt.
type Holder struct {
	Identity     string    `json:"identity"`
	FencingToken int32     `json:"fencingToken"`
	AcquiredAt   time.Time `json:"acquiredAt"`
	RenewedAt    time.Time `json:"renewedAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

// TargetRef is the workload in the lease's namespace that the operator
// suspends, resumes or scales when the lease changes hands.
type TargetRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
}

// Lease is the view of one lease returned by the extension routes.
type Lease struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Semantics Semantics  `json:"semantics"`
	State     LeaseState `json:"state"`
	Holders   []Holder   `json:"holders"`
	// FencingToken is the last token issued; it never decreases over the
	// life of the lease object.
	FencingToken int32 `json:"fencingToken"`
	// Transitions counts the grants.
	Transitions              int64 `json:"transitions"`
	TTLSeconds               int32 `json:"ttlSeconds"`
	HeartbeatIntervalSeconds int32 `json:"heartbeatIntervalSeconds"`
	// MaxHolders is nil when unset (unlimited, or at-most-once).
	MaxHolders *int32     `json:"maxHolders,omitempty"`
	Target     *TargetRef `json:"target,omitempty"`
	// UpdatedAt is when the status last changed, else when the lease was
	// created.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// TargetStatus is what the operator last did to the target; nil before
	// its first action.
	TargetStatus *TargetStatus `json:"targetStatus,omitempty"`
	// Conditions are the lease's status conditions (Held, TargetReady…).
	Conditions []Condition `json:"conditions,omitempty"`
}

// TargetStatus is what the operator last did to a lease's target.
type TargetStatus struct {
	// Applied is "acquire" or "release".
	Applied    string    `json:"applied"`
	ObservedAt time.Time `json:"observedAt"`
	Message    string    `json:"message,omitempty"`
	// StoppedAt is when no pod of the released target ran any more; nil
	// while its pods stop, and for an acquire.
	StoppedAt *time.Time `json:"stoppedAt,omitempty"`
}

// Condition is a standard Kubernetes status condition.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
	ObservedGeneration *int64    `json:"observedGeneration,omitempty"`
}

// TTL is the lease's default TTL.
func (l Lease) TTL() time.Duration { return time.Duration(l.TTLSeconds) * time.Second }

// HeartbeatInterval is the renew period the lease advises its holders.
func (l Lease) HeartbeatInterval() time.Duration {
	return time.Duration(l.HeartbeatIntervalSeconds) * time.Second
}

type leaseList struct {
	Items []Lease `json:"items"`
}

// Get reads lease namespace/name. A missing lease, or one the tenant may
// not see, is an error matching [ErrNotFound] (or [ErrForbidden] for a
// namespace the tenant may not use).
func (c *Client) Get(ctx context.Context, namespace, name string) (Lease, error) {
	var out Lease
	if err := c.do(ctx, http.MethodGet, leasePath(namespace, name), nil, &out, 0); err != nil {
		return Lease{}, err
	}
	return out, nil
}

// List reads every lease in namespace, sorted by name.
func (c *Client) List(ctx context.Context, namespace string) ([]Lease, error) {
	var out leaseList
	path := "/v1alpha1/namespaces/" + url.PathEscape(namespace) + "/leases"
	if err := c.do(ctx, http.MethodGet, path, nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// ListAll reads every lease in the namespaces the tenant may use, sorted by
// namespace and name.
func (c *Client) ListAll(ctx context.Context) ([]Lease, error) {
	var out leaseList
	if err := c.do(ctx, http.MethodGet, "/v1alpha1/leases", nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Items, nil
}
