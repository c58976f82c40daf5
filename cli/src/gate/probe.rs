//! What the gate tells kubelet, through a file and `berth gate probe` as an
//! exec probe: a file needs no port, so the gate works with `hostNetwork`
//! pods and several gated pods on one node, and its answer turns false at
//! the fence by the clock even if the gate itself hangs.
//!
//! The file holds one line: `held <unix ms>` (ready until that instant),
//! `waiting`, or `stopping`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// What the gate last published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Waiting for the lease: the app must not start.
    Waiting,
    /// Held: the app may run until this many milliseconds after the epoch.
    Held { until_ms: u128 },
    /// The app is being stopped.
    Stopping,
}

impl Published {
    /// Held until `until` on the monotonic clock, as a wall-clock instant.
    pub fn held_until(until: Instant) -> Self {
        let left = until.saturating_duration_since(Instant::now());
        Self::Held { until_ms: (SystemTime::now() + left).duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() }
    }

    fn line(self) -> String {
        match self {
            Self::Waiting => "waiting".to_owned(),
            Self::Held { until_ms } => format!("held {until_ms}"),
            Self::Stopping => "stopping".to_owned(),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        match line.trim().split_once(' ') {
            Some(("held", ms)) => ms.parse().ok().map(|until_ms| Self::Held { until_ms }),
            None if line.trim() == "waiting" => Some(Self::Waiting),
            None if line.trim() == "stopping" => Some(Self::Stopping),
            _ => None,
        }
    }

    /// Whether the app may run at `now_ms` (milliseconds after the epoch).
    fn ready_at(self, now_ms: u128) -> bool {
        matches!(self, Self::Held { until_ms } if now_ms < until_ms)
    }
}

/// Writes `published` to `path` whole (a write to a temporary file, then a rename).
pub fn publish(path: &Path, published: Published) -> Result<(), String> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, published.line() + "\n")
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("writing the gate's state to {}: {e}", path.display()))
}

/// The probe: `Ok` while the gate holds the lease and its fence has not
/// come, otherwise why not.
pub fn probe(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("no gate state at {}: {e}", path.display()))?;
    let published = Published::parse(&text).ok_or_else(|| format!("unreadable gate state: {text:?}"))?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    if published.ready_at(now_ms) { Ok(()) } else { Err(format!("the lease is not held ({})", published.line())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for published in [Published::Waiting, Published::Stopping, Published::Held { until_ms: 1_700_000_000_123 }] {
            assert_eq!(Published::parse(&published.line()), Some(published));
        }
        assert_eq!(Published::parse("held soon"), None);
        assert_eq!(Published::parse(""), None);
    }

    #[test]
    fn ready_only_while_held_and_before_the_fence() {
        assert!(Published::Held { until_ms: 1_000 }.ready_at(999));
        assert!(!Published::Held { until_ms: 1_000 }.ready_at(1_000), "at the fence the app must not run");
        assert!(!Published::Waiting.ready_at(0));
        assert!(!Published::Stopping.ready_at(0));
    }

    #[test]
    fn the_probe_reads_what_the_gate_published() {
        let path = std::env::temp_dir().join(format!("berth-gate-probe-{}", std::process::id()));
        assert!(probe(&path).is_err(), "no file: not ready");
        publish(&path, Published::held_until(Instant::now() + Duration::from_secs(60))).unwrap();
        assert_eq!(probe(&path), Ok(()));
        publish(&path, Published::Stopping).unwrap();
        assert!(probe(&path).unwrap_err().contains("stopping"));
        let _ = std::fs::remove_file(&path);
    }
}
