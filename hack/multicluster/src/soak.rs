//! The soak across clusters: on one [`Stack`], random faults for a while
//! (partitions of a member by blackhole, reset or a delay longer than the
//! TTL, the Berth apiserver SIGSTOPped, a member operator SIGKILLed and
//! restarted), each healed before the next; then the overlap checker on both
//! members' watch histories, and on nodes on the workload's processes too.
//! The goal is 0 overlaps.

use std::time::{Duration, Instant};

use berth_testenv::proxy::Mode;

use crate::overlap::{Overlap, first_at_or_after, running_intervals};
use crate::processes::{Life, Overlap as ProcessOverlap, overlaps as process_overlaps, read_lives};
use crate::stack::{Config, Stack};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Blackhole,
    Reset,
    /// Every byte held longer than the TTL: answers arrive after the safe deadline.
    LateAnswers,
    ApiserverPause,
    OperatorRestart,
}

const KINDS: [FaultKind; 5] = [
    FaultKind::Blackhole,
    FaultKind::Reset,
    FaultKind::LateAnswers,
    FaultKind::ApiserverPause,
    FaultKind::OperatorRestart,
];

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// The member it hit (the apiserver pause hits every member).
    pub member: Option<String>,
    /// Whether that member ran the target when the fault began.
    pub hit_the_runner: bool,
    pub start: Instant,
    pub end: Instant,
    /// From the fault's start until another member ran the target, when
    /// that happened while the fault lasted.
    pub failover: Option<Duration>,
}

/// What a soak did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub elapsed: Duration,
    pub faults: Vec<Fault>,
    /// Every start of a running interval, over all members.
    pub starts: usize,
    pub overlaps: Vec<Overlap>,
    /// On nodes: every process of the workload, and the instants when
    /// processes of two clusters were live at once.
    pub processes: Option<(Vec<Life>, Vec<ProcessOverlap>)>,
}

impl Report {
    /// No overlap of the targets, nor of the processes on nodes.
    pub fn passed(&self) -> bool {
        self.overlaps.is_empty() && self.processes.as_ref().is_none_or(|(_, overlaps)| overlaps.is_empty())
    }

    fn count(&self, kind: FaultKind) -> usize {
        self.faults.iter().filter(|f| f.kind == kind).count()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "soak across clusters: {} s, seed {}", self.elapsed.as_secs(), self.seed)?;
        writeln!(
            f,
            "faults: {} (blackhole {}, reset {}, late answers {}, apiserver SIGSTOP {}, operator SIGKILL+restart {})",
            self.faults.len(),
            self.count(FaultKind::Blackhole),
            self.count(FaultKind::Reset),
            self.count(FaultKind::LateAnswers),
            self.count(FaultKind::ApiserverPause),
            self.count(FaultKind::OperatorRestart)
        )?;
        let mut failovers: Vec<Duration> = self.faults.iter().filter_map(|f| f.failover).collect();
        failovers.sort();
        if let (Some(median), Some(max)) = (failovers.get(failovers.len() / 2), failovers.last()) {
            writeln!(
                f,
                "failovers during a fault: {} (median {} ms, max {} ms)",
                failovers.len(),
                median.as_millis(),
                max.as_millis()
            )?;
        }
        writeln!(f, "target starts over all members: {}", self.starts)?;
        writeln!(f, "overlaps: {}", self.overlaps.len())?;
        for overlap in &self.overlaps {
            writeln!(f, "  {} and {} for {} ms", overlap.clusters.0, overlap.clusters.1, overlap.length().as_millis())?;
        }
        if let Some((lives, overlaps)) = &self.processes {
            writeln!(f, "processes: {} lives, {} process overlaps", lives.len(), overlaps.len())?;
            for overlap in overlaps {
                let (a, b) = (&overlap.first, &overlap.second);
                let span = (overlap.end - overlap.start) * 10;
                writeln!(f, "  {}/{} and {}/{} for {span} ms", a.cluster, a.pod, b.cluster, b.pod)?;
            }
        }
        Ok(())
    }
}

