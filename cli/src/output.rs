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

/// The table of `berth lease watch`: the header once, then one row per
/// change of the lease view, in columns that stay aligned across rows.
///
/// Each column is as wide as the widest value it may take (a state, a
/// token, a relative time, a semantics), or as the widest it has shown;
/// only a value wider than all before it moves the columns after it.
#[derive(Debug, Default)]
pub struct WatchTable {
    widths: Vec<usize>,
    last: Option<LeaseView>,
}

impl WatchTable {
    /// The lines to print for `view` at `now`, or `None` when the view is the
    /// one printed last (a write that changed nothing a holder can see).
    pub fn update(&mut self, view: &LeaseView, now: DateTime<Utc>) -> Option<String> {
        if self.last.as_ref() == Some(view) {
            return None;
        }
        let header = lease_header(false);
        let row = lease_row(view, false, now);
        let mut out = String::new();
        if self.widths.is_empty() {
            // NAME, STATE, HOLDER, TOKEN, EXPIRES, SEMANTICS, AGE at their widest usual values.
            let usual = ["", "available", "", "<none>", "in 59m59s", "at-least-once", "59m59s"];
            self.widths = header.iter().zip(usual).map(|(h, u)| h.len().max(u.len())).collect();
            self.grow(&row);
            out.push_str(&self.line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()));
        } else {
            self.grow(&row);
        }
        out.push_str(&self.line(&row));
        self.last = Some(view.clone());
        Some(out)
    }

    fn grow(&mut self, row: &[String]) {
        for (width, cell) in self.widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    fn line(&self, row: &[String]) -> String {
        let cells: Vec<String> = row.iter().zip(&self.widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("{}\n", cells.join("   ").trim_end())
    }
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
    fn watch_rows_stay_aligned_and_repeat_only_on_change() {
        let mut table = WatchTable::default();
        let held = view("ingest", &[("east/worker-1", 30)]);
        let mut released = view("ingest", &[]);
        released.state = LeaseState::Released;
        let mut lines = String::new();
        for v in [&held, &held, &released, &released, &held] {
            lines.extend(table.update(v, now()));
        }
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 4, "the header, then one row per change: {lines:#?}");
        let word_start = |line: &str, i: usize| {
            let bytes = line.as_bytes();
            i < bytes.len() && bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' ')
        };
        let columns: Vec<usize> = (0..lines[0].len()).filter(|i| word_start(lines[0], *i)).collect();
        assert_eq!(columns.len(), 7, "{}", lines[0]);
        for line in &lines[1..] {
            for column in &columns {
                assert!(word_start(line, *column), "a cell of {line:?} is not at {column}: {lines:#?}");
            }
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
