//! From an authenticated Kubernetes-style user name to a Berth tenant and its
//! namespaces: the `tenants` rules of the authentication configuration.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use super::{Namespaces, Tenant};

/// The user-name prefix of a Kubernetes service account.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// One rule as written in the file: exactly one of `username` and
/// `serviceAccount` (`<namespace>:<name>`), the tenant, optionally the
/// namespaces (omitted: every namespace, as a two-field keys-file line), and
/// optionally the cluster set the tenant shares its leases with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantRule {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    pub tenant: String,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub cluster_set: Option<String>,
}

/// Rules checked in order; the first whose user matches decides.
#[derive(Clone, Debug, Default)]
pub struct TenantMap {
    rules: Vec<(String, Tenant)>,
}

impl TenantMap {
    /// # Errors
    /// A message naming the rule (`tenants[i]`) and what is wrong with it.
    pub fn compile(rules: &[TenantRule]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let err = |reason: &str| format!("tenants[{index}]: {reason}");
            let username = match (&rule.username, &rule.service_account) {
                (Some(user), None) if !user.is_empty() => user.clone(),
                (None, Some(account)) => {
                    let (ns, name) =
                        account.split_once(':').ok_or_else(|| err("serviceAccount must be <namespace>:<name>"))?;
                    if !berth_api::wire::is_dns_label(ns) || name.is_empty() || name.contains(':') {
                        return Err(err("serviceAccount must be <namespace>:<name>"));
                    }
                    format!("{SERVICE_ACCOUNT_PREFIX}{account}")
                }
                _ => return Err(err("give exactly one of username and serviceAccount")),
            };
            if !berth_api::wire::is_dns_label(&rule.tenant) {
                return Err(err("tenant must be a DNS label"));
            }
            let namespaces = match &rule.namespaces {
                None => Namespaces::All,
                Some(list) => {
                    if list.is_empty() || !list.iter().all(|n| berth_api::wire::is_dns_label(n)) {
                        return Err(err(
                            "namespaces must be a non-empty list of DNS labels (omit it for every namespace)",
                        ));
                    }
                    Namespaces::Only(Arc::new(list.iter().cloned().collect::<BTreeSet<_>>()))
                }
            };
            if rule.cluster_set.as_deref().is_some_and(|set| !berth_api::wire::is_dns_label(set)) {
                return Err(err("clusterSet must be a DNS label"));
            }
            if compiled
                .iter()
                .any(|(_, t): &(String, Tenant)| t.name == rule.tenant && t.cluster_set != rule.cluster_set)
            {
                return Err(err("every rule of one tenant must name the same clusterSet (or none)"));
            }
            let tenant = Tenant { name: rule.tenant.clone(), namespaces, cluster_set: rule.cluster_set.clone() };
            compiled.push((username, tenant));
        }
        Ok(Self { rules: compiled })
    }

    /// The tenant of user `username`, if a rule names it.
    pub fn tenant_of(&self, username: &str) -> Option<Tenant> {
        self.rules.iter().find(|(user, _)| user == username).map(|(_, tenant)| tenant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(username: Option<&str>, account: Option<&str>, tenant: &str, ns: Option<&[&str]>) -> TenantRule {
        TenantRule {
            username: username.map(str::to_owned),
            service_account: account.map(str::to_owned),
            tenant: tenant.to_owned(),
            namespaces: ns.map(|l| l.iter().map(|s| s.to_string()).collect()),
            cluster_set: None,
        }
    }

    #[test]
    fn a_service_account_rule_matches_its_kubernetes_user_name() {
        let map = TenantMap::compile(&[
            rule(None, Some("berth-system:berth-operator"), "east", Some(&["pipeline"])),
            rule(Some("alice"), None, "west", None),
        ])
        .unwrap();
        let east = map.tenant_of("system:serviceaccount:berth-system:berth-operator").unwrap();
        assert_eq!(east.name, "east");
        assert!(east.may_use_namespace("pipeline"));
        assert!(!east.may_use_namespace("other"));
        assert!(map.tenant_of("alice").unwrap().may_use_namespace("anything"));
        assert_eq!(map.tenant_of("system:serviceaccount:berth-system:other"), None);
        assert_eq!(map.tenant_of("berth-system:berth-operator"), None);
    }

    #[test]
    fn a_rule_may_put_its_tenant_in_a_cluster_set() {
        let member = |user: &str, tenant: &str| TenantRule {
            cluster_set: Some("members".into()),
            ..rule(Some(user), None, tenant, None)
        };
        let map = TenantMap::compile(&[member("e", "east"), member("w", "west"), rule(Some("c"), None, "core", None)])
            .unwrap();
        assert_eq!(map.tenant_of("e").unwrap().cluster_set.as_deref(), Some("members"));
        assert_eq!(map.tenant_of("w").unwrap().cluster_set.as_deref(), Some("members"));
        assert_eq!(map.tenant_of("c").unwrap().cluster_set, None);
    }

    #[test]
    fn bad_rules_are_refused_with_their_index() {
        let cases = [
            rule(None, None, "t", None),
            rule(Some("u"), Some("a:b"), "t", None),
            rule(None, Some("no-colon"), "t", None),
            rule(None, Some("a:b:c"), "t", None),
            rule(Some("u"), None, "Bad_Tenant", None),
            rule(Some("u"), None, "t", Some(&[])),
            rule(Some("u"), None, "t", Some(&["Bad_NS"])),
            TenantRule { cluster_set: Some("Bad_Set".into()), ..rule(Some("u"), None, "s", None) },
            // The first rule made tenant t without a set.
            TenantRule { cluster_set: Some("members".into()), ..rule(Some("u"), None, "t", None) },
        ];
        for case in cases {
            let err = TenantMap::compile(&[rule(Some("ok"), None, "t", None), case.clone()]).unwrap_err();
            assert!(err.starts_with("tenants[1]: "), "{case:?}: {err}");
        }
    }
}
