//! `make failover-processes`: every scenario of the process-level tests
//! (`berth_multicluster::failover`), several times, on members with real
//! nodes; prints, per scenario, the overlaps found and the failover from the
//! cut to the last old process ending and to the first new one starting
//! (median and max). Exits 1 when processes of two clusters overlapped.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_multicluster::failover::{self, Fault};
use berth_multicluster::stack::{Config, Target};
use clap::Parser;

/// Blackhole, reset, a paused Berth apiserver and a member operator restart,
/// against a CronJob's long-running Job and a Deployment of 2 replicas.
#[derive(Parser, Debug)]
struct Args {
    /// Runs of each scenario.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the control planes live, one subdirectory each (stopped after).
    #[arg(long, default_value = ".run/failover-clusters")]
    clusters_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clusters_dir = std::env::current_dir().context("the working directory")?.join(&args.clusters_dir);
    let mut rows = Vec::new();
    let mut overlapped = 0;
    for target in [Target::Deployment, Target::CronJob, Target::GatedPods] {
        for fault in Fault::ALL {
            let (mut to_old_end, mut to_new_start) = (Vec::new(), Vec::new());
            let mut overlaps = 0;
            for run in 0..args.runs {
                let prefix = format!("failover-{}-{run}", format!("{target:?}{fault:?}").to_lowercase());
                let config = Config {
                    clusters_dir: clusters_dir.clone(),
                    ..Config::on_nodes(target, failover::history_dir(&prefix))
                };
                let outcome = tokio::spawn(async move { failover::run(config, fault, &prefix).await }).await;
                let outcome = outcome.context("a scenario panicked")?;
                let seconds = |at: u64| (at as f64 - outcome.cut as f64) / 100.0;
                to_old_end.extend(outcome.last_old_end().map(seconds));
                to_new_start.extend(outcome.first_new.as_ref().map(|l| seconds(l.start)));
                overlaps += outcome.overlaps.len();
                eprintln!(
                    "{target:?} {fault:?} run {run}: old ended {:?}, new started {:?}, {} overlaps",
                    outcome.last_old_end().map(seconds),
                    outcome.first_new.as_ref().map(|l| seconds(l.start)),
                    outcome.overlaps.len()
                );
            }
            overlapped += overlaps;
            rows.push(format!(
                "| {target:?} | {fault:?} | {} | {overlaps} | {} | {} |",
                args.runs,
                median_max(&mut to_old_end),
                median_max(&mut to_new_start)
            ));
        }
    }
    let planes = Config { clusters_dir, ..Config::on_nodes(Target::Deployment, PathBuf::new()) };
    planes.stop_planes();
    println!(
        "| target | fault | runs | process overlaps | cut → last old process ended (median / max) | cut → first new process started (median / max) |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    if overlapped > 0 {
        bail!("{overlapped} process overlaps");
    }
    Ok(())
}

/// `median / max` in seconds, or `-` when nothing was measured.
fn median_max(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    match (values.get(values.len() / 2), values.last()) {
        (Some(median), Some(max)) => format!("{median:.1} / {max:.1} s"),
        _ => "-".to_owned(),
    }
}
