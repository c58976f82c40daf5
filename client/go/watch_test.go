package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadEventsParsesTheEventStreamFormat(t *testing.T) {
	stream := strings.Join([]string{
		": keep-alive",
		"event: lease",
		`data: {"a":1}`,
		"",
		"",                  // a second blank line dispatches nothing
		"event:lease",       // no space after the colon
		"data: line one",    // two data lines join with \n
		"data:  two spaces", // only one leading space is stripped
		"id: 42",
		"",
		"data: plain message", // no event field: type "message"
		"",
		"event: lease", // no data: not dispatched
		"",
		"retry: 1000",    // ignored field
		"event: lease\r", // CRLF line endings
		"data: crlf\r",
		"\r",
		"event: lease",
		"data: unterminated", // no blank line before EOF: not dispatched
	}, "\n")
	var got []sseEvent
	activity := 0
	err := readEvents(strings.NewReader(stream), func() { activity++ }, func(ev sseEvent) bool {
		got = append(got, ev)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []sseEvent{
		{Event: "lease", Data: `{"a":1}`},
		{Event: "lease", Data: "line one\n two spaces", ID: "42"},
		{Event: "message", Data: "plain message", ID: "42"},
		{Event: "lease", Data: "crlf", ID: "42"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %#v\nwant %#v", got, want)
	}
	if activity != 20 {
		t.Fatalf("activity called %d times, want once per line (20)", activity)
	}
}

func TestReadEventsStopsWhenEmitSaysSo(t *testing.T) {
	stream := "data: 1\n\ndata: 2\n\n"
	n := 0
	_ = readEvents(strings.NewReader(stream), func() {}, func(sseEvent) bool { n++; return false })
	if n != 1 {
		t.Fatalf("emitted %d", n)
	}
}

// sseServer serves the watch route; each connection runs serve.
func sseServer(t *testing.T, serve func(conn int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1alpha1/namespaces/team-a/leases/ingest/watch" || r.Header.Get("Accept") != "text/event-stream" {
			http.Error(w, `{"error":"bad watch request"}`, http.StatusBadRequest)
			return
		}
		n := int(conns.Add(1))
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		serve(n, w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &conns
}

func sendLease(w http.ResponseWriter, transitions int) {
	_, _ = fmt.Fprintf(w, "event: lease\ndata: {\"namespace\":\"team-a\",\"name\":\"ingest\",\"state\":\"held\",\"transitions\":%d}\n\n", transitions)
	w.(http.Flusher).Flush()
}

func receive(t *testing.T, ch <-chan Lease) Lease {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return Lease{}
	}
}

func waitClosed(t *testing.T, ch <-chan Lease) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed within 5s")
		}
	}
}

func fastBackoff(t *testing.T) {
	oldMin, oldMax := watchBackoffMin, watchBackoffMax
	watchBackoffMin, watchBackoffMax = 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { watchBackoffMin, watchBackoffMax = oldMin, oldMax })
}

func TestWatchDeliversEventsAndClosesWithContext(t *testing.T) {
	srv, _ := sseServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, ": keep-alive\n\n")
		sendLease(w, 1)
		sendLease(w, 2)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := New(srv.URL, WithAPIKey("k")).Watch(ctx, "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if l := receive(t, ch); l.Transitions != 1 || l.State != StateHeld || l.Name != "ingest" {
		t.Fatalf("first = %+v", l)
	}
	if l := receive(t, ch); l.Transitions != 2 {
		t.Fatalf("second = %+v", l)
	}
	cancel()
	waitClosed(t, ch)
}

func TestWatchOpenErrorsAreReturned(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"lease not found"}`)
	}))
	defer srv.Close()
	ch, err := New(srv.URL).Watch(t.Context(), "team-a", "ingest")
	if ch != nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "lease not found") {
		t.Fatalf("ch %v err %v", ch, err)
	}
}

func TestWatchReopensABrokenStream(t *testing.T) {
	fastBackoff(t)
	srv, conns := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		sendLease(w, n) // the current state first, on every connection
		if n == 1 {
			return // the stream breaks
		}
		<-r.Context().Done()
	})
	ch, err := New(srv.URL).Watch(t.Context(), "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if receive(t, ch).Transitions != 1 || receive(t, ch).Transitions != 2 {
		t.Fatal("events out of order")
	}
	if conns.Load() != 2 {
		t.Fatalf("connections = %d", conns.Load())
	}
}

func TestWatchReopensASilentStream(t *testing.T) {
	fastBackoff(t)
	old := watchIdleTimeout
	watchIdleTimeout = 100 * time.Millisecond
	t.Cleanup(func() { watchIdleTimeout = old })
	srv, conns := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		sendLease(w, n)
		<-r.Context().Done() // then silence: no keep-alives
	})
	ch, err := New(srv.URL).Watch(t.Context(), "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch)
	if l := receive(t, ch); l.Transitions != 2 || conns.Load() < 2 {
		t.Fatalf("after silence: %+v, %d connections", l, conns.Load())
	}
}

func TestWatchKeepAlivesKeepAStreamOpen(t *testing.T) {
	old := watchIdleTimeout
	watchIdleTimeout = 150 * time.Millisecond
	t.Cleanup(func() { watchIdleTimeout = old })
	// Each connection sends the lease, then only keep-alives: 20 of them span
	// four idle timeouts. Then the first connection sends a change.
	srv, conns := sseServer(t, func(conn int, w http.ResponseWriter, r *http.Request) {
		sendLease(w, 1)
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for sent := 1; ; sent++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				_, _ = io.WriteString(w, ":\n")
				w.(http.Flusher).Flush()
			}
			if sent == 20 && conn == 1 {
				sendLease(w, 2)
			}
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := New(srv.URL).Watch(ctx, "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch)
	// A stream dropped as idle would never deliver the change: every new
	// connection again sends only the first state and keep-alives.
	if l := receive(t, ch); l.Transitions != 2 || conns.Load() != 1 {
		t.Fatalf("after 20 keep-alives: %+v, reconnected %d times", l, conns.Load()-1)
	}
	cancel()
	waitClosed(t, ch)
}

func TestWatchClosesWhenReopenIsRefused(t *testing.T) {
	fastBackoff(t)
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":"lease not found"}`)
			return
		}
		w.WriteHeader(http.StatusOK)
		sendLease(w, 1) // then the lease is deleted and the stream ends
	}))
	defer srv.Close()
	ch, err := New(srv.URL).Watch(t.Context(), "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch)
	waitClosed(t, ch)
}

func TestWatchRetriesServerErrorsOnReopen(t *testing.T) {
	fastBackoff(t)
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch conns.Add(1) {
		case 1:
			w.WriteHeader(http.StatusOK)
			sendLease(w, 1)
		case 2, 3:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
			sendLease(w, 4)
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close) // after t.Context() ends the watch
	ch, err := New(srv.URL).Watch(t.Context(), "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if receive(t, ch).Transitions != 1 || receive(t, ch).Transitions != 4 {
		t.Fatal("events")
	}
}
