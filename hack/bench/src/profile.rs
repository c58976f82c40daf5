//! How big and how long each scenario runs: the full `make bench` profile,
//! and the `--quick` one the smoke test uses.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub quick: bool,
    /// Repetitions of the hot path and of the graceful handover.
    pub repetitions: usize,
    /// Repetitions of the slower scenarios: expiry and crash failover.
    pub slow_repetitions: usize,
    /// Renews per side (Berth, raw write) per hot-path repetition.
    pub hot_path_samples: usize,
    /// Renews per side before each repetition that are not counted.
    pub hot_path_warmup: usize,
    /// Lease counts of the scale search, ascending.
    pub scale_steps: Vec<usize>,
    /// The renew period of every lease in the scale scenario.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub heartbeat: Duration,
    /// Longer than the whole run: a side's leases stay held while the other side measures.
    pub scale_ttl_seconds: i32,
    /// Measurement windows per scale step, each one heartbeat long; the
    /// step's figures are the medians over them.
    pub scale_windows: usize,
    /// Contended acquires per second, as a share of the renew rate.
    pub contended_share: f64,
    /// Wall-clock budget of the scale search: no step starts, and no lease
    /// is created, once it is spent (an overloaded stack creates slowly).
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub scale_budget: Duration,
    /// Concurrent creating acquires while a scale step grows.
    pub create_concurrency: usize,
    pub expiry_leases: usize,
    pub expiry_ttl_seconds: i32,
    /// Leases held in the caches while the memory scenario reads RSS.
    pub memory_leases: usize,
    /// Their TTL: long, so none expires while they sit at rest.
    pub memory_ttl_seconds: i32,
    /// The memory scenario renews each lease once over this period.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub memory_renew_period: Duration,
    pub failover_ttl_seconds: i32,
    /// Write cost: objects written at once (one writer each) per kind.
    #[serde(default)]
    pub write_cost_workers: usize,
    /// Write cost: writes per batch (one batch per kind per repetition).
    #[serde(default)]
    pub write_cost_batch: usize,
    #[serde(default)]
    pub write_cost_repetitions: usize,
    /// Overload: the TTL the generated keepers renew with.
    #[serde(default)]
    pub overload_ttl_seconds: i32,
    /// Overload: how long 1.2× the knee is held.
    #[serde(default, serialize_with = "secs", deserialize_with = "from_secs")]
    pub overload_hold: Duration,
    /// Overload: heartbeats measured at 2× the knee.
    #[serde(default)]
    pub overload_windows: u32,
    /// Overload: the knee used when the run has no scale search, or none of its steps held.
    #[serde(default)]
    pub overload_fallback_knee: usize,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn from_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    f64::deserialize(d).map(Duration::from_secs_f64)
}

impl Profile {
    pub fn full() -> Self {
        Self {
            quick: false,
            repetitions: 5,
            slow_repetitions: 5,
            hot_path_samples: 400,
            hot_path_warmup: 50,
            scale_steps: vec![1_000, 2_000, 2_800, 3_200, 3_600, 4_000, 4_400, 4_800, 5_600, 6_400],
            heartbeat: Duration::from_secs(10),
            scale_ttl_seconds: 3_600,
            scale_windows: 5,
            contended_share: 0.05,
            scale_budget: Duration::from_secs(22 * 60),
            create_concurrency: 16,
            expiry_leases: 200,
            expiry_ttl_seconds: 15,
            memory_leases: 10_000,
            memory_ttl_seconds: 3_600,
            memory_renew_period: Duration::from_secs(60),
            failover_ttl_seconds: 10,
            write_cost_workers: 4,
            // Long batches, so that kube-apiserver's garbage collection is
            // charged to every kind alike, not to whichever batch it lands in.
            write_cost_batch: 2_000,
            write_cost_repetitions: 7,
            overload_ttl_seconds: 30,
            overload_hold: Duration::from_secs(60),
            overload_windows: 6,
            overload_fallback_knee: 1_400,
        }
    }

    /// Tiny counts and short times: proves the harness works, measures nothing.
    pub fn quick() -> Self {
        Self {
            quick: true,
            repetitions: 2,
            slow_repetitions: 1,
            hot_path_samples: 20,
            hot_path_warmup: 5,
            scale_steps: vec![10, 20],
            heartbeat: Duration::from_secs(1),
            scale_ttl_seconds: 600,
            scale_windows: 2,
            contended_share: 0.2,
            scale_budget: Duration::from_secs(60),
            create_concurrency: 4,
            expiry_leases: 5,
            expiry_ttl_seconds: 3,
            memory_leases: 20,
            memory_ttl_seconds: 600,
            memory_renew_period: Duration::from_secs(2),
            failover_ttl_seconds: 2,
            write_cost_workers: 2,
            write_cost_batch: 20,
            write_cost_repetitions: 2,
            overload_ttl_seconds: 6,
            overload_hold: Duration::from_secs(3),
            overload_windows: 2,
            overload_fallback_knee: 10,
        }
    }
}
