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
            slow_repetitions: 3,
            hot_path_samples: 400,
            hot_path_warmup: 50,
            scale_steps: vec![1_000, 2_000, 4_000, 6_000, 10_000],
            heartbeat: Duration::from_secs(10),
            scale_ttl_seconds: 30,
            scale_windows: 3,
            contended_share: 0.05,
            scale_budget: Duration::from_secs(7 * 60),
            create_concurrency: 16,
            expiry_leases: 200,
            expiry_ttl_seconds: 15,
            memory_leases: 10_000,
            memory_ttl_seconds: 3_600,
            memory_renew_period: Duration::from_secs(60),
            failover_ttl_seconds: 10,
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
            scale_ttl_seconds: 3,
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
        }
    }
}
