//! Durations in flags: `30s`, `1m`, `1m30s`, `2h`, `500ms`, or a bare number
//! of seconds. One grammar for the CLI, the apiserver and the tools.

use std::time::Duration;

/// Parses a duration such as `1m30s`. Units: `h`, `m`, `s`, `ms`.
pub fn parse(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("a duration is required, e.g. 30s or 1m".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| format!("duration {input:?} is too large"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {input:?}: expected a number, e.g. 30s, 1m30s, 2h"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("duration {input:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(number)),
            "ms" => Some(Duration::from_millis(number)),
            "" => return Err(format!("invalid duration {input:?}: a unit (h, m, s, ms) must follow {number}")),
            unit => return Err(format!("invalid duration {input:?}: unknown unit {unit:?} (use h, m, s or ms)")),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| format!("duration {input:?} is too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Whole seconds of `duration`, for fields such as `ttlSeconds`.
pub fn whole_seconds(flag: &str, duration: Duration) -> Result<i32, String> {
    if duration.subsec_nanos() != 0 {
        return Err(format!("{flag} must be a whole number of seconds"));
    }
    i32::try_from(duration.as_secs()).map_err(|_| format!("{flag} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_compounds_and_bare_seconds() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        assert!(parse("").unwrap_err().contains("required"));
        assert!(parse("1m30").unwrap_err().contains("a unit"));
        assert!(parse("3d").unwrap_err().contains("unknown unit \"d\""));
        assert!(parse("-5s").unwrap_err().contains("expected a number"));
        assert!(parse("99999999999999999999h").unwrap_err().contains("too large"));
        for bad in ["s", "2 s", "2x", "1.5s", "2s3"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whole_seconds_refuses_fractions() {
        assert_eq!(whole_seconds("--ttl", Duration::from_secs(30)), Ok(30));
        assert!(whole_seconds("--ttl", Duration::from_millis(1500)).unwrap_err().contains("whole number"));
    }
}
