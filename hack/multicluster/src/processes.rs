//! The process-level history of a workload across clusters, and its checker.
//!
//! Every process of the workload appends lines to one file that all nodes of
//! this machine share through a hostPath (one kernel, so one clock):
//! `<uptime> <cluster> <pod> start|beat|end`, where `<uptime>` is the first
//! field of `/proc/uptime` (seconds, to the hundredth), with a beat every
//! [`BEAT_CENTIS`] while it runs ([`WORKLOAD_SCRIPT`]). A process is live
//! from its start to its end or, killed without writing one, to its last beat
//! plus one beat period. [`overlaps`] reports every span in which processes
//! of two clusters were live at once: what exclusivity means to a user.

use std::collections::BTreeMap;

/// The period of the workload's beats, in hundredths of a second.
pub const BEAT_CENTIS: u64 = 10;

/// The workload's container script (busybox `sh`): `CLUSTER`, `POD` and
/// `HISTORY` (the shared file) come from its environment. It records its
/// start and beats; on SIGTERM it goes on beating for `DRAIN` seconds (an
/// app finishing its work: 0 when unset), then records its end and exits.
pub const WORKLOAD_SCRIPT: &str = r#"record() { read up _ < /proc/uptime; echo "$up $CLUSTER $POD $1" >> "$HISTORY"; }
stop=0
trap 'stop=1' TERM INT
record start
while [ "$stop" = 0 ]; do record beat; sleep 0.1; done
read up _ < /proc/uptime; until=$(( ${up%.*} + ${DRAIN:-0} ))
while read up _ < /proc/uptime; [ "${up%.*}" -lt "$until" ]; do record beat; sleep 0.1; done
record end"#;

/// Hundredths of a second since boot: the clock of the history.
pub fn uptime() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    parse_uptime(text.split_whitespace().next().unwrap_or_default()).unwrap_or(0)
}

fn parse_uptime(field: &str) -> Option<u64> {
    let (seconds, hundredths) = field.split_once('.')?;
    Some(seconds.parse::<u64>().ok()? * 100 + hundredths.parse::<u64>().ok()?)
}

/// The lives recorded so far in the history `file` (none while it does not exist).
///
/// # Panics
/// When a line other than a torn last one is malformed.
pub fn read_lives(file: &std::path::Path) -> Vec<Life> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    lives(&parse(&text).unwrap_or_else(|e| panic!("the history {}: {e}", file.display())))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Beat,
    End,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Hundredths of a second since boot.
    pub at: u64,
    pub cluster: String,
    pub pod: String,
    pub event: Event,
}

/// The history's lines, in file order. A torn last line (a writer killed
/// mid-write) is skipped; any other malformed line is an error.
///
/// # Errors
/// The first malformed line, with its number.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line) {
            Some(record) => records.push(record),
            None if i + 1 == lines.len() && !text.ends_with('\n') => {}
            None => return Err(format!("line {}: {line:?} is not `<uptime> <cluster> <pod> <event>`", i + 1)),
        }
    }
    Ok(records)
}

fn parse_line(line: &str) -> Option<Record> {
    let mut fields = line.split_whitespace();
    let at = parse_uptime(fields.next()?)?;
    let (cluster, pod) = (fields.next()?.to_owned(), fields.next()?.to_owned());
    let event = match fields.next()? {
        "start" => Event::Start,
        "beat" => Event::Beat,
        "end" => Event::End,
        _ => return None,
    };
    fields.next().is_none().then_some(Record { at, cluster, pod, event })
}

/// One process's life: live from `start` to `end` (hundredths of a second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Life {
    pub cluster: String,
    pub pod: String,
    pub start: u64,
    pub end: u64,
    /// Whether it recorded its end (SIGTERM), or was judged by its last beat.
    pub ended: bool,
}

/// The lives in the history. A container restarted in the same pod begins a
/// new life at its next `start`. A life without an end lasts to its last
/// beat plus one period; one whose last record is `now` or later is still live.
pub fn lives(records: &[Record]) -> Vec<Life> {
    let mut open: BTreeMap<(String, String), Life> = BTreeMap::new();
    let mut done = Vec::new();
    for record in records {
        let key = (record.cluster.clone(), record.pod.clone());
        match record.event {
            Event::Start => {
                if let Some(life) = open.remove(&key) {
                    done.push(life);
                }
                let life = Life {
                    cluster: record.cluster.clone(),
                    pod: record.pod.clone(),
                    start: record.at,
                    end: record.at + BEAT_CENTIS,
                    ended: false,
                };
                open.insert(key, life);
            }
            Event::Beat => {
                // A beat without a start (the start line was lost) opens a life at the beat.
                let life = open.entry(key).or_insert_with(|| Life {
                    cluster: record.cluster.clone(),
                    pod: record.pod.clone(),
                    start: record.at,
                    end: record.at,
                    ended: false,
                });
                life.end = life.end.max(record.at + BEAT_CENTIS);
            }
            Event::End => {
                if let Some(mut life) = open.remove(&key) {
                    life.end = record.at;
                    life.ended = true;
                    done.push(life);
                }
            }
        }
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| (a.start, &a.cluster, &a.pod).cmp(&(b.start, &b.cluster, &b.pod)));
    done
}

