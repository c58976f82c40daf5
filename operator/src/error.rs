//! The operator's one error type.

use berth_api::LeaseKey;
use std::net::SocketAddr;

/// Everything that can fail in the operator. A reconcile error is retried
/// with a delay by [`crate::controller::error_policy`]; target problems that a
/// user must fix (missing, forbidden, unsupported) are not errors but
/// conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("BerthLease {0} has no namespace")]
    MissingNamespace(String),

    #[error("the status of {lease} changed since it was read (409): reading it again")]
    Conflict { lease: LeaseKey },

    #[error("writing the status of {lease}: {source}")]
    StatusWrite {
        lease: LeaseKey,
        #[source]
        source: kube::Error,
    },

    #[error("updating the finalizers of {lease}: {source}")]
    Finalizer {
        lease: LeaseKey,
        #[source]
        source: kube::Error,
    },

    #[error("acting on target {target}: {source}")]
    Target {
        target: String,
        #[source]
        source: kube::Error,
    },

    #[error("acting on target {target}: no answer within the target deadline")]
    TargetTimeout { target: String },

    #[error("deleting {lease} waits: {message}")]
    CleanupBlocked { lease: LeaseKey, message: String },

    #[error("leader election on Lease {lease}: {source}")]
    LeaderElection {
        lease: String,
        #[source]
        source: kube::Error,
    },

    #[error("lost the leader Lease {lease}: stopping so that only the leader acts")]
    LeadershipLost { lease: String },

    #[error("serving HTTP on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("bad bind address {addr:?}: use HOST:PORT, :PORT or 0 to disable")]
    BindAddress { addr: String },

    #[error("{0}")]
    ClusterId(String),

    #[error("the Berth apiserver client: {source}")]
    BerthClient {
        #[source]
        source: berth_client::Error,
    },
}

impl Error {
    /// A fixed label for the `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingNamespace(_) => "missing_namespace",
            Error::Conflict { .. } => "conflict",
            Error::StatusWrite { .. } => "status_write",
            Error::Finalizer { .. } => "finalizer",
            Error::Target { .. } => "target",
            Error::TargetTimeout { .. } => "target_timeout",
            Error::CleanupBlocked { .. } => "cleanup_blocked",
            Error::LeaderElection { .. } => "leader_election",
            Error::LeadershipLost { .. } => "leadership_lost",
            Error::Serve { .. } => "serve",
            Error::BindAddress { .. } => "bind_address",
            Error::ClusterId(_) => "cluster_id",
            Error::BerthClient { .. } => "berth_client",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
