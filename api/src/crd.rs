//! The `BerthLease` custom resource (`berth.skaphos.io/v1alpha1`); docs/design.md, "The BerthLease resource".

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest holder identity, and longest object name (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Longest TTL a lease may have.
pub const MAX_TTL_SECONDS: i32 = 86_400;

/// The CEL of [`max_stop_seconds`].
const MAX_STOP_SECONDS: &str =
    "self.ttlSeconds - self.heartbeatIntervalSeconds - (self.ttlSeconds >= 41 ? 5 : (self.ttlSeconds + 9) / 10) - 1";

const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// What a lease is. The object's name is the lease name and its namespace is the tenant's.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.skaphos.io",
    version = "v1alpha1",
    kind = "BerthLease",
    namespaced,
    status = "BerthLeaseStatus",
    shortname = "bl",
    category = "berth",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Holder","type":"string","jsonPath":".status.holders[0].identity"}"#,
    printcolumn = r#"{"name":"Token","type":"integer","jsonPath":".status.fencingToken"}"#,
    // A string, not a date: kubectl shows a date in the future as `<invalid>`.
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.holders[0].expiresAt"}"#,
    printcolumn = r#"{"name":"Semantics","type":"string","jsonPath":".spec.semantics"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("!has(self.spec.leaseName) || self.spec.leaseName == self.metadata.name")
        .message("spec.leaseName must equal metadata.name")
        .field_path(".spec.leaseName"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.heartbeatIntervalSeconds < self.ttlSeconds")
        .message("heartbeatIntervalSeconds must be less than ttlSeconds")
        .field_path(".heartbeatIntervalSeconds"),
    validation = Rule::new("!has(self.maxHolders) || self.semantics == 'at-least-once'")
        .message("maxHolders is only allowed with semantics at-least-once")
        .field_path(".maxHolders"),
    validation = Rule::new(format!("!has(self.stopSeconds) || self.stopSeconds == 0 || self.stopSeconds <= {MAX_STOP_SECONDS}"))
        // A static message: kube-apiserver refuses a messageExpression that
        // prints the numbers as too costly to estimate.
        .message(
            "stopSeconds leaves less than one heartbeat to hold the lease: it may be 0, or at most \
             ttlSeconds - heartbeatIntervalSeconds - the safety margin (a tenth of ttlSeconds rounded up, 1 to 5) - 1, \
             for example 16 with ttlSeconds 30 and heartbeatIntervalSeconds 10",
        )
        .field_path(".stopSeconds"),
)]
pub struct BerthLeaseSpec {
    /// Equals metadata.name; kept for manifests that spell it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub lease_name: Option<String>,

    /// A holder declared in the manifest; the operator acquires on its behalf once per generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub holder_identity: Option<String>,

    /// TTL for declared holders. A REST request carries its own `ttlSeconds`.
    #[serde(default = "default_ttl_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: i32,

    /// Advised renew period; must be less than ttlSeconds.
    #[serde(default = "default_heartbeat_interval_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub heartbeat_interval_seconds: i32,

    /// `at-most-once` (exclusive) or `at-least-once` (shared).
    #[serde(default)]
    pub semantics: Semantics,

    /// at-least-once only: cap on concurrent holders. Unset means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_holders: Option<i32>,

    /// After a holder expires, no new acquisition succeeds until expiredAt + lockDelaySeconds.
    #[serde(default)]
    #[schemars(range(min = 0, max = 86400))]
    pub lock_delay_seconds: i32,

    /// How long the target's workload may take to stop. A member cluster
    /// fences this long before its safe deadline, and gives the pods still
    /// running a grace period that ends at that deadline. 0 (the default):
    /// fence at the safe deadline, and kill what still runs then; always allowed.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 86400))]
    pub stop_seconds: i32,

    /// A workload in the same namespace that the operator acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRef>,

    /// Applied to the target while the lease has a live holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_action: Option<TargetAction>,

    /// Applied to the target while the lease has no live holder, and on deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_action: Option<TargetAction>,
}

