package client

import (
	"context"
	"encoding/json"
	"net/url"
)

// EventType is the kind of a collection watch event.
type EventType string

const (
	// EventAdded: a lease the stream had not shown; first one per current
	// lease, then each new one.
	EventAdded EventType = "added"
	// EventModified: a new state of a lease already shown.
	EventModified EventType = "modified"
	// EventDeleted: the lease is gone, or no longer readable with this
	// key; Lease is the last state shown.
	EventDeleted EventType = "deleted"
	// EventInitialEventsEnd: every current lease has been sent as
	// EventAdded; changes follow. Lease is empty. (On the wire it is the
	// "bookmark" event.)
	EventInitialEventsEnd EventType = "bookmark"
)

// LeaseEvent is one event of a collection watch.
type LeaseEvent struct {
	Type  EventType
	Lease Lease
}

// WatchAll follows every lease in the namespaces the tenant may use
// (GET /v1alpha1/leases?watch=1). The channel receives one EventAdded per
// current lease, then EventInitialEventsEnd, then every change. It is
// closed when ctx ends.
//
// Errors and reconnects are as for [Client.Watch]. After a reconnect the
// stream restates the current list (EventAdded per lease, then
// EventInitialEventsEnd); a lease deleted while it was broken gets no
// EventDeleted, so a consumer that keeps a copy replaces it with the
// restated list.
func (c *Client) WatchAll(ctx context.Context) (<-chan LeaseEvent, error) {
	return follow(ctx, c, "/v1alpha1/leases?watch=1", decodeLeaseEvent)
}

// WatchNamespace is [Client.WatchAll] for the leases of one namespace.
func (c *Client) WatchNamespace(ctx context.Context, namespace string) (<-chan LeaseEvent, error) {
	path := "/v1alpha1/namespaces/" + url.PathEscape(namespace) + "/leases?watch=1"
	return follow(ctx, c, path, decodeLeaseEvent)
}

func decodeLeaseEvent(ev sseEvent) (LeaseEvent, bool, error) {
	switch t := EventType(ev.Event); t {
	case EventInitialEventsEnd:
		return LeaseEvent{Type: t}, true, nil
	case EventAdded, EventModified, EventDeleted:
		var lease Lease
		if err := json.Unmarshal([]byte(ev.Data), &lease); err != nil {
			return LeaseEvent{}, false, err
		}
		return LeaseEvent{Type: t, Lease: lease}, true, nil
	default:
		return LeaseEvent{}, false, nil
	}
}
