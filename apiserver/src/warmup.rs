//! The apiserver reports ready only once kube-apiserver creates BerthLeases
//! without delay.
//!
//! kube-apiserver holds every create of a custom resource for 2 s while its
//! CRD has been Established for less than 2 s, so that peers in an HA control
//! plane catch up (`customresource_handler.go` in apiextensions-apiserver).
//! Berth started right after its CRD was applied, a fresh install, would pass
//! that stall on to the first holder's acquire: measured, 2.05 s for the first
//! acquire, 5 ms for every later one. A restart of Berth alone never meets it.
//!
//! So before it reports ready, the apiserver sends one server-side dry-run
//! create of a BerthLease. It takes the same create path, so it waits out the
//! window if there is one, and it writes nothing. Any answer from that path
//! (created, exists, namespace missing) means the window is over; only an
//! unreachable kube-apiserver is retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_api::{BerthLease, BerthLeaseSpec};
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::leases::FIELD_MANAGER;

/// The name of the dry-run BerthLease; nothing by this name is ever stored by the probe.
pub const PROBE_NAME: &str = "berth-apiserver-create-probe";
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Set once kube-apiserver has answered a create of a BerthLease.
#[derive(Default)]
pub struct CreatePath {
    warm: AtomicBool,
}

impl CreatePath {
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Sends the dry-run create in `namespace` on the current runtime until
    /// kube-apiserver answers it, or shutdown starts.
    pub fn warm_up(self: &Arc<Self>, client: Client, namespace: String, mut shutdown: watch::Receiver<bool>) {
        let path = self.clone();
        tokio::spawn(async move {
            let api: Api<BerthLease> = Api::namespaced(client, &namespace);
            let params = PostParams { dry_run: true, field_manager: Some(FIELD_MANAGER.to_owned()) };
            let probe = BerthLease::new(PROBE_NAME, BerthLeaseSpec::default());
            let mut pause = RETRY_FIRST;
            loop {
                let started = Instant::now();
                let answer = api.create(&params, &probe).await;
                let waited_ms = started.elapsed().as_millis() as u64;
                match answer {
                    Ok(_) => tracing::info!(
                        namespace,
                        waited_ms,
                        "kube-apiserver's BerthLease create path answered a dry run"
                    ),
                    Err(Error::Api(status)) if status.code == 403 => tracing::warn!(
                        namespace, waited_ms, reason = %status.message,
                        "the dry-run create was forbidden: a first acquire right after the CRD was installed may wait 2 s"
                    ),
                    Err(Error::Api(status)) => tracing::info!(
                        namespace, waited_ms, code = status.code, reason = %status.message,
                        "kube-apiserver's BerthLease create path answered a dry run"
                    ),
                    Err(error) => {
                        tracing::debug!(%error, "dry-run create failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.wait_for(|stop| *stop) => return,
                        }
                        pause = (pause * 2).min(RETRY_MAX);
                        continue;
                    }
                }
                path.warm.store(true, Ordering::Release);
                return;
            }
        });
    }
}
