//! The short chaos run of `make test`: 75 s of faults against the real stack,
//! zero violations, and evidence that real work happened. Then the recorded
//! history is tampered with, one rule at a time, to show that the checker
//! catches a violation in a real history. Needs the `apiserver` and
//! `operator` binaries (`cargo test --workspace` builds them; with
//! `-p berth-chaos`, run `cargo build -p berth-apiserver -p berth-operator` first).

use std::time::Duration;

use berth_chaos::check::beliefs;
use berth_chaos::history::{Mono, Snapshot, SnapshotHolder};
use berth_chaos::run::{Config, run};
use berth_chaos::{Event, History, ViolationKind, check};

#[test]
fn short_chaos_run_finds_no_violations() {
    let root = berth_testenv::repo_root();
    let config = Config::new(
        Duration::from_secs(75),
        root.join(".run/chaos-test-control-plane"),
        root.join(".run/chaos-test"),
        env!("CARGO_BIN_EXE_contender").into(),
    );
    let outcome = run(&config).expect("the chaos run runs");
    println!("{outcome}");
    assert_eq!(outcome.violations, vec![], "{outcome}");
    let (ops, faults) = (&outcome.operations, &outcome.faults);
    assert!(ops.grants >= 20, "too few grants to mean anything: {outcome}");
    assert!(ops.renews >= 30 && ops.releases_acked >= 5 && ops.snapshots >= 100, "{outcome}");
    assert!(ops.losses_deadline >= 1, "a pause longer than the TTL must cost a lease: {outcome}");
    assert!(faults.apiserver_kills >= 3 && faults.contender_pauses >= 5, "{outcome}");
    assert_eq!(faults.kube_apiserver_restarts, 1, "{outcome}");

    tampered_histories_are_caught(&outcome.history);
}

/// Two grants of one lease to different holders, the later one's index
/// last. The earlier holder believed it held its grant for at least 10 ms (a
/// grant received after its deadline, as after a pause, is never believed).
fn handover(history: &History) -> (usize, usize) {
    let beliefs = beliefs(&history.events);
    let believed = |holder: &str, lease: &str, received: Mono| {
        beliefs
            .iter()
            .any(|b| b.holder == holder && b.lease == lease && b.start == received && b.end - b.start >= 10_000_000)
    };
    let grants: Vec<(usize, &str, &str, Mono)> = history
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Grant { holder, lease, received, .. } => Some((i, holder.as_str(), lease.as_str(), *received)),
            _ => None,
        })
        .collect();
    grants
        .iter()
        .filter(|a| believed(a.1, a.2, a.3))
        .flat_map(|a| grants.iter().map(move |b| (a, b)))
        .find(|(a, b)| a.2 == b.2 && a.1 != b.1 && a.3 < b.3)
        .map(|(a, b)| (a.0, b.0))
        .expect("the run handed some lease over")
}

fn tampered_histories_are_caught(real: &History) {
    let (first, second) = handover(real);
    let Event::Grant { received: first_received, acquired_at: first_acquired, .. } = real.events[first].clone() else {
        panic!("handover() returns grants")
    };

    // The later holder believes from 1 ms after the earlier one's grant.
    let mut history = real.clone();
    if let Event::Grant { received, .. } = &mut history.events[second] {
        *received = first_received + 1_000_000;
    }
    let kinds: Vec<_> = check(&history).into_iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&ViolationKind::BeliefsOverlap), "{kinds:?}");

    // The server granted the later tenure 1 ms into the earlier one. A token
    // can be granted more than once (an idempotent re-acquire after a lost
    // answer), so every grant of it moves, or the checker only sees the reuse.
    let mut history = real.clone();
    let Event::Grant { lease: second_lease, token: second_token, .. } = real.events[second].clone() else {
        panic!("handover() returns grants")
    };
    for event in &mut history.events {
        if let Event::Grant { lease, token, acquired_at, .. } = event
            && *lease == second_lease
            && *token == second_token
        {
            *acquired_at = first_acquired.map(|t| t + chrono::Duration::milliseconds(1));
        }
    }
    let kinds: Vec<_> = check(&history).into_iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&ViolationKind::TenuresOverlap), "{kinds:?}");

    // A read after an acknowledged release still shows the token live.
    let mut history = real.clone();
    let (lease, token, acked) = history
        .events
        .iter()
        .find_map(|e| match e {
            Event::ReleaseAcked { lease, token, at_wall, .. } => Some((lease.clone(), *token, *at_wall)),
            _ => None,
        })
        .expect("the run acknowledged a release");
    let later = acked + chrono::Duration::milliseconds(50);
    history.snapshots.push(Snapshot {
        lease,
        sent: later,
        received: later,
        fencing_token: token,
        holders: vec![SnapshotHolder {
            identity: "chaos/c99".into(),
            token,
            acquired_at: later,
            expires_at: later + chrono::Duration::seconds(4),
        }],
    });
    let kinds: Vec<_> = check(&history).into_iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&ViolationKind::ReleaseLost), "{kinds:?}");
}
