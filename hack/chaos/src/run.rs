//! One chaos run: sets up the stack on a control plane of its own, starts
//! the contenders, injects faults for the run's duration, reads the store
//! alongside, then checks the history.
//!
//! Every process it starts is stopped by a guard, also when the run panics:
//! contenders (SIGCONT, then SIGKILL), apiserver replicas and the operator
//! (their testenv guards), and the control plane (`hack/control-plane down`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_api::BerthLease;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::operator::{self, Operator};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::check::{Closest, Violation, check, closest};
use crate::clock::wall_now;
use crate::history::{History, Operations, Snapshot, SnapshotHolder};

/// The namespace the run's leases live in.
pub const NAMESPACE: &str = "chaos";
/// The tenant the contenders act for (holders `chaos/cNN`).
pub const TENANT: &str = "chaos";

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long contenders compete and faults are injected.
    pub duration: Duration,
    pub contenders: usize,
    pub leases: usize,
    pub replicas: usize,
    pub ttl_seconds: u64,
    /// The control plane's state directory; it is started fresh and stopped after.
    pub control_plane_dir: PathBuf,
    /// Where the histories, logs and report go (emptied first).
    pub run_dir: PathBuf,
    /// The `contender` binary.
    pub contender_bin: PathBuf,
    pub seed: u64,
}

impl Config {
    /// The set-up: 20 contenders, 5 leases, 3 replicas, a 4 s TTL.
    pub fn new(duration: Duration, control_plane_dir: PathBuf, run_dir: PathBuf, contender_bin: PathBuf) -> Self {
        let seed = wall_now().timestamp_subsec_nanos().into();
        Self {
            duration,
            contenders: 20,
            leases: 5,
            replicas: 3,
            ttl_seconds: 4,
            control_plane_dir,
            run_dir,
            contender_bin,
            seed,
        }
    }
}

/// The faults injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Apiserver replicas SIGKILLed (each restarted afterwards).
    pub apiserver_kills: usize,
    /// Contenders SIGSTOPped for longer than the TTL (each SIGCONTed afterwards).
    pub contender_pauses: usize,
    pub kube_apiserver_restarts: usize,
    /// Store reads that failed (kube-apiserver down).
    pub failed_snapshots: usize,
}

