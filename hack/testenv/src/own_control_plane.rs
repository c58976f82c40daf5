//! A control plane of one test's own, for faults that the shared one must
//! not see, such as stopping its kube-apiserver. It lives in
//! `.run/<name>-<pid>` of the worktree and is stopped when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::repo_root;

/// etcd and kube-apiserver started by `hack/control-plane up` in a directory
/// of their own; `hack/control-plane down` when dropped.
pub struct OwnControlPlane {
    pub dir: PathBuf,
}

impl OwnControlPlane {
    /// Starts a fresh control plane named `name`.
    ///
    /// # Panics
    /// When `hack/control-plane up` fails; the message carries its output.
    pub fn start(name: &str) -> Self {
        let dir = repo_root().join(".run").join(format!("{name}-{}", std::process::id()));
        let plane = Self { dir };
        let _ = std::fs::remove_dir_all(&plane.dir);
        let output = plane.script("up");
        assert!(output.status.success(), "hack/control-plane up: {}", String::from_utf8_lossy(&output.stderr));
        plane
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// An admin client with the BerthLease CRD installed.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig reads");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is valid");
        let client = Client::try_from(config).expect("client builds");
        crate::apply_crd(&client).await;
        client
    }

    /// Kills kube-apiserver (etcd keeps running) and waits until its port
    /// refuses connections.
    ///
    /// # Panics
    /// When the port still accepts after 30 s.
    pub fn stop_kube_apiserver(&self) {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).expect(file).trim().to_owned();
        let (pid, port) = (read("kube-apiserver.pid"), read("apiserver.port"));
        let killed = Command::new("kill").args(["-KILL", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.parse().expect("a port")));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            assert!(Instant::now() < deadline, "kube-apiserver still accepts on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn script(&self, verb: &str) -> std::process::Output {
        Command::new(repo_root().join("hack/control-plane"))
            .arg(verb)
            .env("BERTH_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .expect("hack/control-plane runs")
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = self.script("down");
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
