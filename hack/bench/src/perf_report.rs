//! The report's sections on performance at the limit: the knee
//! side by side, the cost of a write, server-side apply against
//! `replace_status`, overload, and the projection to a production control
//! plane, with their goals.

use std::fmt::Write as _;

use crate::memory::MemoryAtCount;
use crate::overload::{Overload, Phase};
use crate::report::Goal;
use crate::scale::Scale;
use crate::write_cost::{WriteCost, WriteKind};

/// Goals for performance at the limit.
pub const KNEE_RATIO_GOAL: f64 = 0.9;
pub const CPU_RATIO_GOAL: f64 = 1.1;
pub const GOODPUT_GOAL: f64 = 0.9;
pub const SHED_P99_GOAL_MS: f64 = 10.0;

/// The projection's assumptions: a production control plane.
const APISERVERS: f64 = 3.0;
const APISERVER_CORES: f64 = 4.0;
const ETCD_CORES: f64 = 4.0;
/// The share of its cores a process is planned to use (headroom for bursts,
/// expiries, restarts).
const UTILIZATION: f64 = 0.6;
/// What a write costs each kube-apiserver that did NOT serve it (its watch
/// cache decodes the event and fans it out to its watchers), as a share of
/// the measured cost. Not measured here (one kube-apiserver): an assumption.
const FAN_OUT_SHARE: f64 = 0.25;
const HEARTBEAT_SECONDS: f64 = 10.0;
const BERTH_REPLICA_CORES: f64 = 2.0;
const MIN_BERTH_REPLICAS: f64 = 2.0;

/// The goals for performance at the limit, as measured.
pub fn goals(scale: Option<&Scale>, cost: Option<&WriteCost>, overload: Option<&Overload>) -> Vec<Goal> {
    let mut t = Vec::new();
    let knee_goal = "Berth's knee ≥ 0.9× the raw write's knee";
    t.push(match scale.and_then(|s| Some((s, s.knee_ratio()?))) {
        Some((s, ratio)) => Goal::new(
            "knee",
            knee_goal,
            format!("{:.2}× (Berth {}, raw {} leases)", ratio, s.max_leases_holding, s.raw_max_leases_holding),
            Some(ratio >= KNEE_RATIO_GOAL),
        ),
        None => Goal::unmeasured("knee", knee_goal),
    });
    let cpu_goal = "kube-apiserver CPU per renew ≤ 1.1× a minimal one-holder write";
    t.push(match cost {
        Some(c) => Goal::new(
            "write cost",
            cpu_goal,
            format!(
                "{:.2}× ({:.2} ms vs {:.2} ms; vs the raw BerthLease write {:.2}×)",
                c.cpu_ratio_minimal(),
                c.cpu(WriteKind::Berth, "kube-apiserver"),
                c.cpu(WriteKind::Lease, "kube-apiserver"),
                c.cpu_ratio_same_shape()
            ),
            Some(c.cpu_ratio_minimal() <= CPU_RATIO_GOAL),
        ),
        None => Goal::unmeasured("write cost", cpu_goal),
    });
    let goodput_goal = "at 2× the knee: renews/s ≥ 0.9× the knee's";
    let shed_goal = "shed answers p99 < 10 ms";
    let lost_goal = "0 leases lost at 1.2× the knee for a minute";
    match overload {
        Some(o) => {
            t.push(Goal::new(
                "overload goodput",
                goodput_goal,
                format!(
                    "{:.2}× ({:.0} of {:.0} renews/s)",
                    o.goodput_ratio(),
                    o.double.renewed_per_second,
                    o.knee_renews_per_second
                ),
                Some(o.goodput_ratio() >= GOODPUT_GOAL),
            ));
            let shed = [&o.sustained, &o.double].into_iter().max_by(|a, b| a.shed.p99_ms.total_cmp(&b.shed.p99_ms));
            t.push(match shed.filter(|p| p.shed.count > 0) {
                Some(p) => Goal::new(
                    "shed latency",
                    shed_goal,
                    format!("p99 {:.1} ms ({} shed at {:.1}×)", p.shed.p99_ms, p.shed.count, p.load),
                    Some(p.shed.p99_ms < SHED_P99_GOAL_MS),
                ),
                None => Goal::new("shed latency", shed_goal, "no renew was shed".to_owned(), None),
            });
            t.push(Goal::new(
                "leases lost",
                lost_goal,
                format!("{} lost ({} leases)", o.sustained.leases_lost, o.sustained.leases),
                Some(o.sustained.leases_lost == 0),
            ));
        }
        None => {
            for (name, goal) in
                [("overload goodput", goodput_goal), ("shed latency", shed_goal), ("leases lost", lost_goal)]
            {
                t.push(Goal::unmeasured(name, goal));
            }
        }
    }
    t
}

