//! Recording a reconcile's Events on the lease (events.k8s.io/v1).
//!
//! kube-runtime's `Recorder` folds every Event with the same reason on an
//! object into one series, whatever its note: a second grant to another
//! holder then showed up as `Acquired (x2)` with the first grant's note.
//! Here an Event joins a series only when it states the same fact: the same
//! type, reason, action, note and lease.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use berth_api::{BerthLease, LeaseKey};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Client, Resource};
use serde_json::json;

use crate::plan::Note;

use super::Context;

/// How long a fact may go unrepeated and still join its series (as client-go).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// The longest note events.k8s.io accepts.
const MAX_NOTE: usize = 1024;
/// How often series older than [`SERIES_WINDOW`] are dropped.
const PRUNE_EVERY: SignedDuration = SignedDuration::from_secs(60);
/// Reconciles whose Events may be recorded at once. Events are informational:
/// in a burst of expiries they wait their turn instead of competing with the
/// lease and target writes for kube-apiserver (and a connection each).
const EVENTS_IN_FLIGHT: usize = 4;

/// What makes two Events the same fact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Fact {
    /// The object's uid (unique on its own), or its namespace and name.
    regarding: String,
    warning: bool,
    reason: &'static str,
    action: &'static str,
    note: String,
}

#[derive(Clone, Debug)]
struct Series {
    event: String,
    count: i32,
    last: Timestamp,
}

/// The series seen within [`SERIES_WINDOW`], and when they were last pruned.
#[derive(Default)]
struct Known {
    series: HashMap<Fact, Series>,
    pruned: Option<Timestamp>,
}

/// Publishes Events as this controller and instance.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    known: Mutex<Known>,
    in_flight: Semaphore,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter, known: Mutex::default(), in_flight: Semaphore::new(EVENTS_IN_FLIGHT) }
    }

    /// Records `note` on `regarding`: a new Event, or the next count of
    /// the series of the same fact seen within [`SERIES_WINDOW`].
    ///
    /// # Errors
    /// When kube-apiserver refuses the create or the patch.
    pub async fn publish(&self, note: &Note, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let fact = Fact {
            regarding: regarding
                .uid
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{}", regarding.name.as_deref().unwrap_or_default())),
            warning: note.is_warning(),
            reason: note.reason(),
            action: note.action(),
            note: note.note().chars().take(MAX_NOTE).collect(),
        };
        let now = Timestamp::now();
        let repeated = {
            let mut known = self.known.lock().expect("the series lock is never poisoned");
            if known.pruned.is_none_or(|at| at + PRUNE_EVERY <= now) {
                known.series.retain(|_, s| s.last + SERIES_WINDOW > now);
                known.pruned = Some(now);
            }
            known.series.get(&fact).filter(|s| s.last + SERIES_WINDOW > now).cloned()
        };
        if let Some(series) = repeated {
            let count = series.count + 1;
            let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            match events.patch(&series.event, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.remember(fact, Series { event: series.event, count, last: now });
                    return Ok(());
                }
                // Events are short-lived: one gone meanwhile starts a new series.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let name =
            format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.reporter.controller), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace), ..Default::default() },
            event_time: Some(MicroTime(now)),
            type_: Some(if fact.warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(fact.reason.to_owned()),
            action: Some(fact.action.to_owned()),
            note: Some(fact.note.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter.instance.clone().unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.remember(fact, Series { event: name, count: 1, last: now });
        Ok(())
    }

    fn remember(&self, fact: Fact, series: Series) {
        self.known.lock().expect("the series lock is never poisoned").series.insert(fact, series);
    }
}

/// Records `notes` as Events on the lease, in order, in a task of
/// their own: Events never delay a reconcile (and so the next lease's
/// expiry). At most [`EVENTS_IN_FLIGHT`] reconciles' Events are recorded at
/// once; the others wait in turn. A failure to record is logged, never
/// fatal; Events not yet recorded when the process stops are lost, as they
/// would be on a crash.
pub(crate) fn publish(ctx: &Context, lease: &BerthLease, notes: Vec<Note>) {
    if notes.is_empty() {
        return;
    }
    let recorder = ctx.recorder.clone();
    let reference = lease.object_ref(&());
    let lease = LeaseKey::of(lease);
    tokio::spawn(async move {
        let Ok(_turn) = recorder.in_flight.acquire().await else { return };
        for note in notes {
            if let Err(error) = recorder.publish(&note, &reference).await {
                tracing::warn!(%lease, reason = note.reason(), %error, "recording an Event failed");
            }
        }
    });
}
