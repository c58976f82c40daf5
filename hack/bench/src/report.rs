//! The results of a run: `benchmarks.json` (everything) and `benchmarks.md`
//! (tables, the targets, and the hand-written analysis of `notes.md`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthCost, WAYS};
use crate::expiry::Expiry;
use crate::failover::Failover;
use crate::hot_path::HotPath;
use crate::memory::MemoryAtCount;
use crate::overload::Overload;
use crate::perf_report;
use crate::procfs::{Machine, Memory};
use crate::profile::Profile;
use crate::scale::{P99_TARGET_MS, Scale};
use crate::stats::Latency;
use crate::write_cost::WriteCost;
use crate::{Error, Result};

/// Analysis of the committed full run: why a goal is missed, what would fix it.
const NOTES: &str = include_str!("../notes.md");

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
    pub(crate) fn new(name: &str, criterion: &str, measured: String, met: Option<bool>) -> Self {
        Self { name: name.to_owned(), criterion: criterion.to_owned(), measured, met }
    }

    pub(crate) fn unmeasured(name: &str, criterion: &str) -> Self {
        Self::new(name, criterion, UNMEASURED.to_owned(), None)
    }
}

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
    /// Fills in [`Report::goals`] from the scenario results.
    ///
    /// A goal at 10,000 leases that the run did not reach counts as missed
    /// when a smaller step already missed it (latency and memory only grow
    /// with the count), else as not measured.
    pub fn judge(&mut self) {
        let mut goals = Vec::new();
        goals.push(match &self.hot_path {
            Some(h) => Goal::new(
                "hot path",
                "renew p50 ≤ 1.2× the raw write",
                format!("{:.2}× ({:.2} ms vs {:.2} ms)", h.ratio_p50, h.berth.p50_ms, h.raw.p50_ms),
                Some(h.ratio_p50 <= 1.2),
            ),
            None => Goal::unmeasured("hot path", "renew p50 ≤ 1.2× the raw write"),
        });
        let steps = self.scale.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
        let at_10k = steps.iter().find(|st| st.leases == 10_000);
        let largest = steps.last();
        let scale_goal = "10,000 leases at 10 s: p99 < 100 ms, no errors";
        goals.push(match (at_10k, steps.iter().find(|st| !st.holds)) {
            (Some(st), _) => Goal::new(
                "scale",
                scale_goal,
                format!("p99 {:.1} ms, {} errors", st.renew.p99_ms, st.renew_errors + st.acquire_errors),
                Some(st.holds),
            ),
            (None, Some(st)) => Goal::new(
                "scale",
                scale_goal,
                format!(
                    "10,000 not reached; already at {} leases p99 {:.1} ms, {} errors",
                    st.leases,
                    st.renew.p99_ms,
                    st.renew_errors + st.acquire_errors
                ),
                Some(false),
            ),
            (None, None) => Goal::unmeasured("scale", scale_goal),
        });
        goals.push(match &self.expiry {
            Some(e) => Goal::new(
                "expiry",
                "expiry lag p99 < 250 ms",
                format!(
                    "expired status seen p99 {:.0} ms, CronJob suspended seen p99 {:.0} ms (watch)",
                    e.status_from_watch.p99_ms, e.suspend_from_watch.p99_ms
                ),
                Some(e.status_from_watch.p99_ms < 250.0 && e.suspend_from_watch.p99_ms < 250.0),
            ),
            None => Goal::unmeasured("expiry", "expiry lag p99 < 250 ms"),
        });
        for (process, name) in [("apiserver", "apiserver memory"), ("operator", "operator memory")] {
            let memory_goal = "RSS ≤ 64 MiB at 10,000 leases";
            // The memory scenario's figure after its renew round (a cache in
            // use, on fresh processes); without it, the largest scale step.
            let reading = match &self.memory {
                Some(m) => m.after_renews.get(process).map(|r| (m.leases, r, "after a renew round")),
                None => at_10k
                    .or(largest)
                    .and_then(|st| Some((st.leases, st.memory.get(process)?, "end of the scale step"))),
            };
            goals.push(match reading {
                Some((leases, m, when)) => {
                    let over = m.rss_mib > 64.0;
                    let met = if leases == 10_000 { Some(!over) } else { over.then_some(false) };
                    Goal::new(
                        name,
                        memory_goal,
                        format!("at {leases} leases ({when}): RSS {:.1} MiB, peak {:.1} MiB", m.rss_mib, m.peak_mib),
                        met,
                    )
                }
                None => Goal::unmeasured(name, memory_goal),
            });
        }
        if let Some((m, cold)) = self.memory.as_ref().and_then(|m| Some((m, m.operator_cold_start.as_ref()?))) {
            goals.push(Goal::new(
                "operator memory, cold start",
                "RSS ≤ 64 MiB at 10,000 leases",
                format!(
                    "restarted over {} leases: RSS {:.1} MiB, peak {:.1} MiB",
                    m.leases, cold.rss_mib, cold.peak_mib
                ),
                (m.leases == 10_000 || cold.rss_mib > 64.0).then_some(cold.rss_mib <= 64.0),
            ));
        }
        goals.push(match &self.failover {
            Some(f) => Goal::new(
                "graceful handover",
                "< 100 ms",
                format!(
                    "{:.1} ms to the standby's grant, {:.1} ms until its keeper holds",
                    f.release_to_grant_ms, f.release_to_standby_ms
                ),
                Some(f.release_to_standby_ms < 100.0),
            ),
            None => Goal::unmeasured("graceful handover", "< 100 ms"),
        });
        goals.extend(self.performance_goals());
        self.goals = goals;
    }

    /// The goals for performance at the limit.
    fn performance_goals(&self) -> Vec<Goal> {
        perf_report::goals(self.scale.as_ref(), self.write_cost.as_ref(), self.overload.as_ref())
    }

    /// The sections on performance at the limit: write cost, overload, the projection.
    fn performance_md(&self, md: &mut String) {
        if let Some(c) = &self.write_cost {
            perf_report::write_cost_md(md, c);
        }
        if let Some(o) = &self.overload {
            perf_report::overload_md(md, o);
        }
        if let Some(c) = &self.write_cost {
            perf_report::projection_md(md, c, self.memory.as_ref());
        }
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
        std::fs::write(&path, self.markdown()).map_err(Error::io(format!("writing {}", path.display())))?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let p = &self.profile;
        let v = &self.versions;
        let m = &self.machine;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `make bench` ({}) on {} in {:.0} s. Every figure is a median over repeated runs \
             (hot path and graceful handover: {} repetitions; expiry and crash failover: {}; scale: {} windows of one \
             heartbeat per step); ratios are taken side by side in the same run. `benchmarks.json` next to this file \
             holds every repetition.\n",
            if p.quick { "`--quick`: tiny counts, figures mean nothing" } else { "full run" },
            self.date.format("%Y-%m-%d %H:%M UTC"),
            self.duration_seconds,
            p.repetitions,
            p.slow_repetitions,
            p.scale_windows,
        );
        let _ = writeln!(md, "| machine | |\n|---|---|");
        let _ = writeln!(md, "| CPU | {} × {} |", m.nproc, m.cpu_model);
        let _ = writeln!(md, "| memory | {:.0} MiB |", m.memory_mib);
        let _ = writeln!(md, "| kernel | {} |", m.kernel);
        let _ = writeln!(
            md,
            "| load average (1 min) at start / end | {:.2} / {:.2} |",
            self.load_average_start, self.load_average_end
        );
        let _ = writeln!(md, "| Kubernetes | {} |", v.kubernetes);
        let _ = writeln!(md, "| etcd | {} |", v.etcd);
        let _ = writeln!(md, "| rustc | {} |", v.rustc);
        let _ = writeln!(
            md,
            "| berth | `{}`{} |\n",
            v.berth_commit,
            if v.berth_dirty { " (with uncommitted changes)" } else { "" }
        );
        let _ = writeln!(
            md,
            "Everything runs on this one machine: etcd, kube-apiserver, the Berth apiserver and operator (release \
             builds) and the load generator share its cores, and the machine is shared with other work (see the load \
             average).\n"
        );

        let _ = writeln!(md, "## Targets\n\n| | target | measured | |\n|---|---|---|---|");
        for t in &self.goals {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(md, "| {} | {} | {} | {} |", t.name, t.criterion, t.measured, verdict);
        }
        md.push('\n');
        for f in &self.failed {
            let _ = writeln!(md, "**The {} scenario failed**, so its figures are absent: {}\n", f.scenario, f.error);
        }

        if let Some(h) = &self.hot_path {
            self.hot_path_md(&mut md, h);
        }
        if let Some(s) = &self.scale {
            scale_md(&mut md, s);
            perf_report::knee_md(&mut md, s);
        }
        if let Some(e) = &self.expiry {
            expiry_md(&mut md, e, self.scale.as_ref());
        }
        if let Some(f) = &self.failover {
            failover_md(&mut md, f);
        }
        memory_md(&mut md, self.memory.as_ref(), self.scale.as_ref().and_then(|s| s.steps.last()));
        if let Some(a) = &self.auth {
            auth_md(&mut md, a);
        }
        self.performance_md(&mut md);
        if !p.quick {
            md.push_str(NOTES);
        }
        md
    }

    fn hot_path_md(&self, md: &mut String, h: &HotPath) {
        let _ = writeln!(
            md,
            "## 1. Hot path\n\nOne renew through Berth (HTTPS, keep-alive client) against the floor: the same \
             `decide` and one `replace_status` with resourceVersion of a BerthLease of the same shape, straight to \
             kube-apiserver. The two alternate request by request; {} of each per repetition, after {} not \
             counted.\n",
            h.samples_per_side, self.profile.hot_path_warmup
        );
        let _ = writeln!(md, "| | p50 | p99 | max |\n|---|---|---|---|");
        let _ = writeln!(md, "| renew through Berth | {} |", latency_cells(&h.berth));
        let _ = writeln!(md, "| raw conditional status write | {} |", latency_cells(&h.raw));
        let _ = writeln!(
            md,
            "| ratio (median of the repetitions' ratios) | {:.2}× | {:.2}× | |\n",
            h.ratio_p50, h.ratio_p99
        );
        let _ = writeln!(
            md,
            "Where the time goes (means): a renew takes {:.2} ms as the client sees it, of which {:.2} ms inside the \
             apiserver (its request-duration histogram: checks, `decide`, the kube-apiserver write); the raw write \
             alone takes {:.2} ms.\n",
            h.berth_mean_ms, h.apiserver_mean_ms, h.raw_mean_ms
        );
        let _ = writeln!(md, "Per repetition (p50 / p99, ms): Berth, raw, ratio p50\n");
        for (i, r) in h.repetitions.iter().enumerate() {
            let _ = writeln!(
                md,
                "- {}: {:.2} / {:.2}, {:.2} / {:.2}, {:.2}×",
                i + 1,
                r.berth.p50_ms,
                r.berth.p99_ms,
                r.raw.p50_ms,
                r.raw.p99_ms,
                r.ratio_p50
            );
        }
        md.push('\n');
    }
}

