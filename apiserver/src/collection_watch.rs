//! What a collection watch (`GET …/leases?watch=1`) tells a watcher: the
//! pure comparison of the leases it was told of with those it may read now.
//!
//! A watcher starts with one `added` per lease it may read, then one
//! `bookmark` ([`berth_api::wire::INITIAL_EVENTS_END`]), then the changes.
//! Changes are found by comparing what the watcher was last told with the
//! cache whenever the cache changes ([`Told::update`]): a burst of changes
//! costs one pass over the tenant's leases, and a watcher never sees a lease
//! it may not read. Its namespaces are those its credential allowed when the
//! watch was opened: a changed keys file applies from the next watch (a
//! reconnect). The stream itself is in `http/sse.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::wire::{LeaseView, WatchEventKind};
use berth_api::{BerthLease, LeaseKey};

/// One change a watcher is told.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: WatchEventKind,
    pub view: LeaseView,
}

/// The leases a watcher has been told of, at the version it was told.
#[derive(Default)]
pub struct Told {
    leases: BTreeMap<LeaseKey, Arc<BerthLease>>,
}

impl Told {
    /// The changes that bring the watcher from what it was told to
    /// `current` (every lease it may read now), and records `current` as told.
    ///
    /// # Guarantees
    /// A lease is `added` once, `modified` only when its resourceVersion
    /// changed, and `deleted` (with the last state told) once it is absent
    /// from `current`. Changes come in namespace and name order, deletions last.
    pub fn update(&mut self, current: Vec<Arc<BerthLease>>) -> Vec<Change> {
        let mut previous = std::mem::take(&mut self.leases);
        let mut changes = Vec::new();
        for lease in current {
            let key = LeaseKey::of(&lease);
            let kind = match previous.remove(&key) {
                None => Some(WatchEventKind::Added),
                Some(told) if told.metadata.resource_version != lease.metadata.resource_version => {
                    Some(WatchEventKind::Modified)
                }
                Some(_) => None,
            };
            if let Some(kind) = kind {
                changes.push(Change { kind, view: LeaseView::from_lease(&lease) });
            }
            self.leases.insert(key, lease);
        }
        changes.extend(
            previous
                .into_values()
                .map(|gone| Change { kind: WatchEventKind::Deleted, view: LeaseView::from_lease(&gone) }),
        );
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{BerthLeaseSpec, BerthLeaseStatus, LeaseState};

    fn lease(name: &str, rv: &str, state: LeaseState) -> Arc<BerthLease> {
        let mut lease = BerthLease::new(name, BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.metadata.resource_version = Some(rv.into());
        lease.status = Some(BerthLeaseStatus { state, ..Default::default() });
        Arc::new(lease)
    }

    fn told(changes: &[Change]) -> Vec<(&'static str, String, LeaseState)> {
        changes.iter().map(|c| (c.kind.as_str(), c.view.name.clone(), c.view.state)).collect()
    }

    #[test]
    fn a_watcher_is_told_each_lease_once_then_only_what_changed() {
        use LeaseState::*;
        let mut watcher = Told::default();
        let start = watcher.update(vec![lease("a", "1", Held), lease("b", "2", Released)]);
        assert_eq!(told(&start), [("added", "a".into(), Held), ("added", "b".into(), Released)]);
        assert!(watcher.update(vec![lease("a", "1", Held), lease("b", "2", Released)]).is_empty(), "nothing changed");

        let next = watcher.update(vec![lease("a", "3", Released), lease("c", "4", Held)]);
        assert_eq!(
            told(&next),
            [("modified", "a".into(), Released), ("added", "c".into(), Held), ("deleted", "b".into(), Released)],
            "a deletion carries the last state told"
        );
        assert_eq!(
            told(&watcher.update(Vec::new())),
            [("deleted", "a".into(), Released), ("deleted", "c".into(), Held)]
        );
        assert_eq!(told(&watcher.update(vec![lease("a", "9", Held)])), [("added", "a".into(), Held)], "back again");
    }
}
