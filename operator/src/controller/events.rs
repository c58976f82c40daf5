//! Recording a reconcile's Events on the lease.

use berth_api::BerthLease;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::plan::Note;

use super::{Context, key};

/// Records `notes` as Events on the lease, in order, in a task of their own:
/// Events never delay a reconcile (and so the next lease's expiry). A failure
/// to record is logged, never fatal; Events still in flight when the process
/// stops are lost, as they would be on a crash.
pub(crate) fn publish(ctx: &Context, lease: &BerthLease, notes: Vec<Note>) {
    if notes.is_empty() {
        return;
    }
    let recorder = ctx.recorder.clone();
    let reference = lease.object_ref(&());
    let lease = key(lease);
    tokio::spawn(async move {
        for note in notes {
            let action = match note.reason.as_str() {
                "Acquired" | "DeclaredHolderRefused" => "Acquire",
                "Released" => "Release",
                "Expired" => "Expire",
                // Member mode (member/claim.rs).
                "Lost" | "Fenced" => "Fence",
                "RenewFailed" => "Renew",
                _ => "ApplyTarget",
            };
            let event = Event {
                type_: if note.warning { EventType::Warning } else { EventType::Normal },
                reason: note.reason.clone(),
                note: Some(note.message.chars().take(1024).collect()),
                action: action.to_owned(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%lease, reason = %note.reason, %error, "recording an Event failed");
            }
        }
    });
}
