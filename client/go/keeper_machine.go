package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The keeper's decisions as a pure step function: state + event + now ->
// new state + actions, with no I/O and no clock. The goroutine in keeper.go
// drives it; the shared vectors (client/testdata/keeper-vectors.json) test
// it. docs/keeper.md is the table it implements, as does the Rust keeper.

type machineEventKind int

const (
	// eventWake: the time of keeperMachine.wakeAt came.
	eventWake machineEventKind = iota
	// eventAnswer: the renew in flight was answered.
	eventAnswer
	// eventLeaseChanged: the watch saw a change that no longer shows this
	// grant, or ended because the lease was deleted.
	eventLeaseChanged
	// eventRelease: Stop was called, or the context passed to Keep ended.
	eventRelease
)

type machineEvent struct {
	kind   machineEventKind
	answer renewAnswer
}

type answerKind int

const (
	answerRenewed answerKind = iota
	answerRefused
	// answerRejected: an answer no retry can fix (400, 403, 404, 409, 413).
	answerRejected
	// answerFailed: worth retrying until the deadline: 401 (credentials
	// are rotated), any other status, a transport error.
	answerFailed
)

type renewAnswer struct {
	kind       answerKind
	token      int32
	holder     string
	retryAfter time.Duration
	err        error
}

// classifyRenew sorts a renew's result into the table's rows.
func classifyRenew(res AcquireResult, err error) renewAnswer {
	if err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			switch apiErr.StatusCode {
			case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
				http.StatusRequestEntityTooLarge:
				return renewAnswer{kind: answerRejected, err: err}
			}
			return renewAnswer{kind: answerFailed, retryAfter: apiErr.RetryAfter, err: err}
		}
		return renewAnswer{kind: answerFailed, err: err}
	}
	if !res.Acquired {
		return renewAnswer{kind: answerRefused, holder: res.Holder}
	}
	return renewAnswer{kind: answerRenewed, token: res.FencingToken}
}

type actionKind int

const (
	// actionRenew: send a renew now; abandon it when wakeAt comes first.
	actionRenew actionKind = iota
	// actionAbandon: cancel the renew in flight; its answer is never read.
	actionAbandon
	// actionPublish: the keeper's state changed.
	actionPublish
	// actionRelease: send the release.
	actionRelease
)

type keeperAction struct {
	kind actionKind
	// bound and fresh go with actionRenew. fresh: the last renew was
	// abandoned, so its connections are suspect; dial anew.
	bound time.Duration
	fresh bool
	// state goes with actionPublish.
	state keeperState
}

type statusKind int

const (
	statusHeld statusKind = iota
	statusLost
	statusReleased
)

type lossKind string

const (
	lossDeadlinePassed lossKind = "deadline_passed"
	lossRefused        lossKind = "refused"
	lossRejected       lossKind = "rejected"
	lossTokenChanged   lossKind = "token_changed"
)

// keeperState is what the keeper publishes.
type keeperState struct {
	status   statusKind
	deadline time.Time
	atRisk   bool
	loss     lossKind
	cause    error // matches ErrLeaseLost when lost
}

// holdsAt reports whether the lease is safely held at now.
func (s keeperState) holdsAt(now time.Time) bool {
	return s.status == statusHeld && now.Before(s.deadline)
}

type machinePhase int

const (
	phaseIdle machinePhase = iota
	phaseRenewing
	phaseOver
)

// keeperMachine is the keeper's state of one tenure.
type keeperMachine struct {
	cfg      KeeperConfig // normalized, with its renew interval
	token    int32
	deadline time.Time
	atRisk   bool
	lastErr  error

	phase machinePhase
	next  time.Time // phaseIdle: when the next renew is due
	fresh bool      // phaseIdle: the next renew dials anew
	sent  time.Time // phaseRenewing: when the renew in flight was sent
	until time.Time // phaseRenewing: when it is abandoned
}

// newKeeperMachine starts a tenure granted with token by a request sent at sent.
func newKeeperMachine(cfg KeeperConfig, token int32, sent time.Time) *keeperMachine {
	return &keeperMachine{cfg: cfg, token: token, deadline: cfg.deadline(sent), next: sent.Add(cfg.RenewInterval)}
}

func (m *keeperMachine) state() keeperState {
	return keeperState{status: statusHeld, deadline: m.deadline, atRisk: m.atRisk}
}

// wakeAt is when to deliver eventWake; false once the tenure is over.
func (m *keeperMachine) wakeAt() (time.Time, bool) {
	switch m.phase {
	case phaseIdle:
		return earliest(m.next, m.deadline), true
	case phaseRenewing:
		return earliest(m.until, m.deadline), true
	}
	return time.Time{}, false
}

