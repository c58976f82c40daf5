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

/// The cumulative buckets (`le` in seconds, count) of histogram `name`,
/// summed over the series whose labels include every one of `labels`, by
/// ascending `le`.
pub fn buckets(text: &str, name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for (series, count) in samples(text) {
        let Some((metric, rest)) = series.split_once('{') else { continue };
        if metric != bucket || !labels.iter().all(|l| rest.contains(l)) {
            continue;
        }
        let Some(le) = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        if le.is_nan() {
            continue;
        }
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some(bucket) => bucket.1 += count,
            None => by_le.push((le, count)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// `after` minus `before`, bucket by bucket: the observations in between.
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| (le, count - before.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c)))
        .collect()
}

/// Quantile `q` of cumulative buckets, interpolated linearly inside the
/// bucket it falls in (as Prometheus' `histogram_quantile`); in the
/// buckets' unit, NaN without observations.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |(_, c)| *c);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let within = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return lower.0 + (le - lower.0) * within;
        }
        lower = (le, count);
    }
    f64::NAN
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
    fn buckets_sum_the_matching_series_and_quantiles_interpolate_inside_a_bucket() {
        let before = "h_bucket{route=\"/renew\",le=\"0.1\"} 5\nh_bucket{route=\"/renew\",le=\"0.2\"} 5\n\
                      h_bucket{route=\"/renew\",le=\"+Inf\"} 5\nh_bucket{route=\"/get\",le=\"0.1\"} 7\n";
        let after = "h_bucket{route=\"/renew\",le=\"0.1\"} 5\nh_bucket{route=\"/renew\",le=\"0.2\"} 15\n\
                     h_bucket{route=\"/renew\",le=\"+Inf\"} 15\nh_bucket{route=\"/get\",le=\"0.1\"} 9\n";
        let renew = |text| buckets(text, "h", &["route=\"/renew\""]);
        assert_eq!(renew(after), [(0.1, 5.0), (0.2, 15.0), (f64::INFINITY, 15.0)]);
        let delta = bucket_delta(&renew(before), &renew(after));
        assert_eq!(delta, [(0.1, 0.0), (0.2, 10.0), (f64::INFINITY, 10.0)]);
        // The 10 new observations all fall in (0.1, 0.2]: the median is its middle.
        assert!((histogram_quantile(&delta, 0.5) - 0.15).abs() < 1e-9);
        assert!(histogram_quantile(&bucket_delta(&renew(after), &renew(after)), 0.5).is_nan());
    }

    #[test]
    fn values_are_read_by_their_exact_series() {
        assert_eq!(value(TEXT, "m_sum"), Some(16.0));
        assert_eq!(value(TEXT, "m_sum{route=\"/a/acquire\",status=\"200\"}"), Some(4.0));
        assert_eq!(value(TEXT, "m_sum{route=\"/a\"}"), None);
    }
}