const UNMEASURED: &str = "not measured in this run";

fn auth_md(md: &mut String, a: &AuthCost) {
    let _ = writeln!(
        md,
        "## 6. Authentication cost\n\nThe same renew (HTTPS, keep-alive client), authenticated four ways side by side \
         in a rotating order: a static API key; a service-account token checked offline as a JWT (RS256, keys from \
         the issuer's discovery); TokenReview with the answer cached; TokenReview with no cache (`cacheTTL: 0s`), so \
         every renew asks kube-apiserver. {} renews per way per repetition (docs/auth.md).\n",
        a.samples_per_way
    );
    let _ = writeln!(md, "| renew authenticated by | p50 | p99 | max |\n|---|---|---|---|");
    for (name, latency) in WAYS.iter().zip(&a.ways) {
        let _ = writeln!(md, "| {name} | {} |", latency_cells(latency));
    }
    md.push('\n');
}

fn latency_cells(l: &Latency) -> String {
    format!("{:.2} ms | {:.2} ms | {:.2} ms", l.p50_ms, l.p99_ms, l.max_ms)
}

fn leases_cell(st: &crate::scale::Step) -> String {
    if st.leases == st.target_leases {
        st.leases.to_string()
    } else {
        format!("{} (of {}: budget spent)", st.leases, st.target_leases)
    }
}

