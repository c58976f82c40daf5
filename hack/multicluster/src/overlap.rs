//! The one overlap checker of the tests across clusters: from each member's
//! watch history of its target ("running" or not, at monotonic instants of
//! the test process), the intervals in which each cluster ran, and every
//! moment two clusters ran at once.

use std::time::{Duration, Instant};

/// What a watch saw: the target is running (CronJob not suspended,
/// Deployment scaled up) or not, first observed at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub at: Instant,
    pub running: bool,
}

/// A span in which `cluster` ran its target; `end: None` while it still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub cluster: String,
    pub start: Instant,
    pub end: Option<Instant>,
}

/// Two clusters ran at once from `start` to `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub clusters: (String, String),
    pub start: Instant,
    pub end: Instant,
}

impl Overlap {
    pub fn length(&self) -> Duration {
        self.end - self.start
    }
}

/// The running intervals of one cluster's history (in the order observed).
pub fn running_intervals(cluster: &str, history: &[Observation]) -> Vec<Interval> {
    let mut intervals = Vec::new();
    let mut started: Option<Instant> = None;
    for observation in history {
        match (observation.running, started) {
            (true, None) => started = Some(observation.at),
            (false, Some(start)) => {
                intervals.push(Interval { cluster: cluster.to_owned(), start, end: Some(observation.at) });
                started = None;
            }
            _ => {}
        }
    }
    if let Some(start) = started {
        intervals.push(Interval { cluster: cluster.to_owned(), start, end: None });
    }
    intervals
}

/// Every overlap of running intervals between different clusters, with
/// still-open intervals taken to run until `now`. Touching intervals (one
/// stops at the instant the other starts) do not overlap.
pub fn overlaps(histories: &[(&str, &[Observation])], now: Instant) -> Vec<Overlap> {
    let intervals: Vec<Interval> =
        histories.iter().flat_map(|(cluster, history)| running_intervals(cluster, history)).collect();
    let mut found = Vec::new();
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.cluster == b.cluster {
                continue;
            }
            let start = a.start.max(b.start);
            let end = a.end.unwrap_or(now).min(b.end.unwrap_or(now));
            if start < end {
                found.push(Overlap { clusters: (a.cluster.clone(), b.cluster.clone()), start, end });
            }
        }
    }
    found.sort_by_key(|o| o.start);
    found
}

/// The first instant at or after `after` at which the history shows the
/// target `running` (a change to that state, or that state already holding).
pub fn first_at_or_after(history: &[Observation], after: Instant, running: bool) -> Option<Instant> {
    let before = history.iter().rev().find(|o| o.at < after);
    if before.is_some_and(|o| o.running == running) {
        return Some(after);
    }
    history.iter().find(|o| o.at >= after && o.running == running).map(|o| o.at)
}

/// Whether the history ends with the target running.
pub fn running_now(history: &[Observation]) -> bool {
    history.last().is_some_and(|o| o.running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(t0: Instant, steps: &[(u64, bool)]) -> Vec<Observation> {
        steps.iter().map(|&(ms, running)| Observation { at: t0 + Duration::from_millis(ms), running }).collect()
    }

    #[test]
    fn intervals_follow_the_changes_and_ignore_repeats() {
        let t0 = Instant::now();
        let h = history(t0, &[(0, false), (10, true), (15, true), (20, false), (30, false), (40, true)]);
        let ms = |m| t0 + Duration::from_millis(m);
        assert_eq!(
            running_intervals("east", &h),
            vec![
                Interval { cluster: "east".into(), start: ms(10), end: Some(ms(20)) },
                Interval { cluster: "east".into(), start: ms(40), end: None },
            ]
        );
        assert!(running_intervals("east", &[]).is_empty());
    }

    #[test]
    fn a_handover_without_overlap_is_clean_and_touching_is_not_overlap() {
        let t0 = Instant::now();
        let east = history(t0, &[(0, true), (100, false)]);
        let west = history(t0, &[(0, false), (100, true)]);
        let now = t0 + Duration::from_secs(1);
        assert!(overlaps(&[("east", &east), ("west", &west)], now).is_empty());
        let later = history(t0, &[(0, false), (150, true), (300, false)]);
        assert!(overlaps(&[("east", &east), ("west", &later)], now).is_empty());
    }

    #[test]
    fn overlaps_are_found_with_their_span_including_open_intervals() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let east = history(t0, &[(0, true), (100, false), (500, true)]);
        let west = history(t0, &[(0, false), (80, true), (200, false), (600, true)]);
        let found = overlaps(&[("east", &east), ("west", &west)], ms(1000));
        assert_eq!(
            found,
            vec![
                Overlap { clusters: ("east".into(), "west".into()), start: ms(80), end: ms(100) },
                Overlap { clusters: ("east".into(), "west".into()), start: ms(600), end: ms(1000) },
            ]
        );
        assert_eq!(found[0].length(), Duration::from_millis(20));
        // One cluster's own intervals never overlap each other.
        assert!(overlaps(&[("east", &east)], ms(1000)).is_empty());
    }

    #[test]
    fn three_clusters_are_compared_pairwise() {
        let t0 = Instant::now();
        let a = history(t0, &[(0, true), (50, false)]);
        let b = history(t0, &[(40, true), (60, false)]);
        let c = history(t0, &[(55, true)]);
        let found = overlaps(&[("a", &a), ("b", &b), ("c", &c)], t0 + Duration::from_millis(100));
        let pairs: Vec<_> = found.iter().map(|o| (o.clusters.0.as_str(), o.clusters.1.as_str())).collect();
        assert_eq!(pairs, vec![("a", "b"), ("b", "c")]);
    }

    #[test]
    fn first_change_after_an_instant() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let h = history(t0, &[(0, true), (100, false), (200, true)]);
        assert_eq!(first_at_or_after(&h, ms(50), false), Some(ms(100)));
        assert_eq!(first_at_or_after(&h, ms(50), true), Some(ms(50)), "already running");
        assert_eq!(first_at_or_after(&h, ms(150), true), Some(ms(200)));
        assert_eq!(first_at_or_after(&h, ms(250), false), None);
        assert!(running_now(&h));
        assert!(!running_now(&[]));
    }
}
