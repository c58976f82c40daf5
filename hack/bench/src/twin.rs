//! Twin CRDs of BerthLease for the write-cost scenario, in group
//! `bench.berth.dev`, installed by the bench only: neither Berth's
//! apiserver nor the operator watches them. Each twin changes one thing of
//! the real CRD, so that writing the same JSON to it shows what that thing
//! costs kube-apiserver:
//!
//! - [`Twin::Schemaless`]: no structural schema beyond
//!   `x-kubernetes-preserve-unknown-fields`, no CEL; written with only the
//!   holder's fields, it is the floor for any CRD;
//! - [`Twin::WithCel`]: the real schema with its CEL rules, as a control;
//! - [`Twin::WithoutCel`]: the real schema without its CEL rules;
//! - [`Twin::FieldByField`]: the real schema without `status` atomic
//!   (`x-kubernetes-map-type: atomic`), so that a writer owns the status
//!   field by field, as BerthLease did before.

use berth_api::rules::{self, Request};
use berth_api::{BerthLease, BerthLeaseStatus};
use chrono::Utc;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};

use crate::{Error, Result};

const GROUP: &str = "bench.berth.dev";
const FIELD_MANAGER: &str = "berth-bench";

/// One twin CRD of BerthLease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Twin {
    Schemaless,
    WithCel,
    WithoutCel,
    FieldByField,
}

impl Twin {
    fn kind(self) -> &'static str {
        match self {
            Twin::Schemaless => "BareLease",
            Twin::WithCel => "CelLease",
            Twin::WithoutCel => "NoCelLease",
            Twin::FieldByField => "FieldByFieldLease",
        }
    }

    fn plural(self) -> String {
        format!("{}s", self.kind().to_lowercase())
    }

    fn resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", self.kind()), &self.plural())
    }

    /// The twin's objects in namespace `ns`.
    pub fn api(self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }

    /// The twin's schema: the real CRD's, changed as the twin says.
    fn schema(self) -> Result<Value> {
        if self == Twin::Schemaless {
            return Ok(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        }
        let crd = serde_json::to_value(BerthLease::crd())?;
        let mut schema = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema")
            .cloned()
            .ok_or_else(|| Error::Scenario("the BerthLease CRD has no schema".to_owned()))?;
        match self {
            Twin::WithoutCel => drop_cel(&mut schema),
            Twin::FieldByField => {
                let status = schema["properties"]["status"].as_object_mut();
                status.and_then(|status| status.remove("x-kubernetes-map-type"));
            }
            Twin::Schemaless | Twin::WithCel => {}
        }
        Ok(schema)
    }

    /// Installs the CRD (server-side apply) and waits until it is established.
    ///
    /// # Errors
    /// When kube-apiserver refuses it or does not establish it within 30 s.
    pub async fn install(self, client: &Client) -> Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let (kind, plural) = (self.kind(), self.plural());
        let name = format!("{plural}.{GROUP}");
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": self.schema()?},
                }],
            },
        });
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
        if berth_testenv::crd_established(client, &name).await? {
            return Ok(());
        }
        Err(Error::Scenario(format!("CRD {name} was not established within 30 s")))
    }
}

/// Removes every `x-kubernetes-validations` (CEL rules) from `schema`.
fn drop_cel(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(drop_cel);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_cel),
        _ => {}
    }
}

/// How a [`TwinLease`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Only what a holder needs: state, holders, fencing token, transitions.
    pub minimal: bool,
    /// managedFields are cleared after the create. The run measured that
    /// the status writes that follow add none back (4 bytes: `null`).
    pub clear_managed_fields: bool,
}

/// One object of a twin, written with the status `decide` gives a renew.
pub struct TwinLease {
    api: Api<DynamicObject>,
    twin: Twin,
    /// The last written state, as a BerthLease (spec and status).
    lease: BerthLease,
    token: i32,
    holder: String,
    ttl_seconds: i32,
    shape: Shape,
}

