package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// watchIdleTimeout is how long a stream may stay silent before it is
// dropped and reopened. The apiserver sends a keep-alive every 15 s.
var watchIdleTimeout = 45 * time.Second

// Watch retry backoff after a broken stream.
var (
	watchBackoffMin = 200 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Watch follows lease namespace/name. The channel receives the lease's
// current state first, then its state after every change. It is closed
// when ctx ends.
//
// Opening the stream is bounded by the client's timeout, and its errors
// are returned: an [*APIError] matching [ErrNotFound] for a missing lease,
// [ErrForbidden] or [ErrUnauthorized]. Once open, a stream that breaks or
// stays silent for 45 s (three missed keep-alives) is reopened with
// backoff, and the apiserver restates the current state first. The channel
// is also closed when reopening is refused with a 4xx answer, for example
// because the lease was deleted or the key revoked.
//
// Each view is a whole state, not a delta: after a reopen the consumer is
// current again, but states between the break and the reopen are not
// replayed.
func (c *Client) Watch(ctx context.Context, namespace, name string) (<-chan Lease, error) {
	return follow(ctx, c, leasePath(namespace, name, "watch"), func(ev sseEvent) (Lease, bool, error) {
		var lease Lease
		if ev.Event != "lease" {
			return lease, false, nil
		}
		err := json.Unmarshal([]byte(ev.Data), &lease)
		return lease, err == nil, err
	})
}

// follow opens the event stream at path and forwards what decode makes of
// its events, reopening it as [Client.Watch] describes. decode reports
// whether an event is forwarded; an error ends the current stream.
func follow[T any](ctx context.Context, c *Client, path string, decode func(sseEvent) (T, bool, error)) (<-chan T, error) {
	idle, backoffMin, backoffMax := watchIdleTimeout, watchBackoffMin, watchBackoffMax
	body, err := c.openStream(ctx, path, idle)
	if err != nil {
		return nil, err
	}
	out := make(chan T)
	go func() {
		defer close(out)
		backoff := backoffMin
		for {
			if body != nil {
				delivered := pump(ctx, body, idle, out, decode)
				if delivered {
					backoff = backoffMin
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, backoffMax)
			body, err = c.openStream(ctx, path, idle)
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 &&
				apiErr.StatusCode != http.StatusRequestTimeout && apiErr.StatusCode != http.StatusTooManyRequests {
				return
			}
		}
	}()
	return out, nil
}

// stream is an open event stream whose Close also cancels its request.
type stream struct {
	io.ReadCloser
	cancel context.CancelFunc
	idle   *time.Timer
}

func (s *stream) Close() error {
	s.idle.Stop()
	s.cancel()
	return s.ReadCloser.Close()
}

// openStream sends the watch request. Waiting for the answer is bounded by
// the client's timeout; after that, only silence longer than the idle
// timeout ends the stream.
func (c *Client) openStream(ctx context.Context, path string, idle time.Duration) (*stream, error) {
	reqCtx, cancel := context.WithCancel(ctx)
	var headerTimer *time.Timer
	if c.timeout > 0 {
		headerTimer = time.AfterFunc(c.timeout, cancel)
	}
	resp, err := c.sendAccept(reqCtx, http.MethodGet, path, nil, "text/event-stream")
	if headerTimer != nil && !headerTimer.Stop() {
		// The timer fired: the request was cancelled, whatever it returned.
		if err == nil {
			drain(resp.Body)
		}
		cancel()
		return nil, fmt.Errorf("client: GET %s: no answer within %s", path, c.timeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer drain(resp.Body)
		return nil, newAPIError(resp)
	}
	return &stream{ReadCloser: resp.Body, cancel: cancel, idle: time.AfterFunc(idle, cancel)}, nil
}

// pump forwards what decode makes of the events of s to out until s ends,
// breaks, stays silent for idle, or ctx ends, and closes s. It reports
// whether anything was delivered.
func pump[T any](ctx context.Context, s *stream, idle time.Duration, out chan<- T, decode func(sseEvent) (T, bool, error)) (delivered bool) {
	defer s.Close()
	_ = readEvents(s, func() { s.idle.Reset(idle) }, func(ev sseEvent) bool {
		item, ok, err := decode(ev)
		if err != nil {
			return false
		}
		if !ok {
			return true
		}
		// A slow consumer is not a silent stream: pause the idle timer.
		s.idle.Stop()
		defer s.idle.Reset(idle)
		select {
		case out <- item:
			delivered = true
			return true
		case <-ctx.Done():
			return false
		}
	})
	return delivered
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	Event string
	Data  string
	ID    string
}

// maxEventLine caps one line of the event stream.
const maxEventLine = 1 << 20

// readEvents parses a Server-Sent Events stream (the WHATWG event stream
// format) from r: "field: value" lines, events dispatched at a blank line,
// several data lines joined by "\n", comment lines (":") ignored. An event
// without an event field has type "message", and one without data is not
// dispatched. activity is called for every line, keep-alive comments
// included. It returns when r ends (nil at a clean EOF) or emit returns
// false.
func readEvents(r io.Reader, activity func(), emit func(sseEvent) bool) error {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 0, 4096), maxEventLine)
	var (
		event, id string
		data      strings.Builder
		hasData   bool
	)
	for scanner.Scan() {
		activity()
		line := scanner.Text()
		if line == "" {
			if hasData {
				ev := sseEvent{Event: event, Data: data.String(), ID: id}
				if ev.Event == "" {
					ev.Event = "message"
				}
				if !emit(ev) {
					return nil
				}
			}
			event, hasData = "", false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				id = value
			}
		}
	}
	return scanner.Err()
}
