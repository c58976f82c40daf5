//! The informer cache of BerthLeases: one kube-runtime reflector for all
//! namespaces, or one per `--namespace`.
//!
//! Reads (get, list, watch, and the first try of every write) come from here.
//! Every event that reaches the cache also bumps a change counter, which wakes
//! waiting acquires and SSE watches; nothing here polls kube-apiserver.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

pub struct LeaseCache {
    stores: Stores,
    feeds: Vec<Arc<Feed>>,
    changes: watch::Sender<u64>,
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
        let cache = Arc::new(Self { stores, feeds, changes });
        for (api, writer, feed) in writers {
            let cache = Arc::downgrade(&cache);
            let metrics = metrics.clone();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let Some(cache) = cache.upgrade() else { return };
                    match event {
                        Ok(event) => {
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

    /// The cached copy of one lease.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<BerthLease>> {
        let key = ObjectRef::new(name).within(namespace);
        match &self.stores {
            Stores::All(store) => store.get(&key),
            Stores::Namespaces(map) => map.get(namespace)?.get(&key),
        }
    }

    /// Every cached lease for which `keep` holds, sorted by namespace and name.
    pub fn list(&self, keep: impl Fn(&BerthLease) -> bool) -> Vec<Arc<BerthLease>> {
        let mut items: Vec<Arc<BerthLease>> = match &self.stores {
            Stores::All(store) => store.state_filter(|l| keep(l)),
            Stores::Namespaces(map) => map.values().flat_map(|s| s.state_filter(|l| keep(l))).collect(),
        };
        items.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        items
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
