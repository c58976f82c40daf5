//! The holder: the keeper of this cluster's claim on the global lease.

use std::sync::Arc;
use std::time::Duration;

use berth_api::BerthLease;
use berth_client::{Client as BerthClient, Error as BerthError, KeeperOptions, LeaseKeeper};
use chrono::Utc;
use kube::ResourceExt;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::member::state::Knowledge;
use crate::plan::member::{Mirror, granted_mirror, learn, timing};

use super::{Command, Learned, RETRY, Shared};

/// How long a standby's waiting acquire asks the server to hold it.
const STANDBY_WAIT: Duration = Duration::from_secs(60);

/// The holder: acquire (waiting when another holder was named), then follow the
/// keeper until the tenure ends, and again.
pub(super) async fn hold(
    shared: Arc<Shared>,
    lease: watch::Receiver<Arc<BerthLease>>,
    learned: watch::Sender<Learned>,
    mut command: watch::Receiver<Command>,
    done: oneshot::Sender<()>,
) {
    let (namespace, name) = {
        let lease = lease.borrow();
        (lease.namespace().unwrap_or_default(), lease.name_any())
    };
    let metrics = shared.ctx.metrics.clone();
    let mut waiting = false;
    let mut client = shared.berth.clone();
    // The last acquire error logged, and how often it came again since: an
    // error that repeats every second is logged once, then at debug.
    let mut failing: Option<(String, u64)> = None;
    while *command.borrow_and_update() == Command::Hold {
        let (ttl, heartbeat) = timing(&lease.borrow().spec);
        let wait = if waiting { STANDBY_WAIT } else { Duration::ZERO };
        let observer = metrics.clone();
        let options = KeeperOptions::new(&namespace, &name, &shared.cluster_id, ttl)
            .heartbeat(heartbeat)
            .wait(wait)
            .on_renew(move |report| observer.member_renew(report));
        let started = Instant::now();
        // Bounded: an acquire that hangs (a blackholed connection) is abandoned.
        let attempt = tokio::time::timeout(wait + heartbeat, LeaseKeeper::acquire(client.clone(), options));
        let result = tokio::select! {
            result = attempt => result,
            _ = command.changed() => continue,
        };
        metrics.member_acquire(started.elapsed());
        let keeper = match result {
            Ok(Ok(keeper)) => keeper,
            Ok(Err(BerthError::NotAcquired { current })) => {
                let mirror = view(&client, &namespace, &name, heartbeat).await;
                learned.send_replace(Learned {
                    knowledge: Knowledge::Refused { holder: current.holder },
                    mirror,
                    unreachable: None,
                });
                waiting = true;
                continue;
            }
            Ok(Err(error)) => {
                let text = error.to_string();
                match &mut failing {
                    Some((last, repeats)) if *last == text => {
                        *repeats += 1;
                        tracing::debug!(lease = %format!("{namespace}/{name}"), repeats = *repeats, "acquiring the global lease still fails as logged");
                    }
                    _ => {
                        tracing::warn!(lease = %format!("{namespace}/{name}"), %error, "acquiring the global lease failed (logged again when the error changes)");
                        failing = Some((text.clone(), 0));
                    }
                }
                learned.send_modify(|l| l.unreachable = Some(text));
                retry_pause(&mut command).await;
                continue;
            }
            Err(_) => {
                let message = format!("no answer from the Berth apiserver within {:?}", wait + heartbeat);
                tracing::warn!(lease = %format!("{namespace}/{name}"), "{message}");
                learned.send_modify(|l| l.unreachable = Some(message));
                // The hung call's connection is suspect: the next try dials anew.
                client = client.with_fresh_connections().unwrap_or(client);
                continue;
            }
        };
        failing = None;
        let mirror = granted_mirror(keeper.grant(), Utc::now());
        let mut states = keeper.subscribe();
        loop {
            let Some((knowledge, unreachable)) = learn(&states.borrow_and_update()) else { break };
            let granted = matches!(knowledge, Knowledge::Granted { .. });
            // Wait for the lease only once another holder is named; after a
            // fence, ask at once, so that the claim shows who holds it
            // (standby) or resumes its own live tenure without delay.
            waiting = matches!(knowledge, Knowledge::Refused { .. });
            let mirror = if granted { mirror.clone() } else { view(&client, &namespace, &name, heartbeat).await };
            learned.send_replace(Learned { knowledge, mirror, unreachable });
            if !granted {
                break;
            }
            let commanded = tokio::select! {
                changed = states.changed() => if changed.is_err() { break } else { Command::Hold },
                _ = command.changed() => *command.borrow_and_update(),
            };
            match commanded {
                Command::Hold => {}
                Command::Release => {
                    if let Err(error) = keeper.release().await {
                        tracing::warn!(lease = %format!("{namespace}/{name}"), %error, "releasing the global lease failed; it expires at its TTL");
                    }
                    let _ = done.send(());
                    return;
                }
                Command::Abandon => {
                    // Not released: the next operator (a restart, the next
                    // leader) finds the tenure live and resumes it.
                    keeper.abandon().await;
                    return;
                }
            }
        }
    }
    let _ = done.send(());
}

/// Waits [`RETRY`], or less when a command comes.
async fn retry_pause(command: &mut watch::Receiver<Command>) {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => {}
        _ = command.changed() => {}
    }
}

/// The global lease's holders and token as the server shows them (bounded:
/// a mirror is a nicety, never worth a delay).
async fn view(client: &BerthClient, namespace: &str, name: &str, bound: Duration) -> Mirror {
    match tokio::time::timeout(bound, client.get(namespace, name)).await {
        Ok(Ok(view)) => Mirror {
            holders: view.holders,
            fencing_token: Some(view.fencing_token),
            transitions: Some(view.transitions),
        },
        _ => Mirror::default(),
    }
}
