//! `make chaos`: one chaos run of the given duration (see `docs/chaos.md`).
//! Prints the operations performed, the faults injected and the violations
//! found; exits 1 when there is a violation.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_chaos::run::{Config, load_history, run};
use berth_chaos::{check, closest};
use clap::Parser;

/// Berth's chaos check: 3 apiserver replicas and an operator on a control
/// plane of its own, contenders competing for at-most-once leases with
/// `LeaseKeeper`, faults injected throughout, and the history checked.
#[derive(Parser, Debug)]
struct Args {
    /// How long faults are injected: `90s`, `10m`, `1h` (plain numbers are seconds).
    #[arg(long, default_value = "10m", value_parser = berth_api::duration::parse)]
    duration: Duration,
    /// Contender processes, spread over the 3 apiserver replicas.
    #[arg(long, default_value_t = 20)]
    contenders: usize,
    /// At-most-once leases they compete for.
    #[arg(long, default_value_t = 5)]
    leases: usize,
    /// The TTL every contender asks for (the keeper's default margin: a tenth of it, at least 250 ms).
    #[arg(long, default_value_t = 4)]
    ttl_seconds: u64,
    /// Seeds the contenders' and the faults' random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The control plane's state directory (started fresh, stopped after).
    #[arg(long, default_value = ".run/chaos-control-plane")]
    control_plane_dir: PathBuf,
    /// Where the histories, logs, snapshots and report.txt go.
    #[arg(long, default_value = ".run/chaos")]
    run_dir: PathBuf,
    /// Run nothing: check the history already recorded in --run-dir again.
    #[arg(long)]
    check_only: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.check_only {
        let history = load_history(&args.run_dir)?;
        let violations = check(&history);
        println!("operations: {}", history.operations());
        println!("{}", closest(&history));
        println!("violations: {}", violations.len());
        for violation in &violations {
            println!("  {violation}");
        }
        if !violations.is_empty() {
            bail!("{} violations", violations.len());
        }
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    let contender_bin = exe.with_file_name("contender");
    let absolute = |p: PathBuf| if p.is_absolute() { Ok(p) } else { std::env::current_dir().map(|d| d.join(p)) };
    let mut config =
        Config::new(args.duration, absolute(args.control_plane_dir)?, absolute(args.run_dir)?, contender_bin);
    config.contenders = args.contenders;
    config.leases = args.leases;
    config.ttl_seconds = args.ttl_seconds;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let outcome = run(&config)?;
    print!("{outcome}");
    if !outcome.violations.is_empty() {
        bail!("{} violations", outcome.violations.len());
    }
    Ok(())
}
