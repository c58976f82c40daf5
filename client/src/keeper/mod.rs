//! [`LeaseKeeper`]: holds a lease for as long as it safely can, and says so
//! the moment it cannot. The contract is `docs/keeper.md`: [`Schedule`] does
//! the arithmetic, `machine` decides, `task` drives.

use std::time::Duration;

use berth_api::wire::{AcquireRequest, AcquireResponse, ReleaseRequest, RenewRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::{Client, Error, Grant};
use machine::Machine;
use task::{Stop, Task};

mod machine;
mod report;
mod schedule;
mod task;
#[cfg(test)]
mod vectors;

pub use report::{RenewObserver, RenewReport, RenewResult};
pub use schedule::{Schedule, default_margin, fence_at};

/// What a keeper wants to hold, and how.
#[derive(Clone, Debug)]
pub struct KeeperOptions {
    pub namespace: String,
    pub name: String,
    pub holder: String,
    /// The TTL asked for on every acquire and renew. Whole seconds, 1..=86400.
    pub ttl: Duration,
    /// How much earlier than `sent + ttl` the keeper gives up. `None`:
    /// [`default_margin`] of the TTL. It must be shorter than the TTL.
    pub margin: Option<Duration>,
    /// Renew period. `None`: the lease's `heartbeatIntervalSeconds`. Either
    /// way it is capped at half the safe window (`(ttl - margin) / 2`), so a
    /// failed renew is retried before the deadline. A renew unanswered for a
    /// heartbeat (or until the deadline, if sooner) is abandoned.
    pub heartbeat: Option<Duration>,
    /// How long to wait for the lease when someone else holds it. `None` or
    /// zero: do not wait.
    pub wait: Option<Duration>,
    /// Also watch the lease (SSE) and renew at once when a change no longer
    /// shows this grant, or the watch ends because the lease was deleted. A
    /// takeover or deletion is then noticed within one round trip instead of
    /// at the next heartbeat. On by default.
    pub watch: bool,
    /// Told how every renew ended and how long it took (for metrics).
    pub on_renew: Option<RenewObserver>,
}

impl KeeperOptions {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            holder: holder.into(),
            ttl,
            margin: None,
            heartbeat: None,
            wait: None,
            watch: true,
            on_renew: None,
        }
    }

    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Calls `observe` with the [`RenewReport`] of every renew; see [`RenewObserver`].
    pub fn on_renew(mut self, observe: impl Fn(RenewReport) + Send + Sync + 'static) -> Self {
        self.on_renew = Some(RenewObserver::new(observe));
        self
    }
}

/// Why a keeper no longer holds its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loss {
    /// No renew succeeded in time: the local safe deadline passed. The
    /// server may not have expired the lease yet, but it may at any moment.
    DeadlinePassed,
    /// A renew answered `acquired:false`: someone took the lease over, or it
    /// was deleted. `holder` is the current holder the server named, if any.
    Refused { holder: String },
    /// A renew was rejected in a way no retry can fix (400, 403, 404, 409:
    /// the key may not hold it any more, the lease is gone, …). Carries the
    /// server's message.
    Rejected(String),
    /// A renew succeeded with another fencing token than this tenure's: the
    /// grant it renewed is not the one this keeper holds.
    TokenChanged { fencing_token: i32 },
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::DeadlinePassed => f.write_str("no renew succeeded before the local safe deadline"),
            Loss::Refused { holder } if holder.is_empty() => f.write_str("a renew was refused"),
            Loss::Refused { holder } => write!(f, "a renew was refused: the lease is held by {holder}"),
            Loss::Rejected(message) => write!(f, "a renew was rejected: {message}"),
            Loss::TokenChanged { fencing_token } => {
                write!(f, "a renew answered with another fencing token ({fencing_token})")
            }
        }
    }
}

/// What a keeper knows, as published on its [`watch`] channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeeperState {
    /// Held with this token until `deadline` at the latest. The state is not
    /// republished when the deadline passes: check it with [`KeeperState::holds_at`].
    /// `at_risk` is true after a renew failed (an error, a shed request, no
    /// answer in time) and until the next renew succeeds; the state is
    /// republished when it flips.
    Held {
        fencing_token: i32,
        deadline: Instant,
        at_risk: bool,
    },
    Lost(Loss),
    /// Released on drop or request.
    Released,
}

impl KeeperState {
    /// Whether the lease is safely held at `now`.
    pub fn holds_at(&self, now: Instant) -> bool {
        matches!(self, KeeperState::Held { deadline, .. } if now < *deadline)
    }
}

