//! What the operator last knew of each target's knob, so that the target
//! step writes a target without reading it first.
//!
//! A CronJob's or Job's `spec.suspend` is remembered with the target's
//! `metadata.generation`, from the answer of the operator's own read or
//! write (an [`Observed`] that carries one). Any change of a target's spec raises its generation, and the
//! controller watches every target's metadata ([`super::watch`]): an event
//! that shows another generation, or the target's deletion, forgets the
//! entry, and the next step reads the target again. The same event triggers
//! the leases that name the target, as before.
//!
//! # Caveats
//! - Between a change of a target and its watch event (milliseconds), the
//!   memory is behind, as an informer's cache is. The event then triggers a
//!   reconcile that reads and corrects. A gated target can only be started
//!   by the operator anyway (docs/admission.md).
//! - Deployments, StatefulSets and ReplicaSets are not remembered: their
//!   `/scale` answer carries no generation. Their step reads as before.
//! - Member mode watches no targets, so it remembers nothing
//!   ([`TargetMemory::off`]).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;

use crate::plan::TargetKind;
use crate::target::Observed;

/// A target: its kind, namespace and name.
type Key = (TargetKind, String, String);

/// The remembered knob of each target, with the generation it was read at.
#[derive(Debug, Default)]
pub struct TargetMemory {
    /// `None` when off: nothing is remembered.
    entries: Option<Mutex<HashMap<Key, Observed>>>,
}

impl TargetMemory {
    /// A memory kept up to date by the controller's target watches.
    pub fn watched() -> Self {
        Self { entries: Some(Mutex::default()) }
    }

    /// A memory that remembers nothing: for a caller without target watches.
    pub fn off() -> Self {
        Self { entries: None }
    }

    /// What was last known of the target, if no watch event has said otherwise.
    pub fn recall(&self, kind: TargetKind, namespace: &str, name: &str) -> Option<Observed> {
        let entries = self.entries.as_ref()?.lock().expect("target memory lock");
        entries.get(&(kind, namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Remembers `observed`, when it carries the generation it was read at.
    pub fn remember(&self, kind: TargetKind, namespace: &str, name: &str, observed: Observed) {
        let (Some(entries), Some(_)) = (&self.entries, observed.generation) else { return };
        entries.lock().expect("target memory lock").insert((kind, namespace.to_owned(), name.to_owned()), observed);
    }

    /// Feeds one event of the watch of `kind`'s metadata: a target seen at a
    /// newer generation than remembered, or deleted, is forgotten, and so is
    /// every target of the kind when the watch lists again (it may have
    /// missed a deletion). An older generation is an event that the
    /// operator's own write has already overtaken: it changes nothing.
    pub fn observe<K: Resource>(&self, kind: TargetKind, event: &watcher::Event<K>) {
        let Some(entries) = &self.entries else { return };
        let mut entries = entries.lock().expect("target memory lock");
        // `None`: deleted.
        let mut forget = |meta: &ObjectMeta, generation: Option<i64>| {
            let key = (kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
            let newer = |known: &Observed| generation.is_none_or(|seen| known.generation.is_none_or(|k| seen > k));
            if entries.get(&key).is_some_and(newer) {
                entries.remove(&key);
            }
        };
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                // A generation is never absent on a stored object; absent, count it as a change.
                forget(object.meta(), Some(object.meta().generation.unwrap_or(i64::MAX)));
            }
            watcher::Event::Delete(object) => forget(object.meta(), None),
            watcher::Event::Init => entries.retain(|(known, _, _), _| *known != kind),
            watcher::Event::InitDone => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::CronJob;

    use super::*;
    use crate::plan::Setting;

    fn observed(generation: Option<i64>, suspend: bool) -> Observed {
        Observed { setting: Setting::Suspend(suspend), cron: None, generation }
    }

    fn cronjob(name: &str, generation: i64) -> CronJob {
        let mut cronjob = CronJob::default();
        cronjob.metadata.namespace = Some("ns".into());
        cronjob.metadata.name = Some(name.into());
        cronjob.metadata.generation = Some(generation);
        cronjob
    }

    #[test]
    fn a_target_is_remembered_until_its_watch_shows_another_generation() {
        let memory = TargetMemory::watched();
        memory.remember(TargetKind::CronJob, "ns", "a", observed(Some(2), false));
        // Its own write's event, an older one, and another target's, keep it.
        memory.observe(TargetKind::CronJob, &watcher::Event::Apply(cronjob("a", 2)));
        memory.observe(TargetKind::CronJob, &watcher::Event::Apply(cronjob("a", 1)));
        memory.observe(TargetKind::CronJob, &watcher::Event::Apply(cronjob("b", 7)));
        assert_eq!(memory.recall(TargetKind::CronJob, "ns", "a"), Some(observed(Some(2), false)));
        // A hand edit raised the generation: read again.
        memory.observe(TargetKind::CronJob, &watcher::Event::Apply(cronjob("a", 3)));
        assert_eq!(memory.recall(TargetKind::CronJob, "ns", "a"), None);
    }

    #[test]
    fn deletion_and_a_new_list_forget() {
        let memory = TargetMemory::watched();
        memory.remember(TargetKind::CronJob, "ns", "a", observed(Some(2), true));
        memory.remember(TargetKind::Job, "ns", "j", observed(Some(1), true));
        memory.observe(TargetKind::CronJob, &watcher::Event::Delete(cronjob("a", 2)));
        assert_eq!(memory.recall(TargetKind::CronJob, "ns", "a"), None);
        memory.remember(TargetKind::CronJob, "ns", "a", observed(Some(2), true));
        memory.observe::<CronJob>(TargetKind::CronJob, &watcher::Event::Init);
        assert_eq!(memory.recall(TargetKind::CronJob, "ns", "a"), None);
        assert!(memory.recall(TargetKind::Job, "ns", "j").is_some(), "another kind's list keeps the Job");
    }

    #[test]
    fn nothing_without_a_generation_or_with_the_memory_off() {
        let memory = TargetMemory::watched();
        memory.remember(TargetKind::Deployment, "ns", "d", observed(None, false));
        assert_eq!(memory.recall(TargetKind::Deployment, "ns", "d"), None);
        let off = TargetMemory::off();
        off.remember(TargetKind::CronJob, "ns", "a", observed(Some(1), false));
        assert_eq!(off.recall(TargetKind::CronJob, "ns", "a"), None);
    }
}
