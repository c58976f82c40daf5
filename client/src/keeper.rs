//! [`LeaseKeeper`]: holds a lease for as long as it safely can, and says so
//! the moment it cannot.

use std::sync::Arc;
use std::time::Duration;

use berth_api::wire::{AcquireRequest, ReleaseRequest, RenewRequest};
use futures::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::{Client, Error, Grant};

/// What a keeper wants to hold, and how.
#[derive(Clone, Debug)]
pub struct KeeperOptions {
    pub namespace: String,
    pub name: String,
    pub holder: String,
    /// The TTL asked for on every acquire and renew. Whole seconds, 1..=86400.
    pub ttl: Duration,
    /// How much earlier than `sent + ttl` the keeper gives up. `None`:
    /// [`default_margin`] of the TTL.
    pub margin: Option<Duration>,
    /// Renew period. `None`: the lease's `heartbeatIntervalSeconds`. Either
    /// way it is capped at half the safe window (`(ttl - margin) / 2`), so a
    /// failed renew is retried before the deadline.
    pub heartbeat: Option<Duration>,
    /// How long to wait for the lease when someone else holds it. `None` or
    /// zero: do not wait.
    pub wait: Option<Duration>,
    /// Also watch the lease (SSE) and renew at once when a change no longer
    /// shows this grant, or the watch ends because the lease was deleted. A
    /// takeover or deletion is then noticed within one round trip instead of
    /// at the next heartbeat. On by default.
    pub watch: bool,
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
}

/// The margin used when none is given: a tenth of the TTL, at least 250 ms
/// and at most 5 s.
pub fn default_margin(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(250), Duration::from_secs(5))
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
    /// A renew was rejected in a way no retry can fix (the key was revoked,
    /// the lease is gone, …). Carries the server's message.
    Rejected(String),
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::DeadlinePassed => f.write_str("no renew succeeded before the local safe deadline"),
            Loss::Refused { holder } if holder.is_empty() => f.write_str("a renew was refused"),
            Loss::Refused { holder } => write!(f, "a renew was refused: the lease is held by {holder}"),
            Loss::Rejected(message) => write!(f, "a renew was rejected: {message}"),
        }
    }
}

/// What a keeper knows, as published on its [`watch`] channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeeperState {
    /// Held with this token until `deadline` at the latest. The state is not
    /// republished when the deadline passes: check it with [`KeeperState::holds_at`].
    Held {
        fencing_token: i32,
        deadline: Instant,
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

/// The keeper's timing, as pure arithmetic on instants so that tests can
/// drive it with any clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub ttl: Duration,
    pub margin: Duration,
    pub heartbeat: Duration,
}

impl Schedule {
    /// `ttl` and `margin` as given (margin below the TTL); the heartbeat
    /// capped at half of `ttl - margin`, and at least 50 ms.
    pub fn new(ttl: Duration, margin: Duration, heartbeat: Duration) -> Self {
        let margin = margin.min(ttl / 2);
        let heartbeat = heartbeat.min((ttl - margin) / 2).max(Duration::from_millis(50));
        Self { ttl, margin, heartbeat }
    }