/// Holds a lease in the background: acquires it, renews it every heartbeat,
/// and keeps a local safe deadline (the time the last successful renew was
/// SENT, plus the TTL, minus a margin).
///
/// # Guarantees
/// - [`Self::is_held`] and [`KeeperState::holds_at`] are false from the
///   deadline on, whether or not the background task has run: the check is
///   against the clock, so the keeper never claims to hold past the deadline,
///   even when the server is unreachable.
/// - [`Self::lost`] resolves at the deadline, or as soon as a renew answers
///   `acquired:false`, another fencing token, or a 4xx no retry can fix
///   (400, 403, 404, 409, 413; a 401 is retried, as keys are rotated). With
///   [`KeeperOptions::watch`], a change of the lease that drops this grant
///   (a takeover, a deletion) triggers that renew at once.
/// - A renew unanswered for a heartbeat (at most until the deadline) is
///   abandoned, and the retry dials a fresh connection, so one hung
///   connection does not cost the lease.
/// - A lost lease is never taken back, and is not released.
/// - Dropping the keeper, or calling [`Self::release`], stops renewing and
///   releases the lease. [`Self::abandon`] stops renewing without a release.
/// - With [`KeeperOptions::on_renew`], every renew is reported: its
///   [`RenewResult`] and its latency.
///
/// # Caveats
/// On drop the release runs in a spawned task. When the runtime shuts down
/// right after, it may not be sent; the lease then expires at its TTL. Call
/// [`Self::release`] to release for certain.
pub struct LeaseKeeper {
    state: watch::Receiver<KeeperState>,
    stop: mpsc::Sender<Stop>,
    grant: Grant,
    schedule: Schedule,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper").field("state", &*self.state.borrow()).field("grant", &self.grant).finish()
    }
}

impl LeaseKeeper {
    /// Acquires the lease (waiting up to `options.wait` for it), then keeps
    /// it in a task on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a TTL that is not a whole number of
    /// seconds, or a margin not shorter than the TTL (nothing is sent then).
    /// [`Error::NotAcquired`] when someone else holds it after the wait, or
    /// when the renew that anchors a grant after a wait answers another
    /// token or too late. Every error of [`Client::acquire`] and
    /// [`Client::renew`].
    pub async fn acquire(client: Client, options: KeeperOptions) -> Result<Self, Error> {
        let ttl_seconds = i32::try_from(options.ttl.as_secs())
            .ok()
            .filter(|s| *s >= 1 && Duration::from_secs(s.unsigned_abs().into()) == options.ttl)
            .ok_or_else(|| Error::InvalidRequest("the TTL must be a whole number of seconds, at least 1".to_owned()))?;
        let margin = options.margin.unwrap_or_else(|| default_margin(options.ttl));
        // Checked before anything is sent; the heartbeat is settled below.
        Schedule::new(options.ttl, margin, options.ttl)?;
        let (ns, name) = (options.namespace.as_str(), options.name.as_str());
        let request = AcquireRequest { holder: options.holder.clone(), ttl_seconds, ..Default::default() };

        let mut sent = Instant::now();
        let wait = options.wait.unwrap_or_default();
        let mut grant = client.acquire_with_wait(ns, name, &request, wait).await?;
        if wait >= Duration::from_secs(1) {
            // The grant may have happened at any moment during the wait, so
            // `sent` says little. A renew gives a send time to count from.
            sent = Instant::now();
            grant = anchor(&client, &options, ttl_seconds, margin, grant, sent).await?;
        }

        let heartbeat = match options.heartbeat {
            Some(heartbeat) => heartbeat,
            // Reading the advice is a nicety: the cap keeps renews in time anyway.
            None => match tokio::time::timeout((options.ttl - margin) / 4, client.get(ns, name)).await {
                Ok(Ok(view)) => Duration::from_secs(view.heartbeat_interval_seconds.max(1).unsigned_abs().into()),
                Ok(Err(_)) | Err(_) => options.ttl / 3,
            },
        };
        let schedule = Schedule::new(options.ttl, margin, heartbeat)?;
        let machine = Machine::new(schedule, grant.fencing_token, sent);
        let (state_tx, state) = watch::channel(machine.state());
        let (stop, stop_rx) = mpsc::channel(1);
        let task = Task {
            client,
            options,
            ttl_seconds,
            fencing_token: grant.fencing_token,
            machine,
            state: state_tx,
            stop: stop_rx,
        };
        tokio::spawn(task.run());
        Ok(Self { state, stop, grant, schedule })
    }

    /// The grant this keeper got when it acquired.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The fencing token to pass downstream.
    pub fn fencing_token(&self) -> i32 {
        self.grant.fencing_token
    }

