//! The latency sections: hot path, scale and the knee side by side, expiry,
//! failover, overload.

use std::fmt::Write as _;

use super::{cores, latency_cells, mem, yes_no};
use crate::expiry::Expiry;
use crate::failover::Failover;
use crate::hot_path::HotPath;
use crate::overload::{Overload, Phase};
use crate::profile::Profile;
use crate::report::judge::{GOODPUT_GOAL, KNEE_RATIO_GOAL};
use crate::scale::{P99_TARGET_MS, Scale, Step};

pub(super) fn hot_path(md: &mut String, h: &HotPath, profile: &Profile) {
    let _ = writeln!(
        md,
        "## 1. Hot path\n\nOne renew through Berth (HTTPS, keep-alive client) against the floor: the same \
         `decide` and one `replace_status` with resourceVersion of a BerthLease of the same shape, straight to \
         kube-apiserver. The two alternate request by request; {} of each per repetition, after {} not \
         counted.\n",
        h.samples_per_side, profile.hot_path_warmup
    );
    let _ = writeln!(md, "| | p50 | p99 | max |\n|---|---|---|---|");
    let _ = writeln!(md, "| renew through Berth | {} |", latency_cells(&h.median.berth));
    let _ = writeln!(md, "| raw conditional status write | {} |", latency_cells(&h.median.raw));
    let _ = writeln!(
        md,
        "| ratio (median of the repetitions' ratios) | {:.2}× | {:.2}× | |\n",
        h.median.ratio_p50, h.median.ratio_p99
    );
    let _ = writeln!(
        md,
        "Where the time goes (means): a renew takes {:.2} ms as the client sees it, of which {:.2} ms inside the \
         apiserver (its request-duration histogram: checks, `decide`, the kube-apiserver write); the raw write \
         alone takes {:.2} ms.\n",
        h.median.berth_mean_ms, h.median.apiserver_mean_ms, h.median.raw_mean_ms
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

pub(super) fn scale(md: &mut String, s: &Scale) {
    let _ = writeln!(
        md,
        "## 2. Scale\n\nEach lease is renewed every {:.0} s (TTL {} s) at its own random phase; contended acquires \
         (another holder asks for a held lease and is refused) run at {:.0}% of the renew rate. Latency counts \
         from the moment a request was due (open loop). A window holds when renew p99 < {P99_TARGET_MS:.0} ms with \
         no failed request, and a step when most of its {} windows of one heartbeat hold. Figures are medians over \
         the windows.\n",
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
            yes_no(st.holds)
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

fn leases_cell(st: &Step) -> String {
    if st.leases == st.target_leases {
        st.leases.to_string()
    } else {
        format!("{} (of {}: budget spent)", st.leases, st.target_leases)
    }
}

/// The knee table: each step through Berth and as raw writes.
pub(super) fn knee(md: &mut String, s: &Scale) {
    if s.steps.iter().all(|st| st.raw.is_none()) {
        return;
    }
    let _ = writeln!(
        md,
        "### The knee, side by side\n\nEach step runs twice with the same open-loop generator: through Berth (the \
         table above), and as raw conditional status writes (`decide`, then `replace_status` with resourceVersion) \
         of BerthLeases of the same shape straight to kube-apiserver, one after the other (the order flips every \
         step). Leases carry a TTL of {} s so that the side at rest writes nothing while the other measures. A knee \
         is the largest count that holds (most windows with renew p99 < 100 ms and no failed request).\n",
        s.ttl_seconds
    );
    let _ = writeln!(
        md,
        "| leases | Berth p50 | Berth p99 | Berth failed | raw p50 | raw p99 | raw failed | kube-apiserver cores: Berth \
         / raw | Berth holds | raw holds |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for st in &s.steps {
        let Some(raw) = &st.raw else { continue };
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
            cores(&st.cpu_cores, "kube-apiserver"),
            cores(&raw.cpu_cores, "kube-apiserver"),
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
    tail_inside(md, s);
}

/// Where Berth's tail lies at each step: inside its apiserver or outside.
fn tail_inside(md: &mut String, s: &Scale) {
    let rows: Vec<_> = s.steps.iter().filter_map(|st| Some((st, st.inside()?, st.raw.as_ref()?))).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Where Berth's renew tail lies (medians over the windows): p99 as the client sees it; inside Berth's \
         apiserver (its request-duration histogram: checks, the wait for a write slot, `decide`, the write to \
         kube-apiserver); of that, the wait for a write slot; and the raw write's p99 for the same step. Histogram \
         buckets double from 1 ms (0.1 ms for the wait), so the figures inside are interpolated.\n\n| leases | Berth \
         p99 | inside the apiserver p99 | write-slot wait p99 | raw p99 |\n|---|---|---|---|---|"
    );
    for (st, inside, raw) in rows {
        let _ = writeln!(
            md,
            "| {} | {:.1} ms | {:.1} ms | {:.2} ms | {:.1} ms |",
            st.leases, st.renew.p99_ms, inside.renew_p99_ms, inside.queue_wait_p99_ms, raw.renew.p99_ms
        );
    }
    md.push('\n');
}

pub(super) fn expiry(md: &mut String, e: &Expiry, scale: Option<&Scale>) {
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
            &e.lags.status_from_objects,
        ),
        ("expired status", "watch, stamped on arrival", "ns, plus watch delivery", &e.lags.status_from_watch),
        (
            "CronJob suspended",
            "`status.target.observedAt`",
            "ns, operator's clock after the patch",
            &e.lags.suspend_from_objects,
        ),
        ("CronJob suspended", "watch, stamped on arrival", "ns, plus watch delivery", &e.lags.suspend_from_watch),
        (
            "raw side: as many running CronJobs suspended by one apply each, all sent at once (from the send)",
            "watch, stamped on arrival",
            "ns, plus watch delivery",
            &e.lags.raw_suspend_from_watch,
        ),
    ];
    for (to, from, resolution, l) in rows {
        let _ = writeln!(md, "| {to} | {from} | {resolution} | {} |", latency_cells(l));
    }
    let _ = writeln!(
        md,
        "| expired status | `berth_operator_expiry_lag_seconds` | buckets ×2 from 1 ms, interpolated | {:.1} ms | \
         {:.1} ms | |\n",
        e.lags.status_histogram_p50_ms, e.lags.status_histogram_p99_ms
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
    let _ = writeln!(
        md,
        "Per expired lease, the operator wrote {:.2} times (status and target writes) and read its target {:.2} \
         times. The burst's p99 to the CronJob seen suspended is {:.2}× the raw side's.\n",
        e.writes_per_expiry,
        e.reads_per_expiry,
        e.suspend_ratio_to_raw()
    );
    let late: usize = e.repetitions.iter().map(|r| r.not_resumed_before_expiry).sum();
    if late > 0 {
        let _ = writeln!(md, "{late} CronJobs had not been resumed yet when the first lease expired.\n");
    }
}

pub(super) fn failover(md: &mut String, f: &Failover) {
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

/// Overload: 1.2× and 2× the knee.
pub(super) fn overload(md: &mut String, o: &Overload) {
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
