//! Several named control planes on one machine, for tests across clusters: a
//! coordination cluster and member clusters (`east`, `west`, ...), each its own
//! etcd and kube-apiserver on loopback.
//!
//! [`Cluster::up`] runs `hack/control-plane up` with a state directory of the
//! cluster's own, `<clusters dir>/<name>`. Like the single test control plane
//! it is reused when healthy, so test binaries running at once share
//! `east` and `west`; each test works in namespaces of its own. The clusters
//! directory is `.run/test-clusters`, or `BERTH_TEST_CLUSTERS_DIR`; `make test`
//! and `make clean` stop every plane under it.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, TestNamespace, repo_root};

/// Where the tests' named control planes keep their state.
pub fn clusters_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_CLUSTERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".run/test-clusters"))
}

/// One named control plane.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    /// The state directory: kubeconfig, pki, pid files and logs.
    pub dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts (or reuses) control plane `name` under [`clusters_dir`].
    pub fn up(name: &str) -> Result<Self, Error> {
        Self::up_in(&clusters_dir(), name)
    }

    /// Starts (or reuses) control plane `name` in `<base>/<name>`.
    pub fn up_in(base: &Path, name: &str) -> Result<Self, Error> {
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !valid {
            return Err(Error::ClusterName(name.to_owned()));
        }
        let cluster =
            Self { name: name.to_owned(), dir: base.join(name), kubeconfig: base.join(name).join("kubeconfig") };
        cluster.script("up")?;
        Ok(cluster)
    }

    /// `https://127.0.0.1:<port>` of its kube-apiserver.
    pub fn server(&self) -> Result<String, Error> {
        let port = self.read("apiserver.port")?;
        Ok(format!("https://127.0.0.1:{}", port.trim()))
    }

    /// An admin client. Make one per runtime: a client belongs to the runtime it was made in.
    pub async fn client(&self) -> Result<Client, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(Error::Kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(Error::Kubeconfig)?;
        Client::try_from(config).map_err(Error::Kube)
    }

    /// An admin client on a cluster with the BerthLease CRD established.
    pub async fn client_with_crd(&self) -> Result<Client, Error> {
        let client = self.client().await?;
        crate::apply_crd(&client).await?;
        Ok(client)
    }

    /// A fresh namespace on this cluster named after `prefix`, with the CRD installed.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, Error> {
        self.namespace_named(&TestNamespace::unique_name(prefix)).await
    }

    /// Namespace `name` on this cluster (created now), with the CRD
    /// installed: the same namespace as on another cluster.
    pub async fn namespace_named(&self, name: &str) -> Result<TestNamespace, Error> {
        let client = self.client_with_crd().await?;
        TestNamespace::create(client, self.kubectl_bin()?, self.kubeconfig.clone(), name).await
    }

    /// `kubectl` against this cluster.
    pub fn kubectl(&self) -> Result<Command, Error> {
        let mut cmd = Command::new(self.kubectl_bin()?);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        Ok(cmd)
    }

    /// Stops its etcd and kube-apiserver.
    pub fn down(&self) -> Result<(), Error> {
        self.script("down")
    }

    /// SIGSTOPs its kube-apiserver and etcd: clients see a hang, not an error.
    pub fn pause(&self) -> Result<(), Error> {
        self.signal("STOP")
    }

    /// SIGCONTs what [`Self::pause`] stopped.
    pub fn resume(&self) -> Result<(), Error> {
        self.signal("CONT")
    }

    fn kubectl_bin(&self) -> Result<PathBuf, Error> {
        Ok(PathBuf::from(self.read("bin-dir")?.trim()).join("kubectl"))
    }

    fn read(&self, file: &str) -> Result<String, Error> {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
    }

    fn signal(&self, signal: &str) -> Result<(), Error> {
        for process in ["kube-apiserver", "etcd"] {
            let pid = self.read(&format!("{process}.pid"))?;
            let status = Command::new("kill")
                .args([&format!("-{signal}"), pid.trim()])
                .status()
                .map_err(|source| Error::Spawn { what: "kill".to_owned(), source })?;
            if !status.success() {
                return Err(Error::Script {
                    what: format!("kill -{signal} {process} of {}", self.name),
                    output: String::new(),
                });
            }
        }
        Ok(())
    }

    fn script(&self, action: &str) -> Result<(), Error> {
        let output = Command::new(repo_root().join("hack/control-plane"))
            .arg(action)
            .env("BERTH_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .map_err(|source| Error::Spawn { what: "hack/control-plane".to_owned(), source })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Script {
                what: format!("hack/control-plane {action} ({})", self.name),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }
}
