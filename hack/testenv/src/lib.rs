//! Test support: gives tests a `kube::Client` on the project's own real
//! control plane (etcd + kube-apiserver built by `hack/build-control-plane.sh`).
//!
//! The first test in a process runs `hack/control-plane up` against a state
//! directory of its own (`.run/test-control-plane`, or
//! `BERTH_TEST_CONTROL_PLANE_DIR`). That reuses a healthy control plane or
//! starts one, so every later test binary reuses it. Each test gets a fresh
//! namespace, and the BerthLease CRD is applied once per process.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod bad_tls;
pub mod browser;
pub mod clusters;
pub mod identity;
pub mod operator;
pub mod prometheus;
pub mod proxy;
pub mod run_script;
pub mod wait;

pub use wait::{eventually, eventually_blocking, eventually_blocking_showing, eventually_showing};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use berth_api::BerthLease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};

/// What can go wrong in the harness's fallible parts (clusters and proxy).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} failed:\n{output}")]
    Script { what: String, output: String },
    #[error("running {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a cluster name: lowercase letters, digits and '-'")]
    ClusterName(String),
    #[error("the kubeconfig does not load")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("talking to Kubernetes")]
    Kube(#[source] kube::Error),
    #[error("CRD {0} was not established within 30 s")]
    CrdNotEstablished(String),
    #[error("{0:?} is not a proxy mode: pass, blackhole, reset, or delay <n>ms|<n>s")]
    ProxyMode(String),
    #[error("the proxy cannot listen on {listen}")]
    ProxyListen {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the proxy's thread")]
    Runtime(#[source] std::io::Error),
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root exists")
}

/// The address kube-apiserver of the control plane in `dir` listens on:
/// 127.0.0.1, or with a node the host's end of the node's link (`hack/node`).
pub fn apiserver_host(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("apiserver.host")).map_or_else(|_| "127.0.0.1".to_owned(), |h| h.trim().to_owned())
}

/// Where the test control plane keeps its state, kubeconfig and logs.
pub fn control_plane_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_CONTROL_PLANE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".run/test-control-plane"))
}

/// Starts the control plane once per process, or reuses a running one.
///
/// # Panics
/// When it cannot be started; the message carries the script's output.
pub fn ensure_control_plane() -> PathBuf {
    static UP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = UP.get_or_init(|| {
        let dir = control_plane_dir();
        let output = Command::new(repo_root().join("hack/control-plane"))
            .arg("up")
            .env("BERTH_CONTROL_PLANE_DIR", &dir)
            .output()
            .map_err(|e| format!("running hack/control-plane: {e}"))?;
        if output.status.success() {
            Ok(dir.join("kubeconfig"))
        } else {
            Err(format!("hack/control-plane up failed:\n{}", String::from_utf8_lossy(&output.stderr)))
        }
    });
    result.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// The admin kubeconfig of the test control plane.
pub fn kubeconfig_path() -> PathBuf {
    ensure_control_plane()
}

/// The directory holding the pinned etcd, kube-apiserver and kubectl.
pub fn bin_dir() -> PathBuf {
    ensure_control_plane();
    let bin = std::fs::read_to_string(control_plane_dir().join("bin-dir")).expect("control plane records bin-dir");
    PathBuf::from(bin.trim())
}

/// A binary of the workspace built by Cargo next to the running test
/// (`target/<profile>/<name>`), or the path in environment variable `env`.
///
/// # Panics
/// When it is missing, naming the `cargo build` that makes it.
pub fn built_binary(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(bin.exists(), "{} is missing: run `cargo build -p {package}` first", bin.display());
    bin
}

/// A plain-HTTP GET on 127.0.0.1:`port`: the status code and body, or `None`
/// when nothing answers within two seconds.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_with_headers(port, path).map(|(code, _, body)| (code, body))
}

/// Response headers as (lower-case name, value).
pub type Headers = Vec<(String, String)>;

/// [`http_get`] with the response headers.
pub fn http_get_with_headers(port: u16, path: &str) -> Option<(u16, Headers, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the server closes after one response and never chunks it.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some((code, headers, body.to_owned()))
}

/// The OCI archive of image `name` (`apiserver`, `operator`, `berth`) that
/// `make images` builds.
///
/// # Panics
/// When it is missing: the message says to run `make images`.
pub fn image_archive(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
    let archive = target.join("images").join(format!("{name}.tar"));
    assert!(archive.exists(), "{} is missing: run `make images` first", archive.display());
    archive
}

