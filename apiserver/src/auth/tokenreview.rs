//! Tokens of the coordination cluster itself, checked by its kube-apiserver
//! (`authentication.k8s.io/v1` TokenReview with Berth's audiences).
//!
//! Answers are cached by the token's SHA-256 for the configured TTL (10 s by
//! default, never past the token's own `exp`), so a renewing holder costs one
//! TokenReview per TTL, not one per request. The bound on revocation: a token
//! that kube-apiserver stops accepting (its pod or service account deleted)
//! keeps working here for at most the TTL. Refusals are cached as well, so a
//! flood of bad tokens cannot turn into a flood of TokenReviews.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::config::CheckedTokenReview;
use super::mapping::TenantMap;
use super::{AuthError, Authenticator, Verdict};

/// The most answers kept; past it, expired ones are dropped, then all.
const MAX_CACHED: usize = 10_000;

/// A user name, or a refusal (`None`), valid until the instant.
type Cached = (Option<String>, Instant);

/// The TokenReview cache, on its own so that its rules take the clock as an argument.
#[derive(Default)]
pub struct ReviewCache {
    answers: Mutex<HashMap<[u8; 32], Cached>>,
}

impl ReviewCache {
    /// The cached answer for `key` at `now`: `Some(Some(user))`, `Some(None)` for a refusal.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Option<String>> {
        let answers = self.answers.lock().expect("review cache lock");
        answers.get(key).filter(|(_, until)| now < *until).map(|(user, _)| user.clone())
    }

    pub fn put(&self, key: [u8; 32], user: Option<String>, until: Instant, now: Instant) {
        let mut answers = self.answers.lock().expect("review cache lock");
        if answers.len() >= MAX_CACHED {
            answers.retain(|_, (_, expires)| now < *expires);
            if answers.len() >= MAX_CACHED {
                answers.clear();
            }
        }
        answers.insert(key, (user, until));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.lock().expect("review cache lock").len()
    }
}

/// How long an answer may be kept: the TTL, but an accepted token's answer
/// never outlives its `exp` (seconds since the epoch, if the token has one).
pub fn keep_until(now: Instant, now_unix: i64, ttl: Duration, exp: Option<i64>) -> Instant {
    let left = exp.map_or(ttl, |exp| Duration::from_secs(exp.saturating_sub(now_unix).max(0).unsigned_abs()));
    now + ttl.min(left)
}

/// TokenReview against the coordination cluster.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audiences: Vec<String>,
    ttl: Duration,
    tenants: TenantMap,
    cache: Arc<ReviewCache>,
}

impl TokenReviewer {
    /// A reviewer for `config`, reusing the answers of `previous` when it
    /// asked for the same audiences (a reload changes the mapping, not what
    /// kube-apiserver said).
    pub fn new(client: kube::Client, config: &CheckedTokenReview, previous: Option<&TokenReviewer>) -> Self {
        let cache = previous
            .filter(|p| p.audiences == config.audiences)
            .map_or_else(|| Arc::new(ReviewCache::default()), |p| p.cache.clone());
        Self {
            api: Api::all(client),
            audiences: config.audiences.clone(),
            ttl: config.cache_ttl,
            tenants: config.tenants.clone(),
            cache,
        }
    }

    /// Only JWT-shaped tokens are sent: a static key that no key matched never leaves this process.
    async fn review(&self, token: &str, now: Instant, now_unix: i64) -> Verdict {
        let Ok(unverified) = jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token) else {
            return Ok(None);
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let user = match self.cache.get(&key, now) {
            Some(user) => user,
            None => {
                let user = self.ask(token).await?;
                let exp = unverified.get("exp").and_then(Value::as_i64);
                let until = if user.is_some() { keep_until(now, now_unix, self.ttl, exp) } else { now + self.ttl };
                self.cache.put(key, user.clone(), until, now);
                user
            }
        };
        Ok(user.and_then(|user| self.tenants.tenant_of(&user)))
    }

    /// The user name kube-apiserver authenticates `token` as, for one of our audiences.
    async fn ask(&self, token: &str) -> Result<Option<String>, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_owned(), audiences: Some(self.audiences.clone()) },
            ..Default::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview: {e}")))?;
        let Some(status) = answer.status else { return Ok(None) };
        if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
            tracing::debug!(error, "TokenReview refused the token");
        }
        let audience_ok = status.audiences.as_ref().is_none_or(|got| got.iter().any(|a| self.audiences.contains(a)));
        Ok((status.authenticated == Some(true) && audience_ok).then(|| status.user.and_then(|u| u.username)).flatten())
    }
}

impl Authenticator for TokenReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(self.review(token, Instant::now(), chrono::Utc::now().timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_for_the_ttl_but_never_past_the_tokens_expiry() {
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(keep_until(now, 1000, ttl, None), now + ttl);
        assert_eq!(keep_until(now, 1000, ttl, Some(2000)), now + ttl);
        assert_eq!(keep_until(now, 1000, ttl, Some(1004)), now + Duration::from_secs(4));
        assert_eq!(keep_until(now, 1000, ttl, Some(900)), now);
    }

    #[test]
    fn cached_answers_expire_and_the_cache_stays_bounded() {
        let cache = ReviewCache::default();
        let now = Instant::now();
        cache.put([1; 32], Some("user".into()), now + Duration::from_secs(1), now);
        cache.put([2; 32], None, now + Duration::from_secs(1), now);
        assert_eq!(cache.get(&[1; 32], now), Some(Some("user".into())));
        assert_eq!(cache.get(&[2; 32], now), Some(None));
        assert_eq!(cache.get(&[1; 32], now + Duration::from_secs(1)), None);
        assert_eq!(cache.get(&[3; 32], now), None);

        for i in 0..MAX_CACHED {
            let key: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            cache.put(key, None, now + Duration::from_secs(1), now);
        }
        assert!(cache.len() <= MAX_CACHED);
    }
}
