//! The authenticators of `--authentication-config`, rebuilt when the file
//! changes. A bad new version is refused and the one in force stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use super::config::{self, ConfigError};
use super::jwt::JwtAuthenticator;
use super::reload::Reloadable;
use super::tokenreview::TokenReviewer;
use super::{Authenticator, Verdict};

/// One version of the file, built.
pub struct Configured {
    pub jwt: JwtAuthenticator,
    pub token_review: Option<TokenReviewer>,
}

impl Configured {
    fn build(text: &str, client: &kube::Client, previous: Option<&Configured>) -> Result<Self, ConfigError> {
        let checked = config::parse(text)?;
        let jwt = JwtAuthenticator::build(&checked.jwt, previous.map(|p| &p.jwt)).map_err(ConfigError::Invalid)?;
        let token_review = checked
            .token_review
            .as_ref()
            .map(|review| TokenReviewer::new(client.clone(), review, previous.and_then(|p| p.token_review.as_ref())));
        Ok(Self { jwt, token_review })
    }

    /// The JWT issuers first (offline), then TokenReview.
    async fn authenticate(&self, token: &str) -> Verdict {
        let jwt = self.jwt.authenticate(token).await;
        if let Ok(Some(tenant)) = jwt {
            return Ok(Some(tenant));
        }
        match &self.token_review {
            Some(reviewer) => match reviewer.authenticate(token).await {
                Ok(None) => jwt,
                decided => decided,
            },
            None => jwt,
        }
    }
}

/// The file and the version in force.
pub struct AuthConfigFile {
    path: PathBuf,
    client: kube::Client,
    current: RwLock<Arc<Configured>>,
}

impl AuthConfigFile {
    /// Reads and builds the file; TokenReviews go through `client`.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid configuration.
    pub fn load(path: impl Into<PathBuf>, client: kube::Client) -> Result<Self, ConfigError> {
        let path = path.into();
        let configured = Configured::build(&read(&path)?, &client, None)?;
        Ok(Self { path, client, current: RwLock::new(Arc::new(configured)) })
    }

    /// The version in force.
    pub fn current(&self) -> Arc<Configured> {
        self.current.read().expect("auth config lock").clone()
    }

    /// Fetches every issuer's keys now, so that the first tokens do not wait.
    pub async fn prefetch_keys(&self) {
        for keys in self.current().jwt.key_caches() {
            keys.prefetch().await;
        }
    }

    /// Rereads the file now; on error the version in force stays.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid configuration.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let previous = self.current();
        let configured = Configured::build(&read(&self.path)?, &self.client, Some(&previous))?;
        *self.current.write().expect("auth config lock") = Arc::new(configured);
        Ok(())
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

impl Authenticator for AuthConfigFile {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        let configured = self.current();
        Box::pin(async move { configured.authenticate(token).await })
    }
}

impl Reloadable for AuthConfigFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> &'static str {
        "authentication configuration"
    }

    fn reload_now(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.reload()?;
        let current = self.current();
        for keys in current.jwt.key_caches() {
            tokio::spawn(async move { keys.prefetch().await });
        }
        Ok(())
    }
}
