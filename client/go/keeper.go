package client

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// KeeperConfig says which lease a [Keeper] holds and how.
type KeeperConfig struct {
	Namespace string
	Name      string
	Holder    string
	// TTL of each acquire and renew: a whole number of seconds, at least 1 s.
	TTL time.Duration
	// Margin is subtracted from the local deadline to allow for clock rate
	// differences and for the holder's reaction time. Zero means a tenth of
	// the TTL, at least 250 ms and at most 5 s. It must be shorter than
	// the TTL.
	Margin time.Duration
	// RenewInterval is the time from sending one successful renew to
	// sending the next. Zero means the lease's heartbeatIntervalSeconds
	// (read once with [Client.Get]; TTL/3 when that fails). Either way it is
	// capped at half of TTL − Margin, so that a failed renew is retried
	// before the deadline.
	RenewInterval time.Duration
	// Wait, when positive, makes the first acquire block on the apiserver
	// up to this long (see [Client.AcquireWait]). A grant after a wait of
	// 1 s or more is renewed at once, so that its deadline counts from a
	// known send time.
	Wait time.Duration
	// DisableWatch turns off the watch on the lease. With the watch (the
	// default), a change that no longer shows this grant (a takeover) or
	// the lease's deletion triggers a renew at once, so that the loss is
	// noticed within one round trip instead of at the next renew.
	DisableWatch bool
}

// normalize checks the durations and fills the margin. The renew interval
// is settled by withInterval once the lease's heartbeat is known.
func (cfg KeeperConfig) normalize() (KeeperConfig, error) {
	if cfg.TTL < time.Second || cfg.TTL%time.Second != 0 {
		return cfg, fmt.Errorf("client: keeper TTL %s must be a whole number of seconds, at least 1s", cfg.TTL)
	}
	if cfg.Margin == 0 {
		cfg.Margin = min(max(cfg.TTL/10, 250*time.Millisecond), 5*time.Second)
	}
	if cfg.Margin < 0 || cfg.Margin >= cfg.TTL {
		return cfg, fmt.Errorf("client: keeper margin %s must be in [0, TTL %s)", cfg.Margin, cfg.TTL)
	}
	if cfg.RenewInterval < 0 {
		return cfg, fmt.Errorf("client: keeper renew interval %s is negative", cfg.RenewInterval)
	}
	return cfg, nil
}

// withInterval sets the renew interval (heartbeat when none was given),
// capped at half the safe window and at least 50 ms.
func (cfg KeeperConfig) withInterval(heartbeat time.Duration) KeeperConfig {
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = heartbeat
	}
	cfg.RenewInterval = max(min(cfg.RenewInterval, (cfg.TTL-cfg.Margin)/2), 50*time.Millisecond)
	return cfg
}

// deadline is the local deadline of a grant whose request was sent at sent.
func (cfg KeeperConfig) deadline(sent time.Time) time.Time {
	return sent.Add(cfg.TTL - cfg.Margin)
}

// renewBound is how long a renew sent at now may go unanswered before it
// is abandoned: the renew interval, and never past the deadline.
func (cfg KeeperConfig) renewBound(now, deadline time.Time) time.Duration {
	return max(min(cfg.RenewInterval, deadline.Sub(now)), 0)
}

// retryInterval is the pause before retrying a renew that failed without
// an answer from the lease rules (transport error, 5xx, …).
func (cfg KeeperConfig) retryInterval() time.Duration {
	return min(max(cfg.RenewInterval/4, 50*time.Millisecond), time.Second)
}

// retryAt is when to retry a renew that failed at now: after the server's
// Retry-After when that wait ends before the deadline and is longer than
// [KeeperConfig.retryInterval], else after retryInterval; never past the
// deadline. A Retry-After that would pass the deadline is not honoured, so
// that the lease is not given up.
func (cfg KeeperConfig) retryAt(now time.Time, retryAfter time.Duration, deadline time.Time) time.Time {
	retry := earliest(now.Add(cfg.retryInterval()), deadline)
	if at := now.Add(retryAfter); retryAfter > 0 && at.Before(deadline) && at.After(retry) {
		return at
	}
	return retry
}