fn cores(map: &HashMap<String, f64>, name: &str) -> String {
    map.get(name).map_or_else(|| "–".to_owned(), |c| format!("{c:.2}"))
}

fn mem(map: &HashMap<String, Memory>, name: &str) -> String {
    map.get(name).map_or_else(|| "–".to_owned(), |m| format!("{:.1} / {:.1}", m.rss_mib, m.peak_mib))
}

fn scale_md(md: &mut String, s: &Scale) {
    let _ = writeln!(
        md,
        "## 2. Scale\n\nEach lease is renewed every {:.0} s (TTL {} s) at its own random phase; contended acquires \
         (another holder asks for a held lease and is refused) run at {:.0}% of the renew rate. Latency counts \
         from the moment a request was due (open loop). A step holds when renew p99 < {P99_TARGET_MS:.0} ms with \
         no failed request. Figures are medians over {} windows of one heartbeat.\n",
        s.heartbeat_seconds,
        s.ttl_seconds,
        s.contended_share * 100.0,
        s.windows_per_step
    );
    let _ = writeln!(
        md,
        "| leases | renews/s | renew p50 | renew p99 | renew max | failed renews | acquire p50 | acquire p99 | failed \
         acquires | holds |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for st in &s.steps {
        let rate = st.renew.count as f64 / (s.windows_per_step as f64 * s.heartbeat_seconds);
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.1} ms | {:.1} ms | {} | {} |",
            leases_cell(st),
            rate,
            st.renew.p50_ms,
            st.renew.p99_ms,
            st.renew.max_ms,
            st.renew_errors,
            st.acquire.p50_ms,
            st.acquire.p99_ms,
            st.acquire_errors,
            if st.holds { "yes" } else { "**no**" }
        );
    }
    if !s.skipped_steps.is_empty() {
        let _ = writeln!(
            md,
            "\nNot run (the search stops after a step where neither side holds, or once its time budget is spent): \
             {:?} leases.",
            s.skipped_steps
        );
    }
    let _ = writeln!(
        md,
        "\n**Largest lease count that holds on this machine: {}.**\n",
        if s.max_leases_holding == 0 { "none of the steps".to_owned() } else { s.max_leases_holding.to_string() }
    );
    let _ = writeln!(
        md,
        "CPU (cores: CPU seconds per wall second, median over the windows) and memory (MiB, RSS / peak RSS = VmHWM \
         at the end of the step):\n"
    );
    let _ = writeln!(
        md,
        "| leases | apiserver | kube-apiserver | etcd | operator | generator | apiserver MiB | operator MiB | \
         kube-apiserver MiB | seconds to create the step's leases |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for st in &s.steps {
        let c = &st.cpu_cores;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            st.leases,
            cores(c, "apiserver"),
            cores(c, "kube-apiserver"),
            cores(c, "etcd"),
            cores(c, "operator"),
            cores(c, "generator"),
            mem(&st.memory, "apiserver"),
            mem(&st.memory, "operator"),
            mem(&st.memory, "kube-apiserver"),
            st.grow_seconds
        );
    }
    md.push('\n');
}

