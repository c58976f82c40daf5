package client

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The shared keeper vectors: the Rust client runs the same file through
// its own step function (client/src/keeper/vectors.rs), so a behaviour that
// differs between the two keepers fails a test. docs/keeper.md explains the
// format and the table the vectors cover.
const vectorsFile = "../testdata/keeper-vectors.json"

const vectorToken = 7

type vectorFile struct {
	Vectors []keeperVector `json:"vectors"`
}

type keeperVector struct {
	Name        string       `json:"name"`
	Row         string       `json:"row"`
	TTLMs       int64        `json:"ttl_ms"`
	MarginMs    int64        `json:"margin_ms"`
	HeartbeatMs int64        `json:"heartbeat_ms"`
	Error       string       `json:"error"`
	Steps       []vectorStep `json:"steps"`
}

type vectorStep struct {
	AdvanceMs *int64           `json:"advance_ms"`
	Answer    *vectorAnswer    `json:"answer"`
	AfterMs   int64            `json:"after_ms"`
	Watch     string           `json:"watch"`
	Release   bool             `json:"release"`
	Expect    []map[string]any `json:"expect"`
	Holds     *bool            `json:"holds"`
}

type vectorAnswer struct {
	Renewed     *int32  `json:"renewed"`
	Refused     *string `json:"refused"`
	Status      int     `json:"status"`
	RetryAfterS int64   `json:"retry_after_s"`
	Transport   string  `json:"transport"`
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// result is the renew result the answer describes, as a Client returns it.
func (a vectorAnswer) result() (AcquireResult, error) {
	switch {
	case a.Renewed != nil:
		return AcquireResult{Acquired: true, Holder: "team/keeper", FencingToken: *a.Renewed}, nil
	case a.Refused != nil:
		return AcquireResult{Acquired: false, Holder: *a.Refused}, nil
	case a.Status != 0:
		return AcquireResult{}, &APIError{StatusCode: a.Status, Message: "from the vector", RetryAfter: time.Duration(a.RetryAfterS) * time.Second}
	case a.Transport != "":
		return AcquireResult{}, errors.New(a.Transport)
	}
	panic("unknown answer")
}

// vectorRun is one vector's run: the machine, the clock, what was observed.
type vectorRun struct {
	machine   *keeperMachine
	t0, now   time.Time
	inFlight  bool
	published keeperState
	log       []map[string]any
}

func (r *vectorRun) step(ev machineEvent) {
	at := r.now.Sub(r.t0).Milliseconds()
	for _, a := range r.machine.step(ev, r.now) {
		var rec map[string]any
		switch a.kind {
		case actionRenew:
			r.inFlight = true
			rec = map[string]any{"do": "renew", "bound_ms": a.bound.Milliseconds(), "fresh": a.fresh}
		case actionAbandon:
			r.inFlight = false
			rec = map[string]any{"do": "abandon"}
		case actionRelease:
			rec = map[string]any{"do": "release"}
		case actionPublish:
			r.published = a.state
			switch a.state.status {
			case statusHeld:
				rec = map[string]any{"do": "held", "deadline_ms": a.state.deadline.Sub(r.t0).Milliseconds(), "at_risk": a.state.atRisk}
			case statusLost:
				if !errors.Is(a.state.cause, ErrLeaseLost) {
					panic("a loss whose cause is not ErrLeaseLost")
				}
				rec = map[string]any{"do": "lost", "loss": string(a.state.loss)}
			case statusReleased:
				rec = map[string]any{"do": "released"}
			}
		}
		rec["at_ms"] = at
		r.log = append(r.log, rec)
	}
}

// advanceTo fires every wake-up due until to, each at its own time, then
// sets the clock to to.
func (r *vectorRun) advanceTo(to time.Time) {
	for {
		at, ok := r.machine.wakeAt()
		if !ok || at.After(to) {
			break
		}
		if at.After(r.now) {
			r.now = at
		}
		r.step(machineEvent{kind: eventWake})
	}
	r.now = to
}

// normalize makes expected and observed records compare equal as JSON does.
func normalize(t *testing.T, records []map[string]any) []map[string]any {
	t.Helper()
	if len(records) == 0 {
		return nil
	}
	raw, err := json.Marshal(records)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func runVector(t *testing.T, v keeperVector) {
	cfg, err := KeeperConfig{TTL: ms(v.TTLMs), Margin: ms(v.MarginMs), RenewInterval: ms(v.HeartbeatMs)}.normalize()
	if v.Error != "" {
		if v.Error != "margin" || err == nil || !strings.Contains(err.Error(), "margin") {
			t.Fatalf("want a margin error, got %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withInterval(0)
	t0 := newFakeClock().Now()
	m := newKeeperMachine(cfg, vectorToken, t0)
	r := &vectorRun{machine: m, t0: t0, now: t0, published: m.state()}
	for i, s := range v.Steps {
		r.log = nil
		switch {
		case s.AdvanceMs != nil:
			r.advanceTo(r.now.Add(ms(*s.AdvanceMs)))
		case s.Answer != nil:
			r.now = r.now.Add(ms(s.AfterMs))
			// A renew that was abandoned has no answer to deliver.
			if r.inFlight {
				r.inFlight = false
				res, err := s.Answer.result()
				r.step(machineEvent{kind: eventAnswer, answer: classifyRenew(res, err)})
			}
			r.advanceTo(r.now)
		case s.Watch != "":
			r.step(machineEvent{kind: eventLeaseChanged})
		case s.Release:
			r.step(machineEvent{kind: eventRelease})
		default:
			t.Fatalf("step %d: unknown step", i)
		}
		if got, want := normalize(t, r.log), normalize(t, s.Expect); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d:\n got  %v\n want %v", i, got, want)
		}
		if s.Holds != nil && r.published.holdsAt(r.now) != *s.Holds {
			t.Fatalf("step %d: holds = %v, want %v", i, !*s.Holds, *s.Holds)
		}
	}
}

func loadVectors(t *testing.T) []keeperVector {
	t.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) < 20 {
		t.Fatalf("the vectors file lost its vectors: %d", len(f.Vectors))
	}
	return f.Vectors
}

func TestKeeperVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) { runVector(t, v) })
	}
}