/// The knee table: each step through Berth and as raw writes.
pub fn knee_md(md: &mut String, s: &Scale) {
    if s.steps.iter().all(|st| st.raw.is_none()) {
        return;
    }
    let _ = writeln!(
        md,
        "### The knee, side by side\n\nEach step runs twice with the same open-loop generator: through Berth (the \
         table above), and as raw conditional status writes (`decide`, then `replace_status` with resourceVersion) \
         of BerthLeases of the same shape straight to kube-apiserver, one after the other (the order flips every \
         step). Leases carry a TTL of {} s so that the side at rest writes nothing while the other measures. A knee \
         is the largest count whose renew p99 < 100 ms with no failed request.\n",
        s.ttl_seconds
    );
    let _ = writeln!(
        md,
        "| leases | Berth p50 | Berth p99 | Berth failed | raw p50 | raw p99 | raw failed | kube-apiserver cores: Berth \
         / raw | Berth holds | raw holds |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for st in &s.steps {
        let Some(raw) = &st.raw else { continue };
        let cores = |m: &std::collections::HashMap<String, f64>| {
            m.get("kube-apiserver").map_or_else(|| "–".to_owned(), |c| format!("{c:.2}"))
        };
        let _ = writeln!(
            md,
            "| {} | {:.1} ms | {:.1} ms | {} | {:.1} ms | {:.1} ms | {} | {} / {} | {} | {} |",
            st.leases,
            st.renew.p50_ms,
            st.renew.p99_ms,
            st.renew_errors + st.acquire_errors,
            raw.renew.p50_ms,
            raw.renew.p99_ms,
            raw.renew_errors,
            cores(&st.cpu_cores),
            cores(&raw.cpu_cores),
            yes_no(st.holds),
            yes_no(raw.holds)
        );
    }
    let ratio = s.knee_ratio().map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"));
    let _ = writeln!(
        md,
        "\n**Knee: Berth {}, raw writes {}; ratio {ratio} (goal ≥ {KNEE_RATIO_GOAL}).** The steps' grid bounds the \
         ratio's resolution.\n",
        s.max_leases_holding, s.raw_max_leases_holding
    );
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// The cost of one write, SSA against `replace_status`, and what a renew rewrites.
pub fn write_cost_md(md: &mut String, c: &WriteCost) {
    let _ = writeln!(
        md,
        "## 7. What a write costs\n\nCPU-ms per write of kube-apiserver, etcd and Berth's apiserver (utime + stime \
         from `/proc` around a batch of {} writes, {} writers at once, each on its own object; the processes' CPU at \
         rest, the median of idle seconds read before each repetition, subtracted), median over {} repetitions; the kinds \
         alternate batch by batch. Latency is per write as the writer sees it.\n",
        c.writes_per_batch,
        c.workers,
        c.kinds.first().map_or(0, |k| k.batches.len())
    );
    let _ = writeln!(
        md,
        "| write | p50 | p99 | kube-apiserver CPU-ms | etcd CPU-ms | Berth apiserver CPU-ms | failed |\n\
         |---|---|---|---|---|---|---|"
    );
    for k in &c.kinds {
        let failed: usize = k.batches.iter().map(|b| b.errors).sum();
        let _ = writeln!(
            md,
            "| {} | {:.2} ms | {:.2} ms | {:.2} | {:.2} | {:.2} | {failed} |",
            k.kind.label(),
            k.latency.p50_ms,
            k.latency.p99_ms,
            k.cpu("kube-apiserver"),
            k.cpu("etcd"),
            k.cpu("apiserver")
        );
    }
    let _ = writeln!(
        md,
        "\nRatios of kube-apiserver CPU per write: Berth renew / minimal Lease **{:.2}×** (goal ≤ {CPU_RATIO_GOAL}); \
         Berth renew / raw BerthLease write {:.2}×. At rest: kube-apiserver {:.2} cores, etcd {:.2}.\n",
        c.cpu_ratio_minimal(),
        c.cpu_ratio_same_shape(),
        c.idle_cores.get("kube-apiserver").copied().unwrap_or(f64::NAN),
        c.idle_cores.get("etcd").copied().unwrap_or(f64::NAN)
    );
    let s = &c.sizes;
    let _ = writeln!(
        md,
        "Bytes (JSON as kube-apiserver returns it; a CRD's objects are stored so in etcd):\n\n| | bytes |\n|---|---|\n\
         | held BerthLease, whole | {} |\n| … its status | {} |\n| … its managedFields | {} |\n| the same status with \
         only state, holders, fencing token, transitions | {} |\n| coordination.k8s.io Lease, whole | {} |\n",
        s.berth_object, s.berth_status, s.berth_managed_fields, s.berth_status_minimal, s.lease_object
    );
    let _ = writeln!(
        md,
        "What one renew through Berth changed in the stored object (read before and after; `resourceVersion` left \
         out): {}.\n",
        if c.renew_rewrites.is_empty() {
            "nothing".to_owned()
        } else {
            c.renew_rewrites.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        }
    );
    let _ = writeln!(
        md,
        "Where a BerthLease write's kube-apiserver CPU goes, kind over kind:\n\n| step | ratio |\n|---|---|\n| Berth's \
         own share: Berth renew / raw BerthLease write | {:.2}× |\n| schema, CEL and managedFields (three managers \
         against one): raw BerthLease write / the same JSON in the schemaless twin (both watched twice) | {:.2}× |\n| status size: the same JSON / only the holder's fields (twin) | {:.2}× \
         |\n| a CRD against a built-in type: the twin's holder-only write / coordination Lease | {:.2}× |\n",
        c.ratio(WriteKind::Berth, WriteKind::Raw),
        c.ratio(WriteKind::Raw, WriteKind::Bare),
        c.ratio(WriteKind::Bare, WriteKind::BareMinimal),
        c.ratio(WriteKind::BareMinimal, WriteKind::Lease)
    );
    let (Some(replace), Some(apply)) = (c.kind(WriteKind::Raw), c.kind(WriteKind::Apply)) else { return };
    let _ = writeln!(
        md,
        "### Server-side apply against `replace_status`\n\nOn the same objects, batch by batch: a status write by \
         server-side apply (field manager `berth-bench-apply`, forced, `metadata.resourceVersion` in the body as the \
         precondition) against `replace_status` with resourceVersion, after the same `decide`.\n\n| | p50 | \
         kube-apiserver CPU-ms |\n|---|---|---|\n| `replace_status` | {:.2} ms | {:.2} |\n| server-side apply | {:.2} \
         ms | {:.2} |\n| apply / replace | {:.2}× | {:.2}× |\n\nBy kube-apiserver CPU, which bounds the knee, the status write to use \
         is {}.\n",
        replace.latency.p50_ms,
        replace.cpu("kube-apiserver"),
        apply.latency.p50_ms,
        apply.cpu("kube-apiserver"),
        c.p50_ratio_apply(),
        c.cpu_ratio_apply(),
        if c.cpu_ratio_apply() < 1.0 { "server-side apply" } else { "`replace_status`" }
    );
}

/// Overload: 1.2× and 2× the knee.
pub fn overload_md(md: &mut String, o: &Overload) {
    let _ = writeln!(
        md,
        "## 8. Overload\n\nHolders behave as `LeaseKeeper`s do, through the keeper's own arithmetic \
         (`berth_client::Schedule`: TTL {} s, margin {:.0} ms, heartbeat {:.0} s; a renew bounded by the safe \
         deadline; `Retry-After` honoured when it ends inside the deadline, else a quick retry). The knee is {} \
         leases ({}), {:.0} renews/s. First 1.2× the knee's leases, held for {:.0} s; then the rest join to 2×. A \
         lease is lost when its holder passes its safe deadline without a renew, or its renew is refused; it is then \
         acquired again. Rates and latencies are medians over windows of one heartbeat ({} at 1.2×, {} at 2×); counts \
         are sums.\n",
        o.ttl_seconds,
        o.margin_ms,
        o.heartbeat_seconds,
        o.knee_leases,
        if o.knee_from_scale { "this run's scale search" } else { "the profile's: the run had no knee of its own" },
        o.knee_renews_per_second,
        o.sustained.seconds,
        o.sustained.windows,
        o.double.windows
    );
    let _ = writeln!(
        md,
        "| load | leases | requests/s offered | renews/s succeeded | renew p50 | renew p99 | shed | shed answer p99 | \
         refused after expiry | other errors | leases lost | acquired again |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in [&o.sustained, &o.double] {
        phase_row(md, p);
    }
    let _ = writeln!(
        md,
        "\nAt 2× the knee, {:.0} renews/s succeeded: {:.2}× the knee's rate (goal ≥ {GOODPUT_GOAL}). Renew latency \
         counts from the moment a renew was due; a shed answer's from the moment it was sent.\n",
        o.double.renewed_per_second,
        o.goodput_ratio()
    );
}

fn phase_row(md: &mut String, p: &Phase) {
    let shed_p99 = if p.shed.count > 0 { format!("{:.1} ms", p.shed.p99_ms) } else { "–".to_owned() };
    let _ = writeln!(
        md,
        "| {:.1}× | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {} | {shed_p99} | {} | {} | {} | {} |",
        p.load,
        p.leases,
        p.offered_per_second,
        p.renewed_per_second,
        p.renew.p50_ms,
        p.renew.p99_ms,
        p.failed_shed,
        p.failed_refused,
        p.failed_other,
        p.leases_lost,
        p.reacquired
    );
}

/// What a production control plane sustains, from the measured per-write costs.
pub fn projection_md(md: &mut String, c: &WriteCost, memory: Option<&MemoryAtCount>) {
    let Some(renew) = c.kind(WriteKind::Berth) else { return };
    let (k, e, b) = (renew.cpu("kube-apiserver"), renew.cpu("etcd"), renew.cpu("apiserver"));
    if !(k > 0.0 && e > 0.0 && b > 0.0) {
        let _ = writeln!(md, "## 9. Projection\n\nNot computed: a per-write CPU cost was not positive in this run.\n");
        return;
    }
    let per_write_cluster = k * (1.0 + (APISERVERS - 1.0) * FAN_OUT_SHARE);
    let apiserver_budget_ms = APISERVERS * APISERVER_CORES * UTILIZATION * 1000.0;
    let by_apiservers = apiserver_budget_ms / per_write_cluster;
    let by_etcd = ETCD_CORES * UTILIZATION * 1000.0 / e;
    let writes = by_apiservers.min(by_etcd);
    let leases = writes * HEARTBEAT_SECONDS;
    let berth_cores = writes * b / 1000.0;
    let replicas = (berth_cores / (BERTH_REPLICA_CORES * UTILIZATION)).ceil().max(MIN_BERTH_REPLICAS);
    let _ = writeln!(
        md,
        "## 9. Projection: a production control plane, on paper\n\nFrom this run's per-renew CPU costs (section 7): \
         kube-apiserver **{k:.2} ms**, etcd **{e:.2} ms**, Berth's apiserver **{b:.2} ms**. Assumed: {APISERVERS:.0} \
         kube-apiservers with {APISERVER_CORES:.0} cores each behind a load balancer; etcd on SSD, each member with \
         {ETCD_CORES:.0} cores; every process planned at {:.0}% of its cores; a heartbeat of {HEARTBEAT_SECONDS:.0} s \
         (one renew = one write; contended acquires write nothing, expiries and grants are few at steady state).\n",
        UTILIZATION * 100.0
    );
    let _ = writeln!(
        md,
        "1. kube-apiservers. The one that serves a renew pays {k:.2} ms. The other {:.0} each decode the event into \
         their watch caches and fan it out to their watchers: assumed {:.0}% of that cost (not measured here, with \
         one kube-apiserver). Per renew, cluster-wide: {k:.2} × (1 + {:.0} × {FAN_OUT_SHARE}) = {per_write_cluster:.2} \
         ms. Budget: {APISERVERS:.0} × {APISERVER_CORES:.0} cores × {UTILIZATION} = {:.1} cores = {apiserver_budget_ms:.0} \
         ms/s, so {apiserver_budget_ms:.0} / {per_write_cluster:.2} = **{by_apiservers:.0} renews/s**.",
        APISERVERS - 1.0,
        FAN_OUT_SHARE * 100.0,
        APISERVERS - 1.0,
        apiserver_budget_ms / 1000.0
    );
    let _ = writeln!(
        md,
        "2. etcd. Every member applies every write: {ETCD_CORES:.0} cores × {UTILIZATION} × 1000 / {e:.2} ms = \
         **{by_etcd:.0} writes/s**. On SSD an fsync takes about a millisecond and etcd commits a batch of writes per \
         fsync, so the disk is assumed not to bind first (etcd's own guidance: SSD, and its `wal_fsync` p99 under 10 \
         ms)."
    );
    let _ = writeln!(
        md,
        "3. The smaller of the two binds: **{writes:.0} renews/s**, × {HEARTBEAT_SECONDS:.0} s = **about {:.0} leases \
         at a {HEARTBEAT_SECONDS:.0} s heartbeat** (a 20 s heartbeat doubles it).",
        round_to(leases, 1000.0)
    );
    let _ = writeln!(
        md,
        "4. Berth's apiservers: {writes:.0} renews/s × {b:.2} ms = {berth_cores:.2} cores; with {BERTH_REPLICA_CORES:.0} \
         cores per replica at {:.0}%: **{replicas:.0} replicas** (at least {MIN_BERTH_REPLICAS:.0}, for availability). \
         The operator (one leader) writes on grants and expiries only, not on renews.",
        UTILIZATION * 100.0
    );
    if let Some(m) = memory
        && let Some(rss) = m.after_renews.get("apiserver")
        && m.leases > 0
    {
        let _ = writeln!(
            md,
            "5. Memory: each replica caches every lease of its scope. At {} leases one apiserver held {:.0} MiB; \
             linearly, {:.0} leases need about {:.0} MiB per replica.",
            m.leases,
            rss.rss_mib,
            round_to(leases, 1000.0),
            rss.rss_mib * leases / m.leases as f64
        );
    }
    let _ = writeln!(
        md,
        "\nWhat this leaves out: the watch fan-out share is assumed, not measured; kube-apiserver's other clients \
         (controllers, kubelets) share the same cores in a real cluster; cores here are a shared 2-core machine's, \
         not a server's. Measure on the real control plane before sizing.\n"
    );
}

fn round_to(value: f64, step: f64) -> f64 {
    (value / step).round() * step
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::stats::Latency;
    use crate::write_cost::{KindCost, Sizes};

    fn cost(kube_apiserver: f64, etcd: f64, apiserver: f64) -> WriteCost {
        let cpu = HashMap::from([
            ("kube-apiserver".to_owned(), kube_apiserver),
            ("etcd".to_owned(), etcd),
            ("apiserver".to_owned(), apiserver),
        ]);
        let kind =
            |kind| KindCost { kind, batches: Vec::new(), latency: Latency::default(), cpu_ms_per_write: cpu.clone() };
        WriteCost {
            workers: 1,
            writes_per_batch: 1,
            idle_cores: HashMap::new(),
            kinds: WriteKind::ALL.iter().map(|&k| kind(k)).collect(),
            sizes: Sizes::default(),
            renew_rewrites: Vec::new(),
        }
    }

    #[test]
    fn projection_takes_the_binding_limit() {
        // 2 ms per renew on the serving kube-apiserver: 3 ms cluster-wide
        // (two others at 25%); 7,200 ms/s of budget gives 2,400 renews/s;
        // etcd at 0.5 ms allows 4,800; so 2,400 renews/s, 24,000 leases;
        // Berth at 0.5 ms needs 1.2 cores: one replica's 60% of 2 cores, so
        // the minimum of two.
        let mut md = String::new();
        projection_md(&mut md, &cost(2.0, 0.5, 0.5), None);
        assert!(md.contains("**2400 renews/s**"), "{md}");
        assert!(md.contains("**4800 writes/s**"), "{md}");
        assert!(md.contains("about 24000 leases"), "{md}");
        assert!(md.contains("**2 replicas**"), "{md}");
    }

    #[test]
    fn projection_is_left_out_without_a_positive_cost() {
        let mut md = String::new();
        projection_md(&mut md, &cost(f64::NAN, 0.5, 0.5), None);
        assert!(md.contains("Not computed"), "{md}");
    }
}
