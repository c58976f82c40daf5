package client

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when a test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	t.arm(d)
	return t
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.when.After(c.now) {
			t.fire()
		}
	}
}

type fakeTimer struct {
	clock  *fakeClock
	ch     chan time.Time
	when   time.Time
	active bool
}

// arm needs the clock's lock.
func (t *fakeTimer) arm(d time.Duration) {
	select {
	case <-t.ch: // drop a stale tick, as time.Timer.Reset does since Go 1.23
	default:
	}
	t.when = t.clock.now.Add(d)
	t.active = true
	if d <= 0 {
		t.fire()
	}
}

func (t *fakeTimer) fire() {
	t.active = false
	select {
	case t.ch <- t.clock.now:
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.arm(d)
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.active = false
}

// fakeAPI is a leaseAPI whose renews block until the test answers them.
type fakeAPI struct {
	acquire   func(AcquireRequest) (AcquireResult, error)
	heartbeat int32 // heartbeatIntervalSeconds of Get; 0: Get fails
	renews    chan *renewCall

	// views, when set, is what Watch returns; nil: Watch fails.
	views chan Lease

	mu         sync.Mutex
	released   []int32
	freshDials int
}

type renewCall struct {
	ctx   context.Context
	token int32
	ttl   time.Duration
	reply chan renewReply
}

type renewReply struct {
	res AcquireResult
	err error
}

func newFakeAPI(token int32) *fakeAPI {
	return &fakeAPI{
		acquire: func(req AcquireRequest) (AcquireResult, error) {
			return AcquireResult{Acquired: true, Holder: req.Holder, FencingToken: token}, nil
		},
		renews: make(chan *renewCall),
	}
}

func (f *fakeAPI) Get(_ context.Context, namespace, name string) (Lease, error) {
	if f.heartbeat == 0 {
		return Lease{}, &APIError{StatusCode: 404, Message: "lease not found"}
	}
	return Lease{Namespace: namespace, Name: name, HeartbeatIntervalSeconds: f.heartbeat}, nil
}

func (f *fakeAPI) AcquireWith(_ context.Context, _, _ string, req AcquireRequest) (AcquireResult, error) {
	return f.acquire(req)
}

func (f *fakeAPI) Renew(ctx context.Context, _, _, _ string, token int32, ttl time.Duration) (AcquireResult, error) {
	call := &renewCall{ctx: ctx, token: token, ttl: ttl, reply: make(chan renewReply, 1)}
	select {
	case f.renews <- call:
	case <-ctx.Done():
		return AcquireResult{}, ctx.Err()
	}
	select {
	case r := <-call.reply:
		return r.res, r.err
	case <-ctx.Done():
		return AcquireResult{}, ctx.Err()
	}
}

func (f *fakeAPI) Release(_ context.Context, _, _, _ string, token int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, token)
	return nil
}

func (f *fakeAPI) Watch(_ context.Context, _, _ string) (<-chan Lease, error) {
	if f.views == nil {
		return nil, &APIError{StatusCode: 503, Message: "no watch in this test"}
	}
	return f.views, nil
}

func (f *fakeAPI) closeIdleConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freshDials++
}

func (f *fakeAPI) dialsAnew() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.freshDials
}

func (f *fakeAPI) releases() []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int32(nil), f.released...)
}

// nextRenew waits for the keeper's next renew call.
func (f *fakeAPI) nextRenew(t *testing.T) *renewCall {
	t.Helper()
	select {
	case call := <-f.renews:
		return call
	case <-time.After(5 * time.Second):
		t.Fatal("no renew within 5s")
		return nil
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitTimer waits until a timer is armed to fire at when: the keeper has
// handled what came before.
func (c *fakeClock) waitTimer(t *testing.T, when time.Time) {
	t.Helper()
	eventually(t, "a timer armed for "+when.String(), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, tm := range c.timers {
			if tm.active && tm.when.Equal(when) {
				return true
			}
		}
		return false
	})
}
