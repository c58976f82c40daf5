//! The one reader of the Prometheus text (and OpenMetrics) that the
//! binaries serve at `/metrics`, for tests and benchmarks.

/// Every sample line as (series, value): `name{labels}` and its number.
/// Comments (`# HELP`, `# TYPE`, `# EOF`) and unparsable lines are skipped.
pub fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        Some((series.trim(), value.trim().parse().ok()?))
    })
}

/// The value of the sample whose series is exactly `series`
/// (`name` or `name{label="value",…}` as printed).
pub fn value(text: &str, series: &str) -> Option<f64> {
    samples(text).find(|(s, _)| *s == series).map(|(_, v)| v)
}

/// The sum of the samples of metric `name` whose labels include every one
/// of `labels` (each `label="value"`).
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text)
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP m_sum a sum\n# TYPE m_sum counter\n\
        m_sum{route=\"/a/renew\",status=\"200\"} 1.5\nm_sum{route=\"/a/renew\",status=\"500\"} 2\n\
        m_sum{route=\"/a/acquire\",status=\"200\"} 4\nm_sum_other 8\nm_sum 16\n# EOF\n";

    #[test]
    fn sums_match_the_metric_name_exactly_and_every_label() {
        assert_eq!(sum(TEXT, "m_sum", &["route=\"/a/renew\"", "status=\"200\""]), 1.5);
        assert_eq!(sum(TEXT, "m_sum", &[]), 23.5);
        assert_eq!(sum(TEXT, "m_sum_other", &[]), 8.0);
    }

    #[test]
    fn values_are_read_by_their_exact_series() {
        assert_eq!(value(TEXT, "m_sum"), Some(16.0));
        assert_eq!(value(TEXT, "m_sum{route=\"/a/acquire\",status=\"200\"}"), Some(4.0));
        assert_eq!(value(TEXT, "m_sum{route=\"/a\"}"), None);
    }
}
