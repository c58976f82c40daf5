//! `make run-clusters` end to end: `hack/run-clusters.sh` on planes and ports
//! of its own starts the coordination plane and members east and west with
//! the example, one member runs the CronJob, the printed command that cuts
//! it off hands the CronJob to the other, and SIGTERM stops everything.
//!
//! It uses the binaries Cargo builds next to this test
//! (`target/<profile>/{apiserver,operator,berth,berth-proxy}`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_testenv::apiserver::free_ports_for_later;
use berth_testenv::repo_root;

fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_berth-proxy")).parent().unwrap().to_path_buf();
    for bin in ["apiserver", "operator", "berth-proxy"] {
        assert!(dir.join(bin).exists(), "{bin} is missing: run `cargo build --workspace --bins` first");
    }
    dir
}

struct Run {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    state: PathBuf,
    ports: [u16; 3],
}

impl Run {
    fn start(state: &Path) -> Self {
        // The script binds them after it has started three control planes.
        let ports = free_ports_for_later::<3>();
        let (stdout, stderr) = (state.with_extension("stdout"), state.with_extension("stderr"));
        let child = Command::new("bash")
            .arg(repo_root().join("hack/run-clusters.sh"))
            .env("BERTH_RUN_CLUSTERS_DIR", state)
            .env("BERTH_BIN_DIR", bin_dir())
            .env("BERTH_API_PORT", ports[0].to_string())
            .env("BERTH_EAST_PROXY_PORT", ports[1].to_string())
            .env("BERTH_WEST_PROXY_PORT", ports[2].to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("hack/run-clusters.sh starts");
        let run = Self { child, stdout, stderr, state: state.to_path_buf(), ports };
        run.eventually("the banner", Duration::from_secs(300), || run.output().contains("Press Ctrl-C"));
        run
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn eventually(&self, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what}\n{}\n{}",
                self.output(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
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
        let out = self.output();
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
            .to_owned()
    }

    /// SIGTERM, then checks that the script and everything it started are gone.
    fn stop(mut self) {
        let pids: Vec<String> = ["coordination", "east", "west"]
            .iter()
            .flat_map(|p| ["etcd.pid", "kube-apiserver.pid", "operator.pid"].map(|f| self.state.join(p).join(f)))
            .map(|f| std::fs::read_to_string(f).unwrap().trim().to_owned())
            .collect();
        let term = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(term.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "hack/run-clusters.sh did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Path::new(&format!("/proc/{pid}")).exists() {
                assert!(Instant::now() < deadline, "process {pid} still runs");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for port in self.ports {
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers");
        }
    }
}

/// A test that fails midway still stops the script, which stops what it started.
impl Drop for Run {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn make_run_clusters_runs_the_example_on_one_member_and_the_printed_cut_hands_it_over() {
    let state = std::env::temp_dir().join(format!("berth-run-clusters-{}", std::process::id()));
    let run = Run::start(&state);
    let mut runner = String::new();
    run.eventually("one member runs the CronJob", Duration::from_secs(60), || {
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
    run.eventually("the cut-off member suspends its CronJob", Duration::from_secs(90), || {
        run.suspend(&runner) == "true"
    });
    run.eventually("the other member runs the CronJob", Duration::from_secs(90), || run.suspend(other) == "false");
    assert_eq!(run.suspend(&runner), "true", "the cut-off member stays suspended");
    run.stop();
    let _ = std::fs::remove_dir_all(&state);
}
