//! The cost sections: memory, authentication, what a write costs, and the
//! projection to a production control plane.

use std::fmt::Write as _;

use super::latency_cells;
use crate::auth::{AuthCost, WAYS};
use crate::memory::MemoryAtCount;
use crate::report::judge::CPU_RATIO_GOAL;
use crate::scale::Step;
use crate::write_cost::{WriteCost, WriteKind};

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

pub(super) fn memory(md: &mut String, memory: Option<&MemoryAtCount>, last_step: Option<&Step>) {
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

pub(super) fn auth(md: &mut String, a: &AuthCost) {
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

/// The cost of one write, SSA against `replace_status`, and what a renew rewrites.
pub(super) fn write_cost(md: &mut String, c: &WriteCost) {
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
        "\nRatios of kube-apiserver CPU per write: Berth renew / the CRD floor (schemaless twin, holder's fields only) \
         **{:.2}×** (goal ≤ {CPU_RATIO_GOAL}); Berth renew / coordination Lease {:.2}×; Berth renew / raw BerthLease \
         write {:.2}×. At rest: kube-apiserver {:.2} cores, etcd {:.2}.\n",
        c.cpu_ratio_floor(),
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
    // A chain from Berth's renew down to the Lease (the ratios multiply to
    // the whole), then three side steps that the chain does not cross.
    let steps: [(&str, WriteKind, WriteKind); 11] = [
        ("Berth's own share: Berth renew / raw BerthLease write", WriteKind::Berth, WriteKind::Raw),
        (
            "the watchers and the operator's other writes: raw BerthLease write / the twin with the real schema, \
             managedFields cleared",
            WriteKind::Raw,
            WriteKind::TwinCelCleared,
        ),
        ("managedFields: cleared / kept (the real schema)", WriteKind::TwinCelCleared, WriteKind::TwinCel),
        ("CEL rules: the real schema with CEL / without", WriteKind::TwinCel, WriteKind::TwinNoCel),
        ("the real schema: without CEL / schemaless, the same JSON", WriteKind::TwinNoCel, WriteKind::Bare),
        ("status size: the same JSON / only the holder's fields (schemaless)", WriteKind::Bare, WriteKind::BareMinimal),
        (
            "a CRD against a built-in type: the schemaless holder-only write / coordination Lease",
            WriteKind::BareMinimal,
            WriteKind::Lease,
        ),
        ("the whole: Berth renew / the CRD floor", WriteKind::Berth, WriteKind::BareMinimal),
        (
            "side step, status atomic: atomic / field by field (both with CEL and managedFields)",
            WriteKind::TwinCel,
            WriteKind::TwinFieldByField,
        ),
        ("side step, the floor's managedFields: cleared / kept", WriteKind::BareMinimalCleared, WriteKind::BareMinimal),
        (
            "side step, status size as Berth writes it: the same JSON / only the holder's fields (the real schema, \
             managedFields cleared)",
            WriteKind::TwinCelCleared,
            WriteKind::TwinCelClearedMinimal,
        ),
    ];
    let _ = writeln!(
        md,
        "Where a BerthLease write's kube-apiserver CPU goes, kind over kind (every twin is watched twice, as \
         BerthLeases are):\n\n| step | ratio |\n|---|---|"
    );
    for (step, a, b) in steps {
        let _ = writeln!(md, "| {step} | {:.2}× |", c.ratio(a, b));
    }
    let _ = writeln!(md, "\nEach kind against the CRD floor, and the managedFields of its stored object:\n");
    let _ = writeln!(md, "| write | × the floor | managedFields bytes |\n|---|---|---|");
    for k in &c.kinds {
        let fields = match k.kind {
            WriteKind::Berth => Some(c.sizes.berth_managed_fields),
            kind => c.sizes.managed_fields.get(&kind).copied(),
        };
        let fields = fields.map_or_else(|| "–".to_owned(), |b| b.to_string());
        let _ = writeln!(md, "| {} | {:.2}× | {fields} |", k.kind.label(), c.ratio(k.kind, WriteKind::BareMinimal));
    }
    md.push('\n');
    let (Some(replace), Some(apply)) = (c.kind(WriteKind::Raw), c.kind(WriteKind::Apply)) else { return };
    let _ = writeln!(
        md,
        "### Server-side apply against `replace_status`\n\nOn objects of the same shape, batch by batch: a status \
         write by server-side apply (field manager `berth-bench-apply`, forced, `metadata.resourceVersion` in the body \
         as the precondition; an apply tracks managedFields again) against `replace_status` with resourceVersion, after the same `decide`.\n\n| | p50 | \
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

/// What a production control plane sustains, from the measured per-write costs.
pub(super) fn projection(md: &mut String, c: &WriteCost, memory: Option<&MemoryAtCount>) {
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
        projection(&mut md, &cost(2.0, 0.5, 0.5), None);
        assert!(md.contains("**2400 renews/s**"), "{md}");
        assert!(md.contains("**4800 writes/s**"), "{md}");
        assert!(md.contains("about 24000 leases"), "{md}");
        assert!(md.contains("**2 replicas**"), "{md}");
    }

    #[test]
    fn projection_is_left_out_without_a_positive_cost() {
        let mut md = String::new();
        projection(&mut md, &cost(f64::NAN, 0.5, 0.5), None);
        assert!(md.contains("Not computed"), "{md}");
    }
}
