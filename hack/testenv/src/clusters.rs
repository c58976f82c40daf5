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
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
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

    /// Starts (or reuses) control plane `name` under [`clusters_dir`] with a
    /// real node: kubelet, containerd, kube-proxy, kube-controller-manager and
    /// kube-scheduler (`hack/control-plane up --node`). Returns once the node
    /// is Ready and the default ServiceAccount exists.
    pub fn up_with_node(name: &str) -> Result<Self, Error> {
        Self::up_with_node_in(&clusters_dir(), name)
    }

    /// [`Self::up_with_node`] in `<base>/<name>`.
    pub fn up_with_node_in(base: &Path, name: &str) -> Result<Self, Error> {
        Self::start(base, name, &["up", "--node"])
    }

    /// Starts (or reuses) control plane `name` in `<base>/<name>`.
    pub fn up_in(base: &Path, name: &str) -> Result<Self, Error> {
        Self::start(base, name, &["up"])
    }

    fn start(base: &Path, name: &str, args: &[&str]) -> Result<Self, Error> {
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !valid {
            return Err(Error::ClusterName(name.to_owned()));
        }
        let cluster =
            Self { name: name.to_owned(), dir: base.join(name), kubeconfig: base.join(name).join("kubeconfig") };
        cluster.script(args)?;
        Ok(cluster)
    }

    /// `https://<host>:<port>` of its kube-apiserver: 127.0.0.1, or with a
    /// node the host's end of the node's link (see `hack/node`).
    pub fn server(&self) -> Result<String, Error> {
        let port = self.read("apiserver.port")?;
        Ok(format!("https://{}:{}", crate::apiserver_host(&self.dir), port.trim()))
    }

    /// Imports OCI image archives into its node (`hack/control-plane images`).
    pub fn import_images(&self, archives: &[PathBuf]) -> Result<(), Error> {
        let mut args = vec!["images".to_owned()];
        args.extend(archives.iter().map(|a| a.display().to_string()));
        self.script(&args.iter().map(String::as_str).collect::<Vec<_>>())
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
        let namespace = TestNamespace::create(client, self.kubectl_bin()?, self.kubeconfig.clone(), name).await?;
        if self.has_node() {
            // Pods are admitted only once the controller made the namespace's default ServiceAccount.
            let accounts = namespace.api::<ServiceAccount>();
            crate::eventually(&format!("the default ServiceAccount of {name}"), Duration::from_secs(60), || async {
                accounts.get_opt("default").await.ok().flatten()
            })
            .await;
        }
        Ok(namespace)
    }

    /// SIGKILLs every process of the pod with UID `uid` on this cluster's
    /// node, its containers' and its sandbox's, as a crash of the pod would:
    /// nothing runs its shutdown. Returns how many processes it killed.
    pub fn kill_pod(&self, uid: &str) -> Result<usize, Error> {
        let slot = self.read("node/slot")?;
        let kubepods = PathBuf::from(format!("/sys/fs/cgroup/pids/berth-{}/kubepods", slot.trim()));
        let pod = format!("pod{uid}");
        let mut pids = Vec::new();
        let mut pending = vec![kubepods];
        let mut inside = Vec::new();
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                if entry.file_name() == pod.as_str() { inside.push(entry.path()) } else { pending.push(entry.path()) }
            }
        }
        while let Some(dir) = inside.pop() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().map(str::to_owned));
            inside.extend(
                std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()),
            );
        }
        if !pids.is_empty() {
            Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .status()
                .map_err(|source| Error::Spawn { what: "kill".to_owned(), source })?;
        }
        Ok(pids.len())
    }

    /// Whether it runs a node (`up_with_node`).
    pub fn has_node(&self) -> bool {
        self.dir.join("node/slot").exists()
    }

    /// `kubectl` against this cluster.
    pub fn kubectl(&self) -> Result<Command, Error> {
        let mut cmd = Command::new(self.kubectl_bin()?);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        Ok(cmd)
    }

    /// Stops its etcd and kube-apiserver.
    pub fn down(&self) -> Result<(), Error> {
        self.script(&["down"])
    }

    /// SIGSTOPs its kube-apiserver and etcd: clients see a hang, not an error.
    pub fn pause(&self) -> Result<(), Error> {
        self.signal("STOP")
    }

    /// SIGCONTs what [`Self::pause`] stopped.
    pub fn resume(&self) -> Result<(), Error> {
        self.signal("CONT")
    }

    /// Kills its kube-apiserver (etcd keeps running) and waits until its port
    /// refuses connections: clients see an error at once, not a hang.
    pub fn stop_kube_apiserver(&self) -> Result<(), Error> {
        let failed = |what: String| Error::Script { what, output: String::new() };
        let pid = self.read("kube-apiserver.pid")?;
        let port = self.read("apiserver.port")?;
        let port: u16 = port.trim().parse().map_err(|_| failed(format!("apiserver.port of {}", self.name)))?;
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .map_err(|source| Error::Spawn { what: "kill".to_owned(), source })?;
        if !status.success() {
            return Err(failed(format!("kill -KILL kube-apiserver of {}", self.name)));
        }
        let host: std::net::IpAddr =
            crate::apiserver_host(&self.dir).parse().map_err(|_| failed(format!("apiserver.host of {}", self.name)))?;
        let addr = std::net::SocketAddr::from((host, port));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok() {
            if std::time::Instant::now() > deadline {
                return Err(failed(format!("kube-apiserver of {} still accepts on {addr}", self.name)));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
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

    fn script(&self, args: &[&str]) -> Result<(), Error> {
        let output = Command::new(repo_root().join("hack/control-plane"))
            .args(args)
            .env("BERTH_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .map_err(|source| Error::Spawn { what: "hack/control-plane".to_owned(), source })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Script {
                what: format!("hack/control-plane {} ({})", args.join(" "), self.name),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }
}
