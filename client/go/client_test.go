package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorded is one request a test server saw.
type recorded struct {
	Method, Path, Auth, ContentType, Body string
}

// recorder answers every request with status and body, and records it.
type recorder struct {
	mu       sync.Mutex
	requests []recorded
	status   int
	body     string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, recorded{
		Method: req.Method, Path: req.URL.EscapedPath(), Auth: req.Header.Get("Authorization"),
		ContentType: req.Header.Get("Content-Type"), Body: string(body),
	})
	status, out := r.status, r.body
	r.mu.Unlock()
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		t.Fatal("no request")
	}
	return r.requests[len(r.requests)-1]
}

func newRecorder(t *testing.T, status int, body string) (*recorder, *Client) {
	t.Helper()
	rec := &recorder{status: status, body: body}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, New(srv.URL+"/", WithAPIKey("k3y"))
}

func TestCoreCallsSendTheWireShape(t *testing.T) {
	ctx := t.Context()
	const granted = `{"acquired":true,"holder":"team-a/w","fencingToken":7,` +
		`"expiresAt":"2026-11-24T06:15:30.191483000Z","acquiredAt":"2026-11-24T06:15:00.000000001Z"}`
	rec, c := newRecorder(t, http.StatusOK, granted)

	res, err := c.Acquire(ctx, "team-a", "ingest", "team-a/w", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := AcquireResult{
		Acquired: true, Holder: "team-a/w", FencingToken: 7,
		ExpiresAt:  time.Date(2026, 11, 24, 6, 15, 30, 191483000, time.UTC),
		AcquiredAt: time.Date(2026, 11, 24, 6, 15, 0, 1, time.UTC),
	}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	got := rec.last(t)
	if got != (recorded{"POST", "/v1alpha1/namespaces/team-a/leases/ingest/acquire", "Bearer k3y", "application/json",
		`{"holder":"team-a/w","ttlSeconds":30}`}) {
		t.Fatalf("acquire sent %+v", got)
	}

	if _, err := c.Renew(ctx, "team-a", "ingest", "team-a/w", 7, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Path != "/v1alpha1/namespaces/team-a/leases/ingest/renew" ||
		got.Body != `{"holder":"team-a/w","fencingToken":7,"ttlSeconds":15}` {
		t.Fatalf("renew sent %+v", got)
	}

	if _, err := c.AcquireWait(ctx, "team-a", "ingest", "team-a/w", 30*time.Second, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t).Body; got != `{"holder":"team-a/w","ttlSeconds":30,"waitSeconds":5}` {
		t.Fatalf("acquire-wait sent %s", got)
	}

	_, err = c.AcquireWith(ctx, "team-a", "pool", AcquireRequest{Holder: "team-a/w", TTL: 30 * time.Second, Semantics: AtLeastOnce, MaxHolders: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t).Body; got != `{"holder":"team-a/w","ttlSeconds":30,"semantics":"at-least-once","maxHolders":3}` {
		t.Fatalf("acquire-with sent %s", got)
	}

	rec.status = http.StatusNoContent
	if err := c.Release(ctx, "team-a", "ingest", "team-a/w", 7); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Path != "/v1alpha1/namespaces/team-a/leases/ingest/release" ||
		got.Body != `{"holder":"team-a/w","fencingToken":7}` {
		t.Fatalf("release sent %+v", got)
	}
}

func TestNotAcquiredResultHasNoToken(t *testing.T) {
	_, c := newRecorder(t, http.StatusOK, `{"acquired":false,"holder":"team-a/other","expiresAt":"2026-11-24T06:15:30.000000000Z","acquiredAt":"2026-11-24T06:15:00.000000000Z"}`)
	res, err := c.Acquire(t.Context(), "team-a", "ingest", "team-a/w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acquired || res.Holder != "team-a/other" || res.FencingToken != 0 || res.ExpiresAt.IsZero() {
		t.Fatalf("result = %+v", res)
	}
}

func TestReadRoutes(t *testing.T) {
	ctx := t.Context()
	const view = `{"namespace":"team-a","name":"ingest","semantics":"at-most-once","state":"held",` +
		`"holders":[{"identity":"team-a/w","fencingToken":3,"acquiredAt":"2026-11-24T06:00:00.000000000Z",` +
		`"renewedAt":"2026-11-24T06:00:10.000000000Z","expiresAt":"2026-11-24T06:00:40.000000000Z"}],` +
		`"fencingToken":3,"transitions":3,"ttlSeconds":30,"heartbeatIntervalSeconds":10,` +
		`"target":{"apiVersion":"batch/v1","kind":"CronJob","name":"nightly"},"updatedAt":"2026-11-24T06:00:00.000000000Z"}`
	rec, c := newRecorder(t, http.StatusOK, view)
	lease, err := c.Get(ctx, "team-a", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Method != "GET" || got.Path != "/v1alpha1/namespaces/team-a/leases/ingest" || got.Body != "" {
		t.Fatalf("get sent %+v", got)
	}
	if lease.State != StateHeld || lease.Semantics != AtMostOnce || len(lease.Holders) != 1 ||
		lease.Holders[0].FencingToken != 3 || lease.TTL() != 30*time.Second || lease.HeartbeatInterval() != 10*time.Second ||
		lease.Target == nil || lease.Target.Kind != "CronJob" || lease.MaxHolders != nil {
		t.Fatalf("lease = %+v", lease)
	}

	rec.body = `{"items":[` + view + `]}`
	items, err := c.List(ctx, "team-a")
	if err != nil || len(items) != 1 || items[0].Name != "ingest" {
		t.Fatalf("list = %v, %v", items, err)
	}
	if got := rec.last(t).Path; got != "/v1alpha1/namespaces/team-a/leases" {
		t.Fatalf("list path %s", got)
	}
	items, err = c.ListAll(ctx)
	if err != nil || len(items) != 1 {
		t.Fatalf("list all = %v, %v", items, err)
	}
	if got := rec.last(t).Path; got != "/v1alpha1/leases" {
		t.Fatalf("list-all path %s", got)
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	cases := []struct {
		status   int
		body     string
		sentinel error
		message  string
	}{
		{400, `{"error":"ttlSeconds must be positive"}`, ErrBadRequest, "ttlSeconds must be positive"},
		{401, `{"error":"unauthorized"}`, ErrUnauthorized, "unauthorized"},
		{403, `{"error":"not authorized for this namespace"}`, ErrForbidden, "not authorized for this namespace"},
		{404, `{"error":"lease not found"}`, ErrNotFound, "lease not found"},
		{409, `{"error":"lease held by another identity or token"}`, ErrConflict, "lease held by another identity or token"},
		{413, "request body must be at most 4096 bytes\n", nil, "request body must be at most 4096 bytes"},
		{500, `{"error":"internal error","requestId":"abc123"}`, nil, "internal error"},
	}
	sentinels := []error{ErrBadRequest, ErrUnauthorized, ErrForbidden, ErrNotFound, ErrConflict}
	for _, tc := range cases {
		_, c := newRecorder(t, tc.status, tc.body)
		err := c.Release(t.Context(), "a", "b", "a", 1)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || apiErr.Message != tc.message {
			t.Fatalf("%d: err = %#v", tc.status, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == tc.sentinel) {
				t.Errorf("%d: errors.Is(err, %v) = %v", tc.status, s, !(s == tc.sentinel))
			}
		}
		if !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%d: %q does not name the message", tc.status, err)
		}
		if tc.status == 500 && (apiErr.RequestID != "abc123" || !strings.Contains(err.Error(), "abc123")) {
			t.Errorf("500 error misses the request id: %v", err)
		}
	}
}

func TestErrorRequestIDFromHeader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Request-Id", "rid-1")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"holder not authorized for this identity"}`)
	}))
	defer srv.Close()
	err := New(srv.URL).Release(t.Context(), "a", "b", "c", 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RequestID != "rid-1" || !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %#v", err)
	}
}

func TestOverloadedAnswerCarriesRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"overloaded, retry later"}`)
	}))
	defer srv.Close()
	_, err := New(srv.URL).Renew(t.Context(), "a", "b", "a", 1, time.Minute)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.RetryAfter != time.Second ||
		apiErr.Message != "overloaded, retry later" {
		t.Fatalf("err = %#v", err)
	}
}

func TestDurationsAreSentAsWholeSeconds(t *testing.T) {
	cases := map[time.Duration]int32{
		1500 * time.Millisecond:                       1,
		999 * time.Millisecond:                        0,
		-time.Second:                                  -1,
		time.Duration(math.MaxInt64):                  math.MaxInt32,
		time.Duration(math.MaxInt32+10) * time.Second: math.MaxInt32,
	}
	for d, want := range cases {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestAPIKeyFuncIsCalledPerRequest(t *testing.T) {
	rec := &recorder{status: http.StatusNoContent}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	keys := []string{"first", "", "third"}
	calls := 0
	c := New(srv.URL, WithAPIKeyFunc(func() string { k := keys[calls]; calls++; return k }))
	for range keys {
		if err := c.Release(t.Context(), "a", "b", "a", 1); err != nil {
			t.Fatal(err)
		}
	}
	var auth []string
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.requests {
		auth = append(auth, r.Auth)
	}
	if strings.Join(auth, ",") != "Bearer first,,Bearer third" {
		t.Fatalf("Authorization headers = %q", auth)
	}
}

func TestPing(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	c := New(srv.URL)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	status = http.StatusServiceUnavailable
	var apiErr *APIError
	if err := c.Ping(t.Context()); !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("err = %v", err)
	}
	if err := New("").Ping(t.Context()); err == nil {
		t.Fatal("empty base URL accepted")
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	// An acquire of lease "never" is never answered: only the client's
	// timeout ends it. Others are answered after 300 ms, past the 50 ms
	// timeout but within the timeout plus a 1 s wait.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/leases/never/") {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		} else {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-release:
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"acquired":false,"holder":""}`)
	}))
	defer srv.Close()
	defer close(release)

	c := New(srv.URL, WithTimeout(50*time.Millisecond))
	_, err := c.Acquire(t.Context(), "a", "never", "a", time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	// AcquireWait adds its wait to the timeout.
	if _, err := c.AcquireWait(t.Context(), "a", "b", "a", time.Minute, time.Second); err != nil {
		t.Fatalf("acquire-wait: %v", err)
	}
	// No timeout at all.
	if _, err := New(srv.URL, WithTimeout(0)).Acquire(t.Context(), "a", "b", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if New(srv.URL).timeout != DefaultTimeout || DefaultTimeout != 10*time.Second {
		t.Fatal("default timeout")
	}
}

func TestTLSConfigWithCAPool(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	if err := New(srv.URL, WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})).Ping(t.Context()); err != nil {
		t.Fatalf("trusted CA: %v", err)
	}
	err := New(srv.URL, WithTLSConfig(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})).Ping(t.Context())
	var verifyErr *tls.CertificateVerificationError
	if !errors.As(err, &verifyErr) {
		t.Fatalf("unknown CA: err = %v, want a certificate verification error", err)
	}

	// The HTTP client given to WithHTTPClient keeps its own transport.
	hc := &http.Client{}
	c := New(srv.URL, WithHTTPClient(hc), WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if hc.Transport != nil {
		t.Fatal("WithTLSConfig modified the caller's http.Client")
	}
	if New(srv.URL, WithHTTPClient(nil)).httpClient == nil || New(srv.URL, WithTLSConfig(nil)).httpClient.Transport != nil {
		t.Fatal("nil options must change nothing")
	}
}

