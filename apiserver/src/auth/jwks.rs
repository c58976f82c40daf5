//! An issuer's signing keys (JWKS): where they come from (OIDC discovery, a
//! JWKS URL, a file), and a cache refreshed when a token names a key it does
//! not know, at most once per [`MIN_REFRESH_INTERVAL`].

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use serde::Deserialize;

use super::AuthError;

/// The least time between two fetches of one issuer's keys. Bounds the load a
/// stream of tokens with made-up `kid`s puts on the issuer, and how long a
/// rotated-in key waits to be learned when a fetch happened just before.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How long one fetch (discovery plus JWKS) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS accepted.
const MAX_BODY: usize = 1 << 20;

/// Where an issuer's keys are read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// An OIDC discovery document (its `jwks_uri`), which must name `issuer`.
    Discovery {
        url: String,
        issuer: String,
    },
    Url(String),
    File(PathBuf),
}

/// One verification key of the set.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The `alg` the set pins for this key, if any.
    pub algorithm: Option<jsonwebtoken::Algorithm>,
    pub key: Arc<DecodingKey>,
}

/// The keys as last fetched.
#[derive(Clone, Default)]
struct KeySet {
    keys: Vec<VerificationKey>,
    fetched: Option<Instant>,
}

/// An issuer's keys and how to fetch them again.
pub struct KeyCache {
    source: KeySource,
    http: reqwest::Client,
    current: RwLock<KeySet>,
    /// Serialises fetches, so that a burst of unknown `kid`s makes one.
    fetching: tokio::sync::Mutex<()>,
}

impl KeyCache {
    /// # Errors
    /// When the CA bundle is unusable.
    pub fn new(source: KeySource, certificate_authority: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            source,
            http: http_client(certificate_authority)?,
            current: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The keys that may have signed a token with `kid` (every key when the
    /// token names none). When none is known, fetches the set again unless a
    /// fetch happened less than [`MIN_REFRESH_INTERVAL`] ago.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when a fetch was due and failed.
    pub async fn candidates(&self, kid: Option<&str>, now: Instant) -> Result<Vec<VerificationKey>, AuthError> {
        let found = matching(&self.current.read().expect("jwks lock").keys, kid);
        if !found.is_empty() {
            return Ok(found);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let set = self.current.read().expect("jwks lock").clone();
        let found = matching(&set.keys, kid);
        if !found.is_empty() || set.fetched.is_some_and(|at| now.saturating_duration_since(at) < MIN_REFRESH_INTERVAL) {
            return Ok(found);
        }
        let fetched = self.fetch().await;
        self.store(fetched, now).map(|()| matching(&self.current.read().expect("jwks lock").keys, kid))
    }

    /// Fetches now unless a fetch was made before (at start-up and for an
    /// issuer new in a reload, so that the first tokens need not wait).
    pub async fn prefetch(&self) {
        let _one_fetch = self.fetching.lock().await;
        if self.current.read().expect("jwks lock").fetched.is_some() {
            return;
        }
        let fetched = self.fetch().await;
        if let Err(e) = self.store(fetched, Instant::now()) {
            tracing::warn!(source = ?self.source, error = %e, "the issuer's keys could not be fetched yet; retrying on demand");
        }
    }

    fn store(&self, fetched: Result<Vec<VerificationKey>, String>, now: Instant) -> Result<(), AuthError> {
        let mut current = self.current.write().expect("jwks lock");
        current.fetched = Some(now);
        match fetched {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "fetched the issuer's signing keys");
                current.keys = keys;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(source = ?self.source, error = %e, "fetching the issuer's signing keys failed");
                Err(AuthError::Unavailable(format!("fetching signing keys: {e}")))
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerificationKey>, String> {
        let body = match &self.source {
            KeySource::File(path) => std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?,
            KeySource::Url(url) => self.get(url).await?,
            KeySource::Discovery { url, issuer } => {
                let document: Discovery = serde_json::from_slice(&self.get(url).await?)
                    .map_err(|e| format!("discovery document {url}: {e}"))?;
                if document.issuer != *issuer {
                    return Err(format!("discovery document {url} names issuer {:?}, not {issuer:?}", document.issuer));
                }
                if !document.jwks_uri.starts_with("https://") {
                    return Err(format!("discovery document {url}: jwks_uri must be https://"));
                }
                self.get(&document.jwks_uri).await?
            }
        };
        parse_jwks(&body)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_BODY {
            return Err(format!("GET {url}: the answer is larger than {MAX_BODY} bytes"));
        }
        Ok(body.to_vec())
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

fn matching(keys: &[VerificationKey], kid: Option<&str>) -> Vec<VerificationKey> {
    keys.iter().filter(|k| kid.is_none() || k.kid.as_deref() == kid).cloned().collect()
}

/// The public signing keys of a JWKS document. Symmetric (`oct`) keys,
/// encryption keys and keys this build cannot use are left out.
///
/// # Errors
/// When the document is not a JSON object with a `keys` array.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerificationKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| format!("JWKS: {e}"))?;
    let mut keys = Vec::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_))
            || jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            continue;
        }
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => match key_algorithm(alg) {
                Some(alg) => Some(alg),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        keys.push(VerificationKey { kid: jwk.common.key_id.clone(), algorithm, key: Arc::new(key) });
    }
    Ok(keys)
}

/// The signature algorithm a JWK's `alg` names; `None` for anything else.
fn key_algorithm(alg: KeyAlgorithm) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm as A;
    Some(match alg {
        KeyAlgorithm::RS256 => A::RS256,
        KeyAlgorithm::RS384 => A::RS384,
        KeyAlgorithm::RS512 => A::RS512,
        KeyAlgorithm::PS256 => A::PS256,
        KeyAlgorithm::PS384 => A::PS384,
        KeyAlgorithm::PS512 => A::PS512,
        KeyAlgorithm::ES256 => A::ES256,
        KeyAlgorithm::ES384 => A::ES384,
        KeyAlgorithm::EdDSA => A::EdDSA,
        _ => return None,
    })
}

/// HTTPS only, trusting `certificate_authority` (PEM) or else the system's store.
fn http_client(certificate_authority: Option<&str>) -> Result<reqwest::Client, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match certificate_authority {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.map_err(|e| format!("certificateAuthority: {e}"))?).map_err(|e| e.to_string())?;
            }
            if roots.is_empty() {
                return Err("certificateAuthority holds no certificate".to_owned());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| e.to_string())?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .https_only(true)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_signing_keys_are_kept() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "XYZ", "kid": "unknown"}
        ]});
        let keys = parse_jwks(&serde_json::to_vec(&jwks).unwrap()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("rsa")]);
        assert_eq!(keys[0].algorithm, Some(jsonwebtoken::Algorithm::RS256));
        assert!(parse_jwks(b"{\"nokeys\": []}").is_err());
    }

    #[test]
    fn a_token_without_kid_may_match_any_key() {
        let key = |kid: &str| VerificationKey {
            kid: Some(kid.to_owned()),
            algorithm: None,
            key: Arc::new(DecodingKey::from_secret(b"unused").unwrap()),
        };
        let keys = [key("a"), key("b")];
        assert_eq!(matching(&keys, Some("b")).len(), 1);
        assert_eq!(matching(&keys, Some("c")).len(), 0);
        assert_eq!(matching(&keys, None).len(), 2);
    }
}
