//! Tenancy and auth (docs/design.md, docs/auth.md): who a bearer credential
//! belongs to, and what that caller may touch.
//!
//! An [`Authenticator`] maps a bearer credential to a [`Tenant`], which
//! carries the namespaces that credential may use. Several are chained
//! ([`Chain`]): static API keys ([`keys`]), JWTs checked offline against
//! configured issuers ([`jwt`]), and Kubernetes TokenReview ([`tokenreview`]),
//! configured by one file ([`config`]) and mapped to tenants by [`mapping`].

pub mod config;
pub mod configured;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod mapping;
pub mod reload;
pub mod tokenreview;

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use keys::{KeySet, KeysFile, KeysFileError};

/// An authenticated caller: its tenant, the namespaces this credential may
/// use, and the cluster set the tenant shares its leases with, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub namespaces: Namespaces,
    /// The leases this tenant's acquires create belong to this set rather
    /// than to the tenant: every tenant of the set sees them
    /// ([`berth_api::crd::CLUSTER_SET_LABEL`]).
    pub cluster_set: Option<String>,
}

/// The namespaces a credential may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    All,
    Only(Arc<BTreeSet<String>>),
}

impl Tenant {
    /// A tenant allowed in every namespace.
    pub fn everywhere(name: impl Into<String>) -> Self {
        Self { name: name.into(), namespaces: Namespaces::All, cluster_set: None }
    }

    /// Whether this caller may read and write leases in `namespace`.
    pub fn may_use_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Only(allowed) => allowed.contains(namespace),
        }
    }

    /// Whether this caller may act as `holder`: `<tenant>` itself or anything
    /// under `<tenant>/`.
    pub fn may_act_as(&self, holder: &str) -> bool {
        holder.strip_prefix(self.name.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Why a credential could not be checked (as opposed to being refused).
/// The boundary between an authenticator and the request: it becomes a 503
/// (try again), never a 401, so it is kept apart from [`ApiError`](crate::error::ApiError)
/// until the middleware maps it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The service that decides (kube-apiserver's TokenReview) did not answer.
    /// Nothing is known about the credential: the caller should retry.
    #[error("authentication backend unavailable: {0}")]
    Unavailable(String),
}

/// The result of one authentication: `Ok(None)` is an unknown or refused
/// credential (401), an error an undecided one (503).
pub type Verdict = Result<Option<Tenant>, AuthError>;

/// Bearer credential → tenant.
pub trait Authenticator: Send + Sync + 'static {
    /// The tenant that `credential` belongs to, `None` when this authenticator
    /// does not accept it.
    fn authenticate<'a>(&'a self, credential: &'a str) -> BoxFuture<'a, Verdict>;
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn authenticate<'a>(&'a self, credential: &'a str) -> BoxFuture<'a, Verdict> {
        (**self).authenticate(credential)
    }
}

/// Authenticators tried in order; the first that accepts decides. When none
/// accepts and one could not decide, the answer is that error (503), so that
/// an outage of TokenReview never reads as a revoked credential.
#[derive(Default)]
pub struct Chain {
    links: Vec<Arc<dyn Authenticator>>,
}

impl Chain {
    pub fn new(links: Vec<Arc<dyn Authenticator>>) -> Self {
        Self { links }
    }
}

impl Authenticator for Chain {
    fn authenticate<'a>(&'a self, credential: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let mut undecided = None;
            for link in &self.links {
                match link.authenticate(credential).await {
                    Ok(Some(tenant)) => return Ok(Some(tenant)),
                    Ok(None) => {}
                    Err(e) => undecided = Some(e),
                }
            }
            undecided.map_or(Ok(None), Err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Verdict);

    impl Authenticator for Fixed {
        fn authenticate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Verdict> {
            let verdict = match &self.0 {
                Ok(t) => Ok(t.clone()),
                Err(AuthError::Unavailable(m)) => Err(AuthError::Unavailable(m.clone())),
            };
            Box::pin(async move { verdict })
        }
    }

    fn chain(links: Vec<Verdict>) -> Chain {
        Chain::new(links.into_iter().map(|v| Arc::new(Fixed(v)) as Arc<dyn Authenticator>).collect())
    }

    fn unavailable() -> Verdict {
        Err(AuthError::Unavailable("down".into()))
    }

    #[tokio::test]
    async fn the_first_acceptance_wins_and_an_outage_is_not_a_refusal() {
        let east = Tenant::everywhere("east");
        let answer = chain(vec![Ok(None), unavailable(), Ok(Some(east.clone()))]).authenticate("t").await;
        assert_eq!(answer.unwrap(), Some(east));
        assert!(chain(vec![Ok(None), unavailable()]).authenticate("t").await.is_err());
        assert_eq!(chain(vec![Ok(None), Ok(None)]).authenticate("t").await.unwrap(), None);
        assert_eq!(Chain::default().authenticate("t").await.unwrap(), None);
    }

    #[test]
    fn holder_must_be_the_tenant_or_under_it() {
        let tenant = Tenant::everywhere("east");
        assert!(tenant.may_act_as("east"));
        assert!(tenant.may_act_as("east/worker-1"));
        assert!(!tenant.may_act_as("eastern"));
        assert!(!tenant.may_act_as("west/east"));
        assert!(!tenant.may_act_as("eas"));
    }

    #[test]
    fn a_namespace_list_limits_the_tenant() {
        let only =
            Tenant { namespaces: Namespaces::Only(Arc::new(["a".to_owned()].into())), ..Tenant::everywhere("east") };
        assert!(only.may_use_namespace("a"));
        assert!(!only.may_use_namespace("b"));
        assert!(Tenant::everywhere("east").may_use_namespace("b"));
    }
}
