package client_test

// Integration tests: the client against the Rust apiserver on the project's
// real control plane. They need the apiserver binary at BERTH_APISERVER_BIN.
// Without it they skip, unless BERTH_GO_INTEGRATION=1 (set by `make test`)
// makes that a failure.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/skaphos/berth-rs/client/go"
	"github.com/skaphos/berth-rs/client/go/internal/berthtest"
)

// stack is the shared apiserver and its tenants:
//   - alpha may use namespaces nsA and nsA2,
//   - beta may use every namespace (a two-field keys line).
type stack struct {
	repo        string
	bin         string
	cp          *berthtest.ControlPlane
	srv         *berthtest.APIServer
	tlsConfig   *tls.Config
	nsA, nsA2   string
	nsB         string
	alpha, beta berthtest.Tenant
}

var (
	sharedOnce  sync.Once
	shared      *stack
	sharedError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.srv.Close()
	}
	os.Exit(code)
}

// apiserverBinary is BERTH_APISERVER_BIN, or skips (fails when
// BERTH_GO_INTEGRATION=1) with the reason it cannot be used.
func apiserverBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("BERTH_APISERVER_BIN")
	reason := ""
	if bin == "" {
		reason = "BERTH_APISERVER_BIN is not set"
	} else if _, err := os.Stat(bin); err != nil {
		reason = fmt.Sprintf("BERTH_APISERVER_BIN=%s is unusable: %v", bin, err)
	}
	if reason == "" {
		return bin
	}
	reason += "; the integration tests need the Rust apiserver (cargo build -p berth-apiserver, then BERTH_APISERVER_BIN=<target dir>/debug/apiserver)"
	if os.Getenv("BERTH_GO_INTEGRATION") == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason + "; set BERTH_GO_INTEGRATION=1 to make this a failure")
	return ""
}

func integration(t *testing.T) *stack {
	t.Helper()
	bin := apiserverBinary(t)
	sharedOnce.Do(func() { shared, sharedError = startStack(bin) })
	if sharedError != nil {
		t.Fatal(sharedError)
	}
	return shared
}

func startStack(bin string) (*stack, error) {
	repo, err := berthtest.RepoRoot()
	if err != nil {
		return nil, err
	}
	cp, err := berthtest.StartControlPlane(repo)
	if err != nil {
		return nil, err
	}
	s := &stack{repo: repo, bin: bin, cp: cp}
	for _, ns := range []*string{&s.nsA, &s.nsA2, &s.nsB} {
		if *ns, err = cp.CreateNamespace("go-client"); err != nil {
			return nil, err
		}
	}
	s.alpha = berthtest.NewTenant("alpha", s.nsA, s.nsA2)
	s.beta = berthtest.NewTenant("beta")
	if s.srv, err = berthtest.StartAPIServer(bin, cp, []berthtest.Tenant{s.alpha, s.beta}); err != nil {
		return nil, err
	}
	if s.tlsConfig, err = s.srv.TLSConfig(); err != nil {
		s.srv.Close()
		return nil, err
	}
	return s, nil
}

// client is a client of the shared apiserver that trusts its CA.
func (s *stack) client(key string, opts ...client.Option) *client.Client {
	return client.New(s.srv.URL, append([]client.Option{client.WithAPIKey(key), client.WithTLSConfig(s.tlsConfig)}, opts...)...)
}

var leaseCounter struct {
	sync.Mutex
	n int
}

// leaseName is a lease name no other test uses.
func leaseName(prefix string) string {
	leaseCounter.Lock()
	defer leaseCounter.Unlock()
	leaseCounter.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1_000_000, leaseCounter.n)
}

// wantAPIError checks that err is an *APIError with status and message
// (message: a prefix, as the apiserver may add detail), matching sentinel.
func wantAPIError(t *testing.T, what string, err error, status int, message string, sentinel error) {
	t.Helper()
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		t.Errorf("%s: err = %v (%T), want an *APIError %d", what, err, err, status)
		return
	}
	if apiErr.StatusCode != status || !strings.HasPrefix(apiErr.Message, message) {
		t.Errorf("%s: got %d %q, want %d %q", what, apiErr.StatusCode, apiErr.Message, status, message)
	}
	if apiErr.RequestID == "" {
		t.Errorf("%s: no X-Request-Id", what)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("%s: errors.Is(err, %v) is false", what, sentinel)
	}
}

