//! The file of `apiserver --authentication-config`: the `jwt` section of
//! kube-apiserver's structured `AuthenticationConfiguration` (issuer, claim
//! validation rules and claim mappings with plain claim names; no CEL),
//! extended with Berth's `tenants` rules and an optional `tokenReview`
//! section. See docs/auth.md for an annotated example.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::mapping::{TenantMap, TenantRule};

/// The `apiVersion` this file must carry.
pub const API_VERSION: &str = "berth.skaphos.io/v1alpha1";
/// The `kind` this file must carry.
pub const KIND: &str = "AuthenticationConfiguration";
/// TokenReview answers are kept this long unless `tokenReview.cacheTTL` says otherwise.
pub const DEFAULT_TOKEN_REVIEW_CACHE_TTL: Duration = Duration::from_secs(10);
/// The longest `tokenReview.cacheTTL` accepted: it bounds how long a revoked token still works.
pub const MAX_TOKEN_REVIEW_CACHE_TTL: Duration = Duration::from_secs(300);
/// The audience a TokenReview asks for unless `tokenReview.audiences` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "berth";

/// Why the `--authentication-config` file was refused: the boundary of
/// loading it, at start (fatal) and on reload (logged, the last good one kept).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing: {0}")]
    Parse(#[source] serde_yaml::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub jwt: Vec<JwtAuthenticatorConfig>,
    #[serde(default)]
    pub token_review: Option<TokenReviewConfig>,
}

/// One trusted issuer, as kube-apiserver's `jwt[]` entries, plus `tenants`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuthenticatorConfig {
    pub issuer: IssuerConfig,
    #[serde(default)]
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
    pub tenants: Vec<TenantRule>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerConfig {
    /// Must equal the tokens' `iss`, and be `https://`.
    pub url: String,
    /// Where the OIDC discovery document is, when not at
    /// `<url>/.well-known/openid-configuration`.
    #[serde(default, rename = "discoveryURL")]
    pub discovery_url: Option<String>,
    /// PEM CA bundle that the discovery and JWKS endpoints are checked
    /// against; omitted: the system's trust store.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// A token must name at least one of these in `aud`.
    pub audiences: Vec<String>,
    /// Only `MatchAny` (the default) is supported.
    #[serde(default)]
    pub audience_match_policy: Option<String>,
    /// Berth: fetch the JWKS from this URL instead of through discovery.
    #[serde(default, rename = "jwksURL")]
    pub jwks_url: Option<String>,
    /// Berth: read the JWKS from this file (reread on an unknown `kid`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Berth: the signature algorithms accepted; default every asymmetric
    /// one (RS*, PS*, ES256, ES384, EdDSA). `none` and HS* are never accepted.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

/// A claim that must hold a given string (kube-apiserver's `claim`/`requiredValue` form).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimValidationRule {
    pub claim: String,
    pub required_value: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappings {
    #[serde(default)]
    pub username: PrefixedClaim,
}

/// The user name is `prefix + claims[claim]`; by default the bare `sub`,
/// which for a service-account token is `system:serviceaccount:<ns>:<name>`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixedClaim {
    pub claim: String,
    #[serde(default)]
    pub prefix: String,
}

impl Default for PrefixedClaim {
    fn default() -> Self {
        Self { claim: "sub".to_owned(), prefix: String::new() }
    }
}

/// Ask the coordination cluster's kube-apiserver (TokenReview) about tokens
/// no configured issuer accepted.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReviewConfig {
    /// Default `[berth]`.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// How long an answer is kept, e.g. `10s` (the default); at most 5m;
    /// `0s` keeps none (every request asks kube-apiserver).
    #[serde(default, rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
    pub tenants: Vec<TenantRule>,
}

/// A checked configuration: what the authenticators are built from.
#[derive(Clone, Debug)]
pub struct Checked {
    pub jwt: Vec<CheckedJwt>,
    pub token_review: Option<CheckedTokenReview>,
}

/// One `jwt` entry as checked: its tenant rules compiled and its algorithms
/// parsed, once.
#[derive(Clone, Debug)]
pub struct CheckedJwt {
    pub config: JwtAuthenticatorConfig,
    pub tenants: TenantMap,
    pub algorithms: Vec<Algorithm>,
}

