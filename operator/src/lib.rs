//! Berth's operator: the part of Berth that acts. It watches BerthLeases,
//! expires holders at their `expiresAt` with the shared lease rules of
//! `berth-api`, acquires for holders declared in a manifest, suspends,
//! resumes or scales the target workload as the lease changes hands, holds a
//! finalizer so that deleting a lease releases its target first, and records
//! Kubernetes Events and conditions. With `--leader-elect` only the replica
//! holding a `coordination.k8s.io` Lease acts. See docs/design.md, "The operator".
//!
//! In member mode ([`member`], docs/multicluster.md) it runs in a workload cluster
//! instead: each local BerthLease is this cluster's claim on the global lease
//! in the coordination cluster, held over REST, and the local target is gated
//! on that hold.
#![forbid(unsafe_code)]

pub mod controller;
pub mod error;
pub mod http;
pub mod leader;
pub mod member;
pub mod metrics;
pub mod plan;
pub mod pod_gate;
pub mod pods;
pub mod target;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use kube::runtime::events::Reporter;
use tokio::sync::watch;

pub use error::{Error, Result};

use crate::controller::{Context, GrantJournal, OwnWrites, Recorder, TargetMemory, TargetWrites};
use crate::http::Health;
use crate::leader::{LeaderElection, Timing};
use crate::metrics::Metrics;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "berth-operator";

/// Where leader election keeps its Lease, and as whom this replica runs.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

/// How one operator process runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub metrics_addr: Option<SocketAddr>,
    pub probe_addr: Option<SocketAddr>,
    /// `None` acts at once, as the only replica.
    pub leader_election: Option<LeaderSettings>,
    /// Names this replica in Events (`reportingInstance`).
    pub instance: String,
    /// `Some`: member mode, against this coordination cluster.
    pub member: Option<member::MemberSettings>,
}

/// How long the HTTP servers may take to drain after the controllers stopped.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the operator until `shutdown` completes.
///
/// # Guarantees
/// - With leader election, nothing is reconciled before this replica holds
///   the Lease, and the controllers stop the moment it is lost.
/// - On `shutdown`, the controllers finish the reconciles in flight, the
///   leader Lease is released so that a standby takes over at once, and the
///   HTTP servers drain (bounded).
///
/// # Errors
/// A bind address that cannot be bound, or [`Error::LeadershipLost`].
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop, stopping) = watch::channel(false);
    let stop = Arc::new(stop);
    let for_stopped = stopping.clone();
    let forward = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        forward.send_replace(true);
    });
    let stopped = move || stopped(for_stopped.clone());

    let mut servers = Vec::new();
    if let Some(addr) = settings.metrics_addr {
        servers.push(http::bind(addr, http::metrics_router(metrics.clone()), stopped()).await?);
    }
    if let Some(addr) = settings.probe_addr {
        servers.push(http::bind(addr, http::probe_router(health.clone()), stopped()).await?);
    }

    let elector = settings.leader_election.as_ref().map(|l| {
        let api = Api::namespaced(client.clone(), &l.namespace);
        LeaderElection::new(api, l.name.clone(), l.identity.clone(), l.timing)
    });
    let result = async {
        if let Some(elector) = &elector {
            tracing::info!(identity = %elector.identity(), "waiting to become the leader");
            let standby = health.clone();
            tokio::select! {
                () = elector.acquire(move || standby.set_ready()) => {}
                () = stopped() => return Ok(()),
            }
        }
        metrics.set_leader(true);
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance: Some(settings.instance.clone()) };
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: Arc::new(Recorder::new(client, reporter)),
            metrics: metrics.clone(),
            grants: GrantJournal::default(),
            standings: pod_gate::Standings::default(),
            // Member mode watches no targets: it reads each one it acts on.
            targets: if settings.member.is_some() { TargetMemory::off() } else { TargetMemory::watched() },
            target_writes: TargetWrites::default(),
            own_writes: OwnWrites::default(),
        });
        let leases = async {
            match settings.member.clone() {
                Some(member) => {
                    member::run(ctx.clone(), member, &settings.namespaces, health.clone(), stopping.clone()).await;
                }
                None => controller::run(ctx.clone(), &settings.namespaces, health.clone(), stopping.clone()).await,
            }
        };
        // The lease controllers decide each lease's standing; the pod gate carries it out.
        let pods = pod_gate::run(ctx.client.clone(), &settings.namespaces, &ctx.standings, stopping.clone());
        let controllers = async {
            tokio::select! {
                () = leases => {}
                () = pods => {}
            }
        };
        match &elector {
            Some(elector) => tokio::select! {
                () = controllers => Ok(()),
                lost = elector.keep() => Err(lost),
            },
            None => {
                controllers.await;
                Ok(())
            }
        }
    }
    .await;
    metrics.set_leader(false);
    if result.is_ok()
        && let Some(elector) = &elector
    {
        elector.release().await;
    }
    stop.send_replace(true);
    let _ = tokio::time::timeout(DRAIN, futures::future::join_all(servers)).await;
    result
}

/// Completes once `stopping` turns true: the one stop signal every part of
/// the operator takes.
pub(crate) async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