// eventually polls read for up to 10 s until ok accepts its result. Reads
// come from the apiserver's informer cache, which trails the writes.
func eventually[T any](t *testing.T, what string, read func() (T, error), ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := read()
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; last read %+v, %v", what, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationPing(t *testing.T) {
	s := integration(t)
	if err := s.client("").Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationAcquireRenewRelease(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	c := s.client(s.alpha.Key)
	name := leaseName("core")

	before := time.Now()
	first, err := c.Acquire(ctx, s.nsA, name, "alpha/worker-1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Acquired || first.Holder != "alpha/worker-1" || first.FencingToken < 1 {
		t.Fatalf("first acquire = %+v", first)
	}
	if first.ExpiresAt.Before(before.Add(29*time.Second)) || first.AcquiredAt.Before(before.Add(-time.Second)) {
		t.Fatalf("times: %+v (sent at %s)", first, before)
	}

	again, err := c.Acquire(ctx, s.nsA, name, "alpha/worker-1", 30*time.Second)
	if err != nil || !again.Acquired || again.FencingToken != first.FencingToken {
		t.Fatalf("re-acquire by the holder = %+v, %v; want the same token", again, err)
	}

	other, err := c.Acquire(ctx, s.nsA, name, "alpha/worker-2", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if other.Acquired || other.Holder != "alpha/worker-1" || other.FencingToken != 0 || other.ExpiresAt.IsZero() {
		t.Fatalf("acquire by another holder = %+v", other)
	}

	renewed, err := c.Renew(ctx, s.nsA, name, "alpha/worker-1", first.FencingToken, 60*time.Second)
	if err != nil || !renewed.Acquired || renewed.FencingToken != first.FencingToken || !renewed.ExpiresAt.After(first.ExpiresAt) {
		t.Fatalf("renew = %+v, %v", renewed, err)
	}
	stale, err := c.Renew(ctx, s.nsA, name, "alpha/worker-1", first.FencingToken+100, 30*time.Second)
	if err != nil || stale.Acquired {
		t.Fatalf("renew with a wrong token = %+v, %v; want acquired false", stale, err)
	}

	err = c.Release(ctx, s.nsA, name, "alpha/worker-2", first.FencingToken)
	wantAPIError(t, "release by another holder", err, 409, "lease held by another identity or token", client.ErrConflict)
	if err := c.Release(ctx, s.nsA, name, "alpha/worker-1", first.FencingToken); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := c.Release(ctx, s.nsA, name, "alpha/worker-1", first.FencingToken); err != nil {
		t.Fatalf("second release (idempotent): %v", err)
	}
	gone, err := c.Renew(ctx, s.nsA, name, "alpha/worker-1", first.FencingToken, 30*time.Second)
	if err != nil || gone.Acquired {
		t.Fatalf("renew after release = %+v, %v", gone, err)
	}

	next, err := c.Acquire(ctx, s.nsA, name, "alpha/worker-2", 30*time.Second)
	if err != nil || !next.Acquired || next.FencingToken <= first.FencingToken {
		t.Fatalf("acquire after release = %+v, %v; want a larger token than %d", next, err, first.FencingToken)
	}
}

func TestIntegrationErrorValues(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	alpha := s.client(s.alpha.Key)
	name := leaseName("errors")
	held, err := alpha.Acquire(ctx, s.nsA, name, "alpha", 30*time.Second)
	if err != nil || !held.Acquired {
		t.Fatalf("setup acquire: %+v %v", held, err)
	}
	token := held.FencingToken

	// Every call, for each failing check: 401 first, then body fields, then 403, then names.
	calls := map[string]func(c *client.Client, ns, name, holder string) error{
		"acquire": func(c *client.Client, ns, name, holder string) error {
			_, err := c.Acquire(ctx, ns, name, holder, 30*time.Second)
			return err
		},
		"acquire-wait": func(c *client.Client, ns, name, holder string) error {
			_, err := c.AcquireWait(ctx, ns, name, holder, 30*time.Second, time.Second)
			return err
		},
		"renew": func(c *client.Client, ns, name, holder string) error {
			_, err := c.Renew(ctx, ns, name, holder, token, 30*time.Second)
			return err
		},
		"release": func(c *client.Client, ns, name, holder string) error {
			return c.Release(ctx, ns, name, holder, token)
		},
		"get": func(c *client.Client, ns, name, _ string) error {
			_, err := c.Get(ctx, ns, name)
			return err
		},
		"list": func(c *client.Client, ns, _, _ string) error {
			_, err := c.List(ctx, ns)
			return err
		},
		"watch": func(c *client.Client, ns, name, _ string) error {
			ch, err := c.Watch(ctx, ns, name)
			if err == nil {
				t.Errorf("watch opened %v", ch)
			}
			return err
		},
	}
	noKey := client.New(s.srv.URL, client.WithTLSConfig(s.tlsConfig))
	badKey := s.client("not-a-key")
	for call, do := range calls {
		wantAPIError(t, call+" without a key", do(noKey, s.nsA, name, "alpha"), 401,
			"missing or malformed Authorization header", client.ErrUnauthorized)
		wantAPIError(t, call+" with an unknown key", do(badKey, s.nsA, name, "alpha"), 401, "unauthorized", client.ErrUnauthorized)
		wantAPIError(t, call+" in another tenant's namespace", do(alpha, s.nsB, name, "alpha"), 403,
			"not authorized for this namespace", client.ErrForbidden)
		if call == "acquire" || call == "acquire-wait" || call == "renew" || call == "release" {
			wantAPIError(t, call+" as another tenant's holder", do(alpha, s.nsA, name, "beta/x"), 403,
				"holder not authorized for this identity", client.ErrForbidden)
		}
		if call != "list" {
			wantAPIError(t, call+" of a bad name", do(alpha, s.nsA, "Bad_Name", "alpha"), 400, "name must be", client.ErrBadRequest)
		}
		if call == "get" || call == "watch" {
			wantAPIError(t, call+" of a missing lease", do(alpha, s.nsA, leaseName("missing"), "alpha"), 404,
				"lease not found", client.ErrNotFound)
		}
	}
	if _, err := s.client("").ListAll(ctx); err == nil {
		t.Error("list-all without a key succeeded")
	} else {
		wantAPIError(t, "list-all without a key", err, 401, "missing or malformed Authorization header", client.ErrUnauthorized)
	}
	// A namespace outside the tenant's set is 403 before its name is checked.
	wantAPIError(t, "bad namespace", calls["acquire"](alpha, "Bad_NS", name, "alpha"), 403, "not authorized for this namespace", client.ErrForbidden)
	// beta may use every namespace: it gets to the name check.
	err = calls["acquire"](s.client(s.beta.Key), "Bad_NS", name, "beta")
	wantAPIError(t, "bad namespace", err, 400, "namespace must be", client.ErrBadRequest)

	// Field checks.
	_, err = alpha.Acquire(ctx, s.nsA, name, "", 30*time.Second)
	wantAPIError(t, "acquire without holder", err, 400, "holder is required", client.ErrBadRequest)
	_, err = alpha.Acquire(ctx, s.nsA, name, strings.Repeat("a", 254), 30*time.Second)
	wantAPIError(t, "acquire with a long holder", err, 400, "holder must be at most 253 bytes", client.ErrBadRequest)
	_, err = alpha.Acquire(ctx, s.nsA, name, "alpha", 0)
	wantAPIError(t, "acquire with ttl 0", err, 400, "ttlSeconds must be positive", client.ErrBadRequest)
	_, err = alpha.Acquire(ctx, s.nsA, name, "alpha", 86401*time.Second)
	wantAPIError(t, "acquire with ttl too large", err, 400, "ttlSeconds must be at most 86400", client.ErrBadRequest)
	_, err = alpha.Renew(ctx, s.nsA, name, "alpha", 0, 30*time.Second)
	wantAPIError(t, "renew with token 0", err, 400, "fencingToken must be non-zero", client.ErrBadRequest)
	_, err = alpha.AcquireWait(ctx, s.nsA, name, "alpha", 30*time.Second, 301*time.Second)
	wantAPIError(t, "acquire with wait too long", err, 400, "waitSeconds must be between 1 and 300", client.ErrBadRequest)
	_, err = alpha.AcquireWith(ctx, s.nsA, leaseName("sem"), client.AcquireRequest{Holder: "alpha", TTL: 30 * time.Second, MaxHolders: 2})
	wantAPIError(t, "maxHolders without at-least-once", err, 400, "maxHolders is only allowed with semantics at-least-once", client.ErrBadRequest)
	// The body check comes first: a 5000-byte holder is too large a body.
	_, err = alpha.Acquire(ctx, s.nsA, name, strings.Repeat("a", 5000), 30*time.Second)
	wantAPIError(t, "acquire with a body over 4096 bytes", err, 413, "request body must be at most 4096 bytes", nil)
	// The field check comes before authorization.
	_, err = alpha.Acquire(ctx, s.nsB, name, "alpha", 0)
	wantAPIError(t, "ttl 0 in another namespace", err, 400, "ttlSeconds must be positive", client.ErrBadRequest)
}

func TestIntegrationReads(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	alpha := s.client(s.alpha.Key)
	names := []string{leaseName("read-b"), leaseName("read-a")}
	for _, n := range names {
		if res, err := alpha.Acquire(ctx, s.nsA, n, "alpha/reader", 30*time.Second); err != nil || !res.Acquired {
			t.Fatalf("acquire %s: %+v %v", n, res, err)
		}
	}
	// beta's lease in its own namespace must never show up for alpha.
	hidden := leaseName("hidden")
	if res, err := s.client(s.beta.Key).Acquire(ctx, s.nsB, hidden, "beta", 30*time.Second); err != nil || !res.Acquired {
		t.Fatalf("beta acquire: %+v %v", res, err)
	}

	lease := eventually(t, "get shows the holder", func() (client.Lease, error) { return alpha.Get(ctx, s.nsA, names[0]) },
		func(l client.Lease) bool { return len(l.Holders) == 1 })
	if lease.Namespace != s.nsA || lease.Name != names[0] || lease.State != client.StateHeld || lease.Semantics != client.AtMostOnce ||
		len(lease.Holders) != 1 || lease.Holders[0].Identity != "alpha/reader" || lease.FencingToken != lease.Holders[0].FencingToken ||
		lease.Transitions != 1 || lease.TTLSeconds < 1 || lease.HeartbeatIntervalSeconds < 1 || lease.UpdatedAt.IsZero() {
		t.Fatalf("get = %+v", lease)
	}

	hasOurs := func(items []client.Lease) bool {
		found := 0
		for _, l := range items {
			if slices.Contains(names, l.Name) {
				found++
			}
		}
		return found == len(names)
	}
	items := eventually(t, "list shows both leases", func() ([]client.Lease, error) { return alpha.List(ctx, s.nsA) }, hasOurs)
	var listed []string
	for _, l := range items {
		if l.Namespace != s.nsA {
			t.Errorf("list of %s holds %s/%s", s.nsA, l.Namespace, l.Name)
		}
		listed = append(listed, l.Name)
	}
	if !slices.IsSorted(listed) {
		t.Fatalf("list is not sorted by name: %v", listed)
	}

	all := eventually(t, "list-all shows both leases", func() ([]client.Lease, error) { return alpha.ListAll(ctx) }, hasOurs)
	for _, l := range all {
		if l.Namespace != s.nsA && l.Namespace != s.nsA2 {
			t.Errorf("list-all shows %s/%s outside alpha's namespaces", l.Namespace, l.Name)
		}
	}
	if !slices.IsSortedFunc(all, func(a, b client.Lease) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	}) {
		t.Error("list-all is not sorted by namespace and name")
	}
	if _, err := alpha.Get(ctx, s.nsB, hidden); err == nil {
		t.Fatal("alpha read beta's lease")
	}
}

func TestIntegrationAtLeastOnce(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	alpha := s.client(s.alpha.Key)
	name := leaseName("pool")
	for i, want := range []bool{true, true, false} {
		res, err := alpha.AcquireWith(ctx, s.nsA2, name, client.AcquireRequest{
			Holder: fmt.Sprintf("alpha/w%d", i), TTL: 30 * time.Second, Semantics: client.AtLeastOnce, MaxHolders: 2,
		})
		if err != nil || res.Acquired != want {
			t.Fatalf("holder %d: %+v %v, want acquired %v", i, res, err, want)
		}
	}
	lease := eventually(t, "both holders", func() (client.Lease, error) { return alpha.Get(ctx, s.nsA2, name) },
		func(l client.Lease) bool { return len(l.Holders) == 2 })
	if lease.Semantics != client.AtLeastOnce || lease.MaxHolders == nil || *lease.MaxHolders != 2 {
		t.Fatalf("lease = %+v", lease)
	}
}

func TestIntegrationWatch(t *testing.T) {
	s := integration(t)
	alpha := s.client(s.alpha.Key)
	name := leaseName("watch")
	first, err := alpha.Acquire(t.Context(), s.nsA, name, "alpha/w1", 30*time.Second)
	if err != nil || !first.Acquired {
		t.Fatal(first, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := alpha.Watch(ctx, s.nsA, name)
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string, ok func(client.Lease) bool) client.Lease {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, open := <-events:
				if !open {
					t.Fatalf("%s: watch closed", what)
				}
				if ok(l) {
					return l
				}
			case <-timeout:
				t.Fatalf("%s: no such event within 10s", what)
			}
		}
	}
	current := next("current state", func(client.Lease) bool { return true })
	if current.State != client.StateHeld || current.Holders[0].Identity != "alpha/w1" {
		t.Fatalf("first event = %+v", current)
	}
	if err := alpha.Release(t.Context(), s.nsA, name, "alpha/w1", first.FencingToken); err != nil {
		t.Fatal(err)
	}
	next("release", func(l client.Lease) bool { return l.State == client.StateReleased && len(l.Holders) == 0 })
	second, err := alpha.Acquire(t.Context(), s.nsA, name, "alpha/w2", 30*time.Second)
	if err != nil || !second.Acquired {
		t.Fatal(second, err)
	}
	l := next("second grant", func(l client.Lease) bool { return l.State == client.StateHeld })
	if l.FencingToken != second.FencingToken || l.Holders[0].Identity != "alpha/w2" {
		t.Fatalf("second grant event = %+v", l)
	}
	cancel()
	for range events {
	}
}

