//! REST wire types of docs/api.md, and the field checks every side agrees on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crd::{
    BerthLease, BerthLeaseStatus, Condition, Holder, LeaseState, MAX_NAME_LEN, MAX_TTL_SECONDS, Semantics, TargetRef,
    TargetStatus,
};

/// Largest request body the apiserver reads.
pub const MAX_BODY_BYTES: usize = 4096;
/// Longest `waitSeconds` an acquire may block.
pub const MAX_WAIT_SECONDS: i32 = 300;

/// `POST …/acquire`. Missing fields decode as empty so that the field checks,
/// not the decoder, name what is wrong (docs/api.md, "Checks, in order").
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcquireRequest {
    #[serde(default)]
    pub holder: String,
    #[serde(default)]
    pub ttl_seconds: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantics: Option<Semantics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_holders: Option<i32>,
}

/// `POST …/renew`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    #[serde(default)]
    pub holder: String,
    #[serde(default)]
    pub fencing_token: i32,
    #[serde(default)]
    pub ttl_seconds: i32,
}

/// `POST …/release`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default)]
    pub holder: String,
    #[serde(default)]
    pub fencing_token: i32,
}

/// The answer to acquire and renew, also when not acquired. Then it describes
/// the current holder and leaves out the token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AcquireResponse {
    pub acquired: bool,
    #[serde(default)]
    pub holder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub acquired_at: Option<DateTime<Utc>>,
}

impl AcquireResponse {
    pub fn granted(holder: &Holder) -> Self {
        Self {
            acquired: true,
            holder: holder.identity.clone(),
            fencing_token: Some(holder.fencing_token),
            expires_at: Some(holder.expires_at),
            acquired_at: Some(holder.acquired_at),
        }
    }

    pub fn not_acquired(current: Option<&Holder>) -> Self {
        Self {
            acquired: false,
            holder: current.map(|h| h.identity.clone()).unwrap_or_default(),
            fencing_token: None,
            expires_at: current.map(|h| h.expires_at),
            acquired_at: current.map(|h| h.acquired_at),
        }
    }
}

/// Every error body: `{"error": "..."}`, plus the request id on a 500.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The `Lease` view of the extension routes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    pub namespace: String,
    pub name: String,
    pub semantics: Semantics,
    pub state: LeaseState,
    pub holders: Vec<Holder>,
    pub fencing_token: i32,
    pub transitions: i64,
    pub ttl_seconds: i32,
    pub heartbeat_interval_seconds: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_holders: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRef>,
    /// When the status last changed, else when the object was created.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::time::serialize_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// What the operator last did to the target (an addition to the core view, for the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_status: Option<TargetStatus>,
    /// The status conditions (`Held`, `TargetReady`…); left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl LeaseView {
    pub fn from_lease(lease: &BerthLease) -> Self {
        let status = lease.status.clone().unwrap_or_default();
        let BerthLeaseStatus {
            state,
            holders,
            fencing_token,
            transitions,
            last_transition_time,
            target: target_status,
            conditions,
            ..
        } = status;
        let created = lease.metadata.creation_timestamp.as_ref().and_then(|t| {
            DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().try_into().unwrap_or(0))
        });
        Self {
            namespace: lease.metadata.namespace.clone().unwrap_or_default(),
            name: lease.metadata.name.clone().unwrap_or_default(),
            semantics: lease.spec.semantics,
            state,
            holders,
            fencing_token,
            transitions,
            ttl_seconds: lease.spec.ttl_seconds,
            heartbeat_interval_seconds: lease.spec.heartbeat_interval_seconds,
            max_holders: lease.spec.max_holders,
            target: lease.spec.target.clone(),
            updated_at: last_transition_time.or(created),
            target_status,
            conditions,
        }
    }
}

/// `{"items": [...]}`, sorted by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LeaseList {
    pub items: Vec<LeaseView>,
}

/// A request field that fails the field checks of docs/api.md; `Display` is the exact message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("holder is required")]
    HolderRequired,
    #[error("holder must be at most 253 bytes")]
    HolderTooLong,
    #[error("ttlSeconds must be positive")]
    TtlNotPositive,
    #[error("ttlSeconds must be at most 86400")]
    TtlTooLarge,
    #[error("fencingToken must be non-zero")]
    TokenZero,
    #[error("waitSeconds must be between 1 and 300")]
    WaitOutOfRange,
    #[error("maxHolders must be positive")]
    MaxHoldersNotPositive,
    #[error("maxHolders is only allowed with semantics at-least-once")]
    MaxHoldersWithoutAtLeastOnce,
}

fn check_holder(holder: &str) -> Result<(), FieldError> {
    if holder.is_empty() {
        Err(FieldError::HolderRequired)
    } else if holder.len() > MAX_NAME_LEN {
        Err(FieldError::HolderTooLong)
    } else {
        Ok(())
    }
}

fn check_ttl(ttl: i32) -> Result<(), FieldError> {
    if ttl <= 0 {
        Err(FieldError::TtlNotPositive)
    } else if ttl > MAX_TTL_SECONDS {
        Err(FieldError::TtlTooLarge)
    } else {
        Ok(())
    }
}

