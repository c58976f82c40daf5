//! The short chaos run of `make test`: 75 s of faults against the real stack,
//! zero violations, and evidence that real work happened. Needs the
//! `apiserver` and `operator` binaries (`cargo test --workspace` builds them;
//! with `-p berth-chaos`, run `cargo build -p berth-apiserver -p berth-operator` first).

use std::time::Duration;

use berth_chaos::run::{Config, run};

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
    assert!(ops.grants >= 30, "too few grants to mean anything: {outcome}");
    assert!(ops.renews >= 30 && ops.releases_acked >= 5 && ops.snapshots >= 100, "{outcome}");
    assert!(ops.losses_deadline >= 1, "a pause longer than the TTL must cost a lease: {outcome}");
    assert!(faults.apiserver_kills >= 3 && faults.contender_pauses >= 5, "{outcome}");
    assert_eq!(faults.kube_apiserver_restarts, 1, "{outcome}");
}
