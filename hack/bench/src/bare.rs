//! A schemaless twin of BerthLease for the write-cost scenario: the CRD
//! `bareleases.bench.berth.dev` (no structural schema beyond
//! `x-kubernetes-preserve-unknown-fields`, no CEL rules, a status
//! subresource), installed by the bench only. Neither Berth's apiserver nor
//! the operator watches it. Writing the same BerthLease JSON there
//! shows what the schema and CEL cost kube-apiserver; writing only a
//! holder's fields shows what the status's size costs.

use berth_api::rules::{self, Request};
use berth_api::{BerthLease, BerthLeaseStatus};
use chrono::Utc;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::{Error, Result};

const GROUP: &str = "bench.berth.dev";
const KIND: &str = "BareLease";
const PLURAL: &str = "bareleases";
const FIELD_MANAGER: &str = "berth-bench";

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", KIND), PLURAL)
}

/// The BareLeases of namespace `ns`.
pub fn api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource())
}

/// Installs the CRD (server-side apply) and waits until it is established.
///
/// # Errors
/// When kube-apiserver refuses it or does not establish it within 30 s.
pub async fn install(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{PLURAL}.{GROUP}");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "plural": PLURAL, "singular": "barelease", "listKind": "BareLeaseList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    });
    crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
    if berth_testenv::crd_established(client, &name).await? {
        return Ok(());
    }
    Err(Error::Scenario(format!("CRD {name} was not established within 30 s")))
}

/// One BareLease, written with the status `decide` gives a renew of `lease`.
pub struct BareLease {
    api: Api<DynamicObject>,
    /// The last written state, as a BerthLease (spec and status).
    lease: BerthLease,
    token: i32,
    holder: String,
    ttl_seconds: i32,
    /// Write only what a holder needs: state, holders, fencing token, transitions.
    minimal: bool,
}

impl BareLease {
    /// Creates `name` in `ns` as a copy of `like` (its spec and status).
    ///
    /// # Errors
    /// When kube-apiserver refuses a write.
    pub async fn create(client: &Client, ns: &str, name: &str, like: &BerthLease, minimal: bool) -> Result<Self> {
        let api = api(client, ns);
        let mut lease = BerthLease::new(name, like.spec.clone());
        lease.status = like.status.clone().map(|s| if minimal { minimal_status(&s) } else { s });
        let body = object(&lease)?;
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
        let created = api.create(&params, &body).await?;
        lease.metadata.resource_version = created.metadata.resource_version;
        let holder = like
            .status
            .as_ref()
            .and_then(|s| s.holders.first())
            .ok_or_else(|| Error::Scenario(format!("{} has no holder to copy", like.name_any())))?;
        let (token, holder) = (holder.fencing_token, holder.identity.clone());
        let ttl_seconds = like.spec.ttl_seconds;
        let mut bare = Self { api, lease, token, holder, ttl_seconds, minimal };
        bare.write_status(bare.lease.status.clone().unwrap_or_default()).await?;
        Ok(bare)
    }

    /// One renew: `decide`, then `replace_status` guarded by resourceVersion.
    /// `Ok(false)` when the write failed.
    ///
    /// # Errors
    /// When `decide` refuses the renew, or the object cannot be read after a
    /// failed write.
    pub async fn renew(&mut self) -> Result<bool> {
        let request = Request::Renew { holder: &self.holder, fencing_token: self.token, ttl_seconds: self.ttl_seconds };
        let status = self.lease.status.clone().unwrap_or_default();
        let decision = rules::decide(&self.lease.spec, &status, &request, Utc::now());
        let status = decision.status.ok_or_else(|| Error::Scenario("the bare renew was refused".to_owned()))?;
        let status = if self.minimal { minimal_status(&status) } else { status };
        if self.write_status(status).await.is_ok() {
            return Ok(true);
        }
        // Written meanwhile or not at all: go on from what is stored.
        let stored = self.api.get(&self.lease.name_any()).await?;
        self.lease.metadata.resource_version = stored.metadata.resource_version;
        Ok(false)
    }

    async fn write_status(&mut self, status: BerthLeaseStatus) -> Result<()> {
        let mut next = self.lease.clone();
        next.status = Some(status);
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
        let written = self.api.replace_status(&self.lease.name_any(), &params, &object(&next)?).await?;
        next.metadata.resource_version = written.metadata.resource_version;
        self.lease = next;
        Ok(())
    }
}

/// The status with only what a holder needs.
pub fn minimal_status(status: &BerthLeaseStatus) -> BerthLeaseStatus {
    BerthLeaseStatus {
        state: status.state,
        holders: status.holders.clone(),
        fencing_token: status.fencing_token,
        transitions: status.transitions,
        ..Default::default()
    }
}

/// `lease` as a BareLease object.
fn object(lease: &BerthLease) -> Result<DynamicObject> {
    let mut value = serde_json::to_value(lease)?;
    value["apiVersion"] = Value::from(format!("{GROUP}/v1"));
    value["kind"] = Value::from(KIND);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("uid");
        meta.remove("creationTimestamp");
        meta.remove("generation");
    }
    Ok(serde_json::from_value(value)?)
}
