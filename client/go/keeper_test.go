package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func granted(token int32) renewReply {
	return renewReply{res: AcquireResult{Acquired: true, Holder: "team-a/worker", FencingToken: token}}
}

// startKeeper keeps a lease with TTL 10 s and margin 1 s (deadline t0+9s)
// and renew interval 3 s on a fake clock.
func startKeeper(t *testing.T, api *fakeAPI, clk *fakeClock) *Keeper {
	t.Helper()
	k, err := keep(t.Context(), api, clk, KeeperConfig{
		Namespace: "team-a", Name: "ingest", Holder: "team-a/worker",
		TTL: 10 * time.Second, Margin: time.Second, RenewInterval: 3 * time.Second,
	})
	if err != nil {
		t.Fatalf("keep: %v", err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	return k
}

func TestKeeperDeadlineRunsFromAcquireSent(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	api := newFakeAPI(7)
	api.acquire = func(req AcquireRequest) (AcquireResult, error) {
		clk.Advance(2 * time.Second) // a slow answer
		return AcquireResult{Acquired: true, Holder: req.Holder, FencingToken: 7}, nil
	}
	k := startKeeper(t, api, clk)
	if got, want := k.Deadline(), t0.Add(9*time.Second); !got.Equal(want) {
		t.Fatalf("deadline = %s, want sent + ttl - margin = %s", got, want)
	}
	if k.FencingToken() != 7 || !k.Held() || k.Err() != nil {
		t.Fatalf("token %d held %v err %v", k.FencingToken(), k.Held(), k.Err())
	}
}

func TestKeeperLosesAtLocalDeadlineWithRenewInFlight(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	api := newFakeAPI(7)
	k := startKeeper(t, api, clk)

	clk.Advance(3 * time.Second)
	hung := api.nextRenew(t) // never answered: the apiserver is gone
	clk.waitTimer(t, t0.Add(6*time.Second))
	clk.Advance(3 * time.Second)
	eventually(t, "hung renew abandoned", func() bool { return hung.ctx.Err() != nil })
	clk.waitTimer(t, t0.Add(6750*time.Millisecond))
	clk.Advance(750 * time.Millisecond)
	retry := api.nextRenew(t) // on a fresh connection, and never answered either
	if api.dialsAnew() != 1 {
		t.Fatalf("the retry after an abandoned renew closed idle connections %d times, want 1", api.dialsAnew())
	}
	clk.waitTimer(t, t0.Add(9*time.Second))
	clk.Advance(2249 * time.Millisecond)
	if !k.Held() || isDone(k.Done()) || !k.AtRisk() {
		t.Fatalf("before the deadline: held %v done %v at risk %v", k.Held(), isDone(k.Done()), k.AtRisk())
	}
	clk.Advance(time.Millisecond) // t0+9s: the deadline
	eventually(t, "context cancelled at the deadline", func() bool { return isDone(k.Done()) })
	if k.Held() {
		t.Fatal("Held after the loss was signalled")
	}
	if err := k.Err(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("cause = %v, want ErrLeaseLost naming the hung renew", err)
	}
	eventually(t, "in-flight renew cancelled", func() bool { return retry.ctx.Err() != nil })
	// A lost tenure has nothing to release.
	if err := k.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.releases(); len(got) != 0 {
		t.Fatalf("releases = %v after a loss", got)
	}
}

func TestKeeperRejectedRenewLosesAtOnce(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(7)
	k := startKeeper(t, api, clk)

	clk.Advance(3 * time.Second)
	api.nextRenew(t).reply <- renewReply{err: &APIError{StatusCode: 403, Message: "key revoked"}}
	eventually(t, "lost", func() bool { return isDone(k.Done()) })
	if err := k.Err(); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, ErrForbidden) {
		t.Fatalf("cause = %v, want ErrLeaseLost wrapping the 403", err)
	}
}

func TestKeeperRenewsAtOnceWhenTheWatchShowsATakeover(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(7)
	api.views = make(chan Lease)
	k := startKeeper(t, api, clk)

	// A view that shows this grant changes nothing: the watch signals only
	// views that do not show it.
	ours := Lease{Holders: []Holder{{Identity: "team-a/worker", FencingToken: 7}}}
	if !k.shownIn(ours) {
		t.Fatal("a view of this grant does not show it")
	}
	api.views <- ours
	api.views <- Lease{Holders: []Holder{{Identity: "team-a/usurper", FencingToken: 8}}}
	// No clock movement: the renew comes from the watch, not a timer.
	api.nextRenew(t).reply <- renewReply{res: AcquireResult{Acquired: false, Holder: "team-a/usurper"}}
	eventually(t, "lost", func() bool { return isDone(k.Done()) })
	if err := k.Err(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "team-a/usurper") {
		t.Fatalf("cause = %v", err)
	}
}

func TestKeeperRetriesFailedRenewsUntilDeadline(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(7)
	k := startKeeper(t, api, clk)

	clk.Advance(3 * time.Second)
	api.nextRenew(t).reply <- renewReply{err: errors.New("connection refused")}
	// retry interval = RenewInterval/4 = 750ms
	clk.waitTimer(t, clk.Now().Add(750*time.Millisecond))
	clk.Advance(750 * time.Millisecond)
	api.nextRenew(t).reply <- renewReply{err: &APIError{StatusCode: 503, Message: "unavailable"}}
	for next := clk.Now().Add(750 * time.Millisecond); next.Before(k.Deadline()); next = next.Add(750 * time.Millisecond) {
		clk.waitTimer(t, next)
		clk.Advance(750 * time.Millisecond)
		api.nextRenew(t).reply <- renewReply{err: errors.New("connection refused")}
	}
	clk.Advance(k.Deadline().Sub(clk.Now()))
	eventually(t, "lost at the deadline", func() bool { return isDone(k.Done()) })
	err := k.Err()
	if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("cause = %v, want ErrLeaseLost naming the last error", err)
	}
}

