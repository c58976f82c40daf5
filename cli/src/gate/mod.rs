//! `berth gate`: a native sidecar (an init container with `restartPolicy:
//! Always`) that lets its pod's app run only while the pod holds a lease,
//! whatever language the app is in (docs/gate.md).
//!
//! 1. It waits for the lease. Its startup probe (`berth gate probe`) fails
//!    until then, so kubelet does not start the app container.
//! 2. It holds the lease with the keeper, and publishes the fence (the safe
//!    deadline less the stop budget) for the readiness probe.
//! 3. At the fence, on a loss, or on SIGTERM, it stops the app's processes:
//!    SIGTERM, then SIGKILL at the safe deadline. The app container has
//!    `restartPolicy: Never`, so the pod then fails and its controller
//!    replaces it with a pod whose gate waits again. The lease is released
//!    only once the app's processes are gone.

mod app;
pub mod probe;

use std::path::PathBuf;
use std::time::Duration;

use berth_client::{Error as ClientError, KeeperOptions, KeeperState, LeaseKeeper, fence_at};
use tokio::signal::unix::{Signal as Signals, SignalKind, signal};
use tokio::time::Instant;

use crate::args::Global;
use crate::exit::CliError;
use probe::{Published, publish};

/// How long one waiting acquire asks the server to hold it.
const WAIT: Duration = Duration::from_secs(60);
/// Pause after an acquire that failed for another reason than a holder.
const RETRY: Duration = Duration::from_secs(1);
/// How often a gate whose app was stopped looks for a restarted app.
const LOOK: Duration = Duration::from_millis(100);

pub struct GateArgs {
    pub name: String,
    /// `None`: `<tenant>/<pod>`.
    pub holder: Option<String>,
    pub tenant: Option<String>,
    pub pod: Option<String>,
    pub ttl: Duration,
    pub stop_budget: Duration,
    pub state_file: PathBuf,
}

impl GateArgs {
    fn holder(&self) -> Result<String, CliError> {
        if let Some(holder) = &self.holder {
            return Ok(holder.clone());
        }
        match (&self.tenant, &self.pod) {
            (Some(tenant), Some(pod)) => Ok(format!("{tenant}/{pod}")),
            (None, _) => Err(CliError::Usage(
                "no holder: pass --holder, or --tenant (BERTH_TENANT) for the holder <tenant>/<pod name>".to_owned(),
            )),
            (_, None) => Err(CliError::Usage("no pod name: pass --pod-name or set POD_NAME or HOSTNAME".to_owned())),
        }
    }

    /// The keeper's heartbeat: a third of the TTL, as the keeper's own default.
    fn heartbeat(&self) -> Duration {
        self.ttl / 3
    }

    /// Refuses a stop budget that leaves less than one heartbeat to hold the
    /// lease, with the bound of a BerthLease's `stopSeconds`.
    fn check_stop_budget(&self) -> Result<(), CliError> {
        let seconds = |d: Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
        let most = berth_api::crd::max_stop_seconds(seconds(self.ttl), seconds(self.heartbeat()).max(1));
        if self.stop_budget > Duration::from_secs(most.max(0).unsigned_abs().into()) {
            return Err(CliError::Usage(format!(
                "--stop-budget {:?} leaves less than one heartbeat to hold a lease with a TTL of {:?}: at most {most}s",
                self.stop_budget, self.ttl
            )));
        }
        Ok(())
    }
}

