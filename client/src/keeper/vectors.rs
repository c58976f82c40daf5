//! Runs the shared keeper vectors (`client/testdata/keeper-vectors.json`,
//! also run by the Go client) through [`Machine`] on paused tokio time.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::machine::{Action, Answer, Event, Machine};
use super::{KeeperState, Loss, Schedule};
use crate::{Error, Grant};

const VECTORS: &str = include_str!("../../testdata/keeper-vectors.json");
const TOKEN: i32 = 7;

fn ms(value: &Value, key: &str) -> Duration {
    Duration::from_millis(value[key].as_u64().unwrap_or_else(|| panic!("{key} in {value}")))
}

/// The renew answer a step describes, through the client's own status mapping.
fn answer(spec: &Value) -> Answer {
    let result = if let Some(token) = spec.get("renewed") {
        let fencing_token = i32::try_from(token.as_i64().expect("token")).expect("token fits");
        Ok(Grant { holder: "team/keeper".into(), fencing_token, expires_at: None, acquired_at: None })
    } else if let Some(holder) = spec.get("refused") {
        let current = berth_api::wire::AcquireResponse {
            acquired: false,
            holder: holder.as_str().expect("holder").to_owned(),
            ..Default::default()
        };
        Err(Error::NotAcquired { current })
    } else if let Some(status) = spec.get("status") {
        let status = u16::try_from(status.as_u64().expect("status")).expect("status fits");
        let retry_after = spec.get("retry_after_s").map(|s| s.to_string());
        Err(Error::from_status(status, br#"{"error":"from the vector"}"#, None, retry_after.as_deref()))
    } else if let Some(message) = spec.get("transport") {
        Err(Error::Transport { message: message.as_str().expect("message").to_owned(), source: None })
    } else {
        panic!("unknown answer {spec}")
    };
    Answer::from_result(&result)
}

fn loss_name(loss: &Loss) -> &'static str {
    match loss {
        Loss::DeadlinePassed => "deadline_passed",
        Loss::Refused { .. } => "refused",
        Loss::Rejected(_) => "rejected",
        Loss::TokenChanged { .. } => "token_changed",
    }
}

/// One vector's run: the machine, the clock, and what was observed.
struct Run {
    machine: Machine,
    t0: Instant,
    now: Instant,
    in_flight: bool,
    published: KeeperState,
    log: Vec<Value>,
}

impl Run {
    fn at_ms(&self) -> u128 {
        (self.now - self.t0).as_millis()
    }

    async fn move_to(&mut self, to: Instant) {
        tokio::time::advance(to - self.now).await;
        self.now = to;
        assert_eq!(Instant::now(), to, "paused clock");
    }

    fn step(&mut self, event: Event) {
        for action in self.machine.step(event, self.now) {
            let at_ms = self.at_ms();
            let record = match action {
                Action::Renew { bound, fresh_connection } => {
                    self.in_flight = true;
                    json!({"at_ms": at_ms, "do": "renew", "bound_ms": bound.as_millis(), "fresh": fresh_connection})
                }
                Action::Abandon => {
                    self.in_flight = false;
                    json!({"at_ms": at_ms, "do": "abandon"})
                }
                Action::Release => json!({"at_ms": at_ms, "do": "release"}),
                Action::Publish(state) => {
                    self.published = state.clone();
                    match state {
                        KeeperState::Held { fencing_token, deadline, at_risk } => {
                            assert_eq!(fencing_token, TOKEN);
                            let deadline_ms = (deadline - self.t0).as_millis();
                            json!({"at_ms": at_ms, "do": "held", "deadline_ms": deadline_ms, "at_risk": at_risk})
                        }
                        KeeperState::Lost(loss) => json!({"at_ms": at_ms, "do": "lost", "loss": loss_name(&loss)}),
                        KeeperState::Released => json!({"at_ms": at_ms, "do": "released"}),
                    }
                }
            };
            self.log.push(record);
        }
    }

    /// Fires every wake-up due until `to`, each at its own time, then sets the clock to `to`.
    async fn advance_to(&mut self, to: Instant) {
        while let Some(wake) = self.machine.wake_at().filter(|wake| *wake <= to) {
            let wake = wake.max(self.now);
            self.move_to(wake).await;
            self.step(Event::Wake);
        }
        self.move_to(to).await;
    }
}

async fn run_vector(vector: &Value) {
    let name = vector["name"].as_str().expect("name");
    let schedule = Schedule::new(ms(vector, "ttl_ms"), ms(vector, "margin_ms"), ms(vector, "heartbeat_ms"));
    if let Some(error) = vector.get("error") {
        assert_eq!(error, "margin", "{name}");
        let err = schedule.expect_err(name);
        assert!(err.to_string().contains("margin"), "{name}: {err}");
        return;
    }
    let t0 = Instant::now();
    let machine = Machine::new(schedule.expect(name), TOKEN, t0);
    let published = machine.state();
    let mut run = Run { machine, t0, now: t0, in_flight: false, published, log: Vec::new() };
    for (i, step) in vector["steps"].as_array().expect("steps").iter().enumerate() {
        run.log.clear();
        if step.get("advance_ms").is_some() {
            let to = run.now + ms(step, "advance_ms");
            run.advance_to(to).await;
        } else if let Some(spec) = step.get("answer") {
            if step.get("after_ms").is_some() {
                let to = run.now + ms(step, "after_ms");
                run.move_to(to).await;
            }
            // A renew that was abandoned has no answer to deliver.
            if std::mem::take(&mut run.in_flight) {
                run.step(Event::Answer(answer(spec)));
            }
            let now = run.now;
            run.advance_to(now).await;
        } else if step.get("watch").is_some() {
            run.step(Event::LeaseChanged);
        } else if step.get("release").is_some() {
            run.step(Event::Release);
        } else {
            panic!("{name}: unknown step {step}");
        }
        let expect = step["expect"].as_array().expect("expect");
        assert_eq!(&run.log, expect, "{name}: step {i} {step}");
        if let Some(holds) = step.get("holds") {
            assert_eq!(run.published.holds_at(run.now), holds.as_bool().expect("holds"), "{name}: step {i}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_shared_vector_holds() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vectors parse");
    let vectors = doc["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 20, "the vectors file lost its vectors");
    for vector in vectors {
        run_vector(vector).await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_row_of_the_table_has_a_vector() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vectors parse");
    let rows: std::collections::BTreeSet<&str> =
        doc["vectors"].as_array().expect("vectors").iter().map(|v| v["row"].as_str().expect("row")).collect();
    let table = include_str!("../../../docs/keeper.md");
    for row in table.lines().filter_map(|line| line.strip_prefix("| ")).filter_map(|l| l.split(" |").next()) {
        if row.starts_with("situation") || row.starts_with("---") {
            continue;
        }
        assert!(rows.contains(row), "docs/keeper.md row {row:?} has no vector");
    }
}