fn expiry_md(md: &mut String, e: &Expiry, scale: Option<&Scale>) {
    let leases = e.repetitions.first().map_or(0, |r| r.leases);
    let _ = writeln!(
        md,
        "## 3. Expiry to action\n\n{leases} leases (TTL {} s), each with a CronJob target (`releaseAction: \
         suspend`), expire together. Time from each lease's `expiresAt`:\n",
        e.ttl_seconds
    );
    let _ = writeln!(md, "| to | read from | resolution | p50 | p99 | max |\n|---|---|---|---|---|---|");
    let rows = [
        (
            "expired status",
            "`status.lastTransitionTime`",
            "ns, operator's clock before its write",
            &e.status_from_objects,
        ),
        ("expired status", "watch, stamped on arrival", "ns, plus watch delivery", &e.status_from_watch),
        (
            "CronJob suspended",
            "`status.target.observedAt`",
            "ns, operator's clock after the patch",
            &e.suspend_from_objects,
        ),
        ("CronJob suspended", "watch, stamped on arrival", "ns, plus watch delivery", &e.suspend_from_watch),
    ];
    for (to, from, resolution, l) in rows {
        let _ = writeln!(md, "| {to} | {from} | {resolution} | {} |", latency_cells(l));
    }
    let _ = writeln!(
        md,
        "| expired status | `berth_operator_expiry_lag_seconds` | buckets ×2 from 1 ms, interpolated | {:.1} ms | \
         {:.1} ms | |\n",
        e.status_histogram_p50_ms, e.status_histogram_p99_ms
    );
    let raw_rate = match scale.filter(|s| s.raw_max_leases_holding > 0) {
        Some(s) => format!(
            "the raw writes' knee in the scale search (section 2): {:.0} writes/s held at p99 < {P99_TARGET_MS} ms",
            s.raw_max_leases_holding as f64 / s.heartbeat_seconds
        ),
        None => "the raw write rate (not measured in this run: no scale search)".to_owned(),
    };
    let _ = writeln!(
        md,
        "The burst's writes (the operator's status and target writes, from the first `expiresAt` until every \
         expiry and suspension was seen): {:.0} writes/s (median over the repetitions), against {raw_rate}.\n",
        e.burst_writes_per_second
    );
    let late: usize = e.repetitions.iter().map(|r| r.not_resumed_before_expiry).sum();
    if late > 0 {
        let _ = writeln!(md, "{late} CronJobs had not been resumed yet when the first lease expired.\n");
    }
}