impl AcquireRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_holder(&self.holder)?;
        check_ttl(self.ttl_seconds)?;
        if self.wait_seconds.is_some_and(|w| !(1..=MAX_WAIT_SECONDS).contains(&w)) {
            return Err(FieldError::WaitOutOfRange);
        }
        match (self.semantics.unwrap_or_default(), self.max_holders) {
            (_, Some(max)) if max < 1 => Err(FieldError::MaxHoldersNotPositive),
            (Semantics::AtMostOnce, Some(_)) => Err(FieldError::MaxHoldersWithoutAtLeastOnce),
            _ => Ok(()),
        }
    }
}

impl RenewRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_holder(&self.holder)?;
        check_ttl(self.ttl_seconds)?;
        if self.fencing_token == 0 { Err(FieldError::TokenZero) } else { Ok(()) }
    }
}

impl ReleaseRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_holder(&self.holder)
    }
}

/// A path name that fails the name checks of docs/api.md; `Display` names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("namespace must be a valid RFC 1123 label (lowercase alphanumerics and '-', at most 63 characters)")]
    Namespace,
    #[error("name must be a valid DNS subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters)")]
    Name,
}

/// An RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS subdomain: dot-separated labels, at most 253 characters in all.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && s.split('.').all(is_dns_label)
}

pub fn check_names(namespace: &str, name: &str) -> Result<(), NameError> {
    if !is_dns_label(namespace) {
        Err(NameError::Namespace)
    } else if !is_dns_subdomain(name) {
        Err(NameError::Name)
    } else {
        Ok(())
    }
}

/// The SSE event names of the collection watch (`GET …/leases?watch=1`), in
/// the Kubernetes style. Each `data:` is a [`LeaseView`], except after
/// [`WatchEventKind::Bookmark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventKind {
    /// A lease the watcher had not been told of: first one per current lease, then each new one.
    Added,
    /// A new state of a lease already told.
    Modified,
    /// The lease is gone, or no longer readable by the tenant; `data` is the last state told.
    Deleted,
    /// Sent once, right after the initial `added` events: `data` is
    /// [`INITIAL_EVENTS_END`], as Kubernetes' bookmark with the
    /// `k8s.io/initial-events-end` annotation. A watcher now knows the whole
    /// current list, also when it is empty.
    Bookmark,
}

/// The `data` of the one [`WatchEventKind::Bookmark`] event.
pub const INITIAL_EVENTS_END: &str = r#"{"initialEventsEnd":true}"#;

impl WatchEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventKind::Added => "added",
            WatchEventKind::Modified => "modified",
            WatchEventKind::Deleted => "deleted",
            WatchEventKind::Bookmark => "bookmark",
        }
    }

    /// The kind named by an SSE `event:` field; `None` for names this version does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Added, Self::Modified, Self::Deleted, Self::Bookmark].into_iter().find(|k| k.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_follow_api_order() {
        let cases = [
            (AcquireRequest { ttl_seconds: 0, ..Default::default() }, Err(FieldError::HolderRequired)),
            (AcquireRequest { holder: "h".repeat(254), ..Default::default() }, Err(FieldError::HolderTooLong)),
            (
                AcquireRequest { holder: "a".into(), ttl_seconds: -1, ..Default::default() },
                Err(FieldError::TtlNotPositive),
            ),
            (
                AcquireRequest { holder: "a".into(), ttl_seconds: 86_401, ..Default::default() },
                Err(FieldError::TtlTooLarge),
            ),
            (
                AcquireRequest { holder: "a".into(), ttl_seconds: 5, wait_seconds: Some(301), ..Default::default() },
                Err(FieldError::WaitOutOfRange),
            ),
            (
                AcquireRequest { holder: "a".into(), ttl_seconds: 5, max_holders: Some(2), ..Default::default() },
                Err(FieldError::MaxHoldersWithoutAtLeastOnce),
            ),
            (AcquireRequest { holder: "h".repeat(253), ttl_seconds: 86_400, ..Default::default() }, Ok(())),
        ];
        for (request, expected) in cases {
            assert_eq!(request.check(), expected, "{request:?}");
        }
        let renew = RenewRequest { holder: "a".into(), fencing_token: 0, ttl_seconds: 5 };
        assert_eq!(renew.check(), Err(FieldError::TokenZero));
        assert_eq!(FieldError::TtlTooLarge.to_string(), "ttlSeconds must be at most 86400");
    }

    #[test]
    fn names_are_checked_namespace_first() {
        assert_eq!(check_names("team-a", "ingest.coordinator-1"), Ok(()));
        assert_eq!(check_names("Team", "x"), Err(NameError::Namespace));
        assert_eq!(check_names(&"a".repeat(64), "x"), Err(NameError::Namespace));
        assert_eq!(check_names("a", "-x"), Err(NameError::Name));
        assert_eq!(check_names("a", "x..y"), Err(NameError::Name));
        assert_eq!(check_names("a", &"a.".repeat(127)), Err(NameError::Name));
    }

    #[test]
    fn not_acquired_answer_names_holder_and_leaves_out_token() {
        let json = serde_json::to_value(AcquireResponse::not_acquired(None)).unwrap();
        assert_eq!(json, serde_json::json!({"acquired": false, "holder": ""}));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<RenewRequest>(r#"{"holder":"a","bogus":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }
}