/// Processes of two clusters live at once, from `start` to `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub first: Life,
    pub second: Life,
    pub start: u64,
    pub end: u64,
}

/// Every pair of lives of different clusters that overlap. Touching (one
/// ends at the hundredth the other starts) is not overlap.
pub fn overlaps(lives: &[Life]) -> Vec<Overlap> {
    let mut found = Vec::new();
    for (i, a) in lives.iter().enumerate() {
        for b in &lives[i + 1..] {
            let (start, end) = (a.start.max(b.start), a.end.min(b.end));
            if a.cluster != b.cluster && start < end {
                found.push(Overlap { first: a.clone(), second: b.clone(), start, end });
            }
        }
    }
    found
}

/// A failover seen in processes: of the processes of cluster `from` live at
/// instant `cut`, when the last one stopped; and when the first process of
/// `to` started after `cut`.
pub fn handover(lives: &[Life], from: &str, to: &str, cut: u64) -> (Option<u64>, Option<u64>) {
    let last_old = lives.iter().filter(|l| l.cluster == from && l.start <= cut && l.end > cut).map(|l| l.end).max();
    let first_new = lives.iter().filter(|l| l.cluster == to && l.start >= cut).map(|l| l.start).min();
    (last_old, first_new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(lines: &[&str]) -> Vec<Life> {
        lives(&parse(&(lines.join("\n") + "\n")).unwrap())
    }

    #[test]
    fn lines_parse_and_a_torn_last_line_is_skipped() {
        let records = parse("12.30 east ingest-1 start\n12.40 east ingest-1 beat\n12.4").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], Record { at: 1240, cluster: "east".into(), pod: "ingest-1".into(), event: Event::Beat });
        assert!(parse("12.30 east ingest-1 start\nnonsense\n12.40 east ingest-1 beat\n").is_err());
        assert!(parse("12.30 east ingest-1 jump\n").is_err());
    }

    #[test]
    fn a_life_ends_at_its_end_record_or_one_beat_after_its_last_beat() {
        let lives = history(&[
            "1.00 east a start",
            "1.10 east a beat",
            "1.20 east a end",
            "2.00 west b start",
            "2.10 west b beat",
            "2.20 west b beat",
        ]);
        assert_eq!(
            lives,
            vec![
                Life { cluster: "east".into(), pod: "a".into(), start: 100, end: 120, ended: true },
                Life { cluster: "west".into(), pod: "b".into(), start: 200, end: 230, ended: false },
            ]
        );
    }

    #[test]
    fn a_restarted_container_begins_a_new_life() {
        let lives = history(&["1.00 east a start", "1.10 east a beat", "5.00 east a start", "5.05 east a end"]);
        assert_eq!(lives.iter().map(|l| (l.start, l.end)).collect::<Vec<_>>(), vec![(100, 120), (500, 505)]);
    }

    #[test]
    fn a_clean_handover_has_no_overlap_and_its_gap_is_measured() {
        let lives = history(&[
            "1.00 east a start",
            "1.10 east a beat",
            "1.50 east a end",
            "1.50 west b start",
            "3.00 west b beat",
            "3.05 west b end",
            "4.00 east c start",
            "4.05 east c end",
        ]);
        assert!(overlaps(&lives).is_empty());
        assert_eq!(handover(&lives, "east", "west", 110), (Some(150), Some(150)));
        assert_eq!(handover(&lives, "west", "east", 200), (Some(305), Some(400)));
        assert_eq!(handover(&lives, "west", "east", 500), (None, None));
    }

    #[test]
    fn two_clusters_live_at_once_are_reported_with_their_span() {
        // West starts while east's process still beats: the case a fence that
        // stops only future work lets through.
        let lives = history(&[
            "1.00 east a start",
            "1.10 east a beat",
            "1.20 west b start",
            "1.20 east a beat",
            "1.30 east a beat",
            "1.35 west b end",
        ]);
        let found = overlaps(&lives);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].start, found[0].end), (120, 135));
        assert_eq!((found[0].first.cluster.as_str(), found[0].second.cluster.as_str()), ("east", "west"));
    }

    #[test]
    fn processes_of_one_cluster_may_overlap_each_other() {
        let lives = history(&["1.00 east a start", "1.00 east b start", "1.50 east a end", "1.60 east b end"]);
        assert!(overlaps(&lives).is_empty());
    }
}
