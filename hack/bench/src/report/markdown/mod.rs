//! `benchmarks.md`: the page, its header and Targets table; the sections are
//! in [`latency`] (hot path, scale and knee, expiry, failover, overload) and
//! [`cost`] (memory, authentication, write cost, projection).

mod cost;
mod latency;

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Report;
use crate::procfs::Memory;
use crate::stats::Latency;

/// Analysis of the committed full run: why a goal is missed, what would fix it.
const NOTES: &str = include_str!("../../../notes.md");

/// The whole page.
pub(super) fn page(report: &Report) -> String {
    let mut md = String::new();
    let p = &report.profile;
    let v = &report.versions;
    let m = &report.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` ({}) on {} in {:.0} s. Every figure is a median over repeated runs \
         (hot path and graceful handover: {} repetitions; expiry and crash failover: {}; scale: {} windows of one \
         heartbeat per step); ratios are taken side by side in the same run. `benchmarks.json` next to this file \
         holds every repetition.\n",
        if p.quick { "`--quick`: tiny counts, figures mean nothing" } else { "full run" },
        report.date.format("%Y-%m-%d %H:%M UTC"),
        report.duration_seconds,
        p.repetitions,
        p.slow_repetitions,
        p.scale_windows,
    );
    let _ = writeln!(md, "| machine | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} × {} |", m.nproc, m.cpu_model);
    let _ = writeln!(md, "| memory | {:.0} MiB |", m.memory_mib);
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(
        md,
        "| load average (1 min) at start / end | {:.2} / {:.2} |",
        report.load_average_start, report.load_average_end
    );
    let _ = writeln!(md, "| Kubernetes | {} |", v.kubernetes);
    let _ = writeln!(md, "| etcd | {} |", v.etcd);
    let _ = writeln!(md, "| rustc | {} |", v.rustc);
    let _ = writeln!(
        md,
        "| berth | `{}`{} |\n",
        v.berth_commit,
        if v.berth_dirty { " (with uncommitted changes)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Everything runs on this one machine: etcd, kube-apiserver, the Berth apiserver and operator (release \
         builds) and the load generator share its cores, and the machine is shared with other work (see the load \
         average).\n"
    );

    let _ = writeln!(md, "## Targets\n\n| | target | measured | |\n|---|---|---|---|");
    for t in &report.goals {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {} | {} |", t.name, t.criterion, t.measured, verdict);
    }
    md.push('\n');
    for f in &report.failed {
        let _ = writeln!(md, "**The {} scenario failed**, so its figures are absent: {}\n", f.scenario, f.error);
    }

    if let Some(h) = &report.hot_path {
        latency::hot_path(&mut md, h, p);
    }
    if let Some(s) = &report.scale {
        latency::scale(&mut md, s);
        latency::knee(&mut md, s);
    }
    if let Some(e) = &report.expiry {
        latency::expiry(&mut md, e, report.scale.as_ref());
    }
    if let Some(f) = &report.failover {
        latency::failover(&mut md, f);
    }
    cost::memory(&mut md, report.memory.as_ref(), report.scale.as_ref().and_then(|s| s.steps.last()));
    if let Some(a) = &report.auth {
        cost::auth(&mut md, a);
    }
    if let Some(c) = &report.write_cost {
        cost::write_cost(&mut md, c);
    }
    if let Some(o) = &report.overload {
        latency::overload(&mut md, o);
    }
    if let Some(c) = &report.write_cost {
        cost::projection(&mut md, c, report.memory.as_ref());
    }
    if !p.quick {
        md.push_str(NOTES);
    }
    md
}

fn latency_cells(l: &Latency) -> String {
    format!("{:.2} ms | {:.2} ms | {:.2} ms", l.p50_ms, l.p99_ms, l.max_ms)
}

fn cores(map: &HashMap<String, f64>, name: &str) -> String {
    map.get(name).map_or_else(|| "–".to_owned(), |c| format!("{c:.2}"))
}

fn mem(map: &HashMap<String, Memory>, name: &str) -> String {
    map.get(name).map_or_else(|| "–".to_owned(), |m| format!("{:.1} / {:.1}", m.rss_mib, m.peak_mib))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}