func TestIntegrationWatchAllAndWatchNamespace(t *testing.T) {
	s := integration(t)
	alpha, beta := s.client(s.alpha.Key), s.client(s.beta.Key)
	present := leaseName("cwatch")
	if g, err := alpha.Acquire(t.Context(), s.nsA2, present, "alpha/p", 30*time.Second); err != nil || !g.Acquired {
		t.Fatal(g, err)
	}
	eventually(t, "the lease in the list", func() ([]client.Lease, error) { return alpha.List(t.Context(), s.nsA2) },
		func(ls []client.Lease) bool {
			return slices.ContainsFunc(ls, func(l client.Lease) bool { return l.Name == present })
		})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	next := func(events <-chan client.LeaseEvent) client.LeaseEvent {
		t.Helper()
		select {
		case ev, open := <-events:
			if !open {
				t.Fatal("watch closed")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return client.LeaseEvent{}
	}
	// initial reads the starting list up to EventInitialEventsEnd.
	initial := func(events <-chan client.LeaseEvent) []string {
		var names []string
		for {
			ev := next(events)
			if ev.Type == client.EventInitialEventsEnd {
				return names
			}
			if ev.Type != client.EventAdded {
				t.Fatalf("starting list: %s event", ev.Type)
			}
			names = append(names, ev.Lease.Namespace+"/"+ev.Lease.Name)
		}
	}
	ns, err := alpha.WatchNamespace(ctx, s.nsA2)
	if err != nil {
		t.Fatal(err)
	}
	all, err := alpha.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	others, err := beta.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := s.nsA2 + "/" + present
	for what, events := range map[string]<-chan client.LeaseEvent{"namespace": ns, "all": all} {
		if names := initial(events); !slices.Contains(names, want) {
			t.Fatalf("%s watch started with %v, want %s among them", what, names, want)
		}
	}
	if names := initial(others); slices.Contains(names, want) {
		t.Fatalf("beta's watch shows alpha's lease: %v", names)
	}

	fresh := leaseName("cwatch-fresh")
	grant, err := alpha.Acquire(t.Context(), s.nsA2, fresh, "alpha/f", 30*time.Second)
	if err != nil || !grant.Acquired {
		t.Fatal(grant, err)
	}
	// until reads events of the fresh lease until ok; other tests' leases may interleave.
	until := func(events <-chan client.LeaseEvent, what string, ok func(client.LeaseEvent) bool) client.LeaseEvent {
		t.Helper()
		for {
			ev := next(events)
			if ev.Lease.Name == fresh && ok(ev) {
				return ev
			}
			if ev.Lease.Name == fresh && ev.Type == client.EventDeleted {
				t.Fatalf("%s: unexpected delete", what)
			}
		}
	}
	for _, events := range []<-chan client.LeaseEvent{ns, all} {
		until(events, "grant", func(ev client.LeaseEvent) bool {
			return ev.Lease.State == client.StateHeld && ev.Lease.FencingToken == grant.FencingToken
		})
	}
	if err := alpha.Release(t.Context(), s.nsA2, fresh, "alpha/f", grant.FencingToken); err != nil {
		t.Fatal(err)
	}
	for _, events := range []<-chan client.LeaseEvent{ns, all} {
		ev := until(events, "release", func(ev client.LeaseEvent) bool { return ev.Lease.State == client.StateReleased })
		if ev.Type != client.EventModified || len(ev.Lease.Holders) != 0 {
			t.Fatalf("release event = %+v", ev)
		}
	}
	if _, err := alpha.WatchNamespace(ctx, s.nsB); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("alpha watching %s: %v, want ErrForbidden", s.nsB, err)
	}
	cancel()
	for range all {
	}
}

func TestIntegrationAcquireWait(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	alpha := s.client(s.alpha.Key)
	name := leaseName("wait")
	// Held far longer than both waits below, so that only a release ends them early.
	held, err := alpha.Acquire(ctx, s.nsA, name, "alpha/w1", 120*time.Second)
	if err != nil || !held.Acquired {
		t.Fatal(held, err)
	}

	// The wait ends first: not acquired, and not answered before the wait.
	start := time.Now()
	res, err := alpha.AcquireWait(ctx, s.nsA, name, "alpha/w2", 30*time.Second, time.Second)
	if err != nil || res.Acquired || res.Holder != "alpha/w1" {
		t.Fatalf("wait that ends = %+v %v", res, err)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("a 1 s wait was answered after %s", elapsed)
	}

	// A release during the wait grants it: the release is sent once the
	// apiserver counts the acquire as waiting.
	type answer struct {
		res client.AcquireResult
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		res, err := alpha.AcquireWait(ctx, s.nsA, name, "alpha/w2", 30*time.Second, 60*time.Second)
		answered <- answer{res, err}
	}()
	waiting := func() (float64, error) { return s.srv.Metric("berth_apiserver_waiting_acquires") }
	eventually(t, "the acquire waits", waiting, func(n float64) bool { return n == 1 })
	start = time.Now()
	if err := alpha.Release(ctx, s.nsA, name, "alpha/w1", held.FencingToken); err != nil {
		t.Fatal(err)
	}
	// Unwoken, the wait would end after 60 s with acquired=false.
	got := <-answered
	if got.err != nil || !got.res.Acquired || got.res.FencingToken <= held.FencingToken {
		t.Fatalf("wait through a release = %+v %v", got.res, got.err)
	}
	t.Logf("granted %s after the release", time.Since(start).Round(time.Millisecond))
}

func TestIntegrationTLS(t *testing.T) {
	s := integration(t)
	ctx := t.Context()
	if err := s.client(s.alpha.Key).Ping(ctx); err != nil {
		t.Fatalf("with the CA pool: %v", err)
	}
	if _, err := s.client(s.alpha.Key).ListAll(ctx); err != nil {
		t.Fatalf("with the CA pool: %v", err)
	}

	otherCA, err := berthtest.GenerateCA(s.repo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherConfig, err := berthtest.CAConfig(otherCA)
	if err != nil {
		t.Fatal(err)
	}
	for what, cfg := range map[string]*tls.Config{
		"an unrelated CA": otherConfig,
		"an empty pool":   {RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12},
	} {
		c := client.New(s.srv.URL, client.WithAPIKey(s.alpha.Key), client.WithTLSConfig(cfg))
		_, err := c.Acquire(ctx, s.nsA, leaseName("tls"), "alpha", 30*time.Second)
		var verifyErr *tls.CertificateVerificationError
		if !errors.As(err, &verifyErr) {
			t.Errorf("%s: err = %v, want a certificate verification error", what, err)
		}
		if err := c.Ping(ctx); err == nil {
			t.Errorf("%s: ping succeeded", what)
		}
	}
}

func TestIntegrationKeeperRenewsAndReleases(t *testing.T) {
	s := integration(t)
	alpha := s.client(s.alpha.Key)
	name := leaseName("keeper")
	k, err := alpha.Keep(t.Context(), client.KeeperConfig{Namespace: s.nsA, Name: name, Holder: "alpha/keeper", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first := k.Deadline()
	get := func() (client.Lease, error) { return alpha.Get(t.Context(), s.nsA, name) }
	granted := eventually(t, "the grant reaches the cache", get, func(l client.Lease) bool {
		return len(l.Holders) == 1 && l.Holders[0].FencingToken == k.FencingToken()
	})
	// Only renews keep it past the TTL of the grant: the server's expiry moves
	// past the grant's own, and the keeper's deadline past its first one.
	grantExpiry := granted.Holders[0].ExpiresAt
	eventually(t, "the keeper holds it past the grant's TTL", get, func(l client.Lease) bool {
		return len(l.Holders) == 1 && l.Holders[0].FencingToken == k.FencingToken() &&
			time.Now().After(grantExpiry) && l.Holders[0].ExpiresAt.After(time.Now()) &&
			l.Holders[0].RenewedAt.After(l.Holders[0].AcquiredAt)
	})
	if !k.Held() || !k.Deadline().After(first) {
		t.Fatalf("past the grant's TTL: held %v, deadline %s (first %s), err %v", k.Held(), k.Deadline(), first, k.Err())
	}
	// Another holder is refused while the keeper holds it.
	if _, err := alpha.Keep(t.Context(), client.KeeperConfig{Namespace: s.nsA, Name: name, Holder: "alpha/other", TTL: 2 * time.Second}); !errors.Is(err, client.ErrNotAcquired) {
		t.Fatalf("second keeper: %v, want ErrNotAcquired", err)
	}
	if err := k.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "released by Stop", get, func(l client.Lease) bool { return l.State == client.StateReleased && len(l.Holders) == 0 })
}

func TestIntegrationKeeperLosesLeaseWhenAPIServerStops(t *testing.T) {
	s := integration(t)
	// An apiserver of its own, to kill.
	srv, err := berthtest.StartAPIServer(s.bin, s.cp, []berthtest.Tenant{s.alpha})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, err := srv.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(srv.URL, client.WithAPIKey(s.alpha.Key), client.WithTLSConfig(cfg), client.WithTimeout(2*time.Second))
	name := leaseName("loss")
	const ttl = 3 * time.Second
	k, err := c.Keep(t.Context(), client.KeeperConfig{Namespace: s.nsA, Name: name, Holder: "alpha/keeper", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k.Stop(context.Background()) }()

	// Let one renew move the deadline, then kill the apiserver.
	firstDeadline := k.Deadline()
	renewed := func() (time.Time, error) {
		if !k.Held() {
			t.Fatalf("lost before the apiserver stopped: %v", k.Err())
		}
		return k.Deadline(), nil
	}
	eventually(t, "a renew moves the deadline", renewed, func(d time.Time) bool { return !d.Equal(firstDeadline) })
	srv.Kill()
	killed := time.Now()
	deadline := k.Deadline()

	// Held until the deadline (renews fail, none is refused), not after: every
	// look at the keeper until it signals the loss agrees with its deadline.
	// The bound is only a failure bound.
	bound := time.After(deadline.Sub(killed) + 2*ttl)
	var lost time.Time
	for lost.IsZero() {
		deadline = k.Deadline() // moved only by a renew answered before the kill
		before := time.Now()
		held := k.Held()
		after := time.Now()
		switch {
		case !held && after.Before(deadline):
			t.Fatalf("not held %s before the deadline: %v", deadline.Sub(after), k.Err())
		case held && !before.Before(deadline):
			t.Fatalf("Held %s after the local deadline", before.Sub(deadline))
		}
		select {
		case <-k.Done():
			lost = time.Now()
		case <-bound:
			t.Fatalf("no loss signalled within %s of the deadline", 2*ttl)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// The signal is due at the deadline (docs/keeper.md), never before it
	// while no renew was refused; seen here at the earliest when it came.
	if lost.Before(deadline) {
		t.Fatalf("loss signalled %s before the deadline with no renew refused: %v", deadline.Sub(lost), k.Err())
	}
	t.Logf("apiserver killed %s before the local deadline; loss seen %s after it",
		deadline.Sub(killed).Round(time.Millisecond), lost.Sub(deadline).Round(time.Microsecond))
	if k.Held() {
		t.Fatal("Held after the deadline")
	}
	if err := k.Err(); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("cause = %v, want ErrLeaseLost", err)
	}

	// The apiserver back: another holder gets the lease only once it expired
	// there, which is after the keeper had stopped claiming it.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	res, err := c.AcquireWait(t.Context(), s.nsA, name, "alpha/next", ttl, 10*time.Second)
	if err != nil || !res.Acquired {
		t.Fatalf("takeover: %+v %v", res, err)
	}
	if res.AcquiredAt.Before(deadline) {
		t.Fatalf("another holder got the lease at %s, before the keeper's local deadline %s", res.AcquiredAt, deadline)
	}
	t.Logf("next holder granted %s after the keeper's local deadline", res.AcquiredAt.Sub(deadline).Round(time.Millisecond))
}

func TestIntegrationWatchSurvivesAPIServerRestart(t *testing.T) {
	s := integration(t)
	srv, err := berthtest.StartAPIServer(s.bin, s.cp, []berthtest.Tenant{s.alpha})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, err := srv.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(srv.URL, client.WithAPIKey(s.alpha.Key), client.WithTLSConfig(cfg))
	name := leaseName("rewatch")
	held, err := c.Acquire(t.Context(), s.nsA, name, "alpha/w1", 60*time.Second)
	if err != nil || !held.Acquired {
		t.Fatal(held, err)
	}
	events, err := c.Watch(t.Context(), s.nsA, name)
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string, ok func(client.Lease) bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, open := <-events:
				if !open {
					t.Fatalf("%s: watch closed", what)
				}
				if ok(l) {
					return
				}
			case <-timeout:
				t.Fatalf("%s: no such event within 20s", what)
			}
		}
	}
	wait("current state", func(l client.Lease) bool { return l.State == client.StateHeld })

	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := c.Release(t.Context(), s.nsA, name, "alpha/w1", held.FencingToken); err != nil {
		t.Fatal(err)
	}
	wait("release after the restart", func(l client.Lease) bool { return l.State == client.StateReleased })
	t.Logf("the watch delivered the release %s after the apiserver was back", time.Since(restarted).Round(time.Millisecond))
}
