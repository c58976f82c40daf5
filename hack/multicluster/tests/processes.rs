//! Exclusivity judged where users feel it: on the workload's processes, on
//! real nodes. Two member clusters, each with a node, hold one global lease;
//! the target is a CronJob whose Job runs until it is stopped, or a
//! Deployment of 2 replicas, or no target at all and a Deployment whose pods
//! the pod gate holds back (`Target::GatedPods`), and every process of it records its life to one
//! file the nodes share ([`berth_multicluster::processes`]). The workload
//! takes 4 s to finish after SIGTERM and has a grace period of 30 s; the
//! lease's stop budget is 10 s ([`Config::on_nodes`]).
//!
//! Without a fence that reaches running Jobs, the cut-off member's Job ran on
//! while the other member's CronJob started its own; without the stop
//! budget, the fence came at the safe deadline and the old processes were
//! still finishing when the next holder's started.
//!
//! [`Config::on_nodes`]: berth_multicluster::stack::Config::on_nodes

use berth_multicluster::failover::{self, Fault, Outcome};
use berth_multicluster::stack::{Config, Target};

/// The figures of a scenario (timing is reported, never asserted), in seconds.
fn report(outcome: &Outcome) {
    let since =
        |at: Option<u64>| at.map_or("-".to_owned(), |at| format!("{:.2}", (at as f64 - outcome.cut as f64) / 100.0));
    println!(
        "{:?} {:?}: runner {}; last old process ended +{} s, first new process started +{} s after the cut",
        outcome.target,
        outcome.fault,
        outcome.runner,
        since(outcome.last_old_end()),
        since(outcome.first_new.as_ref().map(|l| l.start)),
    );
}

/// The judgement every fencing scenario shares: no two clusters' processes
/// at once, and every old process finished its work within the budget.
async fn fenced_on_time(target: Target, fault: Fault, prefix: &str) {
    let outcome = failover::run(Config::on_nodes(target, failover::history_dir(prefix)), fault, prefix).await;
    report(&outcome);
    assert!(
        outcome.overlaps.is_empty(),
        "processes of two clusters ran at once: {:#?}\n{}",
        outcome.overlaps,
        outcome.logs
    );
    assert!(!outcome.old.is_empty(), "no process ran at the cut");
    assert!(
        outcome.all_old_ended_gracefully(),
        "an old process was killed before it finished (the stop budget was not given): {:#?}\n{}",
        outcome.old,
        outcome.logs
    );
    let new = outcome.first_new.as_ref().expect("a process started after the fault");
    assert!(outcome.old.iter().all(|old| old.end <= new.start), "{outcome:#?}");
    if target.records_stop() {
        assert!(outcome.stopped_at.is_some(), "the runner did not record its target stopped\n{}", outcome.logs);
    }
}

#[tokio::test]
async fn a_cut_off_members_running_job_ends_before_the_next_holder_starts_one() {
    fenced_on_time(Target::CronJob, Fault::Blackhole, "processes-cron").await;
}

#[tokio::test]
async fn a_cut_off_members_pods_finish_within_the_budget_before_the_next_holders_start() {
    fenced_on_time(Target::Deployment, Fault::Blackhole, "processes-blackhole").await;
}

/// No target: the same Deployment runs in both members, and only the pod
/// gate decides which cluster's pods run. The cut-off member's operator
/// deletes the pods it let through, within the budget, and their
/// replacements wait at the gate; the next holder's waiting pods are let
/// through.
#[tokio::test]
async fn gated_pods_of_a_cut_off_member_stop_before_the_next_holders_are_let_through() {
    fenced_on_time(Target::GatedPods, Fault::Blackhole, "processes-gated").await;
}

#[tokio::test]
async fn a_reset_link_stops_the_pods_before_the_next_holders_start() {
    fenced_on_time(Target::Deployment, Fault::Reset, "processes-reset").await;
}

#[tokio::test]
async fn a_paused_berth_apiserver_stops_the_pods_before_anyone_holds_again() {
    fenced_on_time(Target::Deployment, Fault::ApiserverPause, "processes-pause").await;
}

#[tokio::test]
async fn a_restarted_member_operator_resumes_without_stopping_the_workload() {
    let config = Config::on_nodes(Target::Deployment, failover::history_dir("processes-restart"));
    let outcome = failover::run(config, Fault::OperatorRestart, "processes-restart").await;
    report(&outcome);
    assert!(outcome.overlaps.is_empty(), "{:#?}\n{}", outcome.overlaps, outcome.logs);
    assert_eq!(outcome.old.len(), 2, "both replicas ran at the cut: {:#?}", outcome.old);
    assert!(outcome.first_new.is_none(), "a process started anew: {:#?}\n{}", outcome.first_new, outcome.logs);
    assert!(outcome.last_old_end().is_none(), "the workload stopped: {:#?}\n{}", outcome.old, outcome.logs);
    assert!(outcome.stopped_at.is_none(), "the runner recorded a stop: {:?}", outcome.stopped_at);
}
