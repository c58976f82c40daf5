//! A short soak across clusters (`make chaos-clusters` runs it long): random
//! partitions, apiserver pauses and operator restarts, and no overlap.

use std::time::Duration;

use berth_multicluster::soak;
use berth_multicluster::stack::Config;

#[tokio::test]
async fn a_short_soak_finds_no_overlap() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let report = soak::run(Config::new(), Duration::from_secs(45), seed).await;
    eprint!("{report}");
    assert!(report.faults.len() >= 2, "faults were injected: {report}");
    assert!(report.starts >= 2, "the first fault hands the target over: {report}");
    assert!(report.overlaps.is_empty(), "{report}");
}
