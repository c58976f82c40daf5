//! `apiserver`: serves Berth's lease API over HTTPS. See `--help`.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use berth_apiserver::serve::{self, parse_addr};
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
    /// Plain-HTTP address serving Prometheus metrics at /metrics.
    #[arg(long, default_value = ":8080", value_parser = parse_addr)]
    metrics_bind_address: SocketAddr,
    /// Plain-HTTP address serving /healthz and /readyz.
    #[arg(long, default_value = ":8081", value_parser = parse_addr)]
    health_probe_bind_address: SocketAddr,
    /// File of `<tenant>:<sha256-hex-of-key>[:<ns>,<ns>…]` lines; reloaded when it changes.
    #[arg(long)]
    api_keys_file: PathBuf,
    /// Serve only this namespace; repeat for several. Default: all namespaces.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Log line format.
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
        metrics_addr: args.metrics_bind_address,
        health_addr: args.health_probe_bind_address,
        api_keys_file: args.api_keys_file,
        namespaces: args.namespaces,
    })
    .await
    .context("apiserver")
}
