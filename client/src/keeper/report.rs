//! What each renew came to, for callers that count renews (metrics): the
//! keeper's state says whether the lease is held, a [`RenewReport`] says how
//! one renew went and how long it took.

use std::sync::Arc;
use std::time::Duration;

/// How one renew ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenewResult {
    /// 200 `acquired:true`. Whether the keeper still holds the lease is its
    /// state's business: an answer after the deadline, or with another
    /// token, is reported as renewed and ends the tenure all the same.
    Renewed,
    /// 200 `acquired:false`: someone else holds the lease, or nobody does.
    Refused,
    /// An answer no retry can fix (400, 403, 404, 409, 413).
    Rejected,
    /// 503: the apiserver shed the request.
    Shed,
    /// Any other failure the keeper retries: 401, another status, a
    /// transport error, an answer that cannot be decoded.
    Error,
    /// No answer within the renew's bound: the keeper abandoned the call.
    TimedOut,
}

impl RenewResult {
    /// A fixed label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewResult::Renewed => "renewed",
            RenewResult::Refused => "refused",
            RenewResult::Rejected => "rejected",
            RenewResult::Shed => "shed",
            RenewResult::Error => "error",
            RenewResult::TimedOut => "timeout",
        }
    }
}

/// One renew: how it ended, and the time from its send to its answer (for
/// [`RenewResult::TimedOut`]: to when it was abandoned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewReport {
    pub result: RenewResult,
    pub latency: Duration,
}

/// Called with the report of every renew a keeper sends, including the
/// renew that anchors a grant after a wait. It runs on the keeper's task,
/// before the keeper acts on the answer: keep it quick, and never block in it.
#[derive(Clone)]
pub struct RenewObserver(Arc<dyn Fn(RenewReport) + Send + Sync>);

impl RenewObserver {
    pub fn new(observe: impl Fn(RenewReport) + Send + Sync + 'static) -> Self {
        Self(Arc::new(observe))
    }

    pub(crate) fn report(&self, result: RenewResult, latency: Duration) {
        (self.0)(RenewReport { result, latency });
    }
}

impl std::fmt::Debug for RenewObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenewObserver")
    }
}