/// What a run did and found.
#[derive(Debug)]
pub struct Outcome {
    pub config: Config,
    pub operations: Operations,
    pub faults: Faults,
    pub violations: Vec<Violation>,
    pub closest: Closest,
    pub elapsed: Duration,
    /// Everything recorded, for further checks.
    pub history: History,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "chaos run: {} s of faults, {} contenders, {} at-most-once leases, {} apiserver replicas, TTL {} s, seed {} \
             ({} s in all, histories in {})",
            c.duration.as_secs(),
            c.contenders,
            c.leases,
            c.replicas,
            c.ttl_seconds,
            c.seed,
            self.elapsed.as_secs(),
            c.run_dir.display()
        )?;
        writeln!(f, "operations: {}", self.operations)?;
        let x = &self.faults;
        writeln!(
            f,
            "faults: apiserver SIGKILL+restart {}, contender SIGSTOP > TTL {}, kube-apiserver restarts {}, \
             store reads failed {}",
            x.apiserver_kills, x.contender_pauses, x.kube_apiserver_restarts, x.failed_snapshots
        )?;
        writeln!(f, "{}", self.closest)?;
        writeln!(f, "violations: {}", self.violations.len())?;
        for violation in self.violations.iter().take(20) {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// Why a run could not be carried out (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("control plane: {0}")]
    ControlPlane(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kubernetes: {0}")]
    Kube(#[source] Box<kube::Error>),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("reading the history: {0}")]
    History(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ControlPlane(_) => "control_plane",
            Error::Io { .. } => "io",
            Error::Kube(_) => "kube",
            Error::Kubeconfig(_) => "kubeconfig",
            Error::History(_) => "history",
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Runs the check.
///
/// # Errors
/// When the stack cannot be set up or the history cannot be read. What the
/// run finds is in [`Outcome::violations`].
///
/// # Panics
/// When an apiserver replica does not come back within 60 s (testenv's
/// guards still stop everything).
pub fn run(config: &Config) -> Result<Outcome, Error> {
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&config.run_dir);
    std::fs::create_dir_all(&config.run_dir).map_err(io("creating the run directory"))?;
    let plane = ControlPlane::up(&config.control_plane_dir)?;
    let kubeconfig = plane.dir.join("kubeconfig");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting tokio"))?;
    let client = runtime.block_on(kube_client(&kubeconfig))?;
    runtime
        .block_on(async {
            berth_testenv::install_crd(&client).await;
            let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))
                .expect("a namespace object");
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.map(drop)
        })
        .map_err(|e| Error::Kube(Box::new(e)))?;

    let tenant = Tenant::new(TENANT, &[NAMESPACE]);
    let mut replicas: Vec<ApiServer> = (0..config.replicas)
        .map(|_| ApiServer::start_as(&kubeconfig, vec![tenant.clone()], &[NAMESPACE], &[]))
        .collect();
    let operator = Operator::start(&operator::binary(), &kubeconfig, &[NAMESPACE], &[]);
    let key_file = config.run_dir.join("api-key");
    std::fs::write(&key_file, &tenant.key).map_err(io("writing the API key"))?;

    let leases: Vec<String> = (0..config.leases).map(|i| format!("lease-{i}")).collect();
    let mut contenders = Contenders::default();
    for i in 0..config.contenders {
        let replica = &replicas[i % replicas.len()];
        contenders.spawn(config, i, replica, &key_file, &leases)?;
    }

    let end = Instant::now() + config.duration;
    let faults = FaultCounters::default();
    let snapshots = Mutex::new(Vec::new());
    let observing = AtomicBool::new(true);
    let pids = contenders.pids();
    std::thread::scope(|scope| {
        scope.spawn(|| runtime.block_on(observe(&client, &observing, &snapshots, &faults)));
        scope.spawn(|| pause_contenders(config, &pids, end, &snapshots, &faults));
        scope.spawn(|| {
            // Once, 40 % into the run.
            sleep_until((Instant::now() + config.duration * 2 / 5).min(end));
            if Instant::now() < end {
                plane.restart_apiserver().unwrap_or_else(|e| panic!("{e}"));
                faults.kube_apiserver_restarts.fetch_add(1, Ordering::Relaxed);
            }
        });
        scope.spawn(|| kill_replicas(config, &mut replicas, end, &faults));
        // The contenders stop by themselves after the duration, releasing what they hold.
        contenders.wait(config.duration + Duration::from_secs(config.ttl_seconds * 4 + 30));
        observing.store(false, Ordering::Relaxed);
    });

    for (i, replica) in replicas.iter().enumerate() {
        let _ = std::fs::write(config.run_dir.join(format!("apiserver-{i}.log")), replica.log());
    }
    let _ = std::fs::write(config.run_dir.join("operator.log"), operator.logs());

    write_snapshots(&config.run_dir.join("snapshots.jsonl"), &snapshots.into_inner().expect("observer finished"))?;
    let history = load_history(&config.run_dir)?;
    let outcome = Outcome {
        config: config.clone(),
        operations: history.operations(),
        faults: faults.into_faults(),
        violations: check(&history),
        closest: closest(&history),
        elapsed: started.elapsed(),
        history,
    };
    std::fs::write(config.run_dir.join("report.txt"), outcome.to_string()).map_err(io("writing the report"))?;
    Ok(outcome)
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| Error::Kube(Box::new(e)))
}

/// `hack/control-plane` on the run's own state directory: started fresh,
/// stopped on drop.
struct ControlPlane {
    dir: PathBuf,
}

