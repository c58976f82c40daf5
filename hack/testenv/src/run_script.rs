//! A run script (`hack/run.sh`, `hack/run-clusters.sh`) as its tests drive
//! it: started in the background with its output in files, waited on, and
//! stopped with SIGTERM like Ctrl-C.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually_blocking, eventually_blocking_showing, repo_root};

/// A running `bash hack/<script>`.
pub struct RunScript {
    script: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl RunScript {
    /// Starts `script` (a path under the repository) with `envs`, its output
    /// in `<state>.stdout` and `<state>.stderr`, and returns once it printed
    /// its banner.
    ///
    /// # Panics
    /// When it does not start, or prints no banner within 300 s (a bound on
    /// a hang, not a timing: a node starting on a loaded machine takes minutes).
    pub fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        script: &str,
        state: &Path,
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let (stdout, stderr) = (state.with_extension("stdout"), state.with_extension("stderr"));
        let child = Command::new("bash")
            .arg(repo_root().join(script))
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file creates"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file creates"))
            .spawn()
            .unwrap_or_else(|e| panic!("{script} starts: {e}"));
        let run = Self { script: script.to_owned(), child, stdout, stderr };
        run.eventually("the banner", Duration::from_secs(300), || run.output().contains("Press Ctrl-C"));
        run
    }

    /// What it printed on stdout so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// [`eventually_blocking`] for a yes-or-no `check`; a failure shows what
    /// the script printed on both streams.
    pub fn eventually(&self, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
        let printed = || format!("{}\n{}", self.output(), std::fs::read_to_string(&self.stderr).unwrap_or_default());
        eventually_blocking_showing(&format!("{}: {what}", self.script), within, printed, || check().then_some(()));
    }

    /// SIGTERM, then checks that the script, the processes whose pids the
    /// `pid_files` hold, and the `ports` are gone.
    pub fn stop(mut self, pid_files: &[PathBuf], ports: &[u16]) {
        let pids: Vec<String> = pid_files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).trim().to_owned())
            .collect();
        self.terminate();
        eventually_blocking(&format!("{} stops", self.script), Duration::from_secs(60), || {
            self.child.try_wait().expect("the script's status reads")
        });
        for pid in pids {
            eventually_blocking(&format!("process {pid} ends"), Duration::from_secs(15), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
        for port in ports {
            assert!(std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(), "port {port} still answers");
        }
    }

    fn terminate(&self) {
        let term = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(term.success(), "kill -TERM {}", self.child.id());
    }
}

/// A test that fails midway still stops the script, which stops what it started.
impl Drop for RunScript {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}
