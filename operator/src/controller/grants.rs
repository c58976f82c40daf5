//! The grants the lease watch showed that no status write has recorded yet.
//!
//! A reconcile sees only the newest version of a lease: a grant that was made
//! and ended (a short hold, released) between two reconciles would get no
//! `Acquired` Event. The watch, though, delivers every version. Each version
//! passes through [`GrantJournal::note`], which keeps the holders whose token
//! is above that version's `status.observedFencingToken`; a reconcile adds
//! them to the grants it records, and the next version, carrying the higher
//! `observedFencingToken`, drops them. So the journal holds only grants still
//! waiting for their Event: nothing in the steady state.
//!
//! A grant made and ended while the operator was not watching (stopped, or
//! between a watch error and the relist) is still not seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use berth_api::{BerthLease, Holder, LeaseKey};
use kube::runtime::watcher;

#[derive(Default)]
pub struct GrantJournal {
    pending: Mutex<HashMap<LeaseKey, BTreeMap<i32, Holder>>>,
}

impl GrantJournal {
    /// Records the unrecorded grants of one version of a lease from the watch.
    pub fn note(&self, lease: &BerthLease) {
        let Some(status) = lease.status.as_ref() else { return };
        let recorded = status.observed_fencing_token.unwrap_or(0);
        let mut pending = self.pending.lock().expect("grant journal lock");
        let key = LeaseKey::of(lease);
        let grants = pending.entry(key.clone()).or_default();
        grants.retain(|token, _| *token > recorded);
        for holder in status.holders.iter().filter(|h| h.fencing_token > recorded) {
            grants.entry(holder.fencing_token).or_insert_with(|| holder.clone());
        }
        if grants.is_empty() {
            pending.remove(&key);
        }
    }

    /// Feeds one event of the lease watch.
    pub fn observe(&self, event: &watcher::Event<BerthLease>) {
        match event {
            watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) => self.note(lease),
            watcher::Event::Delete(lease) => self.forget(lease),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// Drops what is kept for a deleted lease.
    pub fn forget(&self, lease: &BerthLease) {
        self.pending.lock().expect("grant journal lock").remove(&LeaseKey::of(lease));
    }

    /// The grants of `lease` seen on the watch with a token above `recorded`, in token order.
    pub fn unrecorded(&self, lease: &BerthLease, recorded: i32) -> Vec<Holder> {
        let pending = self.pending.lock().expect("grant journal lock");
        pending
            .get(&LeaseKey::of(lease))
            .map(|grants| grants.range(recorded + 1..).map(|(_, h)| h.clone()).collect())
            .unwrap_or_default()
    }

    /// How many leases have grants waiting for their Event.
    #[cfg(test)]
    fn leases(&self) -> usize {
        self.pending.lock().expect("grant journal lock").len()
    }
}

#[cfg(test)]
mod tests {
    use berth_api::{BerthLeaseSpec, BerthLeaseStatus};
    use chrono::{TimeZone, Utc};

    use super::*;

    fn version(holders: &[(&str, i32)], observed: Option<i32>) -> BerthLease {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut lease = BerthLease::new("l", BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.status = Some(BerthLeaseStatus {
            holders: holders
                .iter()
                .map(|(identity, token)| Holder {
                    identity: (*identity).into(),
                    fencing_token: *token,
                    acquired_at: at,
                    renewed_at: at,
                    expires_at: at,
                })
                .collect(),
            fencing_token: holders.iter().map(|(_, t)| *t).max().unwrap_or(0),
            observed_fencing_token: observed,
            ..Default::default()
        });
        lease
    }

    fn identities(holders: Vec<Holder>) -> Vec<(String, i32)> {
        holders.into_iter().map(|h| (h.identity, h.fencing_token)).collect()
    }

    #[test]
    fn a_grant_that_ended_between_reconciles_is_kept_until_recorded() {
        let journal = GrantJournal::default();
        journal.note(&version(&[("a", 1)], Some(1)));
        assert_eq!(journal.leases(), 0, "recorded grants are not kept");
        // b is granted and releases before any reconcile; then c is granted.
        journal.note(&version(&[("b", 2)], Some(1)));
        journal.note(&version(&[], Some(1)));
        journal.note(&version(&[("c", 3)], Some(1)));
        let lease = version(&[("c", 3)], Some(1));
        assert_eq!(identities(journal.unrecorded(&lease, 1)), [("b".into(), 2), ("c".into(), 3)]);
        // The reconcile's status write records both.
        journal.note(&version(&[("c", 3)], Some(3)));
        assert_eq!(journal.leases(), 0);
    }

    #[test]
    fn deleted_leases_are_forgotten() {
        let journal = GrantJournal::default();
        let lease = version(&[("a", 1)], None);
        journal.note(&lease);
        assert_eq!(journal.leases(), 1);
        journal.forget(&lease);
        assert_eq!(journal.leases(), 0);
    }
}