    /// The local safe deadline of a grant whose request was SENT at `sent`:
    /// the server set `expiresAt` no earlier than `sent + ttl` (it wrote
    /// after it received the request), so until `sent + ttl - margin` nobody
    /// else can be granted the lease.
    pub fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.margin
    }

    /// When to renew after a successful renew sent at `sent`.
    pub fn next_renew(&self, sent: Instant) -> Instant {
        sent + self.heartbeat
    }

    /// When to retry after a renew that failed at `now` without an answer
    /// (the server unreachable or erroring): soon, but never past the deadline.
    pub fn retry(&self, now: Instant, deadline: Instant) -> Instant {
        (now + (self.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))).min(deadline)
    }

    /// [`Self::retry`], unless the server asked to wait (`Retry-After`) and
    /// that wait ends before the deadline: then after that wait. A wait that
    /// would pass the deadline is not honoured, so the lease is not given up.
    pub fn retry_after(&self, now: Instant, retry_after: Option<Duration>, deadline: Instant) -> Instant {
        match retry_after.map(|wait| now + wait) {
            Some(at) if at < deadline => at.max(self.retry(now, deadline)),
            _ => self.retry(now, deadline),
        }
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
///   `acquired:false` (or is rejected with a 4xx no retry can fix). With
///   [`KeeperOptions::watch`], a change of the lease that drops this grant
///   (a takeover, a deletion) triggers that renew at once.
/// - Dropping the keeper, or calling [`Self::release`], stops renewing and
///   releases the lease.
///
/// # Caveats
/// On drop the release runs in a spawned task. When the runtime shuts down
/// right after, it may not be sent; the lease then expires at its TTL. Call
/// [`Self::release`] to release for certain.
pub struct LeaseKeeper {
    state: watch::Receiver<KeeperState>,
    release: mpsc::Sender<oneshot::Sender<Result<(), Error>>>,
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
    /// [`Error::NotAcquired`] when someone else holds it after the wait, and
    /// every error of [`Client::acquire`].
    pub async fn acquire(client: Client, options: KeeperOptions) -> Result<Self, Error> {
        let ttl_seconds = i32::try_from(options.ttl.as_secs())
            .ok()
            .filter(|s| *s >= 1 && Duration::from_secs(s.unsigned_abs().into()) == options.ttl)
            .ok_or_else(|| Error::InvalidRequest("the TTL must be a whole number of seconds, at least 1".to_owned()))?;
        let (ns, name) = (options.namespace.as_str(), options.name.as_str());
        let request = AcquireRequest { holder: options.holder.clone(), ttl_seconds, ..Default::default() };

        let mut sent = Instant::now();
        let wait = options.wait.unwrap_or_default();
        let mut grant = client.acquire_with_wait(ns, name, &request, wait).await?;
        if wait >= Duration::from_secs(1) {
            // The grant may have happened at any moment during the wait, so
            // `sent` says little. A renew gives a send time to count from.
            sent = Instant::now();
            let renew =
                RenewRequest { holder: options.holder.clone(), fencing_token: grant.fencing_token, ttl_seconds };
            grant = client.renew(ns, name, &renew).await?;
        }

        let heartbeat = match options.heartbeat {
            Some(heartbeat) => heartbeat,
            None => match client.get(ns, name).await {
                Ok(view) => Duration::from_secs(view.heartbeat_interval_seconds.max(1).unsigned_abs().into()),
                // Reading is a nicety; the cap below keeps renews in time anyway.
                Err(_) => options.ttl / 3,
            },
        };
        let schedule =
            Schedule::new(options.ttl, options.margin.unwrap_or_else(|| default_margin(options.ttl)), heartbeat);
        let deadline = schedule.deadline(sent);
        let (state_tx, state) = watch::channel(KeeperState::Held { fencing_token: grant.fencing_token, deadline });
        let (release, release_rx) = mpsc::channel(1);
        let task = Task {
            client,
            options,
            ttl_seconds,
            schedule,
            fencing_token: grant.fencing_token,
            state: state_tx,
            release: release_rx,
        };
        tokio::spawn(task.run(sent));
        Ok(Self { state, release, grant, schedule })
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
        if self.release.send(done).await.is_err() {
            return Ok(()); // the task ended: the lease was lost, nothing to release
        }
        result.await.unwrap_or(Ok(()))
    }
}

struct Task {
    client: Client,
    options: KeeperOptions,
    ttl_seconds: i32,
    schedule: Schedule,
    fencing_token: i32,
    state: watch::Sender<KeeperState>,
    release: mpsc::Receiver<oneshot::Sender<Result<(), Error>>>,
}

impl Task {
    async fn run(mut self, sent: Instant) {
        let mut deadline = self.schedule.deadline(sent);
        let mut next = self.schedule.next_renew(sent);
        let check_now = Arc::new(Notify::new());
        let _watcher = self.options.watch.then(|| {
            let watcher =
                watch_for_changes(self.client.clone(), self.options.clone(), self.fencing_token, check_now.clone());
            AbortOnDrop(tokio::spawn(watcher))
        });
        loop {
            tokio::select! {
                request = self.release.recv() => return self.release(request).await,
                () = tokio::time::sleep_until(deadline) => return self.lose(Loss::DeadlinePassed),
                () = tokio::time::sleep_until(next) => {}
                () = check_now.notified() => {}
            }
            let sent = Instant::now();
            let renew = RenewRequest {
                holder: self.options.holder.clone(),
                fencing_token: self.fencing_token,
                ttl_seconds: self.ttl_seconds,
            };
            let answer = tokio::select! {
                request = self.release.recv() => return self.release(request).await,
                () = tokio::time::sleep_until(deadline) => return self.lose(Loss::DeadlinePassed),
                answer = self.client.renew(&self.options.namespace, &self.options.name, &renew) => answer,
            };
            match answer {
                Ok(_) => {
                    deadline = self.schedule.deadline(sent);
                    next = self.schedule.next_renew(sent);
                    self.state.send_replace(KeeperState::Held { fencing_token: self.fencing_token, deadline });
                }
                Err(Error::NotAcquired { current }) => return self.lose(Loss::Refused { holder: current.holder }),
                Err(
                    e @ (Error::Conflict(_)
                    | Error::Unauthorized(_)
                    | Error::Forbidden(_)
                    | Error::NotFound(_)
                    | Error::InvalidRequest(_)),
                ) => return self.lose(Loss::Rejected(e.to_string())),
                Err(e) => {
                    tracing::warn!(lease = %self.options.name, error = %e, "renew failed; retrying until the deadline");
                    next = self.schedule.retry_after(Instant::now(), e.retry_after(), deadline);
                }
            }
        }
    }

    fn lose(&self, loss: Loss) {
        tracing::warn!(lease = %self.options.name, %loss, "lease lost");
        self.state.send_replace(KeeperState::Lost(loss));
    }

    /// `request` is `None` when the keeper was dropped.
    async fn release(self, request: Option<oneshot::Sender<Result<(), Error>>>) {
        let release = ReleaseRequest { holder: self.options.holder.clone(), fencing_token: self.fencing_token };
        let result = self.client.release(&self.options.namespace, &self.options.name, &release).await;
        if let Err(e) = &result {
            tracing::warn!(lease = %self.options.name, error = %e, "release failed; the lease expires at its TTL");
        }
        self.state.send_replace(KeeperState::Released);
        if let Some(done) = request {
            let _ = done.send(result);
        }
    }
}

/// Stops the watcher when the keeper's task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches the lease and wakes the renew loop (`check_now`) when a change no
/// longer lists this holder with this token, or the watch ends (the lease was
/// deleted). The renew decides; the watch only makes it come sooner.
async fn watch_for_changes(client: Client, options: KeeperOptions, fencing_token: i32, check_now: Arc<Notify>) {
    loop {
        if let Ok(mut changes) = client.watch(&options.namespace, &options.name).await {
            loop {
                match changes.next().await {
                    Some(Ok(view)) => {
                        let ours = view
                            .holders
                            .iter()
                            .any(|h| h.identity == options.holder && h.fencing_token == fencing_token);
                        if !ours {
                            check_now.notify_one();
                        }
                    }
                    // Broken off: the deadline covers an unreachable server.
                    Some(Err(_)) => break,
                    None => {
                        check_now.notify_one();
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn deadline_counts_from_the_time_the_renew_was_sent() {
        let schedule = Schedule::new(S(30), S(3), S(10));
        let sent = Instant::now();
        assert_eq!(schedule.deadline(sent), sent + S(27));
        assert_eq!(schedule.next_renew(sent), sent + S(10));
    }

    #[test]
    fn heartbeat_is_capped_at_half_the_safe_window() {
        // A lease advertising a 10 s heartbeat, held with a 5 s TTL.
        let schedule = Schedule::new(S(5), Duration::from_millis(500), S(10));
        assert_eq!(schedule.heartbeat, Duration::from_millis(2250));
        // A margin as large as the TTL would leave no window: it is halved.
        let schedule = Schedule::new(S(2), S(5), S(1));
        assert_eq!(schedule.margin, S(1));
        assert_eq!(schedule.heartbeat, Duration::from_millis(500));
    }

    #[test]
    fn retries_come_soon_but_never_after_the_deadline() {
        let schedule = Schedule::new(S(30), S(3), S(10));
        let now = Instant::now();
        assert_eq!(schedule.retry(now, now + S(20)), now + S(1));
        assert_eq!(schedule.retry(now, now + Duration::from_millis(300)), now + Duration::from_millis(300));
    }

    #[test]
    fn retry_after_is_honoured_only_when_it_ends_before_the_deadline() {
        let schedule = Schedule::new(S(30), S(3), S(10));
        let now = Instant::now();
        // An overloaded apiserver's Retry-After: 1 fits a 20 s window.
        assert_eq!(schedule.retry_after(now, Some(S(2)), now + S(20)), now + S(2));
        // Shorter than the usual pause: the usual pause.
        assert_eq!(schedule.retry_after(now, Some(S(0)), now + S(20)), now + S(1));
        // It would pass the deadline: retry as usual instead of losing the lease.
        assert_eq!(schedule.retry_after(now, Some(S(5)), now + S(4)), now + S(1));
        assert_eq!(schedule.retry_after(now, Some(S(1)), now + S(1)), now + S(1));
        let close = now + Duration::from_millis(300);
        assert_eq!(schedule.retry_after(now, Some(S(1)), close), close);
        assert_eq!(schedule.retry_after(now, None, now + S(20)), now + S(1));
    }

    #[test]
    fn default_margin_is_a_tenth_of_the_ttl_within_bounds() {
        assert_eq!(default_margin(S(30)), S(3));
        assert_eq!(default_margin(S(1)), Duration::from_millis(250));
        assert_eq!(default_margin(S(3600)), S(5));
    }

    #[test]
    fn held_state_stops_holding_at_the_deadline() {
        let now = Instant::now();
        let state = KeeperState::Held { fencing_token: 1, deadline: now + S(1) };
        assert!(state.holds_at(now));
        assert!(!state.holds_at(now + S(1)));
        assert!(!KeeperState::Lost(Loss::DeadlinePassed).holds_at(now));
        assert!(!KeeperState::Released.holds_at(now));
    }
}
