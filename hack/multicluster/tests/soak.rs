//! Short soaks across clusters (`make chaos-clusters` runs them long, with
//! `NODES=1` on nodes): random partitions, apiserver pauses and operator
//! restarts, and no overlap, of the targets and of the processes on nodes.

use std::time::Duration;

use berth_multicluster::soak;
use berth_multicluster::stack::{Config, Target};

#[tokio::test]
async fn a_short_soak_finds_no_overlap() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let report = soak::run(Config::new(), Duration::from_secs(45), seed).await;
    eprint!("{report}");
    assert!(report.faults.len() >= 2, "faults were injected: {report}");
    assert!(report.starts >= 2, "the first fault hands the target over: {report}");
    assert!(report.overlaps.is_empty(), "{report}");
}

#[tokio::test]
async fn a_short_soak_on_nodes_finds_no_process_overlap() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let dir = std::env::temp_dir().join(format!("berth-history-soak-{}", std::process::id()));
    // Shorter timings than the long soak's, so that a minute sees several faults.
    let config = Config {
        ttl_seconds: 10,
        heartbeat_seconds: 2,
        stop_seconds: 4,
        drain_seconds: 2,
        ..Config::on_nodes(Target::Deployment, dir.clone())
    };
    let report = soak::run(config, Duration::from_secs(60), seed).await;
    eprint!("{report}");
    let (lives, overlaps) = report.processes.as_ref().expect("judged on processes");
    assert!(report.faults.len() >= 2, "faults were injected: {report}");
    assert!(
        lives.iter().map(|l| &l.cluster).collect::<std::collections::BTreeSet<_>>().len() == 2,
        "both ran: {report}"
    );
    assert!(overlaps.is_empty() && report.overlaps.is_empty(), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