impl TwinLease {
    /// Creates `name` in `ns` as a copy of `like` (its spec and status).
    ///
    /// # Errors
    /// When kube-apiserver refuses a write.
    pub async fn create(
        client: &Client,
        twin: Twin,
        ns: &str,
        name: &str,
        like: &BerthLease,
        shape: Shape,
    ) -> Result<Self> {
        let api = twin.api(client, ns);
        let mut lease = BerthLease::new(name, like.spec.clone());
        lease.status = like.status.clone().map(|s| if shape.minimal { minimal_status(&s) } else { s });
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
        let created = api.create(&params, &object(twin, &lease)?).await?;
        lease.metadata.resource_version = created.metadata.resource_version;
        if shape.clear_managed_fields {
            // A list of one empty entry clears managedFields (on the main
            // resource; a status write cannot clear them).
            let clear = json!({"metadata": {"managedFields": [{}]}});
            let cleared = api.patch(name, &PatchParams::default(), &Patch::Merge(&clear)).await?;
            lease.metadata.resource_version = cleared.metadata.resource_version;
        }
        let holder = like
            .status
            .as_ref()
            .and_then(|s| s.holders.first())
            .ok_or_else(|| Error::Scenario(format!("{} has no holder to copy", like.name_any())))?;
        let (token, holder) = (holder.fencing_token, holder.identity.clone());
        let ttl_seconds = like.spec.ttl_seconds;
        let mut twin_lease = Self { api, twin, lease, token, holder, ttl_seconds, shape };
        twin_lease.write_status(twin_lease.lease.status.clone().unwrap_or_default()).await?;
        Ok(twin_lease)
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
        let status = decision.status.ok_or_else(|| Error::Scenario("the twin's renew was refused".to_owned()))?;
        let status = if self.shape.minimal { minimal_status(&status) } else { status };
        if self.write_status(status).await.is_ok() {
            return Ok(true);
        }
        // Written meanwhile or not at all: go on from what is stored.
        let stored = self.api.get(&self.lease.name_any()).await?;
        self.lease.metadata.resource_version = stored.metadata.resource_version;
        Ok(false)
    }

    /// The object as stored, as JSON.
    ///
    /// # Errors
    /// When it cannot be read.
    pub async fn stored(&self) -> Result<Value> {
        Ok(serde_json::to_value(self.api.get(&self.lease.name_any()).await?)?)
    }

    async fn write_status(&mut self, status: BerthLeaseStatus) -> Result<()> {
        let mut next = self.lease.clone();
        next.status = Some(status);
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
        let written = self.api.replace_status(&self.lease.name_any(), &params, &object(self.twin, &next)?).await?;
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

/// `lease` as an object of `twin`.
fn object(twin: Twin, lease: &BerthLease) -> Result<DynamicObject> {
    let mut value = serde_json::to_value(lease)?;
    value["apiVersion"] = Value::from(format!("{GROUP}/v1"));
    value["kind"] = Value::from(twin.kind());
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("uid");
        meta.remove("creationTimestamp");
        meta.remove("generation");
    }
    Ok(serde_json::from_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twins_change_only_what_they_say() {
        let cel = Twin::WithCel.schema().unwrap().to_string();
        assert!(cel.contains("x-kubernetes-validations"));
        let without = Twin::WithoutCel.schema().unwrap();
        assert!(!without.to_string().contains("x-kubernetes-validations"));
        assert_eq!(
            without["properties"]["spec"]["properties"].as_object().map(|p| p.len()),
            Twin::WithCel.schema().unwrap()["properties"]["spec"]["properties"].as_object().map(|p| p.len())
        );
        let real = Twin::WithCel.schema().unwrap();
        assert_eq!(real["properties"]["status"]["x-kubernetes-map-type"], "atomic");
        let by_field = Twin::FieldByField.schema().unwrap();
        assert!(by_field["properties"]["status"].get("x-kubernetes-map-type").is_none());
        assert!(by_field.to_string().contains("x-kubernetes-validations"));
    }
}