// leaseAPI is what a keeper needs of a [Client]; tests substitute it.
type leaseAPI interface {
	Get(ctx context.Context, namespace, name string) (Lease, error)
	AcquireWith(ctx context.Context, namespace, name string, req AcquireRequest) (AcquireResult, error)
	Renew(ctx context.Context, namespace, name, holder string, fencingToken int32, ttl time.Duration) (AcquireResult, error)
	Release(ctx context.Context, namespace, name, holder string, fencingToken int32) error
	Watch(ctx context.Context, namespace, name string) (<-chan Lease, error)
	// closeIdleConnections drops pooled connections, so that the next
	// request dials anew.
	closeIdleConnections()
}

// closeIdleConnections closes the idle connections of the client's pool.
func (c *Client) closeIdleConnections() { c.httpClient.CloseIdleConnections() }

// Keeper holds a lease: it renews it in the background and says, through
// [Keeper.Context], [Keeper.Done] and [Keeper.Held], whether the holder may
// still act on it. Create one with [Client.Keep]. It follows the contract
// of docs/keeper.md, as the Rust client's LeaseKeeper does.
//
// # Guarantees
//
//   - The local deadline is the time the last successful acquire or renew
//     was SENT, plus the TTL, minus the margin. The apiserver computes the
//     lease's expiry from a later moment (when it handles the request), so
//     the local deadline is never after the apiserver's expiry, whatever
//     the two clocks read.
//   - When no renew succeeds in time, the keeper's context is cancelled at
//     the deadline, whether or not a request is still in flight.
//     [Keeper.Held] checks the clock itself: it is false from the deadline
//     on even if the goroutine has not run yet.
//   - A renew answered with acquired:false, with another fencing token, or
//     with 400, 403, 404, 409 or 413 cancels the context at once. A 401,
//     a 5xx, and transport errors are retried until the deadline (keys are
//     rotated), and [Keeper.AtRisk] is true until a renew succeeds.
//   - A renew with no answer within the renew interval (or before the
//     deadline, if sooner) is abandoned, and the retry dials anew, so one
//     hung connection does not cost the lease.
//   - Unless [KeeperConfig.DisableWatch], a takeover or deletion seen on
//     the lease's watch triggers a renew at once.
//   - A lost lease is never taken back, and is not released.
//   - [Keeper.Stop], and the end of the context passed to [Client.Keep],
//     cancel the keeper's context first and then release the lease.
type Keeper struct {
	api   leaseAPI
	clock clock
	cfg   KeeperConfig
	token int32

	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	mu           sync.Mutex
	state        keeperState
	releasable   bool // the machine decided to release
	stopOnce     sync.Once
	releaseOnce  sync.Once
	releaseError error
}

// Keep acquires lease cfg.Namespace/cfg.Name for cfg.Holder and keeps it
// until [Keeper.Stop] is called, ctx ends, or the lease is lost.
//
// # Errors
//
// An error matching [ErrNotAcquired] when another holder has the lease, an
// [*APIError] when the acquire failed the apiserver's checks, or an error
// for an invalid cfg. No keeper runs after an error.
func (c *Client) Keep(ctx context.Context, cfg KeeperConfig) (*Keeper, error) {
	return keep(ctx, c, systemClock{}, cfg)
}

func keep(ctx context.Context, api leaseAPI, clk clock, cfg KeeperConfig) (*Keeper, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	k := &Keeper{api: api, clock: clk, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}

	sent := clk.Now()
	res, err := api.AcquireWith(ctx, cfg.Namespace, cfg.Name, AcquireRequest{Holder: cfg.Holder, TTL: cfg.TTL, Wait: cfg.Wait})
	if err != nil {
		return nil, err
	}
	if !res.Acquired {
		return nil, fmt.Errorf("%w: %s/%s is held by %q", ErrNotAcquired, cfg.Namespace, cfg.Name, res.Holder)
	}
	if res.FencingToken == 0 {
		return nil, fmt.Errorf("client: acquire of %s/%s granted without a fencing token", cfg.Namespace, cfg.Name)
	}
	k.token = res.FencingToken

	// The grant may have happened at any moment of a wait, so the acquire's
	// send time says little. One renew sent now gives a time to count from.
	if seconds(cfg.Wait) >= 1 {
		if sent, err = k.anchor(ctx); err != nil {
			return nil, err
		}
	}

	heartbeat := cfg.TTL / 3
	if cfg.RenewInterval == 0 {
		// Reading the advice is a nicety: the cap keeps renews in time anyway.
		getCtx, cancel := context.WithTimeout(ctx, (cfg.TTL-cfg.Margin)/4)
		if lease, err := api.Get(getCtx, cfg.Namespace, cfg.Name); err == nil && lease.HeartbeatIntervalSeconds > 0 {
			heartbeat = lease.HeartbeatInterval()
		}
		cancel()
	}
	k.cfg = cfg.withInterval(heartbeat)

	machine := newKeeperMachine(k.cfg, k.token, sent)
	k.state = machine.state()
	k.ctx, k.cancel = context.WithCancelCause(ctx)
	go k.run(ctx, machine)
	return k, nil
}