#[derive(Clone, Debug)]
pub struct CheckedTokenReview {
    pub audiences: Vec<String>,
    pub cache_ttl: Duration,
    pub tenants: TenantMap,
}

/// The algorithms accepted when an issuer does not list its own.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The configured names as algorithms; HS* and anything unknown (`none`) are refused.
///
/// # Errors
/// Naming the first name that is not an accepted asymmetric algorithm.
pub fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err("issuer.algorithms must not be empty (omit it for the default)".to_owned());
    }
    names
        .iter()
        .map(|name| {
            Algorithm::from_str(name).ok().filter(|alg| DEFAULT_ALGORITHMS.contains(alg)).ok_or_else(|| {
                format!("issuer.algorithms: {name:?} is not accepted (only RS*, PS*, ES256, ES384, EdDSA)")
            })
        })
        .collect()
}

/// Parses and checks the YAML (or JSON) text of the file.
///
/// # Errors
/// [`ConfigError::Parse`] for bad YAML or an unknown field (CEL `expression`s
/// included), [`ConfigError::Invalid`] naming the first entry that is wrong.
pub fn parse(text: &str) -> Result<Checked, ConfigError> {
    let config: AuthenticationConfiguration = serde_yaml::from_str(text).map_err(ConfigError::Parse)?;
    check(config).map_err(ConfigError::Invalid)
}

fn check(config: AuthenticationConfiguration) -> Result<Checked, String> {
    if config.api_version != API_VERSION || config.kind != KIND {
        return Err(format!("apiVersion must be {API_VERSION} and kind {KIND}"));
    }
    let mut jwt = Vec::with_capacity(config.jwt.len());
    for (index, entry) in config.jwt.into_iter().enumerate() {
        let err = |reason: String| format!("jwt[{index}]: {reason}");
        let issuer = &entry.issuer;
        if !issuer.url.starts_with("https://") {
            return Err(err("issuer.url must start with https://".into()));
        }
        if jwt.iter().any(|seen: &CheckedJwt| seen.config.issuer.url == issuer.url) {
            return Err(err(format!("issuer {} is configured twice", issuer.url)));
        }
        for (field, url) in [("discoveryURL", &issuer.discovery_url), ("jwksURL", &issuer.jwks_url)] {
            if url.as_ref().is_some_and(|u| !u.starts_with("https://")) {
                return Err(err(format!("issuer.{field} must start with https://")));
            }
        }
        if [issuer.discovery_url.is_some(), issuer.jwks_url.is_some(), issuer.jwks_file.is_some()]
            .iter()
            .filter(|set| **set)
            .count()
            > 1
        {
            return Err(err("give at most one of issuer.discoveryURL, issuer.jwksURL and issuer.jwksFile".into()));
        }
        if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
            return Err(err("issuer.audiences must list at least one audience".into()));
        }
        if issuer.audience_match_policy.as_deref().is_some_and(|p| p != "MatchAny") {
            return Err(err("issuer.audienceMatchPolicy must be MatchAny".into()));
        }
        let algorithms = match &issuer.algorithms {
            Some(names) => parse_algorithms(names).map_err(err)?,
            None => DEFAULT_ALGORITHMS.to_vec(),
        };
        if entry.claim_mappings.username.claim.is_empty() {
            return Err(err("claimMappings.username.claim must not be empty".into()));
        }
        if entry.tenants.is_empty() {
            return Err(err("tenants must map at least one user to a tenant".into()));
        }
        let tenants = TenantMap::compile(&entry.tenants).map_err(err)?;
        jwt.push(CheckedJwt { config: entry, tenants, algorithms });
    }
    let token_review = match config.token_review {
        None => None,
        Some(review) => {
            let err = |reason: String| format!("tokenReview: {reason}");
            let audiences = review.audiences.unwrap_or_else(|| vec![DEFAULT_AUDIENCE.to_owned()]);
            if audiences.is_empty() || audiences.iter().any(String::is_empty) {
                return Err(err("audiences must list at least one audience".into()));
            }
            let cache_ttl = match review.cache_ttl {
                None => DEFAULT_TOKEN_REVIEW_CACHE_TTL,
                Some(text) => berth_api::duration::parse(&text).map_err(|e| err(format!("cacheTTL: {e}")))?,
            };
            if cache_ttl > MAX_TOKEN_REVIEW_CACHE_TTL {
                return Err(err("cacheTTL must be at most 5m".into()));
            }
            if review.tenants.is_empty() {
                return Err(err("tenants must map at least one user to a tenant".into()));
            }
            let tenants = TenantMap::compile(&review.tenants).map_err(err)?;
            Some(CheckedTokenReview { audiences, cache_ttl, tenants })
        }
    };
    if jwt.is_empty() && token_review.is_none() {
        return Err("configure at least one jwt issuer or tokenReview".into());
    }
    Ok(Checked { jwt, token_review })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
