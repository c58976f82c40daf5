//! Target writes in flight, so that the writes that follow a target step
//! (the pod list that follows its stop, the status write) wait for them.
//!
//! In a burst of expiries every reconcile writes its target, then lists its
//! pods and writes the status. Without this gate the early reconciles'
//! lists and status writes compete in kube-apiserver with the later
//! reconciles' target writes. Before it (and the fix in `own_writes.rs`),
//! the last targets of a burst of 200 stopped 2.56× later than the same
//! writes sent alone; after both, 0.37× to 1.37× in three runs of one day
//! (docs/benchmarks.md, section 3 and the notes after it).
//! Stopping every target first also orders the burst as a handover wants
//! it: the old workload stops before the lease is written free.

use std::time::Duration;

use tokio::sync::watch;

/// How long the writes after a target step wait for other target writes at
/// most: a gate, not a queue that could hold a status write back for long.
const WAIT_BOUND: Duration = Duration::from_secs(1);

/// A count of target writes in flight.
#[derive(Debug)]
pub struct TargetWrites(watch::Sender<usize>);

impl Default for TargetWrites {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl TargetWrites {
    /// Counts one target write until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.0.send_modify(|n| *n += 1);
        InFlight(&self.0)
    }

    /// Returns once no target write is in flight, or after [`WAIT_BOUND`].
    pub async fn sent(&self) {
        let mut count = self.0.subscribe();
        let _ = tokio::time::timeout(WAIT_BOUND, count.wait_for(|n| *n == 0)).await;
    }
}

/// One target write in flight.
pub struct InFlight<'a>(&'a watch::Sender<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_writes_in_flight_and_no_longer_than_the_bound() {
        let writes = TargetWrites::default();
        let start = tokio::time::Instant::now();
        writes.sent().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "nothing in flight: no wait");

        let first = writes.start();
        let second = writes.start();
        let waiting = writes.sent();
        tokio::pin!(waiting);
        tokio::select! {
            () = &mut waiting => panic!("returned with two writes in flight"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        drop(first);
        tokio::select! {
            () = &mut waiting => panic!("returned with one write in flight"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        drop(second);
        waiting.await;
        assert_eq!(start.elapsed(), Duration::from_millis(200), "returned as the last write ended");

        let _hung = writes.start();
        let start = tokio::time::Instant::now();
        writes.sent().await;
        assert_eq!(start.elapsed(), WAIT_BOUND, "a hung write holds the others back for the bound only");
    }
}
