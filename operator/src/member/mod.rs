//! Member mode (docs/multicluster.md): in a workload cluster, each local BerthLease is
//! this cluster's claim on the global lease of the same namespace and name in
//! the coordination cluster. The operator holds the global lease over REST
//! with the cluster id as holder identity, and gates the LOCAL target on
//! "this cluster holds it", fencing it at the local safe deadline.
//!
//! - [`state`]: the pure state machine (`unknown`, `standby`, `held`,
//!   `at-risk`, `fenced`);
//! - [`crate::plan::member`]: the other pure decisions (the local status,
//!   Events, timing), beside the controller's;
//! - [`claim`]: the per-lease driver (a keeper, a gate, a deadline timer);
//! - this file: the watch of local BerthLeases that starts and feeds claims.

pub mod claim;
pub mod cluster_id;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_api::{BerthLease, LeaseKey};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::controller::Context;
use crate::http::Health;
use crate::plan::{self, FinalizerStep};

/// How member mode reaches the coordination cluster, and as whom.
#[derive(Clone, Debug)]
pub struct MemberSettings {
    pub berth: berth_client::Client,
    /// This cluster's id: the holder identity of every global lease it claims.
    pub cluster_id: String,
}

/// The claim of each lease: the scope that saw it, and the sender that feeds it.
type Claims = BTreeMap<LeaseKey, (usize, watch::Sender<Arc<BerthLease>>)>;

/// Runs member mode until `stopping` turns true: one claim per local
/// BerthLease in the watched namespaces. Marks `health` ready once every
/// scope has been listed.
///
/// # Guarantees
/// On stop, and when this future is dropped (lost leadership), every claim
/// ends without releasing its global lease, and without touching its
/// target: a restarted operator, or the next leader, finds the tenure live
/// and resumes it with the same token (docs/multicluster.md, "Flags").
pub async fn run(
    ctx: Arc<Context>,
    settings: MemberSettings,
    namespaces: &[String],
    health: Arc<Health>,
    stopping: watch::Receiver<bool>,
) {
    let shared = Arc::new(claim::Shared { ctx: ctx.clone(), berth: settings.berth, cluster_id: settings.cluster_id });
    let scopes: Vec<Api<BerthLease>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect()
    };
    let mut scopes_listed = vec![false; scopes.len()];
    let streams = scopes.into_iter().enumerate().map(|(scope, api)| {
        watcher(api, watcher::Config::default()).default_backoff().map(move |event| (scope, event)).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut claims: Claims = BTreeMap::new();
    // Declared after `claims`, so dropped before it: claims are told to stop
    // before their lease senders close, which they would take for deletions.
    let (stop_claims, claims_stopping) = watch::channel(false);
    let _stop_claims = StopOnDrop(stop_claims);
    let mut relisted: BTreeMap<usize, BTreeSet<LeaseKey>> = BTreeMap::new();
    let mut stop = stopping.clone();
    loop {
        let (scope, event) = tokio::select! {
            next = events.next() => match next {
                Some(next) => next,
                None => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "watching BerthLeases failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => {
                relisted.insert(scope, BTreeSet::new());
            }
            watcher::Event::InitApply(lease) => {
                relisted.entry(scope).or_default().insert(LeaseKey::of(&lease));
                feed(&shared, &mut claims, scope, lease, &claims_stopping);
            }
            watcher::Event::Apply(lease) => feed(&shared, &mut claims, scope, lease, &claims_stopping),
            watcher::Event::Delete(lease) => {
                claims.remove(&LeaseKey::of(&lease));
            }
            watcher::Event::InitDone => {
                // Leases gone while the watch was down: their claims end.
                let seen = relisted.remove(&scope).unwrap_or_default();
                claims.retain(|key, (of, _)| *of != scope || seen.contains(key));
                scopes_listed[scope] = true;
                if scopes_listed.iter().all(|listed| *listed) {
                    health.set_ready();
                }
            }
        }
    }
}

/// Tells every claim to stop when member mode ends, however it ends.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Sends `lease` to its claim, starting one when it has none.
fn feed(
    shared: &Arc<claim::Shared>,
    claims: &mut Claims,
    scope: usize,
    mut lease: BerthLease,
    stopping: &watch::Receiver<bool>,
) {
    lease.metadata.managed_fields = None;
    let key = LeaseKey::of(&lease);
    match claims.get(&key) {
        // A claim whose gate ended (its deletion is done) is started afresh.
        Some((_, sender)) if !sender.is_closed() => {
            sender.send_replace(Arc::new(lease));
        }
        _ => {
            // A claim always guards its lease; a deleted one without our finalizer is not ours.
            let deleting = lease.metadata.deletion_timestamp.is_some();
            if FinalizerStep::for_lease(deleting, true, plan::has_finalizer(&lease)) == FinalizerStep::Gone {
                return;
            }
            claims.insert(key, (scope, claim::spawn(shared.clone(), lease, stopping.clone())));
        }
    }
}
