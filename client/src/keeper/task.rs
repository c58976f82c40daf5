//! The thin async driver of [`Machine`]: it turns timers, renew answers,
//! watch changes and release requests into events, and carries out the
//! machine's actions. It decides nothing itself.

use std::sync::Arc;
use std::time::Duration;

use berth_api::wire::{ReleaseRequest, RenewRequest};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::machine::{Action, Answer, Event, Machine};
use super::{KeeperOptions, KeeperState, RenewResult};
use crate::{Client, Error, Grant};

/// How the keeper's owner ends the tenure before it is lost.
pub(super) enum Stop {
    /// Release the lease; the release call's result goes back.
    Release(oneshot::Sender<Result<(), Error>>),
    /// Stop without a release; told once nothing more will be sent.
    Abandon(oneshot::Sender<()>),
}

pub(super) struct Task {
    pub(super) client: Client,
    pub(super) options: KeeperOptions,
    pub(super) ttl_seconds: i32,
    pub(super) fencing_token: i32,
    pub(super) machine: Machine,
    pub(super) state: watch::Sender<KeeperState>,
    /// Closed when the keeper is dropped, which releases.
    pub(super) stop: mpsc::Receiver<Stop>,
}

impl Task {
    pub(super) async fn run(mut self) {
        let check_now = Arc::new(Notify::new());
        let _watcher = self.options.watch.then(|| {
            let watcher =
                watch_for_changes(self.client.clone(), self.options.clone(), self.fencing_token, check_now.clone());
            AbortOnDrop(tokio::spawn(watcher))
        });
        // The renew in flight, and when it was sent.
        let mut renew: Option<(BoxFuture<'static, Result<Grant, Error>>, Instant)> = None;
        let mut requester = None;
        while !self.machine.is_over() {
            let wake = self.machine.wake_at();
            let event = tokio::select! {
                stop = self.stop.recv() => match stop {
                    Some(Stop::Abandon(done)) => {
                        // Dropping the renew in flight cancels it; nothing else is sent.
                        drop(renew);
                        let _ = done.send(());
                        return;
                    }
                    Some(Stop::Release(done)) => {
                        requester = Some(done);
                        Event::Release
                    }
                    None => Event::Release,
                },
                answer = async { renew.as_mut().expect("guarded").0.as_mut().await }, if renew.is_some() => {
                    let sent = renew.take().expect("guarded").1;
                    let answer = Answer::from_result(&answer);
                    self.report(answer.result(), sent);
                    Event::Answer(answer)
                }
                () = check_now.notified() => Event::LeaseChanged,
                () = sleep_until(wake) => Event::Wake,
            };
            // Only a wake-up abandons a renew for want of an answer (its bound
            // or the deadline came); a release abandons it on purpose.
            let unanswered = event == Event::Wake;
            for action in self.machine.step(event, Instant::now()) {
                match action {
                    Action::Renew { bound, fresh_connection } => {
                        renew = Some((self.send_renew(bound, fresh_connection), Instant::now()));
                    }
                    Action::Abandon => {
                        if let (Some((_, sent)), true) = (renew.take(), unanswered) {
                            self.report(RenewResult::TimedOut, sent);
                        }
                    }
                    Action::Publish(state) => self.publish(state),
                    Action::Release => self.send_release(requester.take()).await,
                }
            }
        }
    }

    fn report(&self, result: RenewResult, sent: Instant) {
        if let Some(observer) = &self.options.on_renew {
            observer.report(result, sent.elapsed());
        }
    }

    fn send_renew(&mut self, bound: Duration, fresh_connection: bool) -> BoxFuture<'static, Result<Grant, Error>> {
        if fresh_connection {
            match self.client.with_fresh_connections() {
                Ok(client) => self.client = client,
                Err(e) => tracing::warn!(lease = %self.options.name, error = %e, "cannot open a fresh connection pool"),
            }
        }
        tracing::debug!(lease = %self.options.name, ?bound, fresh_connection, "renewing");
        let (client, options) = (self.client.clone(), self.options.clone());
        let request = RenewRequest {
            holder: options.holder.clone(),
            fencing_token: self.fencing_token,
            ttl_seconds: self.ttl_seconds,
        };
        Box::pin(async move { client.renew(&options.namespace, &options.name, &request).await })
    }

    fn publish(&self, state: KeeperState) {
        match &state {
            KeeperState::Lost(loss) => tracing::warn!(lease = %self.options.name, %loss, "lease lost"),
            KeeperState::Held { at_risk: true, .. } => {
                tracing::warn!(lease = %self.options.name, "renew failed; retrying until the deadline");
            }
            _ => {}
        }
        self.state.send_replace(state);
    }

    /// `requester` is `None` when the keeper was dropped.
    async fn send_release(&self, requester: Option<oneshot::Sender<Result<(), Error>>>) {
        let release = ReleaseRequest { holder: self.options.holder.clone(), fencing_token: self.fencing_token };
        let result = self.client.release(&self.options.namespace, &self.options.name, &release).await;
        if let Err(e) = &result {
            tracing::warn!(lease = %self.options.name, error = %e, "release failed; the lease expires at its TTL");
        }
        if let Some(done) = requester {
            let _ = done.send(result);
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Stops the watcher when the keeper's task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches the lease and wakes the driver (`check_now`) when a change no
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