    /// The timing in use: TTL, margin and heartbeat.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Whether the lease is safely held right now.
    pub fn is_held(&self) -> bool {
        self.state.borrow().holds_at(Instant::now())
    }

    /// The local safe deadline while held.
    pub fn deadline(&self) -> Option<Instant> {
        match *self.state.borrow() {
            KeeperState::Held { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// A receiver of every state change.
    pub fn subscribe(&self) -> watch::Receiver<KeeperState> {
        self.state.clone()
    }

    /// Resolves when the lease is lost: at the local deadline at the latest.
    pub async fn lost(&self) -> Loss {
        let mut state = self.state.clone();
        loop {
            let current = state.borrow_and_update().clone();
            let deadline = match current {
                KeeperState::Lost(loss) => return loss,
                KeeperState::Held { deadline, .. } => deadline,
                // Released by request: nothing more will be lost.
                KeeperState::Released => return std::future::pending().await,
            };
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return Loss::DeadlinePassed },
                () = tokio::time::sleep_until(deadline) => return Loss::DeadlinePassed,
            }
        }
    }

    /// Stops renewing and releases the lease, if it is still held.
    ///
    /// # Errors
    /// The release call's error (the lease then expires at its TTL).
    pub async fn release(self) -> Result<(), Error> {
        let (done, result) = oneshot::channel();
        if self.stop.send(Stop::Release(done)).await.is_err() {
            return Ok(()); // the task ended: the lease was lost, nothing to release
        }
        result.await.unwrap_or(Ok(()))
    }

    /// Stops renewing WITHOUT releasing: the lease stays held on the server
    /// until its TTL runs out from the last renew, and then expires on its
    /// own. Use it to hand a live tenure to a successor that acquires with
    /// the same holder identity (a re-acquire by the live holder is a renew,
    /// so it keeps the fencing token): a process that exits for a restart,
    /// a replica that lost its leader election. Otherwise prefer
    /// [`Self::release`], which frees the lease at once.
    ///
    /// # Guarantees
    /// When it returns, the keeper sends nothing more: a renew in flight is
    /// abandoned, and there is no release. The last state published stays,
    /// so subscribers holding a [`KeeperState::Held`] see it end at its
    /// deadline ([`KeeperState::holds_at`]); nothing more is published.
    pub async fn abandon(self) {
        let (done, stopped) = oneshot::channel();
        if self.stop.send(Stop::Abandon(done)).await.is_ok() {
            // An error means the task ended anyway.
            let _ = stopped.await;
        }
    }
}

/// Renews a grant that came after a wait, sent at `sent`, so that its
/// deadline counts from a known time. A renew that fails, answers another
/// token, or answers after its own deadline does not anchor: the grant is
/// released (best effort) and the acquire fails.
async fn anchor(
    client: &Client,
    options: &KeeperOptions,
    ttl_seconds: i32,
    margin: Duration,
    grant: Grant,
    sent: Instant,
) -> Result<Grant, Error> {
    let (ns, name, holder) = (options.namespace.as_str(), options.name.as_str(), options.holder.clone());
    let renew = RenewRequest { holder: holder.clone(), fencing_token: grant.fencing_token, ttl_seconds };
    let answer = client.renew(ns, name, &renew).await;
    if let Some(observer) = &options.on_renew {
        observer.report(machine::Answer::from_result(&answer).result(), sent.elapsed());
    }
    let in_time = Instant::now() < sent + options.ttl - margin;
    let failure = match answer {
        Ok(renewed) if renewed.fencing_token == grant.fencing_token && in_time => return Ok(renewed),
        Ok(renewed) => Error::NotAcquired {
            current: AcquireResponse { acquired: false, holder: renewed.holder, ..Default::default() },
        },
        // Refused: someone else holds it, there is nothing to release.
        Err(e @ Error::NotAcquired { .. }) => return Err(e),
        Err(e) => e,
    };
    let release = ReleaseRequest { holder, fencing_token: grant.fencing_token };
    if let Err(e) = client.release(ns, name, &release).await {
        tracing::warn!(lease = %name, error = %e, "releasing a grant that could not be anchored");
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_state_stops_holding_at_the_deadline() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let state = KeeperState::Held { fencing_token: 1, deadline: now + second, at_risk: true };
        assert!(state.holds_at(now), "at risk is still held");
        assert!(!state.holds_at(now + second));
        assert!(!KeeperState::Lost(Loss::DeadlinePassed).holds_at(now));
        assert!(!KeeperState::Released.holds_at(now));
    }
}
