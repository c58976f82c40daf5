//! Runs the `apiserver` binary as a child process on loopback, with a fresh
//! CA and serving certificate (`hack/gen-tls.sh`), a generated keys file, and
//! free ports, against the test control plane.
//!
//! The binary is found next to the test executable's directory
//! (`target/<profile>/apiserver`), or at `BERTH_APISERVER_BIN`. `cargo test
//! --workspace` builds it; for `cargo test -p <crate>` run
//! `cargo build -p berth-apiserver` first.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{kubeconfig_path, repo_root};

/// A tenant in the keys file: `<name>:<sha256(key)>[:<ns>,<ns>…]`.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    /// The plain key the tenant sends as `Authorization: Bearer <key>`.
    pub key: String,
    /// `None` writes a two-field line: every namespace is allowed.
    pub namespaces: Option<Vec<String>>,
    /// The cluster set the tenant shares the leases it creates with.
    pub cluster_set: Option<String>,
}

impl Tenant {
    /// A tenant with a random key, limited to `namespaces` (empty: all namespaces).
    pub fn new(name: &str, namespaces: &[&str]) -> Self {
        let namespaces = (!namespaces.is_empty()).then(|| namespaces.iter().map(|s| s.to_string()).collect());
        Self { name: name.to_owned(), key: random_hex(16), namespaces, cluster_set: None }
    }

    /// This tenant, of the cluster set `set`.
    pub fn in_cluster_set(self, set: &str) -> Self {
        Self { cluster_set: Some(set.to_owned()), ..self }
    }

    /// The keys-file line for this tenant.
    pub fn keys_line(&self) -> String {
        let hash = sha256_hex(&self.key);
        let namespaces = self.namespaces.as_ref().map(|ns| ns.join(","));
        match (namespaces, &self.cluster_set) {
            (namespaces, Some(set)) => format!("{}:{hash}:{}:{set}", self.name, namespaces.unwrap_or_default()),
            (Some(ns), None) => format!("{}:{hash}:{ns}", self.name),
            (None, None) => format!("{}:{hash}", self.name),
        }
    }
}

/// A running `apiserver` process. Dropping it kills the process.
pub struct ApiServer {
    child: Option<Child>,
    args: Vec<String>,
    /// Scratch directory holding the certificates, the keys file and the log.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// `http://127.0.0.1:<port>` of the metrics listener.
    pub metrics_url: String,
    /// `http://127.0.0.1:<port>` of the health-probe listener.
    pub health_url: String,
    /// The CA that signed the serving certificate.
    pub ca_file: PathBuf,
    pub keys_file: PathBuf,
    pub log_file: PathBuf,
    pub tenants: Vec<Tenant>,
}

impl ApiServer {
    /// Starts an apiserver for `tenants`, watching `namespaces` (empty: all),
    /// and waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When it does not become ready within 60 s; the message carries its log.
    pub fn start(tenants: Vec<Tenant>, namespaces: &[&str], extra_args: &[&str]) -> Self {
        Self::start_as(&kubeconfig_path(), tenants, namespaces, extra_args)
    }

    /// [`Self::start`] with another identity: the kubeconfig it talks to Kubernetes with.
    pub fn start_as(kubeconfig: &Path, tenants: Vec<Tenant>, namespaces: &[&str], extra_args: &[&str]) -> Self {
        Self::start_with_sans(kubeconfig, tenants, namespaces, extra_args, "")
    }

    /// [`Self::start_as`] with a serving certificate that also names
    /// `extra_sans` (`IP:198.18.1.1,DNS:name`): addresses a proxy in front
    /// of it listens on.
    pub fn start_with_sans(
        kubeconfig: &Path,
        tenants: Vec<Tenant>,
        namespaces: &[&str],
        extra_args: &[&str],
        extra_sans: &str,
    ) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-apiserver-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let status =
            Command::new(repo_root().join("hack/gen-tls.sh")).arg(&dir).arg("berth-apiserver").arg(extra_sans).status();
        assert!(status.is_ok_and(|s| s.success()), "hack/gen-tls.sh failed");

