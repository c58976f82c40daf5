//! `make chaos-clusters`: the soak across clusters (`berth_multicluster::soak`).
//! Prints the faults, the failovers and the overlaps found; exits 1 when a
//! cluster ran at the same time as another.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_multicluster::soak;
use berth_multicluster::stack::{Config, Target};
use clap::Parser;

/// Random partitions (blackhole, reset, answers later than the TTL), Berth
/// apiserver pauses and member operator kills against a coordination plane
/// and members east and west (with `--nodes`, proc-east and proc-west, each
/// with a node); the members' watch histories, and on nodes the workload's
/// processes, are checked for overlaps.
#[derive(Parser, Debug)]
struct Args {
    /// How long faults are injected: `90s`, `10m`, `1h` (plain numbers are seconds).
    #[arg(long, default_value = "10m", value_parser = berth_api::duration::parse)]
    duration: Duration,
    /// The member leases' TTL (the heartbeat is 1 s). Not with `--nodes`.
    #[arg(long, default_value_t = 4, conflicts_with = "nodes")]
    ttl_seconds: u64,
    /// Members with real nodes, whose Deployment's processes record their
    /// lives, judged too (TTL 20 s, heartbeat 5 s, stop budget 10 s).
    #[arg(long)]
    nodes: bool,
    /// Seeds the faults' random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the control planes live, one subdirectory each (stopped after).
    #[arg(long, default_value = ".run/chaos-clusters")]
    clusters_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clusters_dir = std::env::current_dir().context("the working directory")?.join(&args.clusters_dir);
    let config = if args.nodes {
        let history = clusters_dir.join(format!("history-{}", std::process::id()));
        Config { clusters_dir: clusters_dir.clone(), ..Config::on_nodes(Target::Deployment, history) }
    } else {
        Config { ttl_seconds: args.ttl_seconds, clusters_dir: clusters_dir.clone(), ..Config::new() }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let report = tokio::spawn(soak::run(config.clone(), args.duration, seed)).await;
    config.stop_planes();
    let report = report.context("the soak panicked")?;
    print!("{report}");
    if !report.passed() {
        bail!("clusters overlapped");
    }
    Ok(())
}
