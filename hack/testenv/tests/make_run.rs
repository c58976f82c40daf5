//! `make run` end to end: `hack/run.sh` on its own control plane and free
//! ports serves the documented example, the `berth` commands it prints work,
//! SIGTERM stops every process it started, and a second run works too.
//!
//! It uses the binaries `cargo test --workspace` builds next to this test
//! (`target/<profile>/{apiserver,operator,berth}`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_testenv::apiserver::free_port;
use berth_testenv::run_script::RunScript;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    for bin in ["apiserver", "operator", "berth"] {
        assert!(dir.join(bin).exists(), "{} is missing: run `cargo build --workspace --bins` first", bin);
    }
    dir
}

struct Run {
    script: RunScript,
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
        let env = [
            ("NODES", nodes.to_owned()),
            ("BERTH_RUN_DIR", state.display().to_string()),
            ("BERTH_BIN_DIR", bin_dir().display().to_string()),
            ("BERTH_API_PORT", ports[0].to_string()),
            ("BERTH_API_METRICS_PORT", ports[1].to_string()),
            ("BERTH_API_PROBE_PORT", ports[2].to_string()),
            ("BERTH_OPERATOR_METRICS_PORT", ports[3].to_string()),
            ("BERTH_OPERATOR_PROBE_PORT", ports[4].to_string()),
        ];
        Self { script: RunScript::start("hack/run.sh", state, env), state: state.to_path_buf(), ports }
    }

    /// The value after `prefix` on the line of the banner that has it.
    fn banner_value(&self, prefix: &str) -> String {
        let out = self.script.output();
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

    /// 20 s is only a failure bound.
    fn eventually(&self, what: &str, check: impl FnMut() -> bool) {
        self.script.eventually(what, Duration::from_secs(20), check);
    }

    /// SIGTERM, then checks that the script and everything it started are gone.
    fn stop(self) {
        let control_plane = [self.state.join("etcd.pid"), self.state.join("kube-apiserver.pid")];
        self.script.stop(&control_plane, &self.ports);
    }
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn make_run_serves_the_documented_example_and_stops_cleanly_twice() {
    let state = std::env::temp_dir().join(format!("berth-make-run-{}", std::process::id()));
    for round in 1..=2 {
        let run = Run::start(&state);
        run.eventually("the declared holder worker-east-1 holds ingest-coordinator", || {
            let out = run.berth(&["lease", "get", "ingest-coordinator", "-o", "json"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"worker-east-1\"")
        });
        run.eventually("the operator resumes the CronJob", || {
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
    run.eventually("the operator resumes the CronJob", || {
        run.kubectl(&["-n", "pipeline", "get", "cronjob", "ingest-pipeline", "-o", "jsonpath={.spec.suspend}"])
            == "false"
    });
    run.script.eventually("a Job of the example completes on the node", Duration::from_secs(180), || {
        run.kubectl(&["-n", "pipeline", "get", "jobs", "-o", "jsonpath={.items[*].status.succeeded}"]).contains('1')
    });
    let logs = run.kubectl(&["-n", "pipeline", "logs", "-l", "batch.kubernetes.io/job-name", "--tail", "1"]);
    assert!(logs.contains("ingesting"), "{logs}");
    run.stop();
    let netns = format!("/run/netns/berth-{}", slot.trim());
    assert!(!Path::new(&netns).exists(), "the node's network namespace is left: {netns}");
    let _ = std::fs::remove_dir_all(&state);
}
