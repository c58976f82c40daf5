//! `berth gate` on real nodes ([`berth_multicluster::gate`]): a Deployment of
//! 3 replicas in each of two member clusters, every pod gated by the sidecar
//! on one lease, runs exactly one app process at any instant, judged on the
//! processes' own history, through the holder's pod being deleted, its
//! cluster being cut off from the Berth apiserver, and a rolling update of
//! the holder's Deployment.
//!
//! Without the gate's startup probe all six apps would start at once;
//! without its stop at the fence the cut-off holder's app would run on while
//! the other cluster's pod took the lease.

use std::time::Duration;

use berth_multicluster::gate::{GateStack, STEP};
use berth_multicluster::processes::{Life, overlaps, uptime};
use berth_testenv::eventually;
use berth_testenv::proxy::Mode;

const MEMBERS: [&str; 2] = ["proc-east", "proc-west"];

/// The member and the pod of a life (its `cluster` is `<member>/<pod>`).
fn member_of(life: &Life) -> &str {
    life.cluster.split_once('/').map_or(life.cluster.as_str(), |(member, _)| member)
}

/// Waits until an app process starts after `cut`, and beats for a moment.
async fn next_app(stack: &GateStack, cut: u64, what: &str) -> Life {
    let life = eventually(what, STEP, || async { stack.lives().into_iter().find(|l| l.start > cut) }).await;
    let started = life.start;
    eventually("the new app beats", Duration::from_secs(30), || async {
        stack.lives().into_iter().find(|l| l.cluster == life.cluster && l.start == started && l.end > started + 30)
    })
    .await
}

/// The handover at `cut`: when the last app process live at the cut ended,
/// and when the next one started, in seconds after the cut.
fn report(step: &str, stack: &GateStack, cut: u64, next: &Life) {
    let lives = stack.lives();
    let old_end = lives.iter().filter(|l| l.start <= cut && l.end > cut).map(|l| l.end).max();
    let since = |at: u64| (at as f64 - cut as f64) / 100.0;
    println!(
        "{step}: last old app ended +{} s, next app ({}) started +{:.2} s after the cut",
        old_end.map_or("-".to_owned(), |at| format!("{:.2}", since(at))),
        next.cluster,
        since(next.start)
    );
}

/// The resident memory of every gate process on this machine (the nodes'
/// processes are this kernel's), as a figure.
fn report_gate_memory() {
    let mut kib: Vec<u64> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            cmdline.starts_with(b"/usr/local/bin/berth\0gate\0gated-app").then_some(())?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .collect();
    kib.sort_unstable();
    if let (Some(median), Some(max)) = (kib.get(kib.len() / 2), kib.last()) {
        println!("gate memory: {} gates, RSS median {median} KiB, max {max} KiB", kib.len());
    }
}

#[tokio::test]
async fn one_app_process_at_a_time_through_a_pod_kill_a_partition_and_a_rolling_update() {
    let dir = berth_testenv::clusters::clusters_dir();
    let stack = GateStack::start(&dir, &MEMBERS, 3, "gate").await;

    let first = next_app(&stack, 0, "one pod's app starts").await;
    println!("first app: {}", first.cluster);
    report_gate_memory();

    // The holder's pod is deleted: its app stops, then the gate releases.
    let cut = uptime();
    let (member, pod) = first.cluster.split_once('/').expect("member/pod");
    stack.delete_pod(member, pod).await;
    let second = next_app(&stack, cut, "another app starts after the holder's pod is deleted").await;
    report("pod deleted", &stack, cut, &second);

    // The holder's cluster is cut off: its gate stops the app by the safe
    // deadline; the other cluster's pods take over after the TTL.
    let cut = uptime();
    let cut_off = member_of(&second).to_owned();
    stack.set_link(&cut_off, Mode::Blackhole);
    let third = next_app(&stack, cut, "an app of the other cluster starts").await;
    stack.set_link(&cut_off, Mode::Pass);
    report("partition", &stack, cut, &third);
    assert_ne!(member_of(&third), cut_off, "a cut-off cluster's app started: {third:?}");

    // A rolling update of the holder's Deployment replaces every pod.
    let cut = uptime();
    stack.roll(member_of(&third), 1).await;
    let fourth = next_app(&stack, cut, "an app starts after the rolling update").await;
    report("rolling update", &stack, cut, &fourth);

    let lives = stack.lives();
    let found = overlaps(&lives);
    stack.delete_workloads().await;
    assert!(found.is_empty(), "two app processes ran at once: {found:#?}\n{lives:#?}");
    assert!(lives.len() >= 4, "{lives:#?}");
    for (old, new) in [(&first, &second), (&second, &third), (&third, &fourth)] {
        let old_end = lives.iter().find(|l| l.cluster == old.cluster && l.start == old.start).map(|l| l.end);
        assert!(old_end.is_some_and(|end| end <= new.start), "{old:?} did not end before {new:?} started");
    }
}
