//! The informer cache of BerthLeases: one kube-runtime reflector for all
//! namespaces, or one per `--namespace`.
//!
//! Reads (get, list, watch, and the first try of every write) come from here.
//! Every event that reaches the cache also bumps a change counter, which wakes
//! waiting acquires and SSE watches; nothing here polls kube-apiserver.
//!
//! This replica's own writes are visible at once (read-your-writes): a written
//! object stands in for the cached one while the reflector still shows a
//! version that write superseded. So a release followed by an acquire on the
//! same replica never sees the released holder.
//!
//! Cached and recorded objects carry no `metadata.managedFields`: nothing here
//! reads them, and they were about half of each cached lease. The status
//! writes send no managedFields either, and kube-apiserver keeps the stored
//! ones when a request omits them, so ownership by `berth-apiserver` is
//! unaffected (`tests/lease_rules.rs` checks it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_api::BerthLease;
use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Which namespaces the cache covers.
enum Stores {
    All(Store<BerthLease>),
    Namespaces(BTreeMap<String, Store<BerthLease>>),
}

/// Health of one reflector.
#[derive(Default)]
struct Feed {
    /// The initial list has completed at least once.
    synced: AtomicBool,
    /// The last thing the watch stream produced was not an error.
    healthy: AtomicBool,
}

/// An object this replica wrote, and the resourceVersions it supersedes: the
/// one the write replaced (none for a create), and those of this replica's
/// earlier writes in the same chain (create, then grant).
struct Written {
    superseded: Vec<Option<String>>,
    lease: Arc<BerthLease>,
}

pub struct LeaseCache {
    stores: Stores,
    feeds: Vec<Arc<Feed>>,
    changes: watch::Sender<u64>,
    /// Keyed by (namespace, name).
    written: Mutex<HashMap<(String, String), Written>>,
}

