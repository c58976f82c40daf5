//! The checker: pure functions from a recorded [`History`] to the
//! violations it shows.
//!
//! # Guarantees
//! Each check reports only what the history proves, so a report is never a
//! false alarm on a correct system (on one machine's clocks):
//! - a **belief** runs from the grant's receipt to the earlier of the loss
//!   signal (or the start of a release) and the last local deadline the
//!   keeper published; two beliefs of one lease must not overlap
//!   (`CLOCK_MONOTONIC`);
//! - a **tenure** runs from the server's `acquiredAt` to the latest
//!   `expiresAt` anyone saw for that token (grant or store snapshot), cut at
//!   the moment a release was started that was acknowledged or may have been
//!   applied (sent, no answer); the real tenure is at least that long, so two tenures of one lease that overlap here overlapped
//!   for real (wall clock);
//! - tokens of one lease rise strictly in grant order, and one token names
//!   one grant (one holder, one `acquiredAt`); the store's `fencingToken`
//!   never goes back;
//! - after a release of token k is acknowledged, no store snapshot read
//!   later shows token k live, and no grant received later carries token k.
//!
//! # Caveats
//! A violation the history does not show is not found: a renew whose answer
//! was lost, or a store state between two snapshots, shortens what the
//! checker sees of a tenure.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::history::{Event, History, Mono};

/// What kind of rule a history broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Two contenders believed they held one lease at the same time.
    BeliefsOverlap,
    /// Two server-granted tenures of one lease overlapped.
    TenuresOverlap,
    /// A later grant of a lease carried a token no larger than an earlier one,
    /// or the store's `fencingToken` went back.
    TokenNotRising,
    /// One token of a lease was granted twice (another holder or `acquiredAt`).
    TokenReused,
    /// A token was live again after its release was acknowledged.
    ReleaseLost,
    /// A grant came without the server's `acquiredAt` and `expiresAt`.
    MissingServerTimes,
}

/// One broken rule, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub lease: String,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} on lease {}: {}", self.kind, self.lease, self.detail)
    }
}

/// Runs every check on `history`.
pub fn check(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    violations.extend(check_beliefs(&beliefs(&history.events)));
    let (tenures, mut found) = tenures(history);
    violations.append(&mut found);
    violations.extend(check_tenures(&tenures));
    violations.extend(check_store_tokens(history));
    violations.extend(check_releases(history));
    violations
}

/// How long one contender believed it held one grant (`CLOCK_MONOTONIC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Belief {
    pub holder: String,
    pub lease: String,
    pub token: i32,
    pub start: Mono,
    pub end: Mono,
}

/// The beliefs in a history: each grant, until the earlier of its end signal
/// (loss or release start) and the last deadline its keeper published.
pub fn beliefs(events: &[Event]) -> Vec<Belief> {
    let mut open: HashMap<&str, (Belief, Mono)> = HashMap::new();
    let mut done = Vec::new();
    let mut close = |belief: Belief, deadline: Mono, at: Mono| done.push(Belief { end: at.min(deadline), ..belief });
    for event in events {
        match event {
            Event::Grant { holder, lease, token, received, deadline, .. } => {
                let belief =
                    Belief { holder: holder.clone(), lease: lease.clone(), token: *token, start: *received, end: 0 };
                if let Some((previous, last)) = open.insert(holder, (belief, *deadline)) {
                    close(previous, last, *received);
                }
            }
            Event::Renewed { holder, lease, token, deadline, .. } => {
                if let Some((belief, last)) = open.get_mut(holder.as_str())
                    && belief.lease == *lease
                    && belief.token == *token
                {
                    *last = *deadline;
                }
            }
            Event::Lost { holder, lease, token, at, .. } | Event::ReleaseStarted { holder, lease, token, at, .. } => {
                let matches = open.get(holder.as_str()).is_some_and(|(b, _)| b.lease == *lease && b.token == *token);
                if matches && let Some((belief, last)) = open.remove(holder.as_str()) {
                    close(belief, last, *at);
                }
            }
            Event::ReleaseAcked { .. }
            | Event::ReleaseFailed { .. }
            | Event::Refused { .. }
            | Event::AcquireFailed { .. } => {}
        }
    }
    for (belief, last) in open.into_values() {
        close(belief, last, last);
    }
    done
}

