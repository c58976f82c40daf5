//! `make run` end to end: `hack/run.sh` on its own control plane and free
//! ports serves the documented example, the `berth` commands it prints work,
//! SIGTERM stops every process it started, and a second run works too.
//!
//! It uses the binaries `cargo test --workspace` builds next to this test
//! (`target/<profile>/{apiserver,operator,berth}`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_testenv::apiserver::free_port;
use berth_testenv::repo_root;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    for bin in ["apiserver", "operator", "berth"] {
        assert!(dir.join(bin).exists(), "{} is missing: run `cargo build --workspace --bins` first", bin);
    }
    dir
}

struct Run {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    state: PathBuf,
    ports: [u16; 5],
}

impl Run {
    fn start(state: &Path) -> Self {
        Self::start_with(state, "0")
    }

    /// `make run` with `NODES=<nodes>`.
    fn start_with(state: &Path, nodes: &str) -> Self {
        let ports = [free_port(), free_port(), free_port(), free_port(), free_port()];
        let (stdout, stderr) = (state.with_extension("stdout"), state.with_extension("stderr"));
        let child = Command::new("bash")
            .arg(repo_root().join("hack/run.sh"))
            .env("NODES", nodes)
            .env("BERTH_RUN_DIR", state)
            .env("BERTH_BIN_DIR", bin_dir())
            .env("BERTH_API_PORT", ports[0].to_string())
            .env("BERTH_API_METRICS_PORT", ports[1].to_string())
            .env("BERTH_API_PROBE_PORT", ports[2].to_string())
            .env("BERTH_OPERATOR_METRICS_PORT", ports[3].to_string())
            .env("BERTH_OPERATOR_PROBE_PORT", ports[4].to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("hack/run.sh starts");
        let run = Self { child, stdout, stderr, state: state.to_path_buf(), ports };
        // A bound on a hang, not a timing: a node starting on a loaded machine takes minutes.
        run.wait_for_output("Press Ctrl-C", Duration::from_secs(300));
        run
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn wait_for_output(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "hack/run.sh did not print {text:?}:\n{}\n{}",
                self.output(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value after `prefix` on the line of the banner that has it.
    fn banner_value(&self, prefix: &str) -> String {
        let out = self.output();
        let line = out.lines().find(|l| l.contains(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"));
        line.rsplit(' ').next().unwrap().to_owned()
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("berth"))
            .args(args)
            .env("BERTH_API_SERVER", format!("https://127.0.0.1:{}", self.ports[0]))
            .env("BERTH_CA_FILE", self.state.join("apiserver/ca.crt"))
            .env("BERTH_API_KEY", self.banner_value("API key of tenant \"demo\""))
            .env("BERTH_NAMESPACE", "pipeline")
            .output()
            .unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let bin = std::fs::read_to_string(self.state.join("bin-dir")).unwrap();
        let out = Command::new(Path::new(bin.trim()).join("kubectl"))
            .args(args)
            .env("KUBECONFIG", self.state.join("kubeconfig"))
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGTERM, then checks that the script and everything it started are gone.
    fn stop(mut self) {
        let pid_of = |name: &str| std::fs::read_to_string(self.state.join(name)).unwrap().trim().to_owned();
        let control_plane = [pid_of("etcd.pid"), pid_of("kube-apiserver.pid")];
        let term = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(term.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "hack/run.sh did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in control_plane {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Path::new(&format!("/proc/{pid}")).exists() {
                assert!(Instant::now() < deadline, "control-plane process {pid} still runs");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for port in self.ports {
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers");
        }
    }
}

impl Drop for Run {
    /// A failed test stops the script too, and so everything it started.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// [`berth_testenv::eventually`] for a blocking check, on a runtime of its own.
fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(20), check);
}

fn eventually_within(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    runtime.block_on(berth_testenv::eventually(what, within, || std::future::ready(check().then_some(()))));
}

#[test]
fn make_run_serves_the_documented_example_and_stops_cleanly_twice() {
    let state = std::env::temp_dir().join(format!("berth-make-run-{}", std::process::id()));
    for round in 1..=2 {
        let run = Run::start(&state);
        eventually("the declared holder worker-east-1 holds ingest-coordinator", || {
            let out = run.berth(&["lease", "get", "ingest-coordinator", "-o", "json"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"worker-east-1\"")
        });
        eventually("the operator resumes the CronJob", || {
            run.kubectl(&["-n", "pipeline", "get", "cronjob", "ingest-pipeline", "-o", "jsonpath={.spec.suspend}"])
                == "false"
        });
        let listed = ok(run.berth(&["lease", "list"]), "berth lease list");
        assert!(listed.contains("ingest-coordinator") && listed.contains("worker-east-1"), "{listed}");

        let acquired =
            ok(run.berth(&["lease", "acquire", "demo", "--holder", "demo/worker-1", "--ttl", "30s"]), "acquire");
        assert!(acquired.contains('1'), "acquire prints the token: {acquired}");
        ok(run.berth(&["lease", "release", "demo"]), "berth lease release demo");
        let hold = run.berth(&[
            "lease",
            "hold",
            "demo",
            "--holder",
            "demo/worker-1",
            "--",
            "sh",
            "-c",
            "test \"$BERTH_FENCING_TOKEN\" = 2",
        ]);
        ok(hold, "berth lease hold");
        let held = ok(run.berth(&["lease", "get", "demo", "-o", "json"]), "berth lease get demo");
        assert!(held.contains("\"released\""), "hold released on exit (round {round}): {held}");
        run.stop();
    }
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn make_run_with_a_node_runs_the_examples_jobs_as_pods_and_removes_the_node() {
    let state = std::env::temp_dir().join(format!("berth-make-run-nodes-{}", std::process::id()));
    let run = Run::start_with(&state, "1");
    let slot = std::fs::read_to_string(state.join("node/slot")).expect("the control plane has a node");
    // The declared holder never renews, so hold the lease as the README does,
    // long enough for the next tick: with a node the example fires every
    // minute, and its Job runs as a pod.
    ok(
        run.berth(&[
            "lease",
            "acquire",
            "ingest-coordinator",
            "--holder",
            "demo/worker-1",
            "--ttl",
            "5m",
            "--wait",
            "1m",
        ]),
        "berth lease acquire",
    );
    eventually("the operator resumes the CronJob", || {
        run.kubectl(&["-n", "pipeline", "get", "cronjob", "ingest-pipeline", "-o", "jsonpath={.spec.suspend}"])
            == "false"
    });
    eventually_within("a Job of the example completes on the node", Duration::from_secs(180), || {
        run.kubectl(&["-n", "pipeline", "get", "jobs", "-o", "jsonpath={.items[*].status.succeeded}"]).contains('1')
    });
    let logs = run.kubectl(&["-n", "pipeline", "logs", "-l", "batch.kubernetes.io/job-name", "--tail", "1"]);
    assert!(logs.contains("ingesting"), "{logs}");
    run.stop();
    let netns = format!("/run/netns/berth-{}", slot.trim());
    assert!(!Path::new(&netns).exists(), "the node's network namespace is left: {netns}");
    let _ = std::fs::remove_dir_all(&state);
}
