//! One fault against the member that runs the workload, on real processes,
//! judged on them: the process-level tests run each scenario once, and
//! `process-failover` runs them again and again for the figures.

use std::path::PathBuf;
use std::time::Duration;

use berth_testenv::eventually;
use berth_testenv::proxy::Mode;

use crate::processes::{Life, Overlap, overlaps, read_lives, uptime};
use crate::stack::{Config, Stack, Target};

/// What happens to the member whose workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its link to the Berth apiserver drops every packet.
    Blackhole,
    /// Its link to the Berth apiserver resets every connection.
    Reset,
    /// The Berth apiserver is SIGSTOPped, for every member, for longer than the TTL.
    ApiserverPause,
    /// Its operator is SIGKILLed and started again.
    OperatorRestart,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Blackhole, Fault::Reset, Fault::ApiserverPause, Fault::OperatorRestart];

    /// Whether the fault ends the runner's tenure (else the workload runs on).
    pub fn fences(self) -> bool {
        self != Fault::OperatorRestart
    }
}

/// What one scenario did, in hundredths of a second since boot.
#[derive(Debug)]
pub struct Outcome {
    pub target: Target,
    pub fault: Fault,
    /// The member whose workload ran when the fault began.
    pub runner: String,
    pub cut: u64,
    /// When the history was last read.
    pub observed: u64,
    /// The runner's processes that were live at the cut.
    pub old: Vec<Life>,
    /// The first process started after the cut (on any member), if one did.
    pub first_new: Option<Life>,
    pub overlaps: Vec<Overlap>,
    /// The runner's lease's `status.target.stoppedAt`, once its processes ended.
    pub stopped_at: Option<String>,
    /// The last lines of every log, for a failure message.
    pub logs: String,
}

impl Outcome {
    /// When the last of the runner's processes live at the cut ended; `None`
    /// when one still ran at the last reading (it beat within half a second).
    pub fn last_old_end(&self) -> Option<u64> {
        let over = |l: &Life| l.ended || l.end + 50 < self.observed;
        self.old.iter().all(over).then(|| self.old.iter().map(|l| l.end).max()).flatten()
    }

    /// Whether every process of the runner live at the cut recorded its own
    /// end: it finished within its grace period instead of being killed.
    pub fn all_old_ended_gracefully(&self) -> bool {
        self.old.iter().all(|l| l.ended)
    }
}

/// A fresh history directory for a scenario named `prefix`.
pub fn history_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("berth-history-{prefix}-{}", std::process::id()))
}

/// Starts a stack on nodes (`config` as [`Config::on_nodes`] makes it),
/// waits until one member's workload runs in full, applies `fault` to it,
/// and waits until the next process starts (or, for a restart, until the
/// tenure was renewed twice by the new operator).
///
/// # Panics
/// When `config` has no history directory, or a step does not happen.
pub async fn run(config: Config, fault: Fault, prefix: &str) -> Outcome {
    let dir = config.processes.clone().expect("a history directory");
    let file = dir.join("history");
    let target = config.target;
    let replicas = match target {
        Target::CronJob => 1,
        Target::Deployment | Target::GatedPods => config.replicas as usize,
    };
    let mut stack = Stack::start(config, prefix).await;

    // The holder's CronJob fires on the minute and its Job runs on; or its
    // Deployment is scaled up and its pods run.
    let runner = eventually("the workload runs in full", Duration::from_secs(180), || async {
        let lives = read_lives(&file);
        let first = lives.first()?.cluster.clone();
        (lives.iter().filter(|l| l.cluster == first).count() >= replicas).then_some(first)
    })
    .await;

    let cut = uptime();
    let stopped_at = match fault {
        Fault::Blackhole | Fault::Reset => {
            let mode = if fault == Fault::Blackhole { Mode::Blackhole } else { Mode::Reset };
            stack.member(&runner).set_link(mode);
            started_after(&file, cut, |l| l.cluster != runner).await;
            let stopped_at = if target.records_stop() { recorded_stop(&stack, &runner).await } else { None };
            stack.member(&runner).set_link(Mode::Pass);
            stopped_at
        }
        Fault::ApiserverPause => {
            stack.pause_apiserver(true);
            // The runner fences and its processes end; no member can acquire.
            eventually("the runner's processes end", Duration::from_secs(120), || async {
                let now = uptime();
                // Ended, or silent for a second (killed without an end).
                let over = |l: &Life| l.ended || l.end + 100 < now;
                read_lives(&file).iter().filter(|l| l.cluster == runner).all(over).then_some(())
            })
            .await;
            // Past the TTL: the coordination operator expires the tenure.
            let ttl = stack.config.ttl();
            eventually("the global lease expires", ttl * 3, || async {
                stack.global.history().last().is_some_and(|(_, holders)| holders.is_empty()).then_some(())
            })
            .await;
            // Before the Berth apiserver answers again: the runner may hold anew.
            let stopped_at = if target.records_stop() { recorded_stop(&stack, &runner).await } else { None };
            stack.pause_apiserver(false);
            started_after(&file, cut, |_| true).await;
            stopped_at
        }
        Fault::OperatorRestart => {
            let namespace = stack.namespace.clone();
            let member = stack.member_mut(&runner);
            member.kill_operator();
            member.start_operator(&namespace);
            stack.wait_heartbeats(2, Duration::from_secs(60)).await;
            stack.member(&runner).target_stopped_at(&namespace).await
        }
    };
    // One more beat of the new process, so that the history covers the handover.
    let lives = read_lives(&file);
    if let Some(new) = lives.iter().filter(|l| l.start > cut).min_by_key(|l| l.start) {
        let (cluster, pod, start) = (new.cluster.clone(), new.pod.clone(), new.start);
        eventually("the new process beats", Duration::from_secs(30), || async {
            read_lives(&file).iter().any(|l| l.cluster == cluster && l.pod == pod && l.end > start + 20).then_some(())
        })
        .await;
    }
    let (lives, observed) = (read_lives(&file), uptime());
    let old = lives.iter().filter(|l| l.cluster == runner && l.start <= cut && l.end > cut).cloned().collect();
    let first_new = lives.iter().filter(|l| l.start > cut).min_by_key(|l| l.start).cloned();
    let overlaps = overlaps(&lives);
    let logs = stack.logs();
    let outcome = Outcome { target, fault, runner, cut, observed, old, first_new, overlaps, stopped_at, logs };
    stack.delete_workloads().await;
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Waits until the runner's lease records its target stopped (its operator
/// looks every 250 ms while pods stop), and returns `stoppedAt`; `None` when
/// it has not within 30 s, for the caller to judge after the processes.
async fn recorded_stop(stack: &Stack, runner: &str) -> Option<String> {
    let namespace = stack.namespace.clone();
    let recorded = eventually("the runner records its target stopped", Duration::from_secs(60), || async {
        stack.member(runner).target_stopped_at(&namespace).await
    });
    tokio::time::timeout(Duration::from_secs(30), recorded).await.ok()
}

/// Waits until a process that `matches` started after `cut` (one that
/// started in the same hundredth was already running when the cut was read).
async fn started_after(file: &std::path::Path, cut: u64, matches: impl Fn(&Life) -> bool) -> u64 {
    eventually("a new process starts", Duration::from_secs(240), || async {
        read_lives(file).iter().find(|l| l.start > cut && matches(l)).map(|l| l.start)
    })
    .await
}