/// The pinned helm binary, built from the Go module proxy on first use.
///
/// # Panics
/// When `hack/build-helm.sh` fails.
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/build-helm.sh")).output().expect("hack/build-helm.sh runs");
        assert!(out.status.success(), "building helm failed: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim())
    })
    .clone()
}

/// `kubectl` against the test control plane.
pub fn kubectl() -> Command {
    let mut cmd = Command::new(bin_dir().join("kubectl"));
    cmd.env("KUBECONFIG", kubeconfig_path());
    cmd
}

/// Writes a kubeconfig that acts as ServiceAccount `namespace/name`, with a
/// token from the TokenRequest API, and returns its path.
///
/// # Panics
/// When kubectl cannot issue the token.
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let output =
        kubectl().args(["create", "token", name, "-n", namespace, "--duration=2h"]).output().expect("kubectl runs");
    assert!(output.status.success(), "kubectl create token: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("token is UTF-8");
    let dir = control_plane_dir();
    let port = std::fs::read_to_string(dir.join("apiserver.port")).expect("port");
    let server = format!("https://{}:{}", apiserver_host(&dir), port.trim());
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": dir.join("pki/ca.crt")}}],
        "users": [{"name": name, "user": {"token": token.trim()}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name, "namespace": namespace}}],
        "current-context": name,
    });
    let path = dir.join(format!("kubeconfig-{namespace}-{name}"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("kubeconfig serializes"))
        .expect("kubeconfig writes");
    path
}

/// An admin client on the test control plane. Create one per test: a client
/// belongs to the tokio runtime it was made in.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("kubeconfig reads");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig is valid");
    Client::try_from(config).expect("client builds")
}

/// Applies the BerthLease CRD (server-side) and waits until it is
/// established, once per process on the test control plane.
pub async fn install_crd(client: &Client) {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.load(Ordering::Acquire) {
        return;
    }
    apply_crd(client).await.unwrap_or_else(|e| panic!("{e}: {e:?}"));
    INSTALLED.store(true, Ordering::Release);
}

/// Applies the BerthLease CRD (server-side) on the cluster of `client` and
/// waits until it is established.
pub async fn apply_crd(client: &Client) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = BerthLease::crd();
    let name = crd.metadata.name.clone().expect("CRD has a name");
    crds.patch(&name, &PatchParams::apply("berth-testenv").force(), &Patch::Apply(&crd)).await.map_err(Error::Kube)?;
    if crd_established(client, &name).await.map_err(Error::Kube)? {
        Ok(())
    } else {
        Err(Error::CrdNotEstablished(name))
    }
}

/// Waits until CRD `name` is Established: `false` when it is not within 30 s.
pub async fn crd_established(client: &Client, name: &str) -> Result<bool, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for _ in 0..300 {
        let established = crds
            .get(name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// A fresh namespace for one test, on a control plane with the CRD installed.
///
/// Namespaces are not deleted afterwards: there is no namespace controller to
/// finalize them, and `hack/control-plane up` starts from an empty etcd.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// A fresh namespace on the test control plane.
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        install_crd(&client).await;
        let kubectl = bin_dir().join("kubectl");
        Self::create(client, kubectl, kubeconfig_path(), &Self::unique_name(prefix))
            .await
            .unwrap_or_else(|e| panic!("{e}: {e:?}"))
    }

    /// A namespace name no other test uses: `prefix`, the process and a counter.
    pub fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        format!("{prefix}-{}-{}-{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos & 0xffff)
    }

    /// Creates namespace `name`.
    pub(crate) async fn create(
        client: Client,
        kubectl: PathBuf,
        kubeconfig: PathBuf,
        name: &str,
    ) -> Result<Self, Error> {
        let name = name.to_owned();
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.map_err(Error::Kube)?;
        Ok(Self { client, name, kubectl, kubeconfig })
    }

    /// Runs `kubectl ARGS -n <namespace>` and returns its stdout.
    ///
    /// # Panics
    /// When kubectl fails; the message carries its stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> String {
        let output = Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .args(["-n", &self.name])
            .output()
            .expect("kubectl runs");
        assert!(output.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    }

    /// A typed API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}
