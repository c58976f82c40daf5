//! What a chaos run records: the contenders' events (one JSON line each) and
//! the observer's snapshots of the store.
//!
//! Two clocks appear. `Mono` values are nanoseconds of `CLOCK_MONOTONIC`,
//! shared by every process on the machine and never stepped: the contenders'
//! beliefs (grant receipt, local deadline, loss signal) are compared on it,
//! as `LeaseKeeper` keeps its deadline on the same clock. Wall-clock times
//! (`DateTime<Utc>`) are compared with the server's `acquiredAt` and
//! `expiresAt`, which the apiserver takes from the same machine's wall clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub type Mono = i64;

/// One thing a contender saw, in the order it saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `LeaseKeeper::acquire` returned a grant at `received`.
    Grant {
        holder: String,
        lease: String,
        token: i32,
        acquired_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
        received: Mono,
        received_wall: DateTime<Utc>,
        /// The keeper's local safe deadline.
        deadline: Mono,
    },
    /// The keeper published a new deadline after a successful renew.
    Renewed { holder: String, lease: String, token: i32, at: Mono, deadline: Mono },
    /// The keeper signalled a loss at `at` (`lost()` resolved).
    Lost {
        holder: String,
        lease: String,
        token: i32,
        reason: String,
        at: Mono,
        at_wall: DateTime<Utc>,
        acquired_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
        /// The last local deadline the keeper published.
        deadline: Mono,
    },
    /// The contender stopped believing it holds and asked the keeper to release.
    ReleaseStarted { holder: String, lease: String, token: i32, at: Mono, at_wall: DateTime<Utc> },
    /// The server answered the release with 204.
    ReleaseAcked { holder: String, lease: String, token: i32, at: Mono, at_wall: DateTime<Utc> },
    /// The release was not acknowledged: an error, or the keeper had lost the
    /// lease first. `maybe_applied` when it was sent and its outcome is
    /// unknown (no answer): the server may have applied it.
    ReleaseFailed { holder: String, lease: String, token: i32, error: String, maybe_applied: bool },
    /// An acquire found the lease held by `current`.
    Refused { holder: String, lease: String, current: String },
    /// An acquire failed without an answer (server down, timeout, 5xx).
    AcquireFailed { holder: String, lease: String, error: String, at_wall: DateTime<Utc> },
}

/// One holder entry as the store showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHolder {
    pub identity: String,
    pub token: i32,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One lease as a quorum read of kube-apiserver returned it: the object's
/// state at some moment between `sent` and `received` (wall clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub lease: String,
    pub sent: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub fencing_token: i32,
    pub holders: Vec<SnapshotHolder>,
}

/// Everything a run recorded. `events` keeps each contender's events in the
/// order it wrote them (contenders may be concatenated one after another);
/// `snapshots` is in the observer's order.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub events: Vec<Event>,
    pub snapshots: Vec<Snapshot>,
}

/// Counts of what the contenders did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operations {
    pub grants: usize,
    pub renews: usize,
    pub releases_acked: usize,
    pub releases_failed: usize,
    /// Failed releases that got no answer: the server may have applied them.
    pub releases_unanswered: usize,
    pub losses_deadline: usize,
    pub losses_refused: usize,
    pub losses_other: usize,
    pub refused_acquires: usize,
    pub failed_acquires: usize,
    pub snapshots: usize,
}

impl History {
    /// Counts the operations in the history.
    pub fn operations(&self) -> Operations {
        let mut ops = Operations { snapshots: self.snapshots.len(), ..Operations::default() };
        for event in &self.events {
            match event {
                Event::Grant { .. } => ops.grants += 1,
                Event::Renewed { .. } => ops.renews += 1,
                Event::Lost { reason, .. } if reason == LOSS_DEADLINE => ops.losses_deadline += 1,
                Event::Lost { reason, .. } if reason == LOSS_REFUSED => ops.losses_refused += 1,
                Event::Lost { .. } => ops.losses_other += 1,
                Event::ReleaseStarted { .. } => {}
                Event::ReleaseAcked { .. } => ops.releases_acked += 1,
                Event::ReleaseFailed { maybe_applied, .. } => {
                    ops.releases_failed += 1;
                    ops.releases_unanswered += usize::from(*maybe_applied);
                }
                Event::Refused { .. } => ops.refused_acquires += 1,
                Event::AcquireFailed { .. } => ops.failed_acquires += 1,
            }
        }
        ops
    }
}

/// `Lost::reason` of a loss at the local deadline.
pub const LOSS_DEADLINE: &str = "deadline";
/// `Lost::reason` of a renew answered `acquired:false`.
pub const LOSS_REFUSED: &str = "refused";
/// `Lost::reason` of a renew rejected with an error no retry can fix.
pub const LOSS_REJECTED: &str = "rejected";

impl std::fmt::Display for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "grants {}, renews {}, releases acknowledged {} (failed {}, of them unanswered {}), losses at the deadline {}, \
             losses by refused renew {}, other losses {}, acquires refused {}, acquires failed {}, \
             store snapshots {}",
            self.grants,
            self.renews,
            self.releases_acked,
            self.releases_failed,
            self.releases_unanswered,
            self.losses_deadline,
            self.losses_refused,
            self.losses_other,
            self.refused_acquires,
            self.failed_acquires,
            self.snapshots
        )
    }
}