/// No two beliefs of one lease overlap.
pub fn check_beliefs(beliefs: &[Belief]) -> Vec<Violation> {
    let mut by_lease: BTreeMap<&str, Vec<&Belief>> = BTreeMap::new();
    for belief in beliefs.iter().filter(|b| b.end > b.start) {
        by_lease.entry(&belief.lease).or_default().push(belief);
    }
    let mut violations = Vec::new();
    for (lease, mut list) in by_lease {
        list.sort_by_key(|b| (b.start, b.end));
        let mut longest: Option<&Belief> = None;
        for belief in list {
            if let Some(earlier) = longest
                && belief.start < earlier.end
            {
                violations.push(Violation {
                    kind: ViolationKind::BeliefsOverlap,
                    lease: lease.to_owned(),
                    detail: format!(
                        "{} (token {}) believed it held until {} ns, {} (token {}) from {} ns: {} ms together",
                        earlier.holder,
                        earlier.token,
                        earlier.end,
                        belief.holder,
                        belief.token,
                        belief.start,
                        (earlier.end.min(belief.end) - belief.start) / 1_000_000
                    ),
                });
            }
            if longest.is_none_or(|l| belief.end > l.end) {
                longest = Some(belief);
            }
        }
    }
    violations
}

/// A server-granted tenure as far as the history shows it (wall clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenure {
    pub lease: String,
    pub token: i32,
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    /// The latest `expiresAt` seen for this token.
    pub expires_at: DateTime<Utc>,
    /// When a release of it was started that was acknowledged or may have been applied.
    pub released: Option<DateTime<Utc>>,
}

impl Tenure {
    /// Where the tenure surely still ran: the release start, or the expiry.
    pub fn end(&self) -> DateTime<Utc> {
        self.released.map_or(self.expires_at, |r| r.min(self.expires_at))
    }
}

/// The tenures of grants and store snapshots, merged by (lease, token), and
/// the violations found while merging (a token granted twice, a grant
/// without server times).
pub fn tenures(history: &History) -> (Vec<Tenure>, Vec<Violation>) {
    let mut tenures: BTreeMap<(String, i32), Tenure> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut merge = |seen: Tenure, violations: &mut Vec<Violation>| {
        let key = (seen.lease.clone(), seen.token);
        match tenures.get_mut(&key) {
            None => {
                tenures.insert(key, seen);
            }
            Some(known) if known.holder != seen.holder || known.acquired_at != seen.acquired_at => {
                violations.push(Violation {
                    kind: ViolationKind::TokenReused,
                    lease: seen.lease.clone(),
                    detail: format!(
                        "token {} granted to {} at {} and to {} at {}",
                        seen.token, known.holder, known.acquired_at, seen.holder, seen.acquired_at
                    ),
                });
            }
            Some(known) => known.expires_at = known.expires_at.max(seen.expires_at),
        }
    };
    for event in &history.events {
        if let Event::Grant { holder, lease, token, acquired_at, expires_at, .. } = event {
            match (acquired_at, expires_at) {
                (Some(acquired_at), Some(expires_at)) => {
                    let tenure = Tenure {
                        lease: lease.clone(),
                        token: *token,
                        holder: holder.clone(),
                        acquired_at: *acquired_at,
                        expires_at: *expires_at,
                        released: None,
                    };
                    merge(tenure, &mut violations);
                }
                _ => violations.push(Violation {
                    kind: ViolationKind::MissingServerTimes,
                    lease: lease.clone(),
                    detail: format!("the grant of token {token} to {holder} has no acquiredAt or expiresAt"),
                }),
            }
        }
    }
    for snapshot in &history.snapshots {
        for h in &snapshot.holders {
            let tenure = Tenure {
                lease: snapshot.lease.clone(),
                token: h.token,
                holder: h.identity.clone(),
                acquired_at: h.acquired_at,
                expires_at: h.expires_at,
                released: None,
            };
            merge(tenure, &mut violations);
        }
    }
    for release in releases(&history.events) {
        if let Some(tenure) = tenures.get_mut(&(release.lease, release.token)) {
            tenure.released = Some(tenure.released.map_or(release.started, |r| r.min(release.started)));
        }
    }
    (tenures.into_values().collect(), violations)
}

/// A release that was acknowledged or may have been applied.
struct Release {
    lease: String,
    token: i32,
    /// When the contender started it (wall clock).
    started: DateTime<Utc>,
    /// When the server acknowledged it; `None`: sent, outcome unknown.
    acked: Option<DateTime<Utc>>,
}

