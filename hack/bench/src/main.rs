//! `berth-bench`: runs Berth's benchmarks (docs/benchmarks.md) against the local control
//! plane and writes `benchmarks.md` and `benchmarks.json`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_bench::procfs::{Machine, load_average};
use berth_bench::profile::Profile;
use berth_bench::report::{FailedScenario, Report, Versions};
use berth_bench::stack::Stack;
use berth_bench::{auth, expiry, failover, hot_path, memory, overload, scale, write_cost};
use clap::{Parser, Subcommand, ValueEnum};

/// Berth's load generator and benchmark harness.
///
/// `run` uses the control plane of `berth-testenv` (state directory
/// `BERTH_TEST_CONTROL_PLANE_DIR`, started when it is not running) and the
/// binaries named by `BERTH_APISERVER_BIN` and `BERTH_OPERATOR_BIN`. `make
/// bench` sets all three and builds release binaries first.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write benchmarks.md and benchmarks.json.
    Run(RunArgs),
    /// Render benchmarks.md again from a benchmarks.json (after editing
    /// hack/bench/notes.md, or the tables' code), re-judging the goals.
    Render {
        /// The benchmarks.json of a run.
        #[arg(long, default_value = "docs/benchmarks.json")]
        json: PathBuf,
        /// Where to write both files.
        #[arg(long, default_value = "docs")]
        out_dir: PathBuf,
    },
    /// Hold one lease with a default LeaseKeeper until killed (the crashing
    /// holder of the failover scenario). Prints `held <token>` once it holds.
    /// The key comes from BERTH_BENCH_API_KEY.
    #[command(hide = true)]
    Hold(HoldArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Tiny counts and short times: checks that the harness works, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Where to write benchmarks.md and benchmarks.json.
    #[arg(long, default_value = "docs")]
    out_dir: PathBuf,
    /// Run only these scenarios (repeat or comma-separate). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1: renew through Berth against one raw conditional status write.
    HotPath,
    /// 4: crash and graceful handover between LeaseKeepers.
    Failover,
    /// 3: expiresAt to expired status and to a suspended CronJob.
    Expiry,
    /// 2: the knee side by side: stepped lease counts at a 10 s heartbeat,
    /// through Berth and as raw status writes; latency, CPU and memory.
    Scale,
    /// 5: memory of the apiserver and the operator with 10,000 leases cached.
    Memory,
    /// 6: renew with an API key, a JWT, and TokenReview on a cache hit and a miss.
    Auth,
    /// 7: kube-apiserver and etcd CPU-ms per write (Berth renew, raw
    /// replace_status, server-side apply, a minimal Lease), and what a renew rewrites.
    WriteCost,
    /// 8: 1.2× and 2× the knee's load with keeper-like holders (the knee from
    /// this run's scale search, else the profile's).
    Overload,
}

