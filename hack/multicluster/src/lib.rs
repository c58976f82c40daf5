//! Berth across clusters, black-box: a coordination control plane with the
//! Berth apiserver and an operator, member control planes (`east`, `west`)
//! each with a member-mode operator that reaches the apiserver through a
//! switchable proxy ([`berth_testenv::proxy`]), and the same BerthLease with
//! a CronJob or Deployment target applied to every member.
//!
//! Watches on the members' targets record, at monotonic instants of this
//! process, when each cluster ran its target; [`overlap`] turns those
//! histories into overlaps. The partition suite (`tests/member.rs`) and the
//! soak ([`soak`], `make chaos-clusters`) judge by them. On real nodes the
//! workload's own processes record their lives instead, and [`processes`]
//! judges by those.
#![forbid(unsafe_code)]

pub mod failover;
pub mod gate;
pub mod overlap;
pub mod pod_gate;
pub mod processes;
pub mod soak;
pub mod stack;
pub mod watch;