/// The releases in `events` that were acknowledged or may have been applied.
fn releases(events: &[Event]) -> Vec<Release> {
    let mut started: HashMap<(&str, &str, i32), DateTime<Utc>> = HashMap::new();
    let mut releases = Vec::new();
    for event in events {
        match event {
            Event::ReleaseStarted { holder, lease, token, at_wall, .. } => {
                started.insert((holder, lease, *token), *at_wall);
            }
            Event::ReleaseAcked { holder, lease, token, at_wall, .. } => {
                let start = started.get(&(holder.as_str(), lease.as_str(), *token)).copied().unwrap_or(*at_wall);
                releases.push(Release { lease: lease.clone(), token: *token, started: start, acked: Some(*at_wall) });
            }
            Event::ReleaseFailed { holder, lease, token, maybe_applied: true, .. } => {
                if let Some(start) = started.get(&(holder.as_str(), lease.as_str(), *token)) {
                    releases.push(Release { lease: lease.clone(), token: *token, started: *start, acked: None });
                }
            }
            _ => {}
        }
    }
    releases
}

/// Per lease, in `acquiredAt` order: tenures do not overlap and tokens rise.
pub fn check_tenures(tenures: &[Tenure]) -> Vec<Violation> {
    let mut by_lease: BTreeMap<&str, Vec<&Tenure>> = BTreeMap::new();
    for tenure in tenures {
        by_lease.entry(&tenure.lease).or_default().push(tenure);
    }
    let mut violations = Vec::new();
    for (lease, mut list) in by_lease {
        list.sort_by_key(|t| (t.acquired_at, t.token));
        let mut longest: Option<&Tenure> = None;
        for pair in list.windows(2) {
            if pair[1].token <= pair[0].token {
                violations.push(Violation {
                    kind: ViolationKind::TokenNotRising,
                    lease: lease.to_owned(),
                    detail: format!(
                        "token {} ({} at {}) came after token {} ({} at {})",
                        pair[1].token,
                        pair[1].holder,
                        pair[1].acquired_at,
                        pair[0].token,
                        pair[0].holder,
                        pair[0].acquired_at
                    ),
                });
            }
        }
        for tenure in list {
            if let Some(earlier) = longest
                && tenure.acquired_at < earlier.end()
            {
                violations.push(Violation {
                    kind: ViolationKind::TenuresOverlap,
                    lease: lease.to_owned(),
                    detail: format!(
                        "token {} of {} ran until {} at least; token {} of {} was acquired at {}",
                        earlier.token,
                        earlier.holder,
                        earlier.end(),
                        tenure.token,
                        tenure.holder,
                        tenure.acquired_at
                    ),
                });
            }
            if longest.is_none_or(|l| tenure.end() > l.end()) {
                longest = Some(tenure);
            }
        }
    }
    violations
}

/// The store's `fencingToken` of each lease never goes back between snapshots.
pub fn check_store_tokens(history: &History) -> Vec<Violation> {
    let mut last: HashMap<&str, i32> = HashMap::new();
    let mut violations = Vec::new();
    for snapshot in &history.snapshots {
        let previous = last.entry(&snapshot.lease).or_insert(snapshot.fencing_token);
        if snapshot.fencing_token < *previous {
            violations.push(Violation {
                kind: ViolationKind::TokenNotRising,
                lease: snapshot.lease.clone(),
                detail: format!(
                    "the store's fencingToken went back from {previous} to {} (read at {})",
                    snapshot.fencing_token, snapshot.sent
                ),
            });
        }
        *previous = (*previous).max(snapshot.fencing_token);
    }
    violations
}

/// After a release of token k is acknowledged, nothing read or received
/// later shows token k live.
pub fn check_releases(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (lease, token, acked) in
        releases(&history.events).into_iter().filter_map(|r| Some((r.lease, r.token, r.acked?)))
    {
        let lost = |detail: String| Violation { kind: ViolationKind::ReleaseLost, lease: lease.clone(), detail };
        for snapshot in history.snapshots.iter().filter(|s| s.lease == lease && s.sent > acked) {
            if let Some(h) = snapshot.holders.iter().find(|h| h.token == token && h.expires_at > snapshot.received) {
                violations.push(lost(format!(
                    "the release of token {token} was acknowledged at {acked}; a read sent at {} shows {} holding it \
                     until {}",
                    snapshot.sent, h.identity, h.expires_at
                )));
            }
        }
        for event in &history.events {
            if let Event::Grant { holder, lease: l, token: t, received_wall, .. } = event
                && *l == lease
                && *t == token
                && *received_wall > acked
            {
                violations.push(lost(format!(
                    "the release of token {token} was acknowledged at {acked}; {holder} was granted token {token} \
                     again at {received_wall}"
                )));
            }
        }
    }
    violations
}