/// Runs the gate until kubelet stops it. Returns the exit code.
pub async fn gate(global: &Global, args: GateArgs) -> Result<u8, CliError> {
    app::check_shared_namespace().map_err(CliError::Usage)?;
    let holder = args.holder()?;
    args.check_stop_budget()?;
    let state = |published| publish(&args.state_file, published).map_err(CliError::Other);
    state(Published::Waiting)?;
    let client = crate::commands::client(global)?;
    let signal_error = |e: std::io::Error| CliError::Other(format!("installing signal handlers: {e}"));
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let lease = format!("{}/{}", global.namespace, args.name);

    // A gate restarted while its app runs must confirm the hold at once
    // (the same holder renews its own grant), or stop the app: it cannot know
    // how long its previous run's deadline had left.
    let app_running = !app::processes().is_empty();

    // 1. Wait for the lease, as long as it takes.
    eprintln!("berth gate: waiting for lease {lease} as {holder}");
    let keeper = loop {
        let wait = if app_running { Duration::ZERO } else { WAIT };
        let options =
            KeeperOptions::new(&global.namespace, &args.name, &holder, args.ttl).heartbeat(args.heartbeat()).wait(wait);
        let result = tokio::select! {
            result = LeaseKeeper::acquire(client.clone(), options) => result,
            _ = sigterm.recv() => {
                eprintln!("berth gate: SIGTERM while waiting; the app never started");
                state(Published::Stopping)?;
                return Ok(0);
            }
        };
        match result {
            Ok(keeper) => break keeper,
            Err(error) if app_running => {
                eprintln!(
                    "berth gate: restarted while the app runs, and the hold is not confirmed ({error}): stopping the app"
                );
                state(Published::Stopping)?;
                app::stop(Instant::now()).await;
                watch_for_restarts(&mut sigterm).await;
                return Ok(0);
            }
            Err(ClientError::NotAcquired { current }) => {
                eprintln!("berth gate: lease {lease} is held by {:?}; waiting", current.holder);
            }
            Err(error @ (ClientError::Forbidden(_) | ClientError::InvalidRequest(_) | ClientError::Config(_))) => {
                return Err(CliError::client(format!("berth gate {lease}"))(error));
            }
            Err(error) => {
                eprintln!("berth gate: acquiring {lease} failed: {error}; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    eprintln!(
        "berth gate: holding {lease} as {holder} with fencing token {}; the app may start",
        keeper.fencing_token()
    );

    // 2. Hold, publishing the fence, until it comes, the lease is lost, or kubelet stops the pod.
    let (why, terminated) = hold(&keeper, args.stop_budget, &mut sigterm, &state).await?;
    eprintln!("berth gate: stopping the app: {why}");
    state(Published::Stopping)?;

    // 3. Stop the app by the safe deadline (at once when it has passed), then release.
    let kill_at = keeper.deadline().unwrap_or_else(Instant::now);
    app::stop(kill_at).await;
    match keeper.release().await {
        Ok(()) => eprintln!("berth gate: the app is stopped; released {lease}"),
        Err(error) => eprintln!("berth gate: releasing {lease}: {error} (it expires at its TTL)"),
    }
    if !terminated {
        watch_for_restarts(&mut sigterm).await;
    }
    Ok(0)
}

/// Holds until the fence, a loss or SIGTERM; returns why, and whether it was SIGTERM.
async fn hold(
    keeper: &LeaseKeeper,
    stop_budget: Duration,
    sigterm: &mut Signals,
    state: &impl Fn(Published) -> Result<(), CliError>,
) -> Result<(String, bool), CliError> {
    let mut states = keeper.subscribe();
    loop {
        let now = Instant::now();
        let fence = match states.borrow_and_update().clone() {
            KeeperState::Held { deadline, .. } => fence_at(deadline, stop_budget, now),
            KeeperState::Lost(loss) => return Ok((format!("the lease was lost: {loss}"), false)),
            KeeperState::Released => return Ok(("the lease was released".to_owned(), false)),
        };
        if now >= fence {
            return Ok((
                "no renew was confirmed by the fence (the stop budget before the safe deadline)".into(),
                false,
            ));
        }
        state(Published::held_until(fence))?;
        tokio::select! {
            changed = states.changed() => if changed.is_err() {
                return Ok(("the keeper ended".to_owned(), false));
            },
            () = tokio::time::sleep_until(fence) => {}
            _ = sigterm.recv() => return Ok(("SIGTERM: the pod is stopping".to_owned(), true)),
        }
    }
}

/// After a stop, until kubelet stops the gate: an app that restarts (its
/// container lacks `restartPolicy: Never`) is killed at once.
async fn watch_for_restarts(sigterm: &mut Signals) {
    loop {
        tokio::select! {
            _ = sigterm.recv() => return,
            () = tokio::time::sleep(LOOK) => {
                if !app::processes().is_empty() {
                    eprintln!("berth gate: the app started again without the lease: give its container `restartPolicy: Never`");
                    app::stop(Instant::now()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(holder: Option<&str>, tenant: Option<&str>, pod: Option<&str>, stop: u64) -> GateArgs {
        GateArgs {
            name: "l".into(),
            holder: holder.map(Into::into),
            tenant: tenant.map(Into::into),
            pod: pod.map(Into::into),
            ttl: Duration::from_secs(30),
            stop_budget: Duration::from_secs(stop),
            state_file: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn the_holder_defaults_to_the_tenant_and_the_pod() {
        assert_eq!(args(None, Some("reports"), Some("writer-7d9f"), 5).holder().unwrap(), "reports/writer-7d9f");
        assert_eq!(args(Some("reports/x"), Some("t"), Some("p"), 5).holder().unwrap(), "reports/x");
        assert!(args(None, None, Some("p"), 5).holder().unwrap_err().to_string().contains("--tenant"));
        assert!(args(None, Some("t"), None, 5).holder().unwrap_err().to_string().contains("POD_NAME"));
    }

    #[test]
    fn the_stop_budget_leaves_a_heartbeat_to_hold() {
        // TTL 30 s, heartbeat 10 s: at most 16 s, as a BerthLease's stopSeconds.
        assert!(args(None, None, None, 16).check_stop_budget().is_ok());
        let refused = args(None, None, None, 17).check_stop_budget().unwrap_err().to_string();
        assert!(refused.contains("at most 16s"), "{refused}");
    }
}