/// Runs faults for `duration` on a fresh stack, then checks the histories.
pub async fn run(config: Config, duration: Duration, seed: u64) -> Report {
    let mut rng = fastrand::Rng::with_seed(seed);
    let ttl = config.ttl();
    let mut stack = Stack::start(config, "mc-soak").await;
    stack.wait_for_runner(stack.started, Duration::from_secs(90)).await;
    let began = Instant::now();
    let mut faults = Vec::new();
    while began.elapsed() < duration {
        // The first fault cuts the runner off, so every run sees a handover.
        let kind = if faults.is_empty() { FaultKind::Blackhole } else { KINDS[rng.usize(..KINDS.len())] };
        let fault = inject(&mut stack, kind, &mut rng, ttl, faults.is_empty()).await;
        eprintln!("soak: {fault:?}");
        faults.push(fault);
        // Healed: let the members settle for one to two TTLs.
        tokio::time::sleep(ttl.mul_f64(1.0 + rng.f64())).await;
    }
    // Quiet time at the end, so a late overlap would show.
    tokio::time::sleep(2 * ttl).await;
    let starts = stack.histories().iter().map(|(id, h)| running_intervals(id, h).len()).sum();
    let processes = stack.config.processes.as_ref().map(|dir| {
        let lives = read_lives(&dir.join("history"));
        let overlaps = process_overlaps(&lives);
        (lives, overlaps)
    });
    if stack.config.processes.is_some() {
        stack.delete_workloads().await;
    }
    Report { seed, elapsed: began.elapsed(), faults, starts, overlaps: stack.overlaps(), processes }
}

fn runner(stack: &Stack) -> Option<String> {
    stack.members.iter().find(|m| crate::overlap::running_now(&m.target.observations())).map(|m| m.id.clone())
}

/// Injects one fault and heals it. The `first` cuts the runner off for long
/// enough that the other member takes over.
async fn inject(stack: &mut Stack, kind: FaultKind, rng: &mut fastrand::Rng, ttl: Duration, first: bool) -> Fault {
    let running = runner(stack);
    let ids: Vec<String> = stack.members.iter().map(|m| m.id.clone()).collect();
    let (hit_runner, any) = (first || rng.f64() < 0.8, ids[rng.usize(..ids.len())].clone());
    let member = match kind {
        FaultKind::ApiserverPause => None,
        // Mostly the member that runs, sometimes the standby.
        _ => running.clone().filter(|_| hit_runner).or(Some(any)),
    };
    let hit_the_runner = member.is_some() && member == running || kind == FaultKind::ApiserverPause;
    let lasting = if first { ttl.mul_f64(3.0) } else { ttl.mul_f64(0.5 + 2.5 * rng.f64()) };
    let start = Instant::now();
    match kind {
        FaultKind::Blackhole | FaultKind::Reset | FaultKind::LateAnswers => {
            let id = member.as_deref().expect("a member");
            let mode = match kind {
                FaultKind::Blackhole => Mode::Blackhole,
                FaultKind::Reset => Mode::Reset,
                _ => Mode::Delay(ttl + Duration::from_secs(2)),
            };
            stack.member(id).set_link(mode);
            tokio::time::sleep(lasting).await;
            stack.member(id).set_link(Mode::Pass);
        }
        FaultKind::ApiserverPause => {
            stack.pause_apiserver(true);
            tokio::time::sleep(lasting).await;
            stack.pause_apiserver(false);
        }
        FaultKind::OperatorRestart => {
            let id = member.clone().expect("a member");
            let namespace = stack.namespace.clone();
            let target = stack.member_mut(&id);
            target.kill_operator();
            target.start_operator(&namespace);
        }
    }
    let end = Instant::now();
    let failover = running.as_ref().filter(|_| hit_the_runner).and_then(|old| {
        stack
            .members
            .iter()
            .filter(|m| &m.id != old)
            .filter_map(|m| first_at_or_after(&m.target.observations(), start, true))
            .filter(|at| *at <= end)
            .min()
            .map(|at| at - start)
    });
    Fault { kind, member, hit_the_runner, start, end, failover }
}
