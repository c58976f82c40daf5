//! Serving: the TLS API listener, the plain metrics and health-probe
//! listeners, the watchers of the keys file and the authentication
//! configuration, and graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::auth::config::ConfigError;
use crate::auth::configured::AuthConfigFile;
use crate::auth::{Authenticator, Chain, KeysFile, KeysFileError, reload};
use crate::http::{App, metrics_router, probe_router, router};
use crate::limits::{CappedAcceptor, ConnectionLimits};
use crate::metrics::Metrics;
use crate::write_queue::WriteLimit;

/// How long requests in flight may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How often the keys file and the authentication configuration are checked
/// for changes (a local `stat`).
pub const KEYS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// What `main` parsed from the flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// `None`: in-cluster config (or `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// `None`: no metrics listener (`--metrics-bind-address=0`).
    pub metrics_addr: Option<SocketAddr>,
    /// `None`: no health-probe listener (`--health-probe-bind-address=0`).
    pub health_addr: Option<SocketAddr>,
    /// Static API keys; at least one of this and `authentication_config` is set.
    pub api_keys_file: Option<PathBuf>,
    /// JWT issuers and TokenReview, and their mapping to tenants (docs/auth.md).
    pub authentication_config: Option<PathBuf>,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub write_limit: WriteLimit,
    pub connection_limits: ConnectionLimits,
}

/// Why the server could not start or stopped serving: the process
/// boundary, reported once by `main` with exit code 1, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM file of the certificate or key that cannot be read or parsed.
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate and key do not make a TLS server configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    #[error("API keys file: {0}")]
    Keys(#[from] KeysFileError),
    #[error("authentication configuration: {0}")]
    AuthConfig(#[from] ConfigError),
    #[error("give --api-keys-file, --authentication-config, or both")]
    NoAuthentication,
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither `KUBECONFIG` nor the in-cluster config gave a client config.
    #[error("Kubernetes client config: {0}")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// A `:port` address (Go style) means every IPv4 interface.
pub fn parse_addr(s: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}").parse(),
        None => s.parse(),
    }
}

/// rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1.
///
/// # Errors
/// When the PEM files cannot be read or do not form a certificate and key.
pub fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<rustls::ServerConfig, Error> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| Error::TlsFile { path: cert.clone(), source })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| Error::TlsFile { path: key.clone(), source })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| Error::Kubeconfig { path: path.clone(), source };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(kubeconfig_error)?
        }
        None => kube::Config::infer().await.map_err(Error::InferConfig)?,
    };
    kube::Client::try_from(config).map_err(Error::KubeClient)
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first of them.
fn signal() -> Result<impl Future<Output = ()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Serve)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Serve)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// The chain of authenticators: static keys first (a hash and a compare),
/// then the authentication configuration's JWT issuers and TokenReview. Each
/// file is watched and reloaded on change until `shutdown`.
fn authenticators(
    config: &Config,
    client: &kube::Client,
    shutdown: &watch::Receiver<bool>,
) -> Result<Arc<dyn Authenticator>, Error> {
    let mut links: Vec<Arc<dyn Authenticator>> = Vec::new();
    if let Some(path) = &config.api_keys_file {
        let keys = Arc::new(KeysFile::load(path)?);
        tracing::info!(keys = keys.current().len(), path = %path.display(), "loaded the API keys file");
        tokio::spawn(reload::watch(keys.clone(), KEYS_RELOAD_INTERVAL, shutdown.clone()));
        links.push(keys);
    }
    if let Some(path) = &config.authentication_config {
        let file = Arc::new(AuthConfigFile::load(path, client.clone())?);
        let current = file.current();
        tracing::info!(
            path = %path.display(), issuers = current.jwt.key_caches().len(),
            token_review = current.token_review.is_some(), "loaded the authentication configuration"
        );
        tokio::spawn({
            let file = file.clone();
            async move { file.prefetch_keys().await }
        });
        tokio::spawn(reload::watch(file.clone(), KEYS_RELOAD_INTERVAL, shutdown.clone()));
        links.push(file);
    }
    if links.is_empty() {
        return Err(Error::NoAuthentication);
    }
    Ok(Arc::new(Chain::new(links)))
}

/// Runs until SIGTERM or SIGINT, then drains for at most [`DRAIN`].
///
/// # Errors
/// When a file or the kube config is bad, or a port cannot be bound.
pub async fn run(config: Config) -> Result<(), Error> {
    let tls = tls_config(&config.tls_cert_file, &config.tls_key_file)?;
    let client = kube_client(config.kubeconfig.as_ref()).await?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let authenticator = authenticators(&config, &client, &shutdown)?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let health_listener = match config.health_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let api_listener = std::net::TcpListener::bind(config.listen_addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Listen { addr: config.listen_addr, source })?;

    let metrics = Arc::new(Metrics::default());
    let app =
        App::start(client, &config.namespaces, authenticator, metrics.clone(), shutdown.clone(), config.write_limit);

    // The probe and metrics listeners outlive the drain, so /readyz answers 503 during it.
    let (stopped_tx, stopped) = watch::channel(false);
    let plain = |listener, router: axum::Router| {
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let done = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            axum::serve(listener, router).with_graceful_shutdown(done).await
        })
    };
    let mut plain_servers = Vec::new();
    if let Some(listener) = metrics_listener {
        plain_servers.push(plain(listener, metrics_router(metrics)));
    }
    if let Some(listener) = health_listener {
        plain_servers.push(plain(listener, probe_router(app.clone())));
    }

    let handle = axum_server::Handle::new();
    let signalled = signal()?;
    tokio::spawn({
        let handle = handle.clone();
        async move {
            signalled.await;
            tracing::info!(drain_seconds = DRAIN.as_secs(), "shutting down: no new connections, draining requests");
            let _ = shutdown_tx.send(true);
            handle.graceful_shutdown(Some(DRAIN));
        }
    });
    tracing::info!(
        listen = %config.listen_addr, metrics = ?config.metrics_addr, health = ?config.health_addr,
        namespaces = ?config.namespaces, "serving the lease API over TLS"
    );
    let limits = config.connection_limits;
    let mut server = axum_server::from_tcp_rustls(api_listener, RustlsConfig::from_config(Arc::new(tls)))
        .map_err(Error::Serve)?
        .map(|tls| {
            tls.handshake_timeout(limits.tls_handshake_timeout).acceptor(CappedAcceptor::new(limits.max_connections))
        })
        .handle(handle);
    server.http_builder().http1().header_read_timeout(limits.header_read_timeout);
    let served = server.serve(router(app).into_make_service()).await;
    let _ = stopped_tx.send(true);
    for server in plain_servers {
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    }
    tracing::info!("stopped");
    served.map_err(Error::Serve)
}