/// The longest stop budget (`spec.stopSeconds`) the CRD allows: the TTL,
/// less one heartbeat, less the keeper's default safety margin rounded up to
/// whole seconds (a tenth of the TTL, within 1 and 5 s), less one second for
/// a renew's answer. A member then holds for more than one heartbeat after
/// each renew before it fences, so a renew answered on time never fences.
pub fn max_stop_seconds(ttl_seconds: i32, heartbeat_seconds: i32) -> i32 {
    let margin = if ttl_seconds >= 41 { 5 } else { (ttl_seconds + 9) / 10 };
    ttl_seconds - heartbeat_seconds - margin - 1
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

pub fn default_ttl_seconds() -> i32 {
    30
}

pub fn default_heartbeat_interval_seconds() -> i32 {
    10
}

/// A BerthLease's namespace and name: the key of per-lease state, and how
/// logs name a lease (`namespace/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseKey {
    pub namespace: String,
    pub name: String,
}

impl LeaseKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.to_owned(), name: name.to_owned() }
    }

    pub fn of(lease: &BerthLease) -> Self {
        Self {
            namespace: lease.metadata.namespace.clone().unwrap_or_default(),
            name: lease.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Set on leases created through the REST API: the tenant that owns them.
/// Other tenants never see or touch such a lease.
pub const TENANT_LABEL: &str = "berth.skaphos.io/tenant";

/// Set instead of [`TENANT_LABEL`] on leases created through the REST API by
/// a tenant of a cluster set: the set that shares them. Every tenant of the
/// set sees and may hold such a lease; no other tenant does.
pub const CLUSTER_SET_LABEL: &str = "berth.skaphos.io/cluster-set";

/// On a pod (through its workload's template): the lease, in the pod's
/// namespace, that the pod may run only under. The operator chart's
/// MutatingAdmissionPolicy gives such a pod [`SCHEDULING_GATE`] at creation.
pub const LEASE_LABEL: &str = "berth.skaphos.io/lease";

/// The scheduling gate a pod with [`LEASE_LABEL`] waits behind until the
/// operator removes it, which it does only while the lease is held.
pub const SCHEDULING_GATE: &str = "berth.skaphos.io/lease";

impl BerthLeaseSpec {
    /// The spec a creating acquire writes for `ttl_seconds`: the heartbeat is
    /// a third of it (as the defaults, 10 of 30), within 1 s and the default,
    /// and the TTL at least one more second, as the CRD wants
    /// `1 <= heartbeatIntervalSeconds < ttlSeconds`.
    pub fn created_with_ttl(ttl_seconds: i32) -> Self {
        let heartbeat = (ttl_seconds / 3).clamp(1, default_heartbeat_interval_seconds());
        Self { ttl_seconds: ttl_seconds.max(heartbeat + 1), heartbeat_interval_seconds: heartbeat, ..Self::default() }
    }
}

impl Default for BerthLeaseSpec {
    fn default() -> Self {
        Self {
            lease_name: None,
            holder_identity: None,
            ttl_seconds: default_ttl_seconds(),
            heartbeat_interval_seconds: default_heartbeat_interval_seconds(),
            semantics: Semantics::default(),
            max_holders: None,
            lock_delay_seconds: 0,
            stop_seconds: 0,
            target: None,
            acquire_action: None,
            release_action: None,
        }
    }
}

/// Whether a lease has one holder at a time or several.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Semantics {
    #[default]
    AtMostOnce,
    AtLeastOnce,
}

impl Semantics {
    pub fn as_str(self) -> &'static str {
        match self {
            Semantics::AtMostOnce => "at-most-once",
            Semantics::AtLeastOnce => "at-least-once",
        }
    }
}

/// A workload in the lease's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(r"self.apiVersion.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$')")
        .message("target.apiVersion must be [group/]version, with a DNS subdomain as the group")
        .field_path(".apiVersion"),
    validation = Rule::new("self.kind.matches('^[A-Z][A-Za-z0-9]*$')")
        .message("target.kind must be a CamelCase kind of at most 63 characters")
        .field_path(".kind"),
    validation = Rule::new(format!("self.name.matches('{DNS_SUBDOMAIN}')"))
        .message("target.name must be a DNS subdomain (lowercase alphanumerics, '-' and '.') of at most 253 characters")
        .field_path(".name"),
)]
pub struct TargetRef {
    #[schemars(length(min = 1, max = 316))]
    pub api_version: String,
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator does to the target: exactly one of `suspend` or `replicas`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.suspend) != has(self.replicas)")
    .message("an action sets exactly one of suspend or replicas"))]
