package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

var (
	// ErrNotAcquired: [Client.Keep] could not get the lease because another
	// holder has it (or it expired before the keeper could renew it).
	ErrNotAcquired = errors.New("client: lease not acquired")
	// ErrLeaseLost is the cause of a [Keeper]'s context when the lease was
	// lost: the apiserver refused a renew, or the local deadline passed
	// before a renew succeeded.
	ErrLeaseLost = errors.New("client: lease lost")
	// ErrKeeperStopped is the cause of a [Keeper]'s context after
	// [Keeper.Stop].
	ErrKeeperStopped = errors.New("client: keeper stopped")
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
	// up to this long (see [Client.AcquireWait]).
	Wait time.Duration
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

// retryInterval is the pause before retrying a renew that failed without
// an answer from the lease rules (transport error, 5xx, …).
func (cfg KeeperConfig) retryInterval() time.Duration {
	return min(max(cfg.RenewInterval/4, 50*time.Millisecond), time.Second)
}

// retryAfter is the pause before retrying a renew that failed with err at
// now: the server's Retry-After when it ends before the (signalled) deadline
// and is longer than [KeeperConfig.retryInterval], else retryInterval. A
// Retry-After that would pass the deadline is not honoured, so that the
// lease is not given up.
func (cfg KeeperConfig) retryAfter(err error, now, deadline time.Time) time.Duration {
	pause := cfg.retryInterval()
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > pause && now.Add(apiErr.RetryAfter).Before(deadline) {
		pause = apiErr.RetryAfter
	}
	return pause
}

// signalLead is how much before the local deadline a loss is signalled:
// 10 ms, or half the margin when that is less.
func (cfg KeeperConfig) signalLead() time.Duration {
	return min(cfg.Margin/2, 10*time.Millisecond)
}

// leaseAPI is what a keeper needs of a [Client]; tests substitute it.
type leaseAPI interface {
	Get(ctx context.Context, namespace, name string) (Lease, error)
	AcquireWith(ctx context.Context, namespace, name string, req AcquireRequest) (AcquireResult, error)
	Renew(ctx context.Context, namespace, name, holder string, fencingToken int32, ttl time.Duration) (AcquireResult, error)
	Release(ctx context.Context, namespace, name, holder string, fencingToken int32) error
}

// Keeper holds a lease: it renews it in the background and says, through
// [Keeper.Context], [Keeper.Done] and [Keeper.Held], whether the holder may
// still act on it. Create one with [Client.Keep].
//
// # Guarantees
//
//   - The local deadline is the time the last successful acquire or renew
//     was SENT, plus the TTL, minus the margin. The apiserver computes the
//     lease's expiry from a later moment (when it handles the request), so
//     the local deadline is never after the apiserver's expiry, whatever
//     the two clocks read.
//   - When no renew succeeds in time, the keeper's context is cancelled
//     10 ms (at most half the margin) before the deadline, so that timer
//     latency does not carry the signal past it, whether or not a request
//     is still in flight. [Keeper.Held] checks the clock itself: it is
//     false from the deadline on even if the signal is late.
//   - A renew answered with acquired:false cancels the context at once.
//   - A renew with no answer within the renew interval (at most half of
//     TTL − margin) is abandoned and retried, so one hung connection does
//     not cost the lease.
//   - A lost lease is never taken back: a keeper holds at most one tenure.
//   - [Keeper.Stop], and the end of the context passed to [Client.Keep],
//     cancel the keeper's context first and then release the lease.
//
// # Caveats
//
// Failed renews (transport errors, 5xx, and also 4xx answers such as a
// revoked key) are retried until the deadline: only the lease rules'
// acquired:false ends a tenure early.
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
	deadline     time.Time
	refused      bool // the apiserver answered acquired:false: nothing to release
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
	k.deadline = sent.Add(cfg.TTL - cfg.Margin)

	// A grant after a long wait may come back with its local deadline
	// already gone: the keeper cannot tell how long the lease has been
	// held. One renew sent now proves whether it still is.
	if !clk.Now().Before(k.deadline) {
		sent = clk.Now()
		res, err = api.Renew(ctx, cfg.Namespace, cfg.Name, cfg.Holder, k.token, cfg.TTL)
		if err != nil || !res.Acquired || res.FencingToken != k.token || !clk.Now().Before(sent.Add(cfg.TTL-cfg.Margin)) {
			k.refused = err == nil && !res.Acquired
			k.releaseDetached()
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s/%s expired before its first renew", ErrNotAcquired, cfg.Namespace, cfg.Name)
		}
		k.deadline = sent.Add(cfg.TTL - cfg.Margin)
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

	k.ctx, k.cancel = context.WithCancelCause(ctx)
	go k.run(ctx, sent)
	return k, nil
}

// FencingToken is the token of this tenure. Pass it to every downstream
// system the lease guards.
func (k *Keeper) FencingToken() int32 { return k.token }

// Deadline is the local deadline: the keeper does not claim to hold the
// lease from then on, unless a renew moves it.
func (k *Keeper) Deadline() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deadline
}

