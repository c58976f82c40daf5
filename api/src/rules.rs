//! The lease rules (docs/design.md, "Lease rules"), as one pure function.
//!
//! [`decide`] takes the spec and status of a lease, a request and the writer's
//! clock, and returns what to answer and, when something changes, the status to
//! write. The apiserver and the operator both call it; neither has rules of its own.

use chrono::{DateTime, Duration, Utc};

use crate::crd::{BerthLeaseSpec, BerthLeaseStatus, Holder, LeaseState, Semantics};

/// What a writer asks of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Acquire {
        holder: &'a str,
        ttl_seconds: i32,
    },
    Renew {
        holder: &'a str,
        fencing_token: i32,
        ttl_seconds: i32,
    },
    Release {
        holder: &'a str,
        fencing_token: i32,
    },
    /// The operator's timer: drop entries whose `expiresAt` has passed.
    Expire,
}

/// Why an acquire or renew did not grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// at-most-once and another identity holds a live entry.
    HeldByOther,
    /// at-least-once and `maxHolders` live entries exist.
    Full,
    /// A holder expired and `lockDelaySeconds` have not passed since.
    LockDelay,
    /// Renew: no live entry matches both identity and token. The caller lost the lease.
    Lost,
    /// The fencing token counter cannot rise any further.
    TokensExhausted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new tenure with a new fencing token.
    Granted(Holder),
    /// An existing live tenure was extended; token and `acquiredAt` are kept.
    Renewed(Holder),
    /// Not granted. `current` is the first live holder, if any, for the answer.
    NotAcquired { refusal: Refusal, current: Option<Holder> },
    /// The caller's live entry was removed.
    Released,
    /// Nothing live matched the caller: release is idempotent.
    AlreadyReleased,
    /// Another identity or token holds the lease live: HTTP 409.
    ReleaseConflict,
    /// Expire: these entries had passed their `expiresAt` and were dropped.
    Expired(Vec<Holder>),
    /// Expire: nothing had expired.
    NothingExpired,
}

/// The answer of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The status to write conditionally; `None` when nothing changes.
    pub status: Option<BerthLeaseStatus>,
}

/// Applies one request to a lease at time `now`.
///
/// # Guarantees
/// - Expired entries are dropped in any write it asks for (lazy expiry), so a
///   takeover never waits for the operator.
/// - Tokens rise strictly across grants; a renew never changes a token.
/// - A refusal never asks for a write.
///
/// # Caveats
/// Request fields are assumed valid (non-empty holder, positive TTL); the
/// callers check them first, in the order of docs/api.md, "Checks, in order".
pub fn decide(spec: &BerthLeaseSpec, status: &BerthLeaseStatus, request: &Request, now: DateTime<Utc>) -> Decision {
    let pruned = Pruned::new(status, now);
    match *request {
        Request::Acquire { holder, ttl_seconds } => acquire(spec, pruned, holder, ttl_seconds, now),
        Request::Renew { holder, fencing_token, ttl_seconds } => {
            match pruned.live.iter().position(|h| h.identity == holder && h.fencing_token == fencing_token) {
                Some(i) => extend(pruned, i, ttl_seconds, now),
                None => refuse(Refusal::Lost, &pruned),
            }
        }
        Request::Release { holder, fencing_token } => release(spec, pruned, holder, fencing_token, now),
        Request::Expire => {
            if pruned.dropped.is_empty() {
                return unchanged(Outcome::NothingExpired);
            }
            let dropped = pruned.dropped.clone();
            Decision { status: Some(pruned.into_status(now)), outcome: Outcome::Expired(dropped) }
        }
    }
}

/// The earliest `expiresAt` among the holders: when the operator must wake next.
pub fn next_expiry(status: &BerthLeaseStatus) -> Option<DateTime<Utc>> {
    status.holders.iter().map(|h| h.expires_at).min()
}

/// When the answer to an acquire may change at `now` or later without any
/// write: the earliest `expiresAt` of a live holder, or the end of a running
/// lock-delay (counting holders that expired but were not yet written away).
/// `None` when only a write can change it. Waiting acquirers sleep until then.
pub fn next_change(spec: &BerthLeaseSpec, status: &BerthLeaseStatus, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let pruned = Pruned::new(status, now);
    let lock_delay_end =
        pruned.expired_at.map(|t| t + Duration::seconds(spec.lock_delay_seconds.into())).filter(|end| *end > now);
    pruned.live.iter().map(|h| h.expires_at).chain(lock_delay_end).min()
}

/// When the live tenure of the identity that makes `request` ends, if it
/// has one at `now`: what a shed holder is told to wait against.
pub fn tenure_end(status: &BerthLeaseStatus, request: &Request, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let identity = match request {
        Request::Acquire { holder, .. } | Request::Renew { holder, .. } | Request::Release { holder, .. } => *holder,
        Request::Expire => return None,
    };
    status.holders.iter().find(|h| h.identity == identity && h.is_live(now)).map(|h| h.expires_at)
}