        let keys_file = dir.join("api-keys");
        write_keys_file(&keys_file, &tenants);
        let (port, metrics, health) = (free_port(), free_port(), free_port());
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
        let mut args = vec![
            format!("--listen-addr=127.0.0.1:{port}"),
            format!("--tls-cert-file={}", path(&dir.join("tls.crt"))),
            format!("--tls-key-file={}", path(&dir.join("tls.key"))),
            format!("--kubeconfig={}", path(kubeconfig)),
            format!("--health-probe-bind-address=127.0.0.1:{health}"),
            format!("--api-keys-file={}", path(&keys_file)),
            "--log-format=text".to_owned(),
        ];
        // The metrics listener unless the caller binds it itself (`0` disables it).
        if !extra_args.iter().any(|a| a.starts_with("--metrics-bind-address")) {
            args.push(format!("--metrics-bind-address=127.0.0.1:{metrics}"));
        }
        args.extend(namespaces.iter().map(|ns| format!("--namespace={ns}")));
        args.extend(extra_args.iter().map(|a| a.to_string()));

        let mut server = Self {
            child: None,
            args,
            url: format!("https://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics}"),
            health_url: format!("http://127.0.0.1:{health}"),
            ca_file: dir.join("ca.crt"),
            keys_file,
            log_file: dir.join("apiserver.log"),
            tenants,
            dir,
        };
        server.spawn();
        server
    }

    /// Starts the process again with the same ports and files, after [`Self::kill`] or [`Self::terminate`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped apiserver");
        self.spawn();
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the process to exit (graceful shutdown).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("apiserver is running");
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        child.wait().expect("apiserver exits")
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Rewrites the keys file with `tenants` (the server reloads it on change).
    pub fn write_keys(&mut self, tenants: Vec<Tenant>) {
        write_keys_file(&self.keys_file, &tenants);
        self.tenants = tenants;
    }

    /// The key of tenant `name`.
    pub fn key(&self, name: &str) -> &str {
        &self.tenants.iter().find(|t| t.name == name).expect("tenant exists").key
    }

    /// The value of the sample `series` (`name{labels}` as printed) on the
    /// metrics port, or `None` when it is absent or the port does not answer.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let port = self.metrics_url.strip_prefix("http://127.0.0.1:")?.parse().ok()?;
        let (_, text) = crate::http_get(port, "/metrics")?;
        crate::prometheus::value(&text, series)
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log_file)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_file).expect("log file opens");
        let child = Command::new(binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file clones"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        self.child = Some(child);
        let log_file = &self.log_file;
        let ready = || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("apiserver exited with {status} before it was ready:\n{}", read_log(log_file));
            }
            (http_status(&self.health_url, "/readyz") == Some(200)).then_some(())
        };
        crate::eventually_blocking_showing(
            "the apiserver is ready",
            Duration::from_secs(60),
            || read_log(log_file),
            ready,
        );
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The `apiserver` binary built by Cargo next to the running test, or `BERTH_APISERVER_BIN`.
pub fn binary() -> PathBuf {
    crate::built_binary("apiserver", "BERTH_APISERVER_BIN", "berth-apiserver")
}

/// The status code of a plain-HTTP GET on `base` (`http://127.0.0.1:<port>`),
/// or `None` when nothing answers.
pub fn http_status(base: &str, path: &str) -> Option<u16> {
    let port = base.strip_prefix("http://127.0.0.1:")?.parse().ok()?;
    crate::http_get(port, path).map(|(code, _)| code)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// `N` distinct free ports below Linux's ephemeral range (32768 and up), for
/// ports a child binds only minutes later: no `bind(0)` meanwhile (a control
/// plane starting, a test's server) can be handed one, as a [`free_port`] can.
pub fn free_ports_for_later<const N: usize>() -> [u16; N] {
    let mut ports = [0; N];
    let mut found = 0;
    while found < N {
        let port = fastrand::u16(20_000..32_000);
        if !ports[..found].contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports[found] = port;
            found += 1;
        }
    }
    ports
}

fn write_keys_file(path: &Path, tenants: &[Tenant]) {
    let mut body = String::from("# tenant:sha256(key)[:namespaces]\n");
    for tenant in tenants {
        body.push_str(&tenant.keys_line());
        body.push('\n');
    }
    // Write then rename, so the server never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).expect("keys file writes");
    std::fs::rename(&tmp, path).expect("keys file renames");
}

fn sha256_hex(input: &str) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("sha256sum input");
    let output = child.wait_with_output().expect("sha256sum runs");
    String::from_utf8(output.stdout).expect("hex").split_whitespace().next().expect("a hash").to_owned()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