impl ControlPlane {
    fn up(dir: &Path) -> Result<Self, Error> {
        let plane = Self { dir: dir.to_owned() };
        plane.script("down")?;
        plane.script("up")?;
        Ok(plane)
    }

    fn restart_apiserver(&self) -> Result<(), Error> {
        self.script("restart-apiserver")
    }

    fn script(&self, command: &str) -> Result<(), Error> {
        let output = Command::new(berth_testenv::repo_root().join("hack/control-plane"))
            .arg(command)
            .env("BERTH_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .map_err(io("running hack/control-plane"))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(Error::ControlPlane(format!("hack/control-plane {command} failed:\n{stderr}")))
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.script("down");
    }
}

/// The contender processes; SIGCONTed and killed on drop.
#[derive(Default)]
struct Contenders {
    children: Vec<Child>,
}

impl Contenders {
    fn spawn(
        &mut self,
        config: &Config,
        index: usize,
        replica: &ApiServer,
        key_file: &Path,
        leases: &[String],
    ) -> Result<(), Error> {
        let log = std::fs::File::create(config.run_dir.join(format!("contender-{index:02}.log")))
            .map_err(io("creating a contender log"))?;
        let child = Command::new(&config.contender_bin)
            .arg(format!("--url={}", replica.url))
            .arg("--ca-file")
            .arg(&replica.ca_file)
            .arg("--api-key-file")
            .arg(key_file)
            .arg(format!("--namespace={NAMESPACE}"))
            .args(leases.iter().map(|l| format!("--lease={l}")))
            .arg(format!("--holder={}", holder(index)))
            .arg(format!("--ttl-seconds={}", config.ttl_seconds))
            .arg(format!("--run-for-ms={}", config.duration.as_millis()))
            .arg("--out")
            .arg(contender_file(config, index))
            .arg(format!("--seed={}", config.seed.wrapping_add(index as u64)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {}", config.contender_bin.display())))?;
        self.children.push(child);
        Ok(())
    }

    fn pids(&self) -> Vec<Pid> {
        self.children.iter().map(|c| Pid::from_raw(c.id().try_into().expect("a pid fits i32"))).collect()
    }

    /// Waits for every contender to exit, at most `limit`; kills the rest.
    fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for child in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(child.id().try_into().expect("a pid fits i32")), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Contenders {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
struct FaultCounters {
    apiserver_kills: AtomicUsize,
    contender_pauses: AtomicUsize,
    kube_apiserver_restarts: AtomicUsize,
    failed_snapshots: AtomicUsize,
}

impl FaultCounters {
    fn into_faults(self) -> Faults {
        Faults {
            apiserver_kills: self.apiserver_kills.into_inner(),
            contender_pauses: self.contender_pauses.into_inner(),
            kube_apiserver_restarts: self.kube_apiserver_restarts.into_inner(),
            failed_snapshots: self.failed_snapshots.into_inner(),
        }
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn millis(rng: &mut fastrand::Rng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.u64(range))
}

/// Every 1–4 s, SIGSTOPs one contender for TTL + 0.5–2.5 s, then SIGCONTs
/// it. Three times in four it picks a contender the store last showed
/// holding a lease: a pause costs nothing to one that holds none.
fn pause_contenders(
    config: &Config,
    pids: &[Pid],
    end: Instant,
    snapshots: &Mutex<Vec<Snapshot>>,
    faults: &FaultCounters,
) {
    let mut rng = fastrand::Rng::with_seed(config.seed ^ 0x5157);
    let ttl = Duration::from_secs(config.ttl_seconds);
    loop {
        sleep_until((Instant::now() + millis(&mut rng, 1000..4000)).min(end));
        let pause = ttl + millis(&mut rng, 500..2500);
        if Instant::now() + pause >= end {
            return;
        }
        let holders: Vec<usize> = {
            let snapshots = snapshots.lock().expect("snapshots lock");
            let recent = snapshots.iter().rev().take(config.leases);
            recent.flat_map(|s| &s.holders).filter_map(|h| contender_index(&h.identity)).collect()
        };
        let index = match holders.is_empty() || rng.u8(..4) == 0 {
            true => rng.usize(..pids.len()),
            false => holders[rng.usize(..holders.len())],
        };
        let Some(&pid) = pids.get(index) else { continue };
        if kill(pid, Signal::SIGSTOP).is_ok() {
            faults.contender_pauses.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(pause);
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
}

/// `chaos/c07` → 7.
fn contender_index(holder: &str) -> Option<usize> {
    holder.strip_prefix(TENANT)?.strip_prefix("/c")?.parse().ok()
}

/// Every 3–8 s, SIGKILLs one replica, and restarts it 0.5–2 s later.
fn kill_replicas(config: &Config, replicas: &mut [ApiServer], end: Instant, faults: &FaultCounters) {
    let mut rng = fastrand::Rng::with_seed(config.seed ^ 0xdead);
    loop {
        sleep_until((Instant::now() + millis(&mut rng, 3000..8000)).min(end));
        if Instant::now() >= end {
            return;
        }
        let index = rng.usize(..replicas.len());
        replicas[index].kill();
        faults.apiserver_kills.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(millis(&mut rng, 500..2000));
        replicas[index].restart();
    }
}

/// Reads every lease from kube-apiserver (a quorum read) every 200 ms until
/// `observing` turns false, and once more after.
async fn observe(client: &kube::Client, observing: &AtomicBool, out: &Mutex<Vec<Snapshot>>, faults: &FaultCounters) {
    let api: Api<BerthLease> = Api::namespaced(client.clone(), NAMESPACE);
    let mut last = false;
    while !last {
        last = !observing.load(Ordering::Relaxed);
        let sent = wall_now();
        match tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default())).await {
            Ok(Ok(list)) => {
                let received = wall_now();
                let mut snapshots = out.lock().expect("snapshots lock");
                for lease in list.items {
                    let status = lease.status.unwrap_or_default();
                    snapshots.push(Snapshot {
                        lease: lease.metadata.name.unwrap_or_default(),
                        sent,
                        received,
                        fencing_token: status.fencing_token,
                        holders: status
                            .holders
                            .into_iter()
                            .map(|h| SnapshotHolder {
                                identity: h.identity,
                                token: h.fencing_token,
                                acquired_at: h.acquired_at,
                                expires_at: h.expires_at,
                            })
                            .collect(),
                    });
                }
            }
            Ok(Err(_)) | Err(_) => {
                faults.failed_snapshots.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The holder identity of contender `index`.
fn holder(index: usize) -> String {
    format!("{TENANT}/c{index:02}")
}

fn contender_file(config: &Config, index: usize) -> PathBuf {
    config.run_dir.join(format!("contender-{index:02}.jsonl"))
}

/// The history a run recorded in `run_dir`: every `contender-NN.jsonl` (in
/// name order) and `snapshots.jsonl`.
///
/// # Errors
/// When a file cannot be read or a line does not parse.
pub fn load_history(run_dir: &Path) -> Result<History, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map_err(io(format!("reading {}", run_dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("contender-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    let mut history = History::default();
    for file in files {
        history.events.extend(read_lines(&file)?);
    }
    history.snapshots = read_lines(&run_dir.join("snapshots.jsonl"))?;
    Ok(history)
}

/// The JSON lines of one file; a missing file has none.
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::History(format!("{}: {e}: {l}", path.display()))))
        .collect()
}

fn write_snapshots(path: &Path, snapshots: &[Snapshot]) -> Result<(), Error> {
    let mut text = String::new();
    for snapshot in snapshots {
        text.push_str(&serde_json::to_string(snapshot).map_err(|e| Error::History(e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(io("writing the snapshots"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_map_back_to_contenders() {
        assert_eq!(contender_index(&holder(7)), Some(7));
        assert_eq!(contender_index("other/c07"), None);
    }
}
