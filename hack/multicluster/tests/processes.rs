//! Exclusivity judged where users feel it: on the workload's processes, on
//! real nodes. Two member clusters, each with a node, hold one global lease;
//! the target is a CronJob whose Job runs until it is stopped, or a
//! Deployment, and every process of it records its life to one file the
//! nodes share ([`berth_multicluster::processes`]). A fence that only
//! suspends the CronJob lets the cut-off member's Job run on while the other
//! member's CronJob starts its own: two clusters' processes at once.

use std::path::Path;
use std::time::Duration;

use berth_multicluster::processes::{Life, handover, lives, overlaps, parse};
use berth_multicluster::stack::{Config, Stack, Target};
use berth_testenv::eventually;
use berth_testenv::proxy::Mode;

/// Hundredths of a second since boot: the clock of the workload's history.
fn uptime() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    let seconds = text.split_whitespace().next().unwrap();
    let (whole, hundredths) = seconds.split_once('.').unwrap();
    whole.parse::<u64>().unwrap() * 100 + hundredths.parse::<u64>().unwrap()
}

fn read_lives(file: &Path) -> Vec<Life> {
    lives(&parse(&std::fs::read_to_string(file).unwrap_or_default()).expect("the history parses"))
}

#[tokio::test]
async fn a_cut_off_members_running_job_ends_before_the_next_holder_starts_one() {
    cut_off_runner_stops_before_the_next_starts(Target::CronJob, "processes-cron").await;
}

#[tokio::test]
async fn a_cut_off_members_deployment_pods_end_before_the_next_holders_start() {
    cut_off_runner_stops_before_the_next_starts(Target::Deployment, "processes-deploy").await;
}

/// Cuts the member that runs the target off from the Berth apiserver, waits
/// until the other member's workload runs, and judges the processes.
async fn cut_off_runner_stops_before_the_next_starts(target: Target, prefix: &str) {
    let dir = std::env::temp_dir().join(format!("berth-history-{prefix}-{}", std::process::id()));
    let file = dir.join("history");
    let config = Config {
        members: vec!["proc-east".into(), "proc-west".into()],
        target,
        ttl_seconds: 20,
        heartbeat_seconds: 5,
        processes: Some(dir.clone()),
        ..Config::new()
    };
    let stack = Stack::start(config, prefix).await;

    // The holder's CronJob fires on the minute and its Job runs on; or its
    // Deployment is scaled up and its pod runs on.
    let first = eventually("a workload process starts", Duration::from_secs(180), || async {
        read_lives(&file).first().map(|life| life.cluster.clone())
    })
    .await;
    let other = stack.members.iter().map(|m| m.id.clone()).find(|id| *id != first).unwrap();

    // Cut the runner off from the Berth apiserver: it fences, the global
    // lease expires, and the other member acquires and starts its own Job.
    stack.member(&first).set_link(Mode::Blackhole);
    let cut = uptime();
    let started = eventually(&format!("a process of {other} starts"), Duration::from_secs(240), || async {
        read_lives(&file).iter().find(|l| l.cluster == other && l.start >= cut).map(|l| l.start)
    })
    .await;
    // One more beat of it, so that the history covers the handover.
    eventually("the new process beats", Duration::from_secs(30), || async {
        read_lives(&file).iter().any(|l| l.cluster == other && l.start == started && l.end > started + 20).then_some(())
    })
    .await;

    let lives = read_lives(&file);
    let (last_old, first_new) = handover(&lives, &first, &other, cut);
    println!(
        "{target:?}: cut at {cut}; last process of {first} ended at {last_old:?}; first of {other} started at {first_new:?} \
         (hundredths of a second since boot)"
    );
    let found = overlaps(&lives);
    assert!(found.is_empty(), "processes of two clusters ran at once: {found:#?}\n{}", stack.logs());
    let _ = std::fs::remove_dir_all(&dir);
}
