//! The system under test: the local control plane of `berth-testenv`, one
//! `apiserver` and one `operator` process (both watching every namespace),
//! and one tenant allowed everywhere.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::operator::{self, Operator};

use crate::{Error, Result};

/// The tenant every scenario acts as; holders are `bench/…`.
pub const TENANT: &str = "bench";

pub struct Stack {
    pub apiserver: ApiServer,
    pub operator: Operator,
    /// An admin client of kube-apiserver.
    pub kube: kube::Client,
}

impl Stack {
    /// Starts (or reuses) the control plane, installs the CRD, and starts the
    /// apiserver and the operator; returns once both are ready.
    ///
    /// # Errors
    /// When the operator is not ready within 60 s.
    ///
    /// # Panics
    /// As [`ApiServer::start`]: when the apiserver does not start.
    pub async fn start() -> Result<Self> {
        let kube = berth_testenv::client().await;
        berth_testenv::install_crd(&kube).await;
        let (apiserver, operator) = processes().await?;
        Ok(Self { apiserver, operator, kube })
    }

    /// Stops the apiserver and the operator and starts fresh ones (new
    /// ports; make new clients), so a scenario's memory figures do not
    /// carry the peaks of the ones before it.
    ///
    /// # Errors
    /// As [`Self::start`].
    pub async fn restart(&mut self) -> Result<()> {
        // Gracefully, so the operator gives up its leader lease at once.
        self.apiserver.terminate();
        self.operator.terminate();
        (self.apiserver, self.operator) = processes().await?;
        Ok(())
    }

    /// Stops the operator and starts a fresh one; returns once it is ready.
    ///
    /// # Errors
    /// As [`Self::start`].
    pub async fn restart_operator(&mut self) -> Result<()> {
        self.operator.terminate();
        self.operator = ready_operator().await?;
        Ok(())
    }

    /// A new client of the apiserver (its own connection pool), as the tenant.
    ///
    /// # Errors
    /// When the CA file cannot be read.
    pub fn client(&self) -> Result<berth_client::Client> {
        Ok(berth_client::Client::builder(&self.apiserver.url)
            .api_key(self.apiserver.key(TENANT))
            .ca_file(&self.apiserver.ca_file)?
            .build()?)
    }

    /// A fresh namespace.
    pub async fn namespace(&self, prefix: &str) -> String {
        berth_testenv::TestNamespace::new(prefix).await.name
    }

    /// The processes whose CPU and memory the scenarios report, by name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = Vec::new();
        if let Some(pid) = self.apiserver.pid() {
            pids.push(("apiserver", pid));
        }
        pids.push(("operator", self.operator.pid()));
        for name in ["kube-apiserver", "etcd"] {
            if let Some(pid) = control_plane_pid(name) {
                pids.push((name, pid));
            }
        }
        pids.push(("generator", std::process::id()));
        pids
    }

    /// The Prometheus text of the operator's metrics port.
    pub async fn operator_metrics(&self) -> String {
        metrics(self.operator.metrics_port).await
    }

    /// The Prometheus text of the apiserver's metrics port.
    pub async fn apiserver_metrics(&self) -> String {
        let port = self.apiserver.metrics_url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_default();
        metrics(port).await
    }
}

/// A started apiserver and a ready operator.
async fn processes() -> Result<(ApiServer, Operator)> {
    let apiserver = tokio::task::spawn_blocking(|| ApiServer::start(vec![Tenant::new(TENANT, &[])], &[], &[]))
        .await
        .map_err(|e| Error::Scenario(format!("starting the apiserver: {e}")))?;
    Ok((apiserver, ready_operator().await?))
}

/// A started operator, once its `/readyz` answers 200.
async fn ready_operator() -> Result<Operator> {
    let operator = Operator::start(&operator::binary(), &berth_testenv::kubeconfig_path(), &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = operator.probe_port;
    while Instant::now() < deadline {
        let ready = tokio::task::spawn_blocking(move || berth_testenv::http_get(port, "/readyz"))
            .await
            .ok()
            .flatten()
            .is_some_and(|(code, _)| code == 200);
        if ready {
            return Ok(operator);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Scenario(format!("the operator was not ready within 60 s:\n{}", operator.logs())))
}

async fn metrics(port: u16) -> String {
    tokio::task::spawn_blocking(move || berth_testenv::http_get(port, "/metrics"))
        .await
        .ok()
        .flatten()
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// The pid of a control-plane process (`kube-apiserver`, `etcd`), from its state directory.
pub fn control_plane_pid(name: &str) -> Option<u32> {
    let path: PathBuf = berth_testenv::control_plane_dir().join(format!("{name}.pid"));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