// Held reports whether the lease is held: the keeper is neither lost nor
// stopped, and the local deadline has not passed.
func (k *Keeper) Held() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ctx.Err() == nil && k.clock.Now().Before(k.deadline)
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
// or nil when the apiserver had already refused a renew (there is nothing
// to release). Calling it again returns the same result.
func (k *Keeper) Stop(ctx context.Context) error {
	k.stopOnce.Do(func() { close(k.stop) })
	select {
	case <-k.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	k.release(ctx)
	return k.releaseError
}

// release releases the lease once, unless the apiserver refused a renew.
func (k *Keeper) release(ctx context.Context) {
	k.releaseOnce.Do(func() {
		k.mu.Lock()
		refused := k.refused
		k.mu.Unlock()
		if !refused {
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

// lose ends the tenure with cause, unless it already ended.
func (k *Keeper) lose(cause error, refused bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if refused {
		k.refused = true
	}
	k.cancel(cause)
}

type renewOutcome struct {
	sent time.Time
	res  AcquireResult
	err  error
}

// run renews until the lease is lost, Stop is called or parent ends. sent
// is when the request behind the current deadline was sent.
func (k *Keeper) run(parent context.Context, sent time.Time) {
	defer close(k.done)
	cfg := k.cfg
	// Loss is signalled a little before the deadline, so that timer and
	// scheduling latency do not carry the signal past it.
	lead := cfg.signalLead()
	deadlineTimer := k.clock.NewTimer(k.Deadline().Add(-lead).Sub(k.clock.Now()))
	defer deadlineTimer.Stop()
	renewTimer := k.clock.NewTimer(sent.Add(cfg.RenewInterval).Sub(k.clock.Now()))
	defer renewTimer.Stop()
	// A renew with no answer within the renew interval is abandoned, so
	// that a hung connection costs one retry, not the lease.
	attemptTimer := k.clock.NewTimer(cfg.RenewInterval)
	attemptTimer.Stop()
	defer attemptTimer.Stop()

	var (
		inflight      chan renewOutcome
		cancelAttempt context.CancelFunc = func() {}
		abandoned     bool
		lastErr       error
	)
	defer func() { cancelAttempt() }()

	for {
		select {
		case <-k.stop:
			k.lose(ErrKeeperStopped, false)
			return

		case <-parent.Done():
			k.lose(context.Cause(parent), false)
			cancelAttempt()
			k.releaseDetached()
			return

		case <-deadlineTimer.C():
			if k.clock.Now().Before(k.Deadline().Add(-lead)) {
				continue // a renew moved the deadline as the timer fired
			}
			k.lose(deadlineLost(k.Deadline(), lastErr), false)
			return

		case <-renewTimer.C():
			if inflight != nil {
				continue
			}
			attemptCtx, cancel := context.WithCancel(parent)
			cancelAttempt = cancel
			abandoned = false
			attemptTimer.Reset(cfg.RenewInterval)
			inflight = make(chan renewOutcome, 1)
			go func(ctx context.Context, out chan<- renewOutcome) {
				sent := k.clock.Now()
				res, err := k.api.Renew(ctx, cfg.Namespace, cfg.Name, cfg.Holder, k.token, cfg.TTL)
				out <- renewOutcome{sent: sent, res: res, err: err}
			}(attemptCtx, inflight)

		case <-attemptTimer.C():
			if inflight != nil {
				abandoned = true
				cancelAttempt()
			}

		case outcome := <-inflight:
			inflight = nil
			cancelAttempt()
			attemptTimer.Stop()
			now := k.clock.Now()
			if !now.Before(k.Deadline().Add(-lead)) {
				k.lose(deadlineLost(k.Deadline(), lastErr), false)
				return
			}
			switch {
			case outcome.err != nil && abandoned:
				lastErr = fmt.Errorf("renew got no answer within %s", cfg.RenewInterval)
				renewTimer.Reset(cfg.retryInterval())
			case outcome.err != nil:
				lastErr = outcome.err
				renewTimer.Reset(cfg.retryAfter(outcome.err, now, k.Deadline().Add(-lead)))
			case !outcome.res.Acquired:
				k.lose(fmt.Errorf("%w: renew refused, current holder %q", ErrLeaseLost, outcome.res.Holder), true)
				return
			case outcome.res.FencingToken != k.token:
				k.lose(fmt.Errorf("%w: renew answered with token %d, not %d", ErrLeaseLost, outcome.res.FencingToken, k.token), false)
				return
			default:
				lastErr = nil
				deadline := outcome.sent.Add(cfg.TTL - cfg.Margin)
				k.mu.Lock()
				if deadline.After(k.deadline) {
					k.deadline = deadline
				}
				k.mu.Unlock()
				deadlineTimer.Reset(k.Deadline().Add(-lead).Sub(now))
				renewTimer.Reset(outcome.sent.Add(cfg.RenewInterval).Sub(now))
			}
		}
	}
}

func deadlineLost(deadline time.Time, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("%w: local deadline %s passed without a successful renew (last error: %w)",
			ErrLeaseLost, deadline.Format(time.RFC3339Nano), lastErr)
	}
	return fmt.Errorf("%w: local deadline %s passed without a successful renew", ErrLeaseLost, deadline.Format(time.RFC3339Nano))
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
