//! The resourceVersions that this operator's own status writes replaced.
//!
//! A reconcile reads the lease from the controller's store, which the watch
//! fills. Right after a status write the store can still hold the copy that
//! the write replaced: a reconcile triggered meanwhile (by the target's watch
//! after the target write, say) would decide again what is already written,
//! and its status write would conflict. In a burst of expiries that was
//! nearly one wasted write per expiry. A reconcile on a copy listed here
//! does nothing; the watch event of the own write triggers the next one.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_api::{BerthLease, LeaseKey};
use kube::ResourceExt;

/// How many replaced versions are kept per lease: a reconcile writes at most
/// twice, and the next one forgets them.
const KEPT: usize = 4;

#[derive(Debug, Default)]
pub struct OwnWrites {
    replaced: Mutex<HashMap<LeaseKey, Vec<String>>>,
}

impl OwnWrites {
    /// Records that an own write replaced `before`, the copy it was guarded by.
    pub fn replaced(&self, before: &BerthLease) {
        let Some(version) = before.resource_version() else { return };
        let mut replaced = self.replaced.lock().expect("own writes lock");
        let versions = replaced.entry(LeaseKey::of(before)).or_default();
        if versions.len() == KEPT {
            versions.remove(0);
        }
        versions.push(version);
    }

    /// Whether `lease` is a copy that an own write has replaced. Once a copy
    /// that no own write replaced is seen, the lease's versions are forgotten.
    pub fn superseded(&self, lease: &BerthLease) -> bool {
        let mut replaced = self.replaced.lock().expect("own writes lock");
        let key = LeaseKey::of(lease);
        let Some(versions) = replaced.get(&key) else { return false };
        if lease.resource_version().is_some_and(|v| versions.contains(&v)) {
            return true;
        }
        replaced.remove(&key);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::BerthLeaseSpec;

    fn copy(version: &str) -> BerthLease {
        let mut lease = BerthLease::new("l", BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".to_owned());
        lease.metadata.resource_version = Some(version.to_owned());
        lease
    }

    #[test]
    fn a_replaced_copy_is_superseded_until_a_newer_one_is_seen() {
        let own = OwnWrites::default();
        assert!(!own.superseded(&copy("1")), "nothing written");
        own.replaced(&copy("1"));
        own.replaced(&copy("2"));
        assert!(own.superseded(&copy("1")));
        assert!(own.superseded(&copy("2")), "the copy between two own writes");
        assert!(!own.superseded(&copy("3")), "the own write's result");
        assert!(!own.superseded(&copy("1")), "forgotten once a newer copy was seen");
        assert!(own.replaced.lock().unwrap().is_empty());
    }

    #[test]
    fn at_most_a_few_versions_are_kept_per_lease() {
        let own = OwnWrites::default();
        for version in 0..10 {
            own.replaced(&copy(&version.to_string()));
        }
        assert_eq!(own.replaced.lock().unwrap().values().map(Vec::len).sum::<usize>(), KEPT);
        assert!(!own.superseded(&copy("0")));
    }
}
