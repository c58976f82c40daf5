//! The operator's Prometheus metrics, served as text on the metrics port.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use berth_client::RenewReport;
use tokio::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    kind: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct MemberLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberStateLabels {
    namespace: String,
    name: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The member states a lease can be in, for the state gauge.
const MEMBER_STATES: [&str; 5] = ["unknown", "standby", "held", "at-risk", "fenced"];

/// Every metric of the operator, registered under the `berth_operator_` prefix.
pub struct Metrics {
    registry: Registry,
    reconciliations: Counter,
    reconcile_duration: Histogram,
    failures: Family<ErrorLabels, Counter>,
    expiry_lag: Histogram,
    target_actions: Family<TargetLabels, Counter>,
    target_reads: Family<KindLabels, Counter>,
    status_writes: Family<WriteLabels, Counter>,
    leader: Gauge,
    member_state: Family<MemberStateLabels, Gauge>,
    member_seconds_left: Family<MemberLabels, Gauge<f64, AtomicU64>>,
    member_reachable: Family<MemberLabels, Gauge>,
    /// The safe deadline of each held member lease; `seconds_left` is computed from it at scrape time.
    member_deadlines: Mutex<BTreeMap<MemberLabels, Option<Instant>>>,
    member_renews: Family<ResultLabels, Counter>,
    member_renew_duration: Histogram,
    member_acquire_duration: Histogram,
    member_fences: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth_operator");
        let reconciliations = Counter::default();
        registry.register("reconciliations", "Reconciles of BerthLeases run", reconciliations.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of a BerthLease took",
            reconcile_duration.clone(),
        );
        let failures = Family::default();
        registry.register("reconcile_failures", "Reconciles that failed, by error", failures.clone());
        let expiry_lag = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "expiry_lag_seconds",
            "Time from a holder's expiresAt until the status dropping it was written",
            expiry_lag.clone(),
        );
        let target_actions = Family::default();
        registry.register(
            "target_actions",
            "Writes to target workloads, by kind and by the lease action applied",
            target_actions.clone(),
        );
        let target_reads = Family::default();
        registry.register(
            "target_reads",
            "Reads of target workloads before a write, by kind (none when the target's watch confirmed it)",
            target_reads.clone(),
        );
        let status_writes = Family::default();
        registry.register(
            "status_writes",
            "Conditional BerthLease status writes, by result (ok or conflict)",
            status_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register("is_leader", "1 while this replica is the leader and acts, else 0", leader.clone());
        let member_state = Family::default();
        registry.register(
            "member_state",
            "Member mode: 1 for the state each member lease is in (unknown, standby, held, at-risk, fenced)",
            member_state.clone(),
        );
        let member_seconds_left = Family::default();
        registry.register(
            "member_safe_deadline_seconds",
            "Member mode: seconds left until the local safe deadline of each held lease (0 when not held)",
            member_seconds_left.clone(),
        );
        let member_reachable = Family::default();
        registry.register(
            "member_coordination_reachable",
            "Member mode: 1 when the last call for this lease got an answer from the Berth apiserver, else 0",
            member_reachable.clone(),
        );
        let member_renews = Family::default();
        registry.register(
            "member_renews",
            "Member mode: renews of global leases sent by the keepers, by result \
             (renewed, refused, rejected, shed, error, timeout)",
            member_renews.clone(),
        );
        let member_renew_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "member_renew_duration_seconds",
            "Member mode: time from sending a renew of a global lease to its answer, or to its abandon (timeout)",
            member_renew_duration.clone(),
        );
        let member_acquire_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "member_acquire_duration_seconds",
            "Member mode: time an acquire of a global lease took, until a grant or an answer (waits included)",
            member_acquire_duration.clone(),
        );
        let member_fences = Counter::default();
        registry.register(
            "member_fences",
            "Member mode: leases fenced (releaseAction applied because the safe deadline passed or the hold was lost)",
            member_fences.clone(),
        );
        Self {
            registry,
            reconciliations,
            reconcile_duration,
            failures,
            expiry_lag,
            target_actions,
            target_reads,
            status_writes,
            leader,
            member_state,
            member_seconds_left,
            member_reachable,
            member_deadlines: Mutex::default(),
            member_renews,
            member_renew_duration,
            member_acquire_duration,
            member_fences,
        }
    }

    pub fn reconciled(&self, took: Duration) {
        self.reconciliations.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn failed(&self, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { error }).inc();
    }

    pub fn expiry_lag(&self, lag: Duration) {
        self.expiry_lag.observe(lag.as_secs_f64());
    }

    pub fn target_action(&self, kind: &'static str, action: &'static str) {
        self.target_actions.get_or_create(&TargetLabels { kind, action }).inc();
    }

    pub fn target_read(&self, kind: &'static str) {
        self.target_reads.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn status_write(&self, conflict: bool) {
        let result = if conflict { "conflict" } else { "ok" };
        self.status_writes.get_or_create(&WriteLabels { result }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Member mode: lease `namespace/name` is in `state`, held until
    /// `deadline` (if held); `reachable` when its last call got an answer.
    pub fn member_state(
        &self,
        namespace: &str,
        name: &str,
        state: &'static str,
        deadline: Option<Instant>,
        reachable: bool,
    ) {
        for known in MEMBER_STATES {
            let labels = MemberStateLabels { namespace: namespace.to_owned(), name: name.to_owned(), state: known };
            self.member_state.get_or_create(&labels).set(i64::from(known == state));
        }
        let labels = MemberLabels { namespace: namespace.to_owned(), name: name.to_owned() };
        self.member_reachable.get_or_create(&labels).set(i64::from(reachable));
        self.member_deadlines.lock().expect("metrics lock").insert(labels, deadline);
    }

    /// Member mode: the lease is gone; its series go with it.
    pub fn member_forget(&self, namespace: &str, name: &str) {
        for state in MEMBER_STATES {
            let labels = MemberStateLabels { namespace: namespace.to_owned(), name: name.to_owned(), state };
            self.member_state.remove(&labels);
        }
        let labels = MemberLabels { namespace: namespace.to_owned(), name: name.to_owned() };
        self.member_deadlines.lock().expect("metrics lock").remove(&labels);
        self.member_seconds_left.remove(&labels);
        self.member_reachable.remove(&labels);
    }

    /// Member mode: one renew a keeper sent, as its keeper reported it.
    pub fn member_renew(&self, report: RenewReport) {
        self.member_renews.get_or_create(&ResultLabels { result: report.result.as_str() }).inc();
        self.member_renew_duration.observe(report.latency.as_secs_f64());
    }

    pub fn member_acquire(&self, took: Duration) {
        self.member_acquire_duration.observe(took.as_secs_f64());
    }

    pub fn member_fenced(&self) {
        self.member_fences.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let now = Instant::now();
        for (labels, deadline) in self.member_deadlines.lock().expect("metrics lock").iter() {
            let left = deadline.map(|d| d.saturating_duration_since(now).as_secs_f64()).unwrap_or(0.0);
            self.member_seconds_left.get_or_create(labels).set(left);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names_every_metric() {
        let metrics = Metrics::new();
        metrics.reconciled(Duration::from_millis(3));
        metrics.failed("conflict");
        metrics.expiry_lag(Duration::from_millis(20));
        metrics.target_action("CronJob", "release");
        metrics.status_write(true);
        metrics.set_leader(true);
        metrics.member_state("ns", "a", "held", Some(Instant::now() + Duration::from_secs(60)), true);
        let timed_out = RenewReport { result: berth_client::RenewResult::TimedOut, latency: Duration::from_secs(1) };
        metrics.member_renew(timed_out);
        metrics.member_acquire(Duration::from_millis(5));
        metrics.member_fenced();
        let text = metrics.encode();
        for line in [
            "berth_operator_reconciliations_total 1",
            "berth_operator_reconcile_duration_seconds_count 1",
            "berth_operator_reconcile_failures_total{error=\"conflict\"} 1",
            "berth_operator_expiry_lag_seconds_count 1",
            "berth_operator_target_actions_total{kind=\"CronJob\",action=\"release\"} 1",
            "berth_operator_status_writes_total{result=\"conflict\"} 1",
            "berth_operator_is_leader 1",
            "berth_operator_member_state{namespace=\"ns\",name=\"a\",state=\"held\"} 1",
            "berth_operator_member_state{namespace=\"ns\",name=\"a\",state=\"fenced\"} 0",
            "berth_operator_member_safe_deadline_seconds{namespace=\"ns\",name=\"a\"} 59.",
            "berth_operator_member_coordination_reachable{namespace=\"ns\",name=\"a\"} 1",
            "berth_operator_member_renews_total{result=\"timeout\"} 1",
            "berth_operator_member_renew_duration_seconds_count 1",
            "berth_operator_member_renew_duration_seconds_sum 1.0",
            "berth_operator_member_acquire_duration_seconds_count 1",
            "berth_operator_member_fences_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
