//! Held leases created straight in kube-apiserver, as Berth's creating
//! acquire writes them: the object (tenant label, declared holder), its
//! managedFields cleared, then its status from `decide`, guarded by
//! resourceVersion.
//!
//! The scale and memory scenarios create thousands of leases this way, so an
//! overloaded Berth apiserver cannot stop them from reaching their count; the
//! writes kube-apiserver sees are the same three a creating acquire makes.

use std::collections::BTreeMap;

use berth_api::crd::TENANT_LABEL;
use berth_api::rules::{self, Request};
use berth_api::{BerthLease, BerthLeaseSpec};
use chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::stack::TENANT;
use crate::{Error, Result};

/// Tries of one lease when kube-apiserver drops the connection or answers 429/5xx.
const TRANSIENT_TRIES: u32 = 5;

/// Creates lease `name` held by `holder` for `ttl_seconds`; returns its
/// fencing token. A lease that exists already is granted again (an acquire
/// by the same holder is idempotent), so a try that failed half-way is
/// simply repeated: seeding 10,000 leases on a loaded machine met a dropped
/// connection (`SendRequest`) near the end, which used to end the run.
///
/// # Errors
/// When kube-apiserver refuses a write, a conflict repeats 8 times, or a
/// transient failure repeats [`TRANSIENT_TRIES`] times.
pub async fn held_lease(api: &Api<BerthLease>, name: &str, holder: &str, ttl_seconds: i32) -> Result<i32> {
    let mut pause = std::time::Duration::from_millis(200);
    for _ in 1..TRANSIENT_TRIES {
        match try_held_lease(api, name, holder, ttl_seconds).await {
            Err(Error::Kube(error)) if is_transient(&error) => {
                eprintln!("[bench] seeding lease {name} failed ({error}); trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            done => return done,
        }
    }
    try_held_lease(api, name, holder, ttl_seconds).await
}

/// No answer, or kube-apiserver could not answer now: nothing was decided.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => false,
    }
}

async fn try_held_lease(api: &Api<BerthLease>, name: &str, holder: &str, ttl_seconds: i32) -> Result<i32> {
    let params = PostParams { dry_run: false, field_manager: Some("berth-bench".to_owned()) };
    let spec =
        BerthLeaseSpec { holder_identity: Some(holder.to_owned()), ..BerthLeaseSpec::created_with_ttl(ttl_seconds) };
    let mut lease = BerthLease::new(name, spec);
    lease.metadata.labels = Some(BTreeMap::from([(TENANT_LABEL.to_owned(), TENANT.to_owned())]));
    let mut lease = match api.create(&params, &lease).await {
        Ok(_) => {
            let clear = serde_json::json!({"metadata": {"managedFields": [{}]}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&clear)).await?
        }
        Err(kube::Error::Api(status)) if status.code == 409 => api.get(name).await?,
        Err(e) => return Err(e.into()),
    };
    for _ in 0..8 {
        let request = Request::Acquire { holder, ttl_seconds };
        let decision = rules::decide(&lease.spec, &lease.status.clone().unwrap_or_default(), &request, Utc::now());
        let Some(status) = decision.status else {
            return lease
                .status
                .as_ref()
                .and_then(|s| s.holders.iter().find(|h| h.identity == holder))
                .map(|h| h.fencing_token)
                .ok_or_else(|| Error::Scenario(format!("lease {name} is held by another holder")));
        };
        let token = status.fencing_token;
        lease.metadata.managed_fields = None;
        lease.status = Some(status);
        match api.replace_status(name, &params, &lease).await {
            Ok(_) => return Ok(token),
            // The operator wrote its conditions first: read and decide again.
            Err(kube::Error::Api(status)) if status.code == 409 => lease = api.get(name).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Scenario(format!("seeding lease {name} conflicted 8 times")))
}
