//! Every goal of the Targets table and its verdict, from a run's figures.

use super::{Goal, Report};
use crate::overload::Overload;
use crate::scale::Scale;
use crate::write_cost::{WriteCost, WriteKind};

/// Goals for performance at the limit.
pub const KNEE_RATIO_GOAL: f64 = 0.9;
/// Berth's renew p99 against raw's below the raw knee.
pub const P99_RATIO_GOAL: f64 = 1.5;
/// kube-apiserver CPU per renew against the CRD floor.
pub const CPU_RATIO_GOAL: f64 = 1.2;
pub const GOODPUT_GOAL: f64 = 0.9;
pub const SHED_P99_GOAL_MS: f64 = 10.0;
/// An expiry burst's p99 against raw writes of the same count.
pub const EXPIRY_RATIO_GOAL: f64 = 1.2;
/// Renew requests per renew due at 2× the knee.
pub const REQUESTS_PER_RENEW_GOAL: f64 = 1.5;

/// The goals, in the order of the Targets table.
///
/// A goal at 10,000 leases that the run did not reach counts as missed
/// when a smaller step already missed it (latency and memory only grow
/// with the count), else as not measured.
pub fn goals(report: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    goals.push(match &report.hot_path {
        Some(h) => Goal::new(
            "hot path",
            "renew p50 ≤ 1.2× the raw write",
            format!("{:.2}× ({:.2} ms vs {:.2} ms)", h.median.ratio_p50, h.median.berth.p50_ms, h.median.raw.p50_ms),
            Some(h.median.ratio_p50 <= 1.2),
        ),
        None => Goal::unmeasured("hot path", "renew p50 ≤ 1.2× the raw write"),
    });
    let steps = report.scale.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    let at_10k = steps.iter().find(|st| st.leases == 10_000);
    let largest = steps.last();
    // No goal of an absolute lease count at 10 s: 10,000 leases need about
    // 1,000 writes/s, three cores of kube-apiserver alone, which this
    // machine never has. The knee against raw writes, and the projection on
    // paper, stand for it (hack/bench/notes.md).
    let expiry_criterion = "burst p99 to the CronJob suspended ≤ 1.2× raw writes of the same count sent at once, \
                            and < 250 ms where the raw side is";
    goals.push(match &report.expiry {
        Some(e) if e.lags.raw_suspend_from_watch.count > 0 => Goal::new(
            "expiry",
            expiry_criterion,
            format!(
                "{:.2}× (p99 {:.0} ms vs raw {:.0} ms); expired status seen p99 {:.0} ms",
                e.suspend_ratio_to_raw(),
                e.lags.suspend_from_watch.p99_ms,
                e.lags.raw_suspend_from_watch.p99_ms,
                e.lags.status_from_watch.p99_ms
            ),
            Some(
                e.suspend_ratio_to_raw() <= EXPIRY_RATIO_GOAL
                    && (e.lags.suspend_from_watch.p99_ms < 250.0 || e.lags.raw_suspend_from_watch.p99_ms >= 250.0),
            ),
        ),
        _ => Goal::unmeasured("expiry", expiry_criterion),
    });
    for (process, name) in [("apiserver", "apiserver memory"), ("operator", "operator memory")] {
        let memory_criterion = "RSS ≤ 64 MiB at 10,000 leases";
        // The memory scenario's figure after its renew round (a cache in
        // use, on fresh processes); without it, the largest scale step.
        let reading = match &report.memory {
            Some(m) => m.after_renews.get(process).map(|r| (m.leases, r, "after a renew round")),
            None => {
                at_10k.or(largest).and_then(|st| Some((st.leases, st.memory.get(process)?, "end of the scale step")))
            }
        };
        goals.push(match reading {
            Some((leases, m, when)) => {
                let over = m.rss_mib > 64.0;
                let met = if leases == 10_000 { Some(!over) } else { over.then_some(false) };
                Goal::new(
                    name,
                    memory_criterion,
                    format!("at {leases} leases ({when}): RSS {:.1} MiB, peak {:.1} MiB", m.rss_mib, m.peak_mib),
                    met,
                )
            }
            None => Goal::unmeasured(name, memory_criterion),
        });
    }
    if let Some((m, cold)) = report.memory.as_ref().and_then(|m| Some((m, m.operator_cold_start.as_ref()?))) {
        goals.push(Goal::new(
            "operator memory, cold start",
            "RSS ≤ 64 MiB at 10,000 leases",
            format!("restarted over {} leases: RSS {:.1} MiB, peak {:.1} MiB", m.leases, cold.rss_mib, cold.peak_mib),
            (m.leases == 10_000 || cold.rss_mib > 64.0).then_some(cold.rss_mib <= 64.0),
        ));
    }
    goals.push(match &report.failover {
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
    goals.extend(limit_goals(report.scale.as_ref(), report.write_cost.as_ref(), report.overload.as_ref()));
    goals
}

/// The goals for performance at the limit, as measured.
fn limit_goals(scale: Option<&Scale>, cost: Option<&WriteCost>, overload: Option<&Overload>) -> Vec<Goal> {
    let mut goals = Vec::new();
    let knee_criterion =
        "Berth's knee ≥ 0.9× the raw write's knee, and Berth's renew p99 ≤ 1.5× raw's at every step below the raw knee";
    goals.push(match scale.and_then(|s| Some((s, s.knee_ratio()?))) {
        Some((s, ratio)) => {
            let worst = s.worst_p99_ratio_below_raw_knee();
            let below = match worst {
                Some((leases, p99_ratio)) => format!("; p99 at most {p99_ratio:.2}× raw's (at {leases} leases)"),
                None => "; no step below the raw knee".to_owned(),
            };
            Goal::new(
                "knee",
                knee_criterion,
                format!(
                    "{:.2}× (Berth {}, raw {} leases){below}",
                    ratio, s.max_leases_holding, s.raw_max_leases_holding
                ),
                Some(ratio >= KNEE_RATIO_GOAL && worst.is_none_or(|(_, r)| r <= P99_RATIO_GOAL)),
            )
        }
        None => Goal::unmeasured("knee", knee_criterion),
    });
    let cpu_criterion =
        "kube-apiserver CPU per renew ≤ 1.2× the CRD floor (a schemaless twin written with only the holder's fields)";
    goals.push(match cost {
        Some(c) => Goal::new(
            "write cost",
            cpu_criterion,
            format!(
                "{:.2}× the floor ({:.2} ms vs {:.2} ms; {:.2}× the floor with its managedFields cleared too); \
                 {:.2}× a coordination Lease ({:.2} ms)",
                c.cpu_ratio_floor(),
                c.cpu(WriteKind::Berth, "kube-apiserver"),
                c.cpu(WriteKind::BareMinimal, "kube-apiserver"),
                c.ratio(WriteKind::Berth, WriteKind::BareMinimalCleared),
                c.cpu_ratio_minimal(),
                c.cpu(WriteKind::Lease, "kube-apiserver"),
            ),
            Some(c.cpu_ratio_floor() <= CPU_RATIO_GOAL),
        ),
        None => Goal::unmeasured("write cost", cpu_criterion),
    });
    let goodput_criterion = "at 2× the knee: renews/s ≥ 0.9× the knee's";
    let shed_criterion = "shed answers p99 < 10 ms";
    let lost_criterion = "0 leases lost at 1.2× the knee for a minute";
    let retries_criterion = "at 2× the knee: renew requests per renew due ≤ 1.5";
    match overload {
        Some(o) => {
            goals.push(Goal::new(
                "overload goodput",
                goodput_criterion,
                format!(
                    "{:.2}× ({:.0} of {:.0} renews/s)",
                    o.goodput_ratio(),
                    o.double.renewed_per_second,
                    o.knee_renews_per_second
                ),
                Some(o.goodput_ratio() >= GOODPUT_GOAL),
            ));
            let shed = [&o.sustained, &o.double].into_iter().max_by(|a, b| a.shed.p99_ms.total_cmp(&b.shed.p99_ms));
            goals.push(match shed.filter(|p| p.shed.count > 0) {
                Some(p) => Goal::new(
                    "shed latency",
                    shed_criterion,
                    format!("p99 {:.1} ms ({} shed at {:.1}×)", p.shed.p99_ms, p.shed.count, p.load),
                    Some(p.shed.p99_ms < SHED_P99_GOAL_MS),
                ),
                None => Goal::new("shed latency", shed_criterion, "no renew was shed".to_owned(), None),
            });
            goals.push(Goal::new(
                "leases lost",
                lost_criterion,
                format!("{} lost ({} leases)", o.sustained.leases_lost, o.sustained.leases),
                Some(o.sustained.leases_lost == 0),
            ));
            goals.push(Goal::new(
                "requests per renew due",
                retries_criterion,
                format!(
                    "{:.2} ({:.0} requests/s for {:.0} renews/s due)",
                    o.requests_per_renew_due(),
                    o.double.offered_per_second,
                    o.double.leases as f64 / o.heartbeat_seconds
                ),
                Some(o.requests_per_renew_due() <= REQUESTS_PER_RENEW_GOAL),
            ));
        }
        None => {
            for (name, criterion) in [
                ("overload goodput", goodput_criterion),
                ("shed latency", shed_criterion),
                ("leases lost", lost_criterion),
                ("requests per renew due", retries_criterion),
            ] {
                goals.push(Goal::unmeasured(name, criterion));
            }
        }
    }
    goals
}