/// Whether the lease has a live holder at `now`.
pub fn is_held(status: &BerthLeaseStatus, now: DateTime<Utc>) -> bool {
    status.holders.iter().any(|h| h.is_live(now))
}

fn acquire(spec: &BerthLeaseSpec, pruned: Pruned, holder: &str, ttl_seconds: i32, now: DateTime<Utc>) -> Decision {
    if let Some(i) = pruned.live.iter().position(|h| h.identity == holder) {
        return extend(pruned, i, ttl_seconds, now);
    }
    let refusal = match spec.semantics {
        Semantics::AtMostOnce if !pruned.live.is_empty() => Some(Refusal::HeldByOther),
        Semantics::AtLeastOnce if spec.max_holders.is_some_and(|max| pruned.live.len() >= max.max(1) as usize) => {
            Some(Refusal::Full)
        }
        _ => None,
    };
    if let Some(refusal) = refusal {
        return refuse(refusal, &pruned);
    }
    if let Some(expired_at) = pruned.expired_at
        && now < expired_at + Duration::seconds(spec.lock_delay_seconds.into())
    {
        return refuse(Refusal::LockDelay, &pruned);
    }
    let Some(token) = pruned.status.fencing_token.checked_add(1) else {
        return refuse(Refusal::TokensExhausted, &pruned);
    };
    let granted = Holder {
        identity: holder.to_owned(),
        fencing_token: token,
        acquired_at: now,
        renewed_at: now,
        expires_at: now + Duration::seconds(ttl_seconds.into()),
    };
    let mut pruned = pruned;
    pruned.live.push(granted.clone());
    let mut status = pruned.into_status(now);
    status.fencing_token = token;
    status.transitions += 1;
    Decision { outcome: Outcome::Granted(granted), status: Some(status) }
}

fn extend(mut pruned: Pruned, index: usize, ttl_seconds: i32, now: DateTime<Utc>) -> Decision {
    let entry = &mut pruned.live[index];
    entry.renewed_at = now;
    entry.expires_at = now + Duration::seconds(ttl_seconds.into());
    let renewed = entry.clone();
    Decision { outcome: Outcome::Renewed(renewed), status: Some(pruned.into_status(now)) }
}

fn release(spec: &BerthLeaseSpec, mut pruned: Pruned, holder: &str, token: i32, now: DateTime<Utc>) -> Decision {
    if let Some(i) = pruned.live.iter().position(|h| h.identity == holder && h.fencing_token == token) {
        pruned.live.remove(i);
        pruned.released = true;
        return Decision { outcome: Outcome::Released, status: Some(pruned.into_status(now)) };
    }
    // A live entry of the same identity under another token, or (at-most-once,
    // as Berth's Go implementation answers) any other live holder, is a conflict.
    let conflict = pruned.live.iter().any(|h| h.identity == holder)
        || (spec.semantics == Semantics::AtMostOnce && !pruned.live.is_empty());
    if conflict { unchanged(Outcome::ReleaseConflict) } else { unchanged(Outcome::AlreadyReleased) }
}

fn refuse(refusal: Refusal, pruned: &Pruned) -> Decision {
    unchanged(Outcome::NotAcquired { refusal, current: pruned.live.first().cloned() })
}

fn unchanged(outcome: Outcome) -> Decision {
    Decision { outcome, status: None }
}

/// The status split at `now` into live and expired entries.
struct Pruned<'a> {
    status: &'a BerthLeaseStatus,
    live: Vec<Holder>,
    dropped: Vec<Holder>,
    /// `status.expiredAt`, or the latest `expiresAt` of the dropped entries when none stay live.
    expired_at: Option<DateTime<Utc>>,
    released: bool,
}

impl<'a> Pruned<'a> {
    fn new(status: &'a BerthLeaseStatus, now: DateTime<Utc>) -> Self {
        let (live, dropped): (Vec<_>, Vec<_>) = status.holders.iter().cloned().partition(|h| h.is_live(now));
        let expired_at = match dropped.iter().map(|h| h.expires_at).max() {
            Some(last) if live.is_empty() => Some(last),
            _ => status.expired_at,
        };
        Self { status, live, dropped, expired_at, released: false }
    }

    /// The status to write: the live entries, with `state` derived from them.
    fn into_status(self, now: DateTime<Utc>) -> BerthLeaseStatus {
        let mut status = self.status.clone();
        let state = if !self.live.is_empty() {
            LeaseState::Held
        } else if self.released {
            LeaseState::Released
        } else if !self.dropped.is_empty() {
            LeaseState::Expired
        } else {
            status.state
        };
        if state != status.state {
            status.last_transition_time = Some(now);
        }
        status.state = state;
        status.holders = self.live;
        status.expired_at = self.expired_at;
        status
    }
}

#[cfg(test)]
mod tests;