fn failover_md(md: &mut String, f: &Failover) {
    let _ = writeln!(
        md,
        "## 4. Failover\n\n`LeaseKeeper` with defaults, TTL {} s (margin {} ms; the heartbeat is the lease's). \
         The standby is a `LeaseKeeper` with a wait, already waiting.\n",
        f.ttl_seconds,
        berth_client::default_margin(std::time::Duration::from_secs(f.ttl_seconds.unsigned_abs().into())).as_millis()
    );
    let _ = writeln!(md, "| | median | runs |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| crash (SIGKILL of the holder's process) → standby holds | {:.0} ms | {} |",
        f.kill_to_standby_ms,
        f.crashes.len()
    );
    let _ = writeln!(md, "| … of which TTL left at the kill | {:.0} ms | |", f.ttl_left_at_kill_ms);
    let _ = writeln!(md, "| … old `expiresAt` → standby's `acquiredAt` | {:.1} ms | |", f.expiry_to_grant_ms);
    let _ = writeln!(md, "| graceful: `release()` returns | {:.1} ms | {} |", f.release_ms, f.graceful.len());
    let _ =
        writeln!(md, "| graceful: `release()` called → standby's `acquiredAt` | {:.1} ms | |", f.release_to_grant_ms);
    let _ = writeln!(
        md,
        "| graceful: `release()` called → standby's keeper holds | {:.1} ms | |\n",
        f.release_to_standby_ms
    );
}

fn memory_md(md: &mut String, memory: Option<&MemoryAtCount>, last_step: Option<&crate::scale::Step>) {
    const PROCESSES: [&str; 4] = ["apiserver", "operator", "kube-apiserver", "etcd"];
    if let Some(m) = memory {
        let _ = writeln!(
            md,
            "## 5. Memory at {} leases\n\nFresh apiserver and operator processes; {} held leases created straight in \
             kube-apiserver in {:.0} s; both caches held all of them {:.0} s later (the operator had written its \
             conditions on each). Then every lease was renewed once through Berth, spread over {:.0} s ({:.0} renews/s: \
             renew p50 {:.1} ms, p99 {:.1} ms, {} failed).\n",
            m.leases,
            m.leases,
            m.seed_seconds,
            m.settle_seconds,
            m.renew_period_seconds,
            m.leases as f64 / m.renew_period_seconds,
            m.renew.p50_ms,
            m.renew.p99_ms,
            m.renew_errors
        );
        let _ = writeln!(
            md,
            "| process | at rest: RSS | at rest: peak (VmHWM) | after the renew round: RSS | after: peak |\n|---|---|---|---|---|"
        );
        for name in PROCESSES {
            if let (Some(a), Some(b)) = (m.at_rest.get(name), m.after_renews.get(name)) {
                let _ = writeln!(
                    md,
                    "| {name} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                    a.rss_mib, a.peak_mib, b.rss_mib, b.peak_mib
                );
            }
        }
        md.push('\n');
        if let (Some(seconds), Some(cold)) = (m.cold_start_seconds, &m.operator_cold_start) {
            let _ = writeln!(
                md,
                "Cold start: {:.1} s after a fresh operator started over the same {} leases, it had run as many \
                 reconciles as there are leases; {} s later its RSS was {:.1} MiB (peak {:.1} MiB).\n",
                seconds,
                m.leases,
                crate::memory::COLD_START_SETTLE.as_secs(),
                cold.rss_mib,
                cold.peak_mib
            );
        }
    }
    if let Some(last) = last_step {
        let _ = writeln!(
            md,
            "{}At the end of the largest scale step ({} leases, under its renew load):\n\n| process | RSS | peak RSS \
             (VmHWM) |\n|---|---|---|",
            if memory.is_some() { "" } else { "## 5. Memory\n\n" },
            last.leases
        );
        for name in PROCESSES {
            if let Some(m) = last.memory.get(name) {
                let _ = writeln!(md, "| {name} | {:.1} MiB | {:.1} MiB |", m.rss_mib, m.peak_mib);
            }
        }
        md.push('\n');
    }
}
