//! Service-account identities of a control plane, as Berth sees them: its
//! issuer (`https://<host>:<port>`, see `hack/control-plane`), tokens from
//! the TokenRequest API, and the issuer's signing key (to mint tokens that
//! kube-apiserver would never issue: expired, wrong audience…).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{control_plane_dir, ensure_control_plane, repo_root};

/// One local control plane, by its state directory.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub dir: PathBuf,
}

impl ControlPlane {
    /// The test control plane every test shares (the coordination cluster).
    pub fn coordination() -> Self {
        ensure_control_plane();
        Self { dir: control_plane_dir() }
    }

    /// Member cluster `name`: a control plane of its own, started (or reused)
    /// by [`crate::clusters::Cluster::up`].
    ///
    /// # Panics
    /// When it cannot be started; the message carries the script's output.
    pub fn member(name: &str) -> Self {
        let cluster = crate::clusters::Cluster::up(name).unwrap_or_else(|e| panic!("member cluster {name}: {e}"));
        Self { dir: cluster.dir }
    }

    /// `https://<host>:<port>`: the kube-apiserver, and its service-account issuer.
    pub fn issuer(&self) -> String {
        let port = std::fs::read_to_string(self.dir.join("apiserver.port")).expect("control plane records its port");
        format!("https://{}:{}", crate::apiserver_host(&self.dir), port.trim())
    }

    /// The PEM of the CA that signed the kube-apiserver's serving certificate.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("pki/ca.crt")).expect("control plane CA reads")
    }

    /// The PEM of the key that signs service-account tokens now.
    pub fn signing_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("pki/sa.key")).expect("service-account signing key reads")
    }

    /// The PEM of the public half of [`Self::signing_key_pem`].
    pub fn public_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("pki/sa.pub")).expect("service-account public key reads")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// `kubectl` against this control plane.
    pub fn kubectl(&self) -> Command {
        let bin = std::fs::read_to_string(self.dir.join("bin-dir")).expect("control plane records bin-dir");
        let mut cmd = Command::new(Path::new(bin.trim()).join("kubectl"));
        cmd.env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// Runs kubectl with `args` and returns its stdout.
    ///
    /// # Panics
    /// When kubectl fails; the message carries its stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> String {
        let output = self.kubectl().args(args).output().expect("kubectl runs");
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    }

    /// Creates namespace `namespace` (if missing) and service account `name` in it.
    pub fn create_service_account(&self, namespace: &str, name: &str) {
        let exists = self.kubectl().args(["get", "namespace", namespace]).output().expect("kubectl runs");
        if !exists.status.success() {
            self.kubectl_output(&["create", "namespace", namespace]);
        }
        self.kubectl_output(&["create", "serviceaccount", name, "-n", namespace]);
    }

    /// A token of service account `namespace/name` from the TokenRequest API,
    /// for `audience`, valid for an hour. `bound_secret` binds it to that
    /// Secret in the same namespace: deleting the Secret revokes the token.
    pub fn token(&self, namespace: &str, name: &str, audience: &str, bound_secret: Option<&str>) -> String {
        let mut args = vec!["create", "token", name, "-n", namespace, "--audience", audience, "--duration=1h"];
        if let Some(secret) = bound_secret {
            args.extend(["--bound-object-kind", "Secret", "--bound-object-name", secret]);
        }
        self.kubectl_output(&args).trim().to_owned()
    }

    /// Signs service-account tokens with a new key from now on (the old one
    /// stays trusted) and restarts kube-apiserver: `hack/control-plane rotate-sa-key`.
    ///
    /// # Panics
    /// When the script fails.
    pub fn rotate_signing_key(&self) {
        let output = Command::new(repo_root().join("hack/control-plane"))
            .arg("rotate-sa-key")
            .env("BERTH_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .expect("hack/control-plane runs");
        assert!(output.status.success(), "rotate-sa-key: {}", String::from_utf8_lossy(&output.stderr));
    }
}