/// How close the run came to a violation: the smallest gap, in
/// nanoseconds, between the end of one belief (tenure) and the start of the
/// next on the same lease. A negative gap is a violation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closest {
    pub belief_gap: Option<i64>,
    pub tenure_gap: Option<i64>,
}

impl std::fmt::Display for Closest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |gap: Option<i64>| gap.map_or("none".to_owned(), |g| format!("{:.1} ms", g as f64 / 1e6));
        write!(
            f,
            "closest handovers: beliefs {} apart, server tenures {} apart",
            ms(self.belief_gap),
            ms(self.tenure_gap)
        )
    }
}

/// The closest handovers in `history`.
pub fn closest(history: &History) -> Closest {
    let beliefs = beliefs(&history.events);
    let belief_gap = smallest_gap(beliefs.iter().filter(|b| b.end > b.start).map(|b| (&*b.lease, b.start, b.end)));
    let (tenures, _) = tenures(history);
    let nanos = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let tenure_gap = smallest_gap(tenures.iter().map(|t| (&*t.lease, nanos(t.acquired_at), nanos(t.end()))));
    Closest { belief_gap, tenure_gap }
}

/// The smallest `start - latest earlier end` over intervals grouped by lease.
fn smallest_gap<'a>(intervals: impl Iterator<Item = (&'a str, i64, i64)>) -> Option<i64> {
    let mut by_lease: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (lease, start, end) in intervals {
        by_lease.entry(lease).or_default().push((start, end));
    }
    let mut best: Option<i64> = None;
    for mut list in by_lease.into_values() {
        list.sort_unstable();
        let mut latest_end: Option<i64> = None;
        for (start, end) in list {
            if let Some(earlier) = latest_end {
                best = Some(best.map_or(start - earlier, |b| b.min(start - earlier)));
            }
            latest_end = Some(latest_end.map_or(end, |e| e.max(end)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Snapshot, SnapshotHolder};

    /// Wall clock: `ms` milliseconds after a fixed moment.
    fn w(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    /// Monotonic clock: `ms` milliseconds after a fixed moment, aligned with [`w`].
    fn m(ms: i64) -> Mono {
        (1_000_000 + ms) * 1_000_000
    }

    /// A grant received at `at` ms with a 4 s TTL: server times 10 ms before, local deadline 3.6 s after.
    fn grant(holder: &str, token: i32, at: i64) -> Event {
        Event::Grant {
            holder: holder.into(),
            lease: "l".into(),
            token,
            acquired_at: Some(w(at - 10)),
            expires_at: Some(w(at + 3990)),
            received: m(at),
            received_wall: w(at),
            deadline: m(at + 3600),
        }
    }

    fn renewed(holder: &str, token: i32, at: i64) -> Event {
        Event::Renewed { holder: holder.into(), lease: "l".into(), token, at: m(at), deadline: m(at + 3600) }
    }

    fn lost(holder: &str, token: i32, at: i64, deadline: i64) -> Event {
        Event::Lost {
            holder: holder.into(),
            lease: "l".into(),
            token,
            reason: "deadline".into(),
            at: m(at),
            at_wall: w(at),
            acquired_at: None,
            expires_at: None,
            deadline: m(deadline),
        }
    }

    fn release(holder: &str, token: i32, start: i64, ack: i64) -> [Event; 2] {
        [
            Event::ReleaseStarted { holder: holder.into(), lease: "l".into(), token, at: m(start), at_wall: w(start) },
            Event::ReleaseAcked { holder: holder.into(), lease: "l".into(), token, at: m(ack), at_wall: w(ack) },
        ]
    }

    fn snapshot(at: i64, fencing_token: i32, holders: &[(&str, i32, i64, i64)]) -> Snapshot {
        Snapshot {
            lease: "l".into(),
            sent: w(at),
            received: w(at + 5),
            fencing_token,
            holders: holders
                .iter()
                .map(|(id, token, acquired, expires)| SnapshotHolder {
                    identity: (*id).into(),
                    token: *token,
                    acquired_at: w(*acquired),
                    expires_at: w(*expires),
                })
                .collect(),
        }
    }

    fn kinds(history: &History) -> Vec<ViolationKind> {
        let mut kinds: Vec<_> = check(history).into_iter().map(|v| v.kind).collect();
        kinds.sort();
        kinds
    }

    #[test]
    fn release_then_takeover_is_clean() {
        let mut events = vec![grant("a", 1, 0), renewed("a", 1, 1000)];
        events.extend(release("a", 1, 2000, 2020));
        events.push(grant("b", 2, 2015));
        let snapshots = vec![snapshot(500, 1, &[("a", 1, -10, 3990)]), snapshot(3000, 2, &[("b", 2, 2005, 6005)])];
        let history = History { events, snapshots };
        assert_eq!(check(&history), vec![]);
        assert_eq!(history.operations().grants, 2);
    }

    #[test]
    fn expiry_then_takeover_after_the_local_deadline_is_clean() {
        // a is paused: no loss signal until long after; its deadline ended the belief.
        let events = vec![grant("a", 1, 0), grant("b", 2, 4100), lost("a", 1, 9000, 3600)];
        assert_eq!(check(&History { events, snapshots: vec![] }), vec![]);
    }

    #[test]
    fn overlapping_beliefs_are_reported() {
        // b is granted while a's renewed deadline (1000 + 3600) still runs.
        // The server's tenures do not show it: a's renewed expiry was never seen.
        let events = vec![grant("a", 1, 0), renewed("a", 1, 1000), grant("b", 2, 4400)];
        assert_eq!(kinds(&History { events, snapshots: vec![] }), vec![ViolationKind::BeliefsOverlap]);
    }

    #[test]
    fn a_loss_signal_ends_the_belief_before_the_deadline() {
        let events = vec![grant("a", 1, 0), lost("a", 1, 500, 3600), grant("b", 2, 4000)];
        assert_eq!(check(&History { events, snapshots: vec![] }), vec![]);
        // Without the loss signal, a believes until 3600, and b at 3000 overlaps.
        let events = vec![grant("a", 1, 0), grant("b", 2, 3000)];
        assert!(kinds(&History { events, snapshots: vec![] }).contains(&ViolationKind::BeliefsOverlap));
    }

    #[test]
    fn overlapping_tenures_are_reported_from_store_snapshots() {
        // a's renew moved its expiry to 6000 (seen in the store); b was granted at 5000.
        let events = vec![grant("a", 1, 0), lost("a", 1, 1000, 3600), grant("b", 2, 5010)];
        let snapshots = vec![snapshot(2000, 1, &[("a", 1, -10, 6000)])];
        let history = History { events, snapshots };
        assert_eq!(kinds(&history), vec![ViolationKind::TenuresOverlap]);
    }

    #[test]
    fn a_release_ends_the_tenure_and_a_later_live_token_is_a_lost_release() {
        let mut events = vec![grant("a", 1, 0)];
        events.extend(release("a", 1, 1000, 1010));
        // The store still shows token 1 live, read after the acknowledgement.
        let snapshots = vec![snapshot(1500, 1, &[("a", 1, -10, 3990)])];
        let history = History { events: events.clone(), snapshots };
        assert_eq!(kinds(&history), vec![ViolationKind::ReleaseLost]);
        // A read sent before the acknowledgement may show it: that is no violation.
        let snapshots = vec![snapshot(1005, 1, &[("a", 1, -10, 3990)])];
        assert_eq!(check(&History { events: events.clone(), snapshots }), vec![]);
        // Granting token 1 again after the acknowledged release is a lost release too.
        events.push(grant("a", 1, 2000));
        let kinds = kinds(&History { events, snapshots: vec![] });
        assert!(kinds.contains(&ViolationKind::ReleaseLost), "{kinds:?}");
    }

    #[test]
    fn tokens_that_do_not_rise_are_reported() {
        // b is granted token 1 after a held token 2, with no overlap in time.
        let events = vec![grant("a", 2, 0), lost("a", 2, 100, 3600), grant("b", 1, 5000)];
        assert_eq!(kinds(&History { events, snapshots: vec![] }), vec![ViolationKind::TokenNotRising]);
        // The store's fencingToken going back is reported too.
        let snapshots = vec![snapshot(0, 5, &[]), snapshot(100, 4, &[])];
        assert_eq!(kinds(&History { events: vec![], snapshots }), vec![ViolationKind::TokenNotRising]);
    }

    #[test]
    fn one_token_granted_to_two_holders_is_reported() {
        let events = vec![grant("a", 3, 0), lost("a", 3, 100, 3600), grant("b", 3, 5000)];
        let kinds = kinds(&History { events, snapshots: vec![] });
        assert_eq!(kinds, vec![ViolationKind::TokenReused]);
    }

    #[test]
    fn a_grant_without_server_times_is_reported() {
        let events = vec![Event::Grant {
            holder: "a".into(),
            lease: "l".into(),
            token: 1,
            acquired_at: None,
            expires_at: None,
            received: m(0),
            received_wall: w(0),
            deadline: m(3600),
        }];
        assert_eq!(kinds(&History { events, snapshots: vec![] }), vec![ViolationKind::MissingServerTimes]);
    }

    #[test]
    fn closest_handovers_are_measured() {
        let mut events = vec![grant("a", 1, 0)];
        events.extend(release("a", 1, 2000, 2020));
        events.push(grant("b", 2, 2015));
        let closest = closest(&History { events, snapshots: vec![] });
        // b's belief starts 15 ms after a's ended; b's tenure (acquired 2005) 5 ms after a's release started.
        assert_eq!(closest, Closest { belief_gap: Some(15_000_000), tenure_gap: Some(5_000_000) });
        // Overlaps come out negative.
        let events = vec![grant("a", 1, 0), grant("b", 2, 3000)];
        assert_eq!(super::closest(&History { events, snapshots: vec![] }).belief_gap, Some(-600_000_000));
    }

    #[test]
    fn a_release_after_a_late_grant_ends_the_tenure() {
        // Found by a 10-minute run: during the kube-apiserver restart an acquire
        // took 5.5 s, so the keeper's deadline had passed when the grant arrived.
        // It signalled the loss at once, the keeper was dropped and released token 1,
        // and b was granted token 2 before token 1's expiresAt.
        let late = Event::Grant {
            holder: "a".into(),
            lease: "l".into(),
            token: 1,
            acquired_at: Some(w(0)),
            expires_at: Some(w(4000)),
            received: m(10),
            received_wall: w(10),
            deadline: m(-1900),
        };
        let mut events = vec![late, lost("a", 1, 10, -1900)];
        let b = grant("b", 2, 50);
        // Unrecorded, the release leaves token 1 running until 4000: an overlap.
        let unrecorded = History { events: vec![events[0].clone(), events[1].clone(), b.clone()], snapshots: vec![] };
        assert_eq!(kinds(&unrecorded), vec![ViolationKind::TenuresOverlap]);
        // The contender now releases after a loss and records it.
        events.extend(release("a", 1, 11, 25));
        events.push(b);
        assert_eq!(check(&History { events, snapshots: vec![] }), vec![]);
    }

    #[test]
    fn a_release_without_an_answer_may_have_ended_the_tenure() {
        // The replica applied a's release and was killed before answering.
        let mut events = vec![grant("a", 1, 0)];
        events.push(Event::ReleaseStarted {
            holder: "a".into(),
            lease: "l".into(),
            token: 1,
            at: m(1000),
            at_wall: w(1000),
        });
        let failed = |maybe_applied| Event::ReleaseFailed {
            holder: "a".into(),
            lease: "l".into(),
            token: 1,
            error: "connection reset".into(),
            maybe_applied,
        };
        events.push(failed(true));
        events.push(grant("b", 2, 1100));
        assert_eq!(check(&History { events: events.clone(), snapshots: vec![] }), vec![]);
        // A release the server refused did not end it.
        events[2] = failed(false);
        assert_eq!(kinds(&History { events, snapshots: vec![] }), vec![ViolationKind::TenuresOverlap]);
    }

    #[test]
    fn the_same_grant_seen_twice_is_one_tenure() {
        // The keeper's acquire-with-wait answer, then the store: same token, holder and acquiredAt.
        let events = vec![grant("a", 1, 0)];
        let snapshots = vec![snapshot(100, 1, &[("a", 1, -10, 4500)])];
        let (tenures, violations) = tenures(&History { events, snapshots });
        assert_eq!(violations, vec![]);
        assert_eq!(tenures.len(), 1);
        assert_eq!(tenures[0].expires_at, w(4500));
    }
}