func TestKeeperHeldChecksTheClockNotTheGoroutine(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	api := newFakeAPI(7)
	k := startKeeper(t, api, clk)
	// Freeze the keeper's goroutine out of the picture: move the clock
	// without firing its timers.
	clk.mu.Lock()
	clk.now = t0.Add(9 * time.Second)
	clk.mu.Unlock()
	if k.Held() {
		t.Fatal("Held at the deadline")
	}
	if isDone(k.Done()) {
		t.Fatal("the goroutine ran")
	}
}

func TestKeeperLostLeaseIsNeverTakenBack(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(7)
	k := startKeeper(t, api, clk)

	clk.Advance(3 * time.Second)
	late := api.nextRenew(t)
	clk.Advance(6 * time.Second) // the deadline passes
	eventually(t, "lost", func() bool { return isDone(k.Done()) })
	late.reply <- granted(7) // a success that arrives too late
	// The tenure is over: the keeper's loop ended, so nothing can publish Held again.
	eventually(t, "the keeper's loop ends", func() bool { return isDone(k.done) })
	if k.Held() || !errors.Is(k.Err(), ErrLeaseLost) {
		t.Fatal("a late success revived the keeper")
	}
}

func TestKeeperStopCancelsThenReleases(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(9)
	k := startKeeper(t, api, clk)
	if err := k.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !isDone(k.Done()) || !errors.Is(k.Err(), ErrKeeperStopped) || k.Held() {
		t.Fatalf("after Stop: err %v held %v", k.Err(), k.Held())
	}
	if err := k.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.releases(); len(got) != 1 || got[0] != 9 {
		t.Fatalf("releases = %v, want one release of token 9", got)
	}
}

