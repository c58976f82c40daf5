//! One member lease, as two tasks joined by channels:
//! - the holder ([`hold`]) keeps this cluster's claim on the global lease
//!   with a [`LeaseKeeper`](berth_client::LeaseKeeper) and publishes what it learns;
//! - the gate ([`gate`]) turns that into the local state with
//!   [`state::decide`](crate::member::state::decide), applies the target
//!   action, writes the status, records Events, and wakes at the safe
//!   deadline so that a fence happens at that instant;
//! - on deletion, [`cleanup`] releases the target, then the global lease,
//!   with the controller's deletion contract and retry policy.
//!
//! All timing of the hold (safe deadline, renew and retry schedule, bounded
//! renews) is the keeper's, and every decision is in [`crate::plan::member`];
//! this module only carries decisions out.

mod cleanup;
mod gate;
mod hold;

use std::sync::Arc;
use std::time::Duration;

use berth_api::BerthLease;
use berth_client::Client as BerthClient;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::controller::Context;
use crate::member::state::Knowledge;
use crate::plan::member::Mirror;

/// Pause after a call that got no answer, before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// What every claim of this operator shares.
pub struct Shared {
    pub ctx: Arc<Context>,
    pub berth: BerthClient,
    pub cluster_id: String,
}

/// What the holder last learned.
#[derive(Clone, Debug)]
struct Learned {
    knowledge: Knowledge,
    mirror: Mirror,
    /// Why the last call got no answer; `None` when it got one.
    unreachable: Option<String>,
}

/// What the gate asks of the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Hold,
    /// Release the global lease (the target is already released), then end.
    Release,
    /// The operator is stopping: end without releasing, so that the next
    /// operator resumes the tenure with the same token.
    Abandon,
}

/// Starts the claim of `lease`. Send newer versions of the lease on the
/// returned sender; drop it when the lease is gone. The claim ends when the
/// lease's deletion is done, or when `stopping` turns true.
pub fn spawn(
    shared: Arc<Shared>,
    lease: BerthLease,
    stopping: watch::Receiver<bool>,
) -> watch::Sender<Arc<BerthLease>> {
    let (lease_tx, lease_rx) = watch::channel(Arc::new(lease));
    let since = Instant::now();
    let learned = Learned { knowledge: Knowledge::Nothing { since }, mirror: Mirror::default(), unreachable: None };
    let (learned_tx, learned_rx) = watch::channel(learned);
    let (command_tx, command_rx) = watch::channel(Command::Hold);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(hold::hold(shared.clone(), lease_rx.clone(), learned_tx, command_rx, done_tx));
    tokio::spawn(gate::gate(shared, lease_rx, learned_rx, command_tx, done_rx, stopping));
    lease_tx
}