// anchor renews a grant that came after a wait and returns the renew's
// send time. A renew that fails, is refused, answers another token, or
// answers after its own deadline does not anchor: the grant is released
// (unless refused) and Keep fails.
func (k *Keeper) anchor(ctx context.Context) (time.Time, error) {
	cfg := k.cfg
	sent := k.clock.Now()
	res, err := k.api.Renew(ctx, cfg.Namespace, cfg.Name, cfg.Holder, k.token, cfg.TTL)
	if err == nil && res.Acquired && res.FencingToken == k.token && k.clock.Now().Before(cfg.deadline(sent)) {
		return sent, nil
	}
	if err == nil && !res.Acquired {
		return sent, fmt.Errorf("%w: %s/%s is held by %q", ErrNotAcquired, cfg.Namespace, cfg.Name, res.Holder)
	}
	k.releasable = true
	k.releaseDetached()
	if err != nil {
		return sent, err
	}
	return sent, fmt.Errorf("%w: %s/%s could not be renewed in time after the grant", ErrNotAcquired, cfg.Namespace, cfg.Name)
}

// FencingToken is the token of this tenure. Pass it to every downstream
// system the lease guards.
func (k *Keeper) FencingToken() int32 { return k.token }

// Deadline is the local deadline: the keeper does not claim to hold the
// lease from then on, unless a renew moves it.
func (k *Keeper) Deadline() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state.deadline
}

// Held reports whether the lease is held: the keeper is neither lost nor
// stopped, and the local deadline has not passed.
func (k *Keeper) Held() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ctx.Err() == nil && k.state.holdsAt(k.clock.Now())
}

// AtRisk reports whether a renew failed (an error, a shed request, no
// answer in time) and none has succeeded since. The lease is still held
// until the deadline; [Keeper.Held] says whether it is.
func (k *Keeper) AtRisk() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state.status == statusHeld && k.state.atRisk
}

// Context is cancelled when the lease is no longer held: lost, stopped, or
// the context passed to [Client.Keep] ended. Run the guarded work under it.
// [context.Cause] tells why: an error matching [ErrLeaseLost],
// [ErrKeeperStopped], or the cause of the parent context.
func (k *Keeper) Context() context.Context { return k.ctx }

// Done is closed when the lease is no longer held (see [Keeper.Context]).
func (k *Keeper) Done() <-chan struct{} { return k.ctx.Done() }

// Err is nil while the lease is held, then why it is not (see
// [Keeper.Context]).
func (k *Keeper) Err() error {
	if k.ctx.Err() == nil {
		return nil
	}
	return context.Cause(k.ctx)
}

