//! `operator`: Berth's operator binary. See the crate docs of `berth_operator`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_operator::leader::Timing;
use berth_operator::member::MemberSettings;
use berth_operator::{LeaderSettings, Settings, http};
use clap::{Parser, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing_subscriber::EnvFilter;

/// jemalloc with its background purging thread: freed pages go back to the
/// kernel within seconds, so RSS follows the live heap after a peak (a cold
/// start over thousands of leases) instead of keeping it, as glibc's malloc
/// did. See docs/operator-memory.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Berth's operator: expires BerthLeases on time, acts on their target
/// workloads, releases targets of deleted leases, and records Events. With
/// --berth-api-server it runs in member mode in a workload cluster instead.
#[derive(Parser, Debug)]
#[command(name = "operator", version)]
struct Args {
    /// Path to a kubeconfig file. Omit it inside a cluster to use the pod's
    /// service account (outside one, $KUBECONFIG or ~/.kube/config is used).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<std::path::PathBuf>,

    /// A namespace whose BerthLeases (and target workloads) to watch. Repeat
    /// it for several; without it, every namespace is watched.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,

    /// Where to serve Prometheus metrics (OpenMetrics text) at /metrics:
    /// HOST:PORT, :PORT (every IPv4 interface), or 0 to disable.
    #[arg(long, value_name = "ADDR", default_value = ":8080")]
    metrics_bind_address: String,

    /// Where to serve /healthz and /readyz: HOST:PORT, :PORT (every IPv4
    /// interface), or 0 to disable.
    #[arg(long, value_name = "ADDR", default_value = ":8081")]
    health_probe_bind_address: String,

    /// Act only while holding a coordination.k8s.io Lease, so that several
    /// replicas can run and exactly one acts.
    #[arg(long)]
    leader_elect: bool,

    /// Name of the leader election Lease.
    #[arg(long, value_name = "NAME", default_value = "berth-operator")]
    leader_elect_id: String,

    /// Namespace of the leader election Lease. Default: the pod's namespace
    /// inside a cluster, else "default".
    #[arg(long, value_name = "NAMESPACE")]
    leader_elect_namespace: Option<String>,

    /// How long a leader's claim lasts without renewal before a standby takes over.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    leader_elect_lease_duration: u64,

    /// How long the leader keeps retrying a failed renewal before it gives up and exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    leader_elect_renew_deadline: u64,

    /// How often candidates try to acquire, and the leader renews.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    leader_elect_retry_period: u64,

    /// Member mode: the URL of the Berth apiserver of the coordination
    /// cluster (https://HOST[:PORT]). Setting it turns member mode on: each
    /// local BerthLease becomes this cluster's claim on the global lease of
    /// the same namespace and name, held with the cluster id as holder, and
    /// the local target is gated on that hold (docs/multicluster.md).
    #[arg(long, value_name = "URL", requires = "berth_api_key_file")]
    berth_api_server: Option<String>,

    /// Member mode: a file holding the bearer key for the Berth apiserver.
    /// It is read again when it changes (a rotated Secret).
    #[arg(long, value_name = "PATH", requires = "berth_api_server")]
    berth_api_key_file: Option<std::path::PathBuf>,

    /// Member mode: the CA bundle (PEM) that signed the Berth apiserver's
    /// certificate. Default: the system's trust store.
    #[arg(long, value_name = "PATH", requires = "berth_api_server")]
    berth_ca_file: Option<std::path::PathBuf>,

    /// Member mode: this cluster's id, an RFC 1123 label; it is the holder
    /// identity of the global leases. Default: the value of the About API's
    /// ClusterProperty `cluster.clusterset.k8s.io` (about.k8s.io); with
    /// neither, the operator refuses to start.
    #[arg(long, value_name = "ID", requires = "berth_api_server")]
    cluster_id: Option<String>,

    /// Log lines as JSON objects (the default, as the apiserver's) or as text.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing
    /// EnvFilter directive such as `berth_operator=debug,kube=info`.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level).context("--log-level")?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }

    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.context("no in-cluster config and no kubeconfig")?,
    };
    let client = kube::Client::try_from(config)?;

    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "berth-operator".to_owned());
    let identity = format!("{host}_{}", std::process::id());
    let leader_election = if args.leader_elect {
        let timing = Timing {
            lease_duration: Duration::from_secs(args.leader_elect_lease_duration),
            renew_deadline: Duration::from_secs(args.leader_elect_renew_deadline),
            retry_period: Duration::from_secs(args.leader_elect_retry_period),
        };
        if !(Duration::ZERO < timing.retry_period
            && timing.retry_period < timing.renew_deadline
            && timing.renew_deadline < timing.lease_duration)
        {
            bail!("leader election needs 0 < retry period < renew deadline < lease duration");
        }
        let namespace = args.leader_elect_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
                .map(|n| n.trim().to_owned())
                .unwrap_or_else(|_| "default".into())
        });
        Some(LeaderSettings { namespace, name: args.leader_elect_id.clone(), identity: identity.clone(), timing })
    } else {
        None
    };
    let member = match &args.berth_api_server {
        Some(url) => {
            let cluster_id = berth_operator::member::cluster_id::resolve(&client, args.cluster_id.as_deref()).await?;
            let mut berth = berth_client::Client::builder(url.clone());
            if let Some(path) = &args.berth_api_key_file {
                berth = berth.api_key_file(path);
            }
            if let Some(path) = &args.berth_ca_file {
                berth = berth.ca_file(path).context("--berth-ca-file")?;
            }
            let berth = berth.build().context("--berth-api-server")?;
            tracing::info!(%cluster_id, berth_api_server = %url, "member mode");
            Some(MemberSettings { berth, cluster_id })
        }
        None => None,
    };
    let settings = Settings {
        namespaces: args.namespaces,
        metrics_addr: http::parse_bind_address(&args.metrics_bind_address)?,
        probe_addr: http::parse_bind_address(&args.health_probe_bind_address)?,
        leader_election,
        instance: identity,
        member,
    };
    berth_operator::run(client, settings, berth_operator::shutdown_signal()).await?;
    Ok(())
}