func TestKeeperParentCancelReleases(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(9)
	ctx, cancel := context.WithCancelCause(context.Background())
	k, err := keep(ctx, api, clk, KeeperConfig{Namespace: "a", Name: "b", Holder: "a", TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	shutdown := errors.New("shutting down")
	cancel(shutdown)
	if !isDone(k.Done()) || !errors.Is(k.Err(), shutdown) {
		t.Fatalf("keeper context not cancelled with the parent's cause: %v", k.Err())
	}
	eventually(t, "released", func() bool { return len(api.releases()) == 1 })
	if err := k.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.releases(); len(got) != 1 {
		t.Fatalf("releases = %v", got)
	}
}

func TestKeepNotAcquired(t *testing.T) {
	api := newFakeAPI(0)
	api.acquire = func(AcquireRequest) (AcquireResult, error) {
		return AcquireResult{Acquired: false, Holder: "team-a/other"}, nil
	}
	_, err := keep(t.Context(), api, newFakeClock(), KeeperConfig{Namespace: "a", Name: "b", Holder: "a", TTL: 5 * time.Second})
	if !errors.Is(err, ErrNotAcquired) || !strings.Contains(err.Error(), "team-a/other") {
		t.Fatalf("err = %v", err)
	}
}

func TestKeepPassesAcquireErrors(t *testing.T) {
	api := newFakeAPI(0)
	api.acquire = func(AcquireRequest) (AcquireResult, error) {
		return AcquireResult{}, &APIError{StatusCode: 403, Message: "not authorized for this namespace"}
	}
	_, err := keep(t.Context(), api, newFakeClock(), KeeperConfig{Namespace: "a", Name: "b", Holder: "a", TTL: 5 * time.Second})
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v", err)
	}
}

func TestKeepAnchorsLateGrantWithRenew(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(4)
	var sentWait time.Duration
	api.acquire = func(req AcquireRequest) (AcquireResult, error) {
		sentWait = req.Wait
		clk.Advance(20 * time.Second) // granted after a long wait
		return AcquireResult{Acquired: true, Holder: req.Holder, FencingToken: 4}, nil
	}
	go func() {
		call := api.nextRenew(t)
		clk.Advance(time.Second)
		call.reply <- granted(4)
	}()
	k, err := keep(t.Context(), api, clk, KeeperConfig{
		Namespace: "a", Name: "b", Holder: "a", TTL: 10 * time.Second, Margin: time.Second, Wait: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k.Stop(context.Background()) }()
	if sentWait != time.Minute {
		t.Fatalf("wait = %s", sentWait)
	}
	// The renew was sent at t0+20s; the answer came at t0+21s.
	if want := clk.Now().Add(-time.Second).Add(9 * time.Second); !k.Deadline().Equal(want) {
		t.Fatalf("deadline %s, want %s", k.Deadline(), want)
	}
}

func TestKeepLateGrantThatCannotBeRenewedIsReleased(t *testing.T) {
	clk := newFakeClock()
	api := newFakeAPI(4)
	api.acquire = func(req AcquireRequest) (AcquireResult, error) {
		clk.Advance(20 * time.Second)
		return AcquireResult{Acquired: true, Holder: req.Holder, FencingToken: 4}, nil
	}
	go func() { api.nextRenew(t).reply <- renewReply{err: errors.New("connection refused")} }()
	_, err := keep(t.Context(), api, clk, KeeperConfig{Namespace: "a", Name: "b", Holder: "a", TTL: 10 * time.Second, Wait: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
	if got := api.releases(); len(got) != 1 || got[0] != 4 {
		t.Fatalf("releases = %v", got)
	}
}

func TestKeeperConfigDefaultsAndChecks(t *testing.T) {
	cases := []struct {
		in               KeeperConfig
		heartbeat        time.Duration
		margin, interval time.Duration
	}{
		{KeeperConfig{TTL: 30 * time.Second}, 10 * time.Second, 3 * time.Second, 10 * time.Second},
		{KeeperConfig{TTL: time.Second}, time.Second / 3, 250 * time.Millisecond, 333333333},
		{KeeperConfig{TTL: 5 * time.Minute}, 100 * time.Second, 5 * time.Second, 100 * time.Second},
		// The interval is capped at half of TTL − margin.
		{KeeperConfig{TTL: 10 * time.Second, Margin: 2 * time.Second}, 30 * time.Second, 2 * time.Second, 4 * time.Second},
		{KeeperConfig{TTL: 10 * time.Second, RenewInterval: time.Millisecond}, 0, time.Second, 50 * time.Millisecond},
	}
	for _, tc := range cases {
		cfg, err := tc.in.normalize()
		if err != nil {
			t.Fatalf("%+v: %v", tc.in, err)
		}
		cfg = cfg.withInterval(tc.heartbeat)
		if cfg.Margin != tc.margin || cfg.RenewInterval != tc.interval {
			t.Errorf("%+v: margin %s interval %s, want %s %s", tc.in, cfg.Margin, cfg.RenewInterval, tc.margin, tc.interval)
		}
	}
	bad := []KeeperConfig{
		{TTL: 900 * time.Millisecond},
		{TTL: 1500 * time.Millisecond},
		{TTL: 10 * time.Second, Margin: -time.Second},
		{TTL: 10 * time.Second, RenewInterval: -time.Second},
	}
	for _, c := range bad {
		if _, err := c.normalize(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestKeeperRenewsAtTheLeasesHeartbeat(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	api := newFakeAPI(3)
	api.heartbeat = 2
	k, err := keep(t.Context(), api, clk, KeeperConfig{Namespace: "a", Name: "b", Holder: "a", TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k.Stop(context.Background()) }()
	// The renew is due at the lease's 2 s heartbeat, not the default.
	clk.waitTimer(t, t0.Add(2*time.Second))
	clk.Advance(2 * time.Second)
	call := api.nextRenew(t)
	if call.token != 3 || call.ttl != 10*time.Second {
		t.Fatalf("renew token %d ttl %s, want the grant's token and the TTL", call.token, call.ttl)
	}
	call.reply <- granted(3)
}