func (m *keeperMachine) over() bool { return m.phase == phaseOver }

// step decides what ev at now means. Events after the tenure ended change
// nothing.
func (m *keeperMachine) step(ev machineEvent, now time.Time) []keeperAction {
	// An answered renew is no longer in flight.
	renewing := m.phase == phaseRenewing && ev.kind != eventAnswer
	switch {
	case m.phase == phaseOver:
		return nil
	case ev.kind == eventRelease:
		return append(m.end(renewing, keeperState{status: statusReleased}), keeperAction{kind: actionRelease})
	case !now.Before(m.deadline):
		// The deadline is checked before anything else: from it on, no
		// answer, however good, makes the lease safe again.
		return m.end(renewing, m.lost(lossDeadlinePassed, deadlineLost(m.deadline, m.lastErr)))
	}
	switch ev.kind {
	case eventWake:
		switch {
		case m.phase == phaseIdle && !now.Before(m.next):
			return m.renew(now, m.fresh)
		case m.phase == phaseRenewing && !now.Before(m.until):
			m.lastErr = fmt.Errorf("renew got no answer within %s", m.until.Sub(m.sent))
			m.phase, m.next, m.fresh = phaseIdle, m.cfg.retryAt(now, 0, m.deadline), true
			return append([]keeperAction{{kind: actionAbandon}}, m.flagAtRisk()...)
		}
	case eventLeaseChanged:
		if m.phase == phaseIdle {
			return m.renew(now, m.fresh)
		}
		// The renew in flight will tell.
	case eventAnswer:
		if m.phase == phaseRenewing {
			return m.answered(ev.answer, now)
		}
	}
	return nil
}

func (m *keeperMachine) answered(a renewAnswer, now time.Time) []keeperAction {
	switch {
	case a.kind == answerRenewed && a.token != m.token:
		return m.end(false, m.lost(lossTokenChanged,
			fmt.Errorf("%w: renew answered with token %d, not %d", ErrLeaseLost, a.token, m.token)))
	case a.kind == answerRenewed:
		// sent is after the previous renew's send time, so this deadline is
		// later than the current one, which has not passed (checked in
		// step): the answer is in time.
		m.deadline, m.atRisk, m.lastErr = m.cfg.deadline(m.sent), false, nil
		m.phase, m.next, m.fresh = phaseIdle, m.sent.Add(m.cfg.RenewInterval), false
		return []keeperAction{{kind: actionPublish, state: m.state()}}
	case a.kind == answerRefused:
		return m.end(false, m.lost(lossRefused,
			fmt.Errorf("%w: renew refused, current holder %q", ErrLeaseLost, a.holder)))
	case a.kind == answerRejected:
		return m.end(false, m.lost(lossRejected, fmt.Errorf("%w: renew rejected: %w", ErrLeaseLost, a.err)))
	default:
		m.lastErr = a.err
		m.phase, m.next, m.fresh = phaseIdle, m.cfg.retryAt(now, a.retryAfter, m.deadline), false
		return m.flagAtRisk()
	}
}

func (m *keeperMachine) renew(now time.Time, fresh bool) []keeperAction {
	bound := m.cfg.renewBound(now, m.deadline)
	m.phase, m.sent, m.until = phaseRenewing, now, now.Add(bound)
	return []keeperAction{{kind: actionRenew, bound: bound, fresh: fresh}}
}

// flagAtRisk marks the grant at risk; the state is published when that is news.
func (m *keeperMachine) flagAtRisk() []keeperAction {
	if m.atRisk {
		return nil
	}
	m.atRisk = true
	return []keeperAction{{kind: actionPublish, state: m.state()}}
}

func (m *keeperMachine) lost(kind lossKind, cause error) keeperState {
	return keeperState{status: statusLost, deadline: m.deadline, loss: kind, cause: cause}
}

func (m *keeperMachine) end(renewing bool, final keeperState) []keeperAction {
	m.phase = phaseOver
	var actions []keeperAction
	if renewing {
		actions = append(actions, keeperAction{kind: actionAbandon})
	}
	return append(actions, keeperAction{kind: actionPublish, state: final})
}

func deadlineLost(deadline time.Time, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("%w: local deadline %s passed without a successful renew (last error: %w)",
			ErrLeaseLost, deadline.Format(time.RFC3339Nano), lastErr)
	}
	return fmt.Errorf("%w: local deadline %s passed without a successful renew", ErrLeaseLost, deadline.Format(time.RFC3339Nano))
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
