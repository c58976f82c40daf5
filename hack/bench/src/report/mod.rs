//! The results of a run: `benchmarks.json` (everything) and `benchmarks.md`
//! (tables, the goals, and the hand-written analysis of `notes.md`). This
//! module is the model and its files; [`judge`] sets the goals' verdicts and
//! `markdown` renders the page.

pub mod judge;
mod markdown;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::AuthCost;
use crate::expiry::Expiry;
use crate::failover::Failover;
use crate::hot_path::HotPath;
use crate::memory::MemoryAtCount;
use crate::overload::Overload;
use crate::procfs::Machine;
use crate::profile::Profile;
use crate::scale::Scale;
use crate::write_cost::WriteCost;
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versions {
    pub kubernetes: String,
    pub etcd: String,
    pub rustc: String,
    pub berth_commit: String,
    /// Whether the work tree had changes to tracked files.
    pub berth_dirty: bool,
}

impl Versions {
    pub async fn read(kube: &kube::Client) -> Self {
        let kubernetes =
            kube.apiserver_version().await.map(|v| v.git_version).unwrap_or_else(|e| format!("unknown ({e})"));
        let etcd = first_line(Command::new(berth_testenv::bin_dir().join("etcd")).arg("--version"));
        let rustc =
            first_line(Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())).arg("--version"));
        let repo = berth_testenv::repo_root();
        let berth_commit = first_line(Command::new("git").arg("-C").arg(&repo).args(["rev-parse", "HEAD"]));
        let berth_dirty = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["diff", "--quiet", "HEAD", "--", ".", ":(exclude)docs/benchmarks.*"])
            .status()
            .is_ok_and(|s| !s.success());
        Self { kubernetes, etcd, rustc, berth_commit, berth_dirty }
    }
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A goal of the Targets table, as measured in this run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Goal {
    pub name: String,
    /// What counts as met, e.g. "renew p50 ≤ 1.2× the raw write".
    #[serde(rename = "target")]
    pub criterion: String,
    pub measured: String,
    /// `None` when the run did not measure it.
    pub met: Option<bool>,
}

impl Goal {
    fn new(name: &str, criterion: &str, measured: String, met: Option<bool>) -> Self {
        Self { name: name.to_owned(), criterion: criterion.to_owned(), measured, met }
    }

    fn unmeasured(name: &str, criterion: &str) -> Self {
        Self::new(name, criterion, UNMEASURED.to_owned(), None)
    }
}

const UNMEASURED: &str = "not measured in this run";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub date: DateTime<Utc>,
    pub duration_seconds: f64,
    pub machine: Machine,
    /// 1-minute load average before and after the run: other work on the machine.
    pub load_average_start: f64,
    pub load_average_end: f64,
    pub versions: Versions,
    pub profile: Profile,
    pub hot_path: Option<HotPath>,
    pub scale: Option<Scale>,
    pub expiry: Option<Expiry>,
    pub failover: Option<Failover>,
    #[serde(default)]
    pub memory: Option<MemoryAtCount>,
    #[serde(default)]
    pub auth: Option<AuthCost>,
    #[serde(default)]
    pub write_cost: Option<WriteCost>,
    #[serde(default)]
    pub overload: Option<Overload>,
    /// Scenarios that failed: their figures are absent.
    #[serde(default)]
    pub failed: Vec<FailedScenario>,
    /// The Targets table.
    #[serde(rename = "targets")]
    pub goals: Vec<Goal>,
}

/// A scenario that stopped with an error.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedScenario {
    pub scenario: String,
    pub error: String,
}

impl Report {
    /// Fills in [`Report::goals`] from the scenario results ([`judge::goals`]).
    pub fn judge(&mut self) {
        self.goals = judge::goals(self);
    }

    /// Reads a report written by [`Self::write`], to render it again.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// Writes `benchmarks.json` and `benchmarks.md` into `dir`.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let json = serde_json::to_string_pretty(self)? + "\n";
        let path = dir.join("benchmarks.json");
        std::fs::write(&path, json).map_err(Error::io(format!("writing {}", path.display())))?;
        let path = dir.join("benchmarks.md");
        std::fs::write(&path, markdown::page(self)).map_err(Error::io(format!("writing {}", path.display())))?;
        Ok(())
    }
}