// Stop ends the keeper: it cancels the keeper's context, stops renewing,
// and releases the lease, bounded by ctx. It returns the release's error,
// or nil when the lease had already been lost (there is nothing to
// release). Calling it again returns the same result.
func (k *Keeper) Stop(ctx context.Context) error {
	k.cancel(ErrKeeperStopped)
	k.stopOnce.Do(func() { close(k.stop) })
	select {
	case <-k.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	k.release(ctx)
	return k.releaseError
}

// release releases the lease once, if the machine decided to.
func (k *Keeper) release(ctx context.Context) {
	k.releaseOnce.Do(func() {
		k.mu.Lock()
		releasable := k.releasable
		k.mu.Unlock()
		if releasable {
			k.releaseError = k.api.Release(ctx, k.cfg.Namespace, k.cfg.Name, k.cfg.Holder, k.token)
		}
	})
}

// releaseDetached releases with a context of its own, for when the
// caller's context may have ended.
func (k *Keeper) releaseDetached() {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	k.release(ctx)
}

type renewOutcome struct {
	res AcquireResult
	err error
}

// run drives machine until the tenure is over: it turns timers, renew
// answers, watch changes, Stop and the end of parent into events, and
// carries out the machine's actions. It decides nothing itself.
func (k *Keeper) run(parent context.Context, machine *keeperMachine) {
	defer close(k.done)
	cfg := k.cfg
	wake := k.clock.NewTimer(0)
	wake.Stop()
	defer wake.Stop()

	watchCtx, stopWatch := context.WithCancel(parent)
	defer stopWatch()
	var changes <-chan struct{}
	if !cfg.DisableWatch {
		changes = k.watchForChanges(watchCtx)
	}

	var (
		inflight      chan renewOutcome
		cancelAttempt context.CancelFunc = func() {}
		parentEnded   bool
	)
	defer func() { cancelAttempt() }()

	for !machine.over() {
		if at, ok := machine.wakeAt(); ok {
			wake.Reset(at.Sub(k.clock.Now()))
		}
		var ev machineEvent
		select {
		case <-k.stop:
			ev = machineEvent{kind: eventRelease}
		case <-parent.Done():
			parentEnded = true
			ev = machineEvent{kind: eventRelease}
		case <-wake.C():
			ev = machineEvent{kind: eventWake}
		case <-changes:
			ev = machineEvent{kind: eventLeaseChanged}
		case out := <-inflight:
			inflight = nil
			ev = machineEvent{kind: eventAnswer, answer: classifyRenew(out.res, out.err)}
		}
		for _, action := range machine.step(ev, k.clock.Now()) {
			switch action.kind {
			case actionRenew:
				if action.fresh {
					k.api.closeIdleConnections()
				}
				attemptCtx, cancel := context.WithCancel(parent)
				cancelAttempt = cancel
				inflight = make(chan renewOutcome, 1)
				go func(ctx context.Context, out chan<- renewOutcome) {
					res, err := k.api.Renew(ctx, cfg.Namespace, cfg.Name, cfg.Holder, k.token, cfg.TTL)
					out <- renewOutcome{res: res, err: err}
				}(attemptCtx, inflight)
			case actionAbandon:
				// Cancelling the request also closes its connection.
				cancelAttempt()
				inflight = nil
			case actionPublish:
				k.publish(action.state)
			case actionRelease:
				k.mu.Lock()
				k.releasable = true
				k.mu.Unlock()
			}
		}
	}
	if parentEnded {
		k.releaseDetached()
	}
}

// publish records state; a tenure that ended cancels the keeper's context
// (after the end of the parent context, it is already cancelled with the
// parent's cause).
func (k *Keeper) publish(state keeperState) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state = state
	switch state.status {
	case statusLost:
		k.cancel(state.cause)
	case statusReleased:
		k.cancel(ErrKeeperStopped)
	}
}

// watchForChanges follows the lease and signals when a view no longer
// shows this holder with this token, or the watch ends (the lease was
// deleted, or reopening it was refused). It reopens a watch that could not
// be opened or ended, every second, until ctx ends. The renew decides; the
// watch only makes it come sooner.
func (k *Keeper) watchForChanges(ctx context.Context) <-chan struct{} {
	changes := make(chan struct{}, 1)
	signal := func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			if views, err := k.api.Watch(ctx, k.cfg.Namespace, k.cfg.Name); err == nil {
				for view := range views {
					if !k.shownIn(view) {
						signal()
					}
				}
				if ctx.Err() == nil {
					signal()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return changes
}

func (k *Keeper) shownIn(view Lease) bool {
	for _, h := range view.Holders {
		if h.Identity == k.cfg.Holder && h.FencingToken == k.token {
			return true
		}
	}
	return false
}

// clock is the keeper's time source; tests drive a fake one.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
}

// timer is the part of [time.Timer] a keeper uses.
type timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time { return s.t.C }

func (s systemTimer) Reset(d time.Duration) { s.t.Reset(d) }

func (s systemTimer) Stop() { s.t.Stop() }