pub struct TargetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

/// What the lease is doing. Written only by conditional writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Atomic: every writer replaces the whole status under a resourceVersion,
// so per-field ownership buys nothing; tracked field by field, a renew cost
// kube-apiserver 1.04× to 1.18× as much CPU in three runs (docs/benchmarks.md, section 7).
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct BerthLeaseStatus {
    #[serde(default)]
    pub state: LeaseState,
    #[serde(default)]
    pub holders: Vec<Holder>,
    /// The last token issued; never decreases over the life of the object.
    #[serde(default)]
    pub fencing_token: i32,
    /// How many times the lease has been granted.
    #[serde(default)]
    pub transitions: i64,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// When the last holder expired; lock-delay runs from here.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub expired_at: Option<DateTime<Utc>>,
    /// The spec generation that the operator has acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last fencing token whose grant the operator has recorded as an
    /// `Acquired` Event: a grant with a higher token is new to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_fencing_token: Option<i32>,
    /// What the operator last did to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What a lease is doing. `available`, `held`, `released` and `expired` are
/// the states of a lease in the coordination cluster. In member mode
/// (docs/design.md), a local lease is this cluster's claim on the global one,
/// and its state is one of `unknown`, `standby`, `held`, `at-risk` and
/// `fenced`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    /// Never held.
    #[default]
    Available,
    /// Held by a live holder; in member mode, held by this cluster and
    /// confirmed before the local safe deadline.
    Held,
    Released,
    Expired,
    /// Member mode only: no fresh answer from the Berth apiserver yet since
    /// the operator started; no acquireAction is applied.
    Unknown,
    /// Member mode only: another holder has the global lease; releaseAction is applied.
    Standby,
    /// Member mode only: held, but the last renew failed; the safe deadline has not passed.
    AtRisk,
    /// Member mode only: the safe deadline passed without a confirmation;
    /// releaseAction was applied at that instant.
    Fenced,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Available => "available",
            LeaseState::Held => "held",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
            LeaseState::Unknown => "unknown",
            LeaseState::Standby => "standby",
            LeaseState::AtRisk => "at-risk",
            LeaseState::Fenced => "fenced",
        }
    }
}

/// One holder's tenure. Live while `now < expiresAt`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub identity: String,
    pub fencing_token: i32,
    #[serde(serialize_with = "crate::time::serialize")]
    pub acquired_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub renewed_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub expires_at: DateTime<Utc>,
}

impl Holder {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub applied: AppliedAction,
    #[serde(serialize_with = "crate::time::serialize")]
    pub observed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// After a release: when the operator saw that no pod of the target
    /// runs any more. Unset while its pods are stopping, and while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub stopped_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppliedAction {
    Acquire,
    Release,
}

/// A standard Kubernetes condition (`Held`, `TargetReady`; in member mode
/// also `CoordinationReachable`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::{BerthLeaseSpec, max_stop_seconds};

    #[test]
    fn a_created_spec_keeps_the_heartbeat_below_the_ttl() {
        let shape = |ttl| {
            let spec = BerthLeaseSpec::created_with_ttl(ttl);
            (spec.heartbeat_interval_seconds, spec.ttl_seconds)
        };
        assert_eq!(shape(30), (10, 30));
        assert_eq!(shape(60), (10, 60));
        assert_eq!(shape(15), (5, 15));
        assert_eq!(shape(2), (1, 2));
        assert_eq!(shape(1), (1, 2), "a 1 s TTL cannot have a heartbeat below it: the TTL grows");
    }

    #[test]
    fn the_stop_budget_leaves_a_heartbeat_the_margin_and_a_second() {
        assert_eq!(max_stop_seconds(30, 10), 16);
        assert_eq!(max_stop_seconds(20, 5), 12);
        assert_eq!(max_stop_seconds(60, 10), 44, "the margin is at most 5 s");
        assert_eq!(max_stop_seconds(4, 1), 1, "the margin is at least 1 s once rounded up");
        assert!(max_stop_seconds(2, 1) < 0, "too short a TTL leaves no budget: only 0, which is always allowed");
    }
}
