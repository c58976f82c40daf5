package client

import (
	"context"
	"math"
	"net/http"
	"time"
)

// AcquireResult is the answer to [Client.Acquire] and [Client.Renew]. When
// Acquired is false, Holder, ExpiresAt and AcquiredAt describe the current
// holder (empty when there is none) and FencingToken is zero.
type AcquireResult struct {
	Acquired     bool      `json:"acquired"`
	Holder       string    `json:"holder,omitempty"`
	FencingToken int32     `json:"fencingToken,omitempty"`
	ExpiresAt    time.Time `json:"expiresAt,omitzero"`
	AcquiredAt   time.Time `json:"acquiredAt,omitzero"`
}

// Semantics says whether a lease has one holder at a time or several.
type Semantics string

const (
	// AtMostOnce leases have one holder at a time (the default).
	AtMostOnce Semantics = "at-most-once"
	// AtLeastOnce leases have several holders, up to MaxHolders.
	AtLeastOnce Semantics = "at-least-once"
)

// AcquireRequest is the full acquire request of the extensions. Holder and
// TTL are required; the rest is optional.
type AcquireRequest struct {
	// Holder is the identity to acquire for: the tenant's name, or a name
	// that starts with "<tenant>/".
	Holder string
	// TTL is sent in whole seconds (truncated), 1 s to 24 h.
	TTL time.Duration
	// Wait blocks up to this long (whole seconds, truncated; at most
	// 5 min) until the lease is granted. Under 1 s means no wait.
	Wait time.Duration
	// Semantics and MaxHolders are used only when this acquire creates the
	// lease. MaxHolders needs AtLeastOnce.
	Semantics  Semantics
	MaxHolders int32
}

type acquireBody struct {
	Holder      string    `json:"holder"`
	TTLSeconds  int32     `json:"ttlSeconds"`
	WaitSeconds int32     `json:"waitSeconds,omitempty"`
	Semantics   Semantics `json:"semantics,omitempty"`
	MaxHolders  int32     `json:"maxHolders,omitempty"`
}

type renewBody struct {
	Holder       string `json:"holder"`
	FencingToken int32  `json:"fencingToken"`
	TTLSeconds   int32  `json:"ttlSeconds"`
}

type releaseBody struct {
	Holder       string `json:"holder"`
	FencingToken int32  `json:"fencingToken"`
}

// seconds is d in whole seconds, truncated, and clamped to the int32 range
// so that an absurd duration reaches the apiserver's range check instead of
// wrapping around.
func seconds(d time.Duration) int32 {
	s := int64(d / time.Second)
	return int32(max(min(s, math.MaxInt32), math.MinInt32))
}

// Acquire asks for lease namespace/name for holder with the given TTL
// (whole seconds). The lease is created when it does not exist. Acquiring a
// lease that holder already holds renews it and keeps its token.
//
// A refusal is not an error: the result has Acquired false and names the
// current holder. Errors are [*APIError] values for the failed checks of
// docs/api.md (400, 401, 403), or transport errors.
func (c *Client) Acquire(ctx context.Context, namespace, name, holder string, ttl time.Duration) (AcquireResult, error) {
	return c.AcquireWith(ctx, namespace, name, AcquireRequest{Holder: holder, TTL: ttl})
}

// AcquireWait is [Client.Acquire] that blocks on the apiserver up to wait
// (whole seconds, 1 s to 5 min) until the lease is granted. The apiserver
// is woken by changes to the lease, it does not poll. When the wait ends
// first, the result has Acquired false. The request's timeout is the
// client's timeout plus wait.
func (c *Client) AcquireWait(ctx context.Context, namespace, name, holder string, ttl, wait time.Duration) (AcquireResult, error) {
	return c.AcquireWith(ctx, namespace, name, AcquireRequest{Holder: holder, TTL: ttl, Wait: wait})
}

// AcquireWith sends the full acquire request of the extensions: an optional
// wait, and the semantics of a lease that the acquire creates.
func (c *Client) AcquireWith(ctx context.Context, namespace, name string, req AcquireRequest) (AcquireResult, error) {
	body := acquireBody{
		Holder:     req.Holder,
		TTLSeconds: seconds(req.TTL),
		Semantics:  req.Semantics,
		MaxHolders: req.MaxHolders,
	}
	var extra time.Duration
	if req.Wait > 0 {
		body.WaitSeconds = seconds(req.Wait)
		extra = time.Duration(body.WaitSeconds) * time.Second
	}
	var out AcquireResult
	if err := c.do(ctx, http.MethodPost, leasePath(namespace, name, "acquire"), body, &out, extra); err != nil {
		return AcquireResult{}, err
	}
	return out, nil
}

// Renew extends the lease that holder holds under fencingToken to expire
// ttl (whole seconds) from now. A result with Acquired false means the
// lease is lost (expired, released, or held under another token): stop
// acting as its holder.
func (c *Client) Renew(ctx context.Context, namespace, name, holder string, fencingToken int32, ttl time.Duration) (AcquireResult, error) {
	body := renewBody{Holder: holder, FencingToken: fencingToken, TTLSeconds: seconds(ttl)}
	var out AcquireResult
	if err := c.do(ctx, http.MethodPost, leasePath(namespace, name, "renew"), body, &out, 0); err != nil {
		return AcquireResult{}, err
	}
	return out, nil
}

// Release gives up the lease that holder holds under fencingToken. It
// succeeds also when the lease was already released or has expired. When
// another holder or token holds it, the error matches [ErrConflict].
func (c *Client) Release(ctx context.Context, namespace, name, holder string, fencingToken int32) error {
	body := releaseBody{Holder: holder, FencingToken: fencingToken}
	return c.do(ctx, http.MethodPost, leasePath(namespace, name, "release"), body, nil, 0)
}