apiVersion: berth.skaphos.io/v1alpha1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: https://east.example.com
    audiences: [berth]
  claimValidationRules:
  - claim: azp
    requiredValue: berth
  tenants:
  - serviceAccount: berth-system:berth-operator
    tenant: east
    namespaces: [pipeline]
- issuer:
    url: https://west.example.com
    jwksURL: https://keys.west.example.com/jwks
    audiences: [berth, other]
    algorithms: [ES256]
  claimMappings:
    username: {claim: email, prefix: "oidc:"}
  tenants:
  - username: oidc:ops@example.com
    tenant: west
tokenReview:
  cacheTTL: 30s
  tenants:
  - serviceAccount: apps:worker
    tenant: core
"#;

    #[test]
    fn the_documented_shape_parses() {
        let checked = parse(EXAMPLE).unwrap();
        assert_eq!(checked.jwt.len(), 2);
        let east = &checked.jwt[0];
        assert_eq!(east.config.claim_mappings.username, PrefixedClaim::default());
        assert_eq!(east.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(east.tenants.tenant_of("system:serviceaccount:berth-system:berth-operator").unwrap().name, "east");
        let west = &checked.jwt[1];
        assert_eq!(west.config.claim_mappings.username.prefix, "oidc:");
        let review = checked.token_review.unwrap();
        assert_eq!(review.audiences, ["berth"]);
        assert_eq!(review.cache_ttl, Duration::from_secs(30));
    }

    #[test]
    fn wrong_entries_are_refused_naming_them() {
        let cases = [
            (EXAMPLE.replace("url: https://east", "url: http://east"), "jwt[0]: issuer.url"),
            (
                EXAMPLE.replace("https://west.example.com\n", "https://east.example.com\n"),
                "jwt[1]: issuer https://east",
            ),
            (EXAMPLE.replace("[berth, other]", "[]"), "jwt[1]: issuer.audiences"),
            (EXAMPLE.replace("[ES256]", "[HS256]"), "jwt[1]: "),
            (EXAMPLE.replace("[ES256]", "[none]"), "jwt[1]: "),
            (EXAMPLE.replace("cacheTTL: 30s", "cacheTTL: 1h"), "tokenReview: cacheTTL"),
            (EXAMPLE.replace("tenant: west", "tenant: West"), "jwt[1]: tenants[0]"),
            (EXAMPLE.replace("kind: AuthenticationConfiguration", "kind: Other"), "apiVersion must be"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn cel_expressions_and_unknown_fields_are_refused() {
        let cel =
            EXAMPLE.replace("username: {claim: email, prefix: \"oidc:\"}", "username: {expression: claims.email}");
        assert!(matches!(parse(&cel), Err(ConfigError::Parse(_))));
        let typo = EXAMPLE.replace("audiences: [berth]\n", "audience: [berth]\n");
        assert!(matches!(parse(&typo), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn an_empty_configuration_is_refused() {
        let err = parse("apiVersion: berth.skaphos.io/v1alpha1\nkind: AuthenticationConfiguration\n").unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
    }

    #[test]
    fn symmetric_and_unknown_algorithms_cannot_be_configured() {
        for name in ["HS256", "HS512", "none", "rs256", ""] {
            assert!(parse_algorithms(&[name.to_owned()]).is_err(), "{name}");
        }
        assert_eq!(parse_algorithms(&["ES256".to_owned()]).unwrap(), [Algorithm::ES256]);
        assert!(parse_algorithms(&[]).is_err());
    }
}