impl LeaseCache {
    /// Starts the reflectors on the current tokio runtime: all namespaces when
    /// `namespaces` is empty, else one reflector per namespace.
    pub fn start(client: Client, namespaces: &[String], metrics: Arc<Metrics>) -> Arc<Self> {
        let (changes, _) = watch::channel(0u64);
        let mut readers = Vec::new();
        let apis: Vec<(Option<String>, Api<BerthLease>)> = if namespaces.is_empty() {
            vec![(None, Api::all(client))]
        } else {
            namespaces.iter().map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns))).collect()
        };
        let mut feeds = Vec::new();
        let mut writers = Vec::new();
        for (ns, api) in apis {
            let writer = reflector::store::Writer::<BerthLease>::default();
            readers.push((ns, writer.as_reader()));
            let feed = Arc::new(Feed::default());
            feeds.push(feed.clone());
            writers.push((api, writer, feed));
        }
        let stores = match readers.as_slice() {
            [(None, store)] => Stores::All(store.clone()),
            _ => Stores::Namespaces(readers.into_iter().map(|(ns, s)| (ns.unwrap_or_default(), s)).collect()),
        };
        let cache = Arc::new(Self { stores, feeds, changes, written: Mutex::default() });
        for (api, writer, feed) in writers {
            let cache = Arc::downgrade(&cache);
            let metrics = metrics.clone();
            let events = watcher(api, watcher::Config::default()).default_backoff().modify(strip_managed_fields);
            let stream = reflector::reflector(writer, events);
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let Some(cache) = cache.upgrade() else { return };
                    match event {
                        Ok(event) => {
                            cache.caught_up(&event);
                            if matches!(event, watcher::Event::InitDone) {
                                feed.synced.store(true, Ordering::Release);
                            }
                            feed.healthy.store(true, Ordering::Release);
                            metrics.cached_leases.set(cache.len() as i64);
                            cache.changes.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Err(error) => {
                            feed.healthy.store(false, Ordering::Release);
                            tracing::warn!(%error, "BerthLease watch failed; retrying with backoff");
                        }
                    }
                }
            });
        }
        cache
    }

    /// Every reflector has listed its scope at least once: until then, a lease
    /// missing from the cache may exist.
    pub fn has_synced(&self) -> bool {
        self.feeds.iter().all(|f| f.synced.load(Ordering::Acquire))
    }

    /// Synced at least once, and no reflector is currently failing.
    pub fn is_ready(&self) -> bool {
        self.feeds.iter().all(|f| f.synced.load(Ordering::Acquire) && f.healthy.load(Ordering::Acquire))
    }

    /// Whether this cache (and so this apiserver) covers `namespace`.
    pub fn serves(&self, namespace: &str) -> bool {
        match &self.stores {
            Stores::All(_) => true,
            Stores::Namespaces(map) => map.contains_key(namespace),
        }
    }

    /// The newest copy of one lease this replica knows: its own last write
    /// while the reflector still shows a version that write superseded, else
    /// the cached object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<BerthLease>> {
        let cached = self.cached(namespace, name);
        let cached_version = cached.as_ref().map(|l| l.metadata.resource_version.clone());
        let mut written = self.written.lock().expect("written lock");
        let key = (namespace.to_owned(), name.to_owned());
        match written.get(&key) {
            Some(w) if w.superseded.contains(&cached_version.flatten()) => Some(w.lease.clone()),
            Some(_) => {
                written.remove(&key);
                cached
            }
            None => cached,
        }
    }

    /// Records an object this replica just wrote over `based_on` (`None`: created it).
    pub fn record_write(&self, based_on: Option<String>, mut lease: BerthLease) {
        strip_managed_fields(&mut lease);
        let key =
            (lease.metadata.namespace.clone().unwrap_or_default(), lease.metadata.name.clone().unwrap_or_default());
        let mut written = self.written.lock().expect("written lock");
        let mut superseded = match written.remove(&key) {
            Some(previous) if previous.lease.metadata.resource_version == based_on => previous.superseded,
            _ => Vec::new(),
        };
        superseded.push(based_on);
        written.insert(key, Written { superseded, lease: Arc::new(lease) });
        drop(written);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Drops the stand-in of a lease once the store shows a version its
    /// write did not supersede (the write itself, or something newer). Without
    /// this, every lease ever written keeps a second copy until it is read.
    fn caught_up(&self, event: &watcher::Event<BerthLease>) {
        // The version the store now shows: none after a delete (a create of
        // ours, which superseded "no object", stays until its own event).
        let (lease, shown) = match event {
            watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) => {
                (lease, lease.metadata.resource_version.clone())
            }
            watcher::Event::Delete(lease) => (lease, None),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let key =
            (lease.metadata.namespace.clone().unwrap_or_default(), lease.metadata.name.clone().unwrap_or_default());
        let mut written = self.written.lock().expect("written lock");
        if written.get(&key).is_some_and(|w| !w.superseded.contains(&shown)) {
            written.remove(&key);
        }
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<BerthLease>> {
        let key = ObjectRef::new(name).within(namespace);
        match &self.stores {
            Stores::All(store) => store.get(&key),
            Stores::Namespaces(map) => map.get(namespace)?.get(&key),
        }
    }

    /// Every lease for which `keep` holds, as [`LeaseCache::get`] would
    /// return it, sorted by namespace and name.
    pub fn list(&self, keep: impl Fn(&BerthLease) -> bool) -> Vec<Arc<BerthLease>> {
        let cached: Vec<Arc<BerthLease>> = match &self.stores {
            Stores::All(store) => store.state(),
            Stores::Namespaces(map) => map.values().flat_map(Store::state).collect(),
        };
        let key = |l: &BerthLease| {
            (l.metadata.namespace.clone().unwrap_or_default(), l.metadata.name.clone().unwrap_or_default())
        };
        let mut items: BTreeMap<(String, String), Arc<BerthLease>> = cached.into_iter().map(|l| (key(&l), l)).collect();
        // Own writes the reflector has not shown yet stand in, as in `get`.
        let pending: Vec<(String, String)> = self.written.lock().expect("written lock").keys().cloned().collect();
        for (namespace, name) in pending {
            match self.get(&namespace, &name) {
                Some(lease) => items.insert((namespace, name), lease),
                None => items.remove(&(namespace, name)),
            };
        }
        items.into_values().filter(|l| keep(l)).collect()
    }

    fn len(&self) -> usize {
        match &self.stores {
            Stores::All(store) => store.len(),
            Stores::Namespaces(map) => map.values().map(Store::len).sum(),
        }
    }

    /// A receiver that sees every later change to the cache.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Drops what the cache never reads and what costs the most memory per lease.
fn strip_managed_fields(lease: &mut BerthLease) {
    lease.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{BerthLeaseSpec, BerthLeaseStatus, LeaseState};

    fn version(rv: &str, state: LeaseState) -> BerthLease {
        let mut lease = BerthLease::new("l", BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.metadata.resource_version = Some(rv.into());
        lease.status = Some(BerthLeaseStatus { state, ..Default::default() });
        lease
    }

    /// A cache over the store of `writer`, with no reflector running.
    fn cache_over(writer: &reflector::store::Writer<BerthLease>) -> LeaseCache {
        LeaseCache {
            stores: Stores::All(writer.as_reader()),
            feeds: Vec::new(),
            changes: watch::channel(0).0,
            written: Mutex::default(),
        }
    }

    fn seen(cache: &LeaseCache) -> Option<String> {
        cache.get("ns", "l").and_then(|l| l.metadata.resource_version.clone())
    }

    #[test]
    fn own_writes_are_read_until_the_reflector_shows_them_or_something_newer() {
        let mut writer = reflector::store::Writer::<BerthLease>::default();
        let cache = cache_over(&writer);
        // Create, then grant: both before the reflector has seen either.
        cache.record_write(None, version("1", LeaseState::Available));
        cache.record_write(Some("1".into()), version("2", LeaseState::Held));
        assert_eq!(seen(&cache).as_deref(), Some("2"));
        let listed: Vec<_> = cache.list(|_| true).iter().map(|l| l.metadata.resource_version.clone()).collect();
        assert_eq!(listed, [Some("2".to_owned())], "lists read own writes too");
        // The reflector catches up with the create only: the grant still wins.
        writer.apply_watcher_event(&watcher::Event::Apply(version("1", LeaseState::Available)));
        assert_eq!(seen(&cache).as_deref(), Some("2"));
        writer.apply_watcher_event(&watcher::Event::Apply(version("2", LeaseState::Held)));
        assert_eq!(seen(&cache).as_deref(), Some("2"));
        assert!(cache.written.lock().unwrap().is_empty(), "caught up: the stand-in is gone");

        // A write of ours, then the reflector jumps to someone else's newer one.
        cache.record_write(Some("2".into()), version("3", LeaseState::Released));
        assert_eq!(seen(&cache).as_deref(), Some("3"));
        writer.apply_watcher_event(&watcher::Event::Apply(version("4", LeaseState::Held)));
        assert_eq!(seen(&cache).as_deref(), Some("4"));
    }

    #[test]
    fn stand_ins_are_dropped_when_the_watch_catches_up_without_a_read() {
        let mut writer = reflector::store::Writer::<BerthLease>::default();
        let cache = cache_over(&writer);
        let apply = |writer: &mut reflector::store::Writer<BerthLease>, lease: BerthLease| {
            let event = watcher::Event::Apply(lease);
            writer.apply_watcher_event(&event);
            cache.caught_up(&event);
        };
        apply(&mut writer, version("1", LeaseState::Available));
        cache.record_write(Some("1".into()), version("2", LeaseState::Held));
        // An event of the superseded version keeps the stand-in.
        apply(&mut writer, version("1", LeaseState::Available));
        assert_eq!(cache.written.lock().unwrap().len(), 1);
        apply(&mut writer, version("2", LeaseState::Held));
        assert!(cache.written.lock().unwrap().is_empty(), "the write arrived: no second copy is kept");
        // A delete drops the stand-in of a write over the deleted object, but
        // not that of a create made after the delete.
        cache.record_write(Some("2".into()), version("3", LeaseState::Released));
        let deleted = watcher::Event::Delete(version("3", LeaseState::Released));
        writer.apply_watcher_event(&deleted);
        cache.caught_up(&deleted);
        assert!(cache.written.lock().unwrap().is_empty());
        cache.record_write(None, version("5", LeaseState::Held));
        cache.caught_up(&deleted);
        assert_eq!(seen(&cache).as_deref(), Some("5"));
    }

    #[test]
    fn recorded_writes_and_watch_events_lose_their_managed_fields() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let cache = cache_over(&reflector::store::Writer::<BerthLease>::default());
        let mut lease = version("1", LeaseState::Held);
        lease.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("berth-apiserver".into()), ..Default::default() }]);
        let mut event = lease.clone();
        strip_managed_fields(&mut event);
        assert!(event.metadata.managed_fields.is_none());
        cache.record_write(None, lease);
        assert!(cache.get("ns", "l").unwrap().metadata.managed_fields.is_none());
    }
}
