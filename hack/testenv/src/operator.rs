//! Runs the `operator` binary as a child process on loopback against the test
//! control plane. The caller names the binary: a test of the operator crate
//! passes `env!("CARGO_BIN_EXE_operator")`, others [`binary`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::apiserver::free_port;

/// An `operator` process; killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
    pub probe_port: u16,
}

impl Operator {
    /// Starts `binary` with `kubeconfig`, watching `namespaces` (empty: all),
    /// on free metrics and probe ports, logging to a file.
    pub fn start(binary: &Path, kubeconfig: &Path, namespaces: &[&str], extra: &[&str]) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let (metrics_port, probe_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!(
            "berth-operator-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(namespaces.iter().flat_map(|ns| ["--namespace", ns]))
            .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--health-probe-bind-address", &format!("127.0.0.1:{probe_port}")])
            .args(["--log-level", "info,berth_operator=debug"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file creates"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut operator = Self { child, log, metrics_port, probe_port };
        operator.wait_ready();
        operator
    }

    /// Waits until `/readyz` answers 200, as `ApiServer::start` does.
    ///
    /// # Panics
    /// When the process exits first, or 60 s pass; the message carries its log.
    fn wait_ready(&mut self) {
        let log = &self.log;
        crate::eventually_blocking_showing(
            "the operator is ready",
            Duration::from_secs(60),
            || read_log(log),
            || {
                if let Some(status) = self.child.try_wait().expect("operator status reads") {
                    panic!("operator exited with {status} before it was ready:\n{}", read_log(log));
                }
                crate::http_get(self.probe_port, "/readyz").is_some_and(|(code, _)| code == 200).then_some(())
            },
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit and returns whether it was a success.
    pub fn terminate(&mut self) -> bool {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("operator exits").success()
    }

    /// Whether the process has exited, and whether with success.
    pub fn exited(&mut self) -> Option<bool> {
        self.child.try_wait().expect("operator status reads").map(|status| status.success())
    }

    pub fn logs(&self) -> String {
        read_log(&self.log)
    }

    /// The Prometheus text of the metrics port (empty when it does not answer).
    pub fn metrics(&self) -> String {
        crate::http_get(self.metrics_port, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    /// The value of the sample `series` (`name{labels}` as printed), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        crate::prometheus::value(&self.metrics(), series).unwrap_or(0.0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The `operator` binary built by Cargo next to the running test, or `BERTH_OPERATOR_BIN`.
pub fn binary() -> PathBuf {
    crate::built_binary("operator", "BERTH_OPERATOR_BIN", "berth-operator")
}