#[derive(clap::Args)]
struct HoldArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    ca_file: PathBuf,
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    holder: String,
    #[arg(long)]
    ttl_seconds: u64,
    /// Release and exit after this many seconds at the latest.
    #[arg(long, default_value_t = 300)]
    max_hold_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let work = async {
        match Args::parse().command {
            Cmd::Run(args) => run(args).await,
            Cmd::Hold(args) => hold(args).await,
            Cmd::Render { json, out_dir } => {
                let mut report = Report::read(&json)?;
                report.judge();
                report.write(&out_dir)?;
                Ok(())
            }
        }
    };
    // On SIGINT or SIGTERM the work is dropped, and with it the stack: the
    // apiserver and operator children are killed, none is left behind.
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = terminate.recv() => anyhow::bail!("terminated"),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    for env in ["BERTH_APISERVER_BIN", "BERTH_OPERATOR_BIN"] {
        let path = std::env::var_os(env).with_context(|| format!("{env} must name the binary to benchmark"))?;
        anyhow::ensure!(PathBuf::from(&path).exists(), "{env}={} does not exist", PathBuf::from(path).display());
    }
    let profile = if args.quick { Profile::quick() } else { Profile::full() };
    let wanted = |s: Scenario| args.scenario.is_empty() || args.scenario.contains(&s);
    let started = Instant::now();
    let date = chrono::Utc::now();
    let load_average_start = load_average();
    let mut stack = Stack::start().await.context("starting the stack")?;
    let versions = Versions::read(&stack.kube).await;

    // Memory and scale run late, each on fresh apiserver and operator
    // processes: their thousands of leases would weigh on the others.
    // Overload runs last, on the scale search's processes and knee.
    let mut failed = Vec::new();
    let hot_path = attempt(wanted(Scenario::HotPath), "hot path", hot_path::run(&stack, &profile), &mut failed).await;
    let write_cost =
        attempt(wanted(Scenario::WriteCost), "write cost", write_cost::run(&stack, &profile), &mut failed).await;
    let auth = attempt(wanted(Scenario::Auth), "authentication cost", auth::run(&stack, &profile), &mut failed).await;
    let failover = attempt(wanted(Scenario::Failover), "failover", failover::run(&stack, &profile), &mut failed).await;
    let expiry = attempt(wanted(Scenario::Expiry), "expiry", expiry::run(&stack, &profile), &mut failed).await;
    let memory = attempt(wanted(Scenario::Memory), "memory", memory::run(&mut stack, &profile), &mut failed).await;
    let scale = attempt(wanted(Scenario::Scale), "scale", scale::run(&mut stack, &profile), &mut failed).await;
    let knee = scale.as_ref().map(|s| s.max_leases_holding);
    let overload =
        attempt(wanted(Scenario::Overload), "overload", overload::run(&stack, &profile, knee), &mut failed).await;

    let mut report = Report {
        date,
        duration_seconds: started.elapsed().as_secs_f64(),
        machine: Machine::read(),
        load_average_start,
        load_average_end: load_average(),
        versions,
        profile,
        hot_path,
        scale,
        expiry,
        failover,
        memory,
        auth,
        write_cost,
        overload,
        failed,
        goals: Vec::new(),
    };
    report.judge();
    report.write(&args.out_dir).context("writing the report")?;
    eprintln!("[bench] wrote {}/benchmarks.md and benchmarks.json", args.out_dir.display());
    drop(stack);
    let failed: Vec<&str> = report.failed.iter().map(|f| f.scenario.as_str()).collect();
    anyhow::ensure!(failed.is_empty(), "{} scenario(s) failed: {}", failed.len(), failed.join(", "));
    Ok(())
}

/// Runs one scenario when it is wanted (`work` is not polled otherwise). A
/// failure is recorded (and reported, and makes the run exit non-zero at the
/// end) instead of throwing away the figures of the scenarios that did finish.
async fn attempt<T>(
    wanted: bool,
    scenario: &str,
    work: impl std::future::Future<Output = berth_bench::Result<T>>,
    failed: &mut Vec<FailedScenario>,
) -> Option<T> {
    if !wanted {
        return None;
    }
    eprintln!("[bench] {scenario}");
    match work.await {
        Ok(result) => Some(result),
        Err(error) => {
            eprintln!("[bench] {scenario} failed: {error}");
            failed.push(FailedScenario { scenario: scenario.to_owned(), error: error.to_string() });
            None
        }
    }
}

async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    let key = std::env::var("BERTH_BENCH_API_KEY").context("BERTH_BENCH_API_KEY")?;
    let client = berth_client::Client::builder(args.url).api_key(key).ca_file(&args.ca_file)?.build()?;
    let options =
        berth_client::KeeperOptions::new(args.namespace, args.name, args.holder, Duration::from_secs(args.ttl_seconds));
    failover::hold(client, options, Duration::from_secs(args.max_hold_seconds)).await?;
    Ok(())
}
