//! The operator's Prometheus metrics, served as text on the metrics port.

use std::time::Duration;

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

/// Every metric of the operator, registered under the `berth_operator_` prefix.
pub struct Metrics {
    registry: Registry,
    reconciliations: Counter,
    reconcile_duration: Histogram,
    failures: Family<ErrorLabels, Counter>,
    expiry_lag: Histogram,
    target_actions: Family<TargetLabels, Counter>,
    status_writes: Family<WriteLabels, Counter>,
    leader: Gauge,
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
        let status_writes = Family::default();
        registry.register(
            "status_writes",
            "Conditional BerthLease status writes, by result (ok or conflict)",
            status_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register("is_leader", "1 while this replica is the leader and acts, else 0", leader.clone());
        Self {
            registry,
            reconciliations,
            reconcile_duration,
            failures,
            expiry_lag,
            target_actions,
            status_writes,
            leader,
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

    pub fn status_write(&self, conflict: bool) {
        let result = if conflict { "conflict" } else { "ok" };
        self.status_writes.get_or_create(&WriteLabels { result }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
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
        let text = metrics.encode();
        for line in [
            "berth_operator_reconciliations_total 1",
            "berth_operator_reconcile_duration_seconds_count 1",
            "berth_operator_reconcile_failures_total{error=\"conflict\"} 1",
            "berth_operator_expiry_lag_seconds_count 1",
            "berth_operator_target_actions_total{kind=\"CronJob\",action=\"release\"} 1",
            "berth_operator_status_writes_total{result=\"conflict\"} 1",
            "berth_operator_is_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
