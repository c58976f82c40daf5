//! JWTs checked offline against configured issuers: the signature by the
//! issuer's keys ([`super::jwks`]), `iss`, `aud`, `exp` and `nbf` (with
//! [`LEEWAY_SECONDS`]), the claim validation rules, then the user name to a
//! tenant. Only the issuer's pinned asymmetric algorithms are accepted, never
//! `none` or HS*, so a public key can never serve as an HMAC secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::config::{CheckedJwt, ClaimValidationRule, PrefixedClaim};
use super::jwks::{KeyCache, KeySource};
use super::mapping::TenantMap;
use super::{Authenticator, Tenant, Verdict};

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

/// One trusted issuer.
pub struct JwtIssuer {
    url: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    claim_rules: Vec<ClaimValidationRule>,
    username: PrefixedClaim,
    tenants: TenantMap,
    keys: Arc<KeyCache>,
    certificate_authority: Option<String>,
}

/// Every configured issuer, by `iss`.
#[derive(Default)]
pub struct JwtAuthenticator {
    issuers: HashMap<String, JwtIssuer>,
}

impl JwtAuthenticator {
    /// Builds the issuers of a checked configuration. An issuer whose keys
    /// come from the same place as in `previous` keeps its cached keys.
    ///
    /// # Errors
    /// When an issuer's CA bundle is unusable.
    pub fn build(entries: &[CheckedJwt], previous: Option<&JwtAuthenticator>) -> Result<Self, String> {
        let mut issuers = HashMap::new();
        for CheckedJwt { config: entry, tenants, algorithms } in entries {
            let issuer = &entry.issuer;
            let source = if let Some(path) = &issuer.jwks_file {
                KeySource::File(path.clone())
            } else if let Some(url) = &issuer.jwks_url {
                KeySource::Url(url.clone())
            } else {
                let url = issuer.discovery_url.clone().unwrap_or_else(|| {
                    format!("{}/.well-known/openid-configuration", issuer.url.trim_end_matches('/'))
                });
                KeySource::Discovery { url, issuer: issuer.url.clone() }
            };
            let reused = previous.and_then(|p| p.issuers.get(&issuer.url)).filter(|old| {
                *old.keys.source() == source && old.certificate_authority == issuer.certificate_authority
            });
            let keys = match reused {
                Some(old) => old.keys.clone(),
                None => Arc::new(
                    KeyCache::new(source, issuer.certificate_authority.as_deref())
                        .map_err(|e| format!("issuer {}: {e}", issuer.url))?,
                ),
            };
            issuers.insert(
                issuer.url.clone(),
                JwtIssuer {
                    url: issuer.url.clone(),
                    audiences: issuer.audiences.clone(),
                    algorithms: algorithms.clone(),
                    claim_rules: entry.claim_validation_rules.clone(),
                    username: entry.claim_mappings.username.clone(),
                    tenants: tenants.clone(),
                    keys,
                    certificate_authority: issuer.certificate_authority.clone(),
                },
            );
        }
        Ok(Self { issuers })
    }

    /// Every issuer's key cache, to fetch them at start-up.
    pub fn key_caches(&self) -> Vec<Arc<KeyCache>> {
        self.issuers.values().map(|i| i.keys.clone()).collect()
    }

    /// Checks `token` at `now` (monotonic, for the key cache) and
    /// `now_unix` (seconds, for `exp` and `nbf`).
    pub async fn verify(&self, token: &str, now: Instant, now_unix: i64) -> Verdict {
        // Cheap refusals first: not a JWT, an algorithm never accepted, an issuer not configured.
        let Ok(header) = jsonwebtoken::decode_header(token) else { return Ok(None) };
        let Ok(unverified) = jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token) else {
            return Ok(None);
        };
        let Some(issuer) = unverified.get("iss").and_then(Value::as_str).and_then(|iss| self.issuers.get(iss)) else {
            return Ok(None);
        };
        if !issuer.algorithms.contains(&header.alg) {
            return refuse(issuer, "algorithm not accepted");
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.url]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Times are checked below, against the clock passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut verified = None;
        for candidate in issuer.keys.candidates(header.kid.as_deref(), now).await? {
            if candidate.algorithm.is_some_and(|alg| alg != header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {}
                Err(e) => return refuse(issuer, &e.to_string()),
            }
        }
        let Some(claims) = verified else { return refuse(issuer, "no key of the issuer verifies the signature") };
        if let Err(reason) = check_times(&claims, now_unix) {
            return refuse(issuer, reason);
        }
        match user_of(issuer, &claims) {
            Ok(username) => match issuer.tenants.tenant_of(&username) {
                Some(tenant) => Ok(Some(tenant)),
                None => refuse(issuer, "the user is mapped to no tenant"),
            },
            Err(reason) => refuse(issuer, reason),
        }
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(self.verify(token, Instant::now(), chrono::Utc::now().timestamp()))
    }
}

fn refuse(issuer: &JwtIssuer, reason: &str) -> Verdict {
    tracing::debug!(issuer = %issuer.url, reason, "JWT refused");
    Ok(None::<Tenant>)
}