func TestWithHTTPClientIsUsed(t *testing.T) {
	var used bool
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"items":[]}`)), Header: http.Header{}, Request: r}, nil
	})}
	items, err := New("https://berth.invalid", WithHTTPClient(hc)).ListAll(t.Context())
	if err != nil || !used || len(items) != 0 {
		t.Fatalf("items %v err %v used %v", items, err, used)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPathSegmentsAreEscaped(t *testing.T) {
	rec, c := newRecorder(t, http.StatusNotFound, `{"error":"lease not found"}`)
	_, err := c.Get(t.Context(), "a", "x/y")
	if !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got := rec.last(t).Path; got != "/v1alpha1/namespaces/a/leases/x%2Fy" {
		t.Fatalf("path %s", got)
	}
}

func TestAcquireResultJSONRoundTrip(t *testing.T) {
	b, err := json.Marshal(AcquireResult{Acquired: false, Holder: ""})
	if err != nil || string(b) != `{"acquired":false}` {
		t.Fatalf("%s %v", b, err)
	}
}

func TestPostsAreMarkedIdempotentWithoutSendingAHeader(t *testing.T) {
	var marked []bool
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, ok := r.Header["Idempotency-Key"]
		marked = append(marked, ok && r.GetBody != nil)
		return &http.Response{StatusCode: 204, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})}
	c := New("https://berth.invalid", WithHTTPClient(hc))
	_ = c.Release(t.Context(), "a", "b", "a", 1)
	_, _ = c.Renew(t.Context(), "a", "b", "a", 1, time.Second)
	_, _ = c.Acquire(t.Context(), "a", "b", "a", time.Second)
	if len(marked) != 3 || !marked[0] || !marked[1] || !marked[2] {
		t.Fatalf("marked = %v", marked)
	}

	var onWire atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, has := r.Header["Idempotency-Key"]
		onWire.Store(has)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := New(srv.URL).Release(t.Context(), "a", "b", "a", 1); err != nil {
		t.Fatal(err)
	}
	if onWire.Load() {
		t.Fatal("an Idempotency-Key header was sent")
	}
}
