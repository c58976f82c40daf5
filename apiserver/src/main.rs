//! `apiserver`: serves Berth's lease API over HTTPS. See `--help`.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use berth_api::duration::parse as parse_duration;
use berth_api::serving::BindAddress;
use berth_apiserver::limits::ConnectionLimits;
use berth_apiserver::serve::{self, parse_addr};
use berth_apiserver::write_queue::WriteLimit;
use clap::{Parser, ValueEnum};

/// Berth's HTTPS lease API. Leases are BerthLease objects: every acquire,
/// renew and release is a conditional status write, so replicas can run side by side.
#[derive(Parser, Debug)]
#[command(name = "apiserver", version)]
struct Args {
    /// Address of the HTTPS API listener; `:PORT` means every IPv4 interface.
    #[arg(long, default_value = ":8443", value_parser = parse_addr)]
    listen_addr: SocketAddr,
    /// PEM certificate chain served on --listen-addr (TLS 1.2+ only).
    #[arg(long)]
    tls_cert_file: PathBuf,
    /// PEM private key of --tls-cert-file.
    #[arg(long)]
    tls_key_file: PathBuf,
    /// Kubeconfig to reach kube-apiserver; omit it in a cluster (then KUBECONFIG or the in-cluster config is used).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Plain-HTTP address serving Prometheus metrics (OpenMetrics text) at
    /// /metrics: HOST:PORT, :PORT (every IPv4 interface), or 0 to disable.
    #[arg(long, default_value = ":8080")]
    metrics_bind_address: BindAddress,
    /// Plain-HTTP address serving /healthz and /readyz: HOST:PORT, :PORT
    /// (every IPv4 interface), or 0 to disable.
    #[arg(long, default_value = ":8081")]
    health_probe_bind_address: BindAddress,
    /// File of `<tenant>:<sha256-hex-of-key>[:<ns>,<ns>…]` lines; reloaded when it changes.
    #[arg(long, required_unless_present = "authentication_config")]
    api_keys_file: Option<PathBuf>,
    /// Authentication configuration (YAML, docs/auth.md): JWT issuers whose
    /// tokens are checked offline (member clusters' service-account tokens),
    /// TokenReview against this cluster, and how their users map to tenants
    /// and namespaces. Reloaded when it changes; a bad version keeps the old one.
    #[arg(long)]
    authentication_config: Option<PathBuf>,
    /// Serve only this namespace; repeat for several. Default: all namespaces.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Most requests writing to kube-apiserver at once; further acquires,
    /// renews and releases that must write queue for a slot. Each write costs
    /// kube-apiserver about 3 ms of CPU, so 32 already keep two cores busy:
    /// more only queues inside kube-apiserver.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_writes: u32,
    /// Most requests waiting for a write slot. A request that finds this many
    /// waiting is answered 503 at once, with nothing written and
    /// a random `Retry-After` (renews and releases: within the first half of
    /// the holder's tenure left; acquires: 5 to 10 s). Renews
    /// and releases get slots before acquires, and take the place of a
    /// waiting acquire when the queue is full. 0: shed whatever finds no free
    /// slot.
    #[arg(long, default_value_t = 64)]
    max_queued_writes: u32,
    /// Longest a client may take to finish the TLS handshake on
    /// --listen-addr before its connection is closed (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: std::time::Duration,
    /// Longest a client may take to send a request's headers (also the
    /// longest an idle keep-alive connection stays open) before its
    /// connection is closed: a slow client cannot hold a connection forever.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: std::time::Duration,
    /// Most connections open at once on --listen-addr; past it, new
    /// connections are closed at once, so that slow or greedy clients cannot
    /// use up the process's file descriptors.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Log lines as JSON objects (the default, as the operator's) or as text.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Log filter: a level (`info`, `debug`…) or tracing directives (`berth_apiserver=debug,kube=warn`).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).context("--log-level")?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => logs.init(),
    }
    serve::run(serve::Config {
        listen_addr: args.listen_addr,
        tls_cert_file: args.tls_cert_file,
        tls_key_file: args.tls_key_file,
        kubeconfig: args.kubeconfig,
        metrics_addr: args.metrics_bind_address.0,
        health_addr: args.health_probe_bind_address.0,
        api_keys_file: args.api_keys_file,
        authentication_config: args.authentication_config,
        namespaces: args.namespaces,
        write_limit: WriteLimit {
            max_concurrent: args.max_concurrent_writes as usize,
            max_queued: args.max_queued_writes as usize,
        },
        connection_limits: ConnectionLimits {
            tls_handshake_timeout: args.tls_handshake_timeout,
            header_read_timeout: args.header_read_timeout,
            max_connections: args.max_connections as usize,
        },
    })
    .await
    .context("apiserver")
}
