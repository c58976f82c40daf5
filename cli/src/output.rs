//! How results are printed: aligned tables for people, JSON and YAML for
//! programs. All formatting is pure; the clock is an argument.

use berth_api::wire::LeaseView;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// `-o table|json|yaml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// `value` as pretty JSON or as YAML, ending in a newline.
pub fn structured<T: Serialize>(format: Format, value: &T) -> String {
    match format {
        Format::Yaml => serde_yaml::to_string(value).expect("wire types serialize"),
        Format::Json | Format::Table => {
            let mut json = serde_json::to_string_pretty(value).expect("wire types serialize");
            json.push('\n');
            json
        }
    }
}

/// `value` as one JSON line (for streams), or a YAML document starting with `---`.
pub fn streamed<T: Serialize>(format: Format, value: &T) -> String {
    match format {
        Format::Yaml => format!("---\n{}", structured(Format::Yaml, value)),
        Format::Json | Format::Table => {
            let mut json = serde_json::to_string(value).expect("wire types serialize");
            json.push('\n');
            json
        }
    }
}

/// Rows aligned in columns separated by three spaces, as kubectl prints them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}   "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Columns of the lease table; NAMESPACE only when listing all namespaces.
pub fn lease_header(with_namespace: bool) -> Vec<&'static str> {
    let mut header = vec!["NAME", "STATE", "HOLDER", "TOKEN", "EXPIRES", "SEMANTICS", "AGE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    header
}

/// One table row. HOLDER is the first live holder (`+N` more for shared
/// leases); EXPIRES is that holder's expiry relative to `now`; AGE is the
/// time since the lease last changed state, or since it was created.
pub fn lease_row(view: &LeaseView, with_namespace: bool, now: DateTime<Utc>) -> Vec<String> {
    let live: Vec<_> = view.holders.iter().filter(|h| h.is_live(now)).collect();
    let holder = match live.as_slice() {
        [] => "<none>".to_owned(),
        [one] => one.identity.clone(),
        [first, rest @ ..] => format!("{} (+{})", first.identity, rest.len()),
    };
    let expires = live.first().map_or_else(|| "<none>".to_owned(), |h| format!("in {}", relative(h.expires_at - now)));
    let token = if view.fencing_token == 0 { "<none>".to_owned() } else { view.fencing_token.to_string() };
    let age = view.updated_at.map_or_else(|| "<unknown>".to_owned(), |t| relative(now - t));
    let mut row = vec![
        view.name.clone(),
        view.state.as_str().to_owned(),
        holder,
        token,
        expires,
        view.semantics.as_str().to_owned(),
        age,
    ];
    if with_namespace {
        row.insert(0, view.namespace.clone());
    }
    row
}

pub fn lease_table(views: &[LeaseView], with_namespace: bool, now: DateTime<Utc>) -> String {
    let rows: Vec<_> = views.iter().map(|v| lease_row(v, with_namespace, now)).collect();
    table(&lease_header(with_namespace), &rows)
}

/// A short human duration, as kubectl shows ages: `45s`, `3m20s`, `25m`, `5h`, `3d`.
pub fn relative(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..600 => format!("{}m{}s", secs / 60, secs % 60),
        600..10_800 => format!("{}m", secs / 60),
        10_800..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{Holder, LeaseState, Semantics};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap()
    }

    fn view(name: &str, holders: &[(&str, i64)]) -> LeaseView {
        LeaseView {
            namespace: "team-a".into(),
            name: name.into(),
            semantics: Semantics::AtMostOnce,
            state: if holders.is_empty() { LeaseState::Released } else { LeaseState::Held },
            holders: holders
                .iter()
                .enumerate()
                .map(|(i, (identity, expires_in))| Holder {
                    identity: identity.to_string(),
                    fencing_token: i as i32 + 1,
                    acquired_at: now() - TimeDelta::seconds(100),
                    renewed_at: now(),
                    expires_at: now() + TimeDelta::seconds(*expires_in),
                })
                .collect(),
            fencing_token: if holders.is_empty() { 0 } else { 7 },
            transitions: 7,
            ttl_seconds: 30,
            heartbeat_interval_seconds: 10,
            max_holders: None,
            target: None,
            updated_at: Some(now() - TimeDelta::seconds(200)),
            target_status: None,
            conditions: Vec::new(),
        }
    }

    #[test]
    fn lease_table_is_aligned_and_relative() {
        let views = [view("ingest-coordinator", &[("team-a/worker-1", 25)]), view("b", &[])];
        let expected = "\
NAME                 STATE      HOLDER            TOKEN    EXPIRES   SEMANTICS      AGE
ingest-coordinator   held       team-a/worker-1   7        in 25s    at-most-once   3m20s
b                    released   <none>            <none>   <none>    at-most-once   3m20s
";
        assert_eq!(lease_table(&views, false, now()), expected);
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column_and_expired_holders_are_hidden() {
        let table = lease_table(&[view("a", &[("team-a/old", -5), ("team-a/new", 9), ("team-a/x", 12)])], true, now());
        let row = table.lines().nth(1).unwrap();
        assert!(table.starts_with("NAMESPACE   NAME   STATE"), "{table}");
        assert!(row.starts_with("team-a      a      held    team-a/new (+1)   7       in 9s"), "{row}");
    }

    #[test]
    fn relative_times_read_like_kubectl() {
        let cases =
            [(0, "0s"), (119, "119s"), (200, "3m20s"), (1500, "25m"), (18_000, "5h"), (300_000, "3d"), (-4, "0s")];
        for (secs, text) in cases {
            assert_eq!(relative(TimeDelta::seconds(secs)), text);
        }
    }

    #[test]
    fn json_and_yaml_keep_the_wire_names() {
        let v = view("a", &[("team-a/w", 5)]);
        assert!(structured(Format::Json, &v).contains("\"fencingToken\": 7"));
        assert!(structured(Format::Yaml, &v).contains("heartbeatIntervalSeconds: 10"));
        assert!(streamed(Format::Json, &v).ends_with("}\n") && streamed(Format::Json, &v).lines().count() == 1);
        assert!(streamed(Format::Yaml, &v).starts_with("---\nnamespace: team-a\n"));
    }
}
