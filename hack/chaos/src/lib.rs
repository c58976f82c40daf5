//! Berth's chaos check: 3 apiserver replicas and an operator on a control
//! plane of the run's own, contenders (separate `contender` processes, each
//! holding leases with `LeaseKeeper`) competing for at-most-once leases,
//! while faults are injected: apiserver replicas SIGKILLed and restarted,
//! contenders SIGSTOPped for longer than the TTL, and kube-apiserver
//! restarted once. Every grant, renew, loss and release is recorded, an
//! observer reads the store, and [`check`] proves the history free of double
//! holders, overlapping tenures, falling tokens and lost releases.
//!
//! See `docs/chaos.md`. `make chaos DURATION=10m` runs it long; a short run
//! is a test of this crate.
#![forbid(unsafe_code)]

pub mod check;
pub mod clock;
pub mod history;
pub mod run;

pub use check::{Closest, Violation, ViolationKind, check, closest};
pub use history::{Event, History, Operations, Snapshot};