/// `exp` is required and must not have passed, `nbf` (if any) must have come,
/// both give or take [`LEEWAY_SECONDS`].
pub fn check_times(claims: &Map<String, Value>, now_unix: i64) -> Result<(), &'static str> {
    let seconds = |name| claims.get(name).and_then(Value::as_f64).map(|v| v as i64);
    let exp = seconds("exp").ok_or("exp is missing or not a number")?;
    if now_unix >= exp.saturating_add(LEEWAY_SECONDS) {
        return Err("the token has expired");
    }
    if claims.contains_key("nbf") {
        let nbf = seconds("nbf").ok_or("nbf is not a number")?;
        if now_unix < nbf.saturating_sub(LEEWAY_SECONDS) {
            return Err("the token is not valid yet");
        }
    }
    Ok(())
}

/// The claim validation rules, then `prefix + claims[claim]`.
fn user_of(issuer: &JwtIssuer, claims: &Map<String, Value>) -> Result<String, &'static str> {
    for rule in &issuer.claim_rules {
        if claims.get(&rule.claim).and_then(Value::as_str) != Some(rule.required_value.as_str()) {
            return Err("a claim validation rule does not hold");
        }
    }
    let value = claims.get(&issuer.username.claim).and_then(Value::as_str).ok_or("the user-name claim is missing")?;
    if value.is_empty() {
        return Err("the user-name claim is empty");
    }
    Ok(format!("{}{value}", issuer.username.prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn expiry_and_not_before_allow_a_small_leeway() {
        let now = 1_000_000;
        assert!(check_times(&claims(serde_json::json!({"exp": now + 60})), now).is_ok());
        assert!(check_times(&claims(serde_json::json!({"exp": now - LEEWAY_SECONDS + 1})), now).is_ok());
        assert_eq!(
            check_times(&claims(serde_json::json!({"exp": now - LEEWAY_SECONDS})), now),
            Err("the token has expired")
        );
        assert!(check_times(&claims(serde_json::json!({})), now).is_err());
        let early = serde_json::json!({"exp": now + 600, "nbf": now + LEEWAY_SECONDS + 1});
        assert_eq!(check_times(&claims(early), now), Err("the token is not valid yet"));
        assert!(check_times(&claims(serde_json::json!({"exp": now + 600, "nbf": now + 5})), now).is_ok());
    }

    /// An issuer whose keys are a JWKS file, and a token signer with its key.
    fn issuer_with_jwks_file(dir: &std::path::Path) -> (JwtAuthenticator, jsonwebtoken::EncodingKey) {
        let pem_path = dir.join("issuer.key");
        let status = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem_path)
            .arg("2048")
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&pem_path).unwrap()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("k1".to_owned());
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, serde_json::to_vec(&serde_json::json!({"keys": [jwk]})).unwrap()).unwrap();
        let text = format!(
            "apiVersion: berth.skaphos.io/v1alpha1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: https://issuer.test\n    jwksFile: {}\n    audiences: [berth]\n  tenants:\n  - {{serviceAccount: 'apps:worker', tenant: east, namespaces: [pipeline]}}\n",
            jwks.display()
        );
        let checked = super::super::config::parse(&text).unwrap();
        (JwtAuthenticator::build(&checked.jwt, None).unwrap(), key)
    }

    #[tokio::test]
    async fn a_token_is_accepted_only_with_every_check_passing() {
        let dir = std::env::temp_dir().join(format!("berth-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (issuer, key) = issuer_with_jwks_file(&dir);
        let now = 1_900_000_000;
        let claims = |iss: &str, aud: &str, exp: i64| serde_json::json!({"iss": iss, "aud": [aud], "sub": "system:serviceaccount:apps:worker", "exp": exp});
        let header = |kid: &str| jsonwebtoken::Header {
            kid: Some(kid.to_owned()),
            ..jsonwebtoken::Header::new(Algorithm::RS256)
        };
        let sign = |header, claims: serde_json::Value| jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let check = |token: String| {
            let issuer = &issuer;
            async move { issuer.verify(&token, Instant::now(), now).await.unwrap() }
        };

        let tenant = check(sign(header("k1"), claims("https://issuer.test", "berth", now + 60))).await.unwrap();
        assert_eq!(tenant.name, "east");
        assert!(tenant.may_use_namespace("pipeline") && !tenant.may_use_namespace("other"));

        assert_eq!(check(sign(header("k1"), claims("https://issuer.test", "berth", now - 60))).await, None, "expired");
        assert_eq!(check(sign(header("k1"), claims("https://issuer.test", "other", now + 60))).await, None, "audience");
        assert_eq!(check(sign(header("k1"), claims("https://other.test", "berth", now + 60))).await, None, "issuer");
        assert_eq!(check(sign(header("k2"), claims("https://issuer.test", "berth", now + 60))).await, None, "kid");
        let mut unmapped = claims("https://issuer.test", "berth", now + 60);
        unmapped["sub"] = "system:serviceaccount:apps:other".into();
        assert_eq!(check(sign(header("k1"), unmapped)).await, None, "unmapped user");
        let hs256 = jsonwebtoken::Header { kid: Some("k1".into()), ..jsonwebtoken::Header::new(Algorithm::HS256) };
        let forged = jsonwebtoken::encode(
            &hs256,
            &claims("https://issuer.test", "berth", now + 60),
            &jsonwebtoken::EncodingKey::from_secret(b"public key bytes").unwrap(),
        )
        .unwrap();
        assert_eq!(check(forged).await, None, "HS256");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
