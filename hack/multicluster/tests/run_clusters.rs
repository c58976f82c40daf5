//! `make run-clusters` end to end: `hack/run-clusters.sh` on planes and ports
//! of its own starts the coordination plane and members east and west with
//! the example, one member runs the CronJob, the printed command that cuts
//! it off hands the CronJob to the other, and SIGTERM stops everything.
//!
//! It uses the binaries Cargo builds next to this test
//! (`target/<profile>/{apiserver,operator,berth,berth-proxy}`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_testenv::apiserver::free_ports_for_later;
use berth_testenv::run_script::RunScript;

fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_berth-proxy")).parent().unwrap().to_path_buf();
    for bin in ["apiserver", "operator", "berth-proxy"] {
        assert!(dir.join(bin).exists(), "{bin} is missing: run `cargo build --workspace --bins` first");
    }
    dir
}

struct Run {
    script: RunScript,
    state: PathBuf,
    ports: [u16; 3],
}

impl Run {
    fn start(state: &Path) -> Self {
        // The script binds them after it has started three control planes.
        let ports = free_ports_for_later::<3>();
        let env = [
            ("BERTH_RUN_CLUSTERS_DIR", state.display().to_string()),
            ("BERTH_BIN_DIR", bin_dir().display().to_string()),
            ("BERTH_API_PORT", ports[0].to_string()),
            ("BERTH_EAST_PROXY_PORT", ports[1].to_string()),
            ("BERTH_WEST_PROXY_PORT", ports[2].to_string()),
        ];
        Self { script: RunScript::start("hack/run-clusters.sh", state, env), state: state.to_path_buf(), ports }
    }

    /// `.spec.suspend` of the example's CronJob on member `plane`.
    fn suspend(&self, plane: &str) -> String {
        let bin = std::fs::read_to_string(self.state.join(plane).join("bin-dir")).unwrap();
        let out = Command::new(Path::new(bin.trim()).join("kubectl"))
            .args(["-n", "pipeline", "get", "cronjob", "ingest-pipeline", "-o", "jsonpath={.spec.suspend}"])
            .env("KUBECONFIG", self.state.join(plane).join("kubeconfig"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The banner's command line that starts with `prefix`.
    fn banner_line(&self, prefix: &str) -> String {
        let out = self.script.output();
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
            .to_owned()
    }

    /// SIGTERM, then checks that the script and everything it started are gone.
    fn stop(self) {
        let pid_files: Vec<PathBuf> = ["coordination", "east", "west"]
            .iter()
            .flat_map(|p| ["etcd.pid", "kube-apiserver.pid", "operator.pid"].map(|f| self.state.join(p).join(f)))
            .collect();
        self.script.stop(&pid_files, &self.ports);
    }
}

#[test]
fn make_run_clusters_runs_the_example_on_one_member_and_the_printed_cut_hands_it_over() {
    let state = std::env::temp_dir().join(format!("berth-run-clusters-{}", std::process::id()));
    let run = Run::start(&state);
    let mut runner = String::new();
    run.script.eventually("one member runs the CronJob", Duration::from_secs(60), || {
        let running: Vec<&str> = ["east", "west"].into_iter().filter(|m| run.suspend(m) == "false").collect();
        if let [one] = running.as_slice() {
            runner = (*one).to_owned();
        }
        running.len() == 1
    });
    let other = if runner == "east" { "west" } else { "east" };

    // The printed cut, for the runner: `echo blackhole > <dir>/east/proxy-mode`.
    let cut = run.banner_line("echo blackhole > ").replace("/east/", &format!("/{runner}/"));
    let status = Command::new("bash").args(["-c", &cut]).status().unwrap();
    assert!(status.success(), "{cut}");
    // The sample's TTL is 30 s: the runner fences, then the other takes over.
    run.script.eventually("the cut-off member suspends its CronJob", Duration::from_secs(90), || {
        run.suspend(&runner) == "true"
    });
    run.script
        .eventually("the other member runs the CronJob", Duration::from_secs(90), || run.suspend(other) == "false");
    assert_eq!(run.suspend(&runner), "true", "the cut-off member stays suspended");
    run.stop();
    let _ = std::fs::remove_dir_all(&state);
}
