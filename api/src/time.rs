//! Wire format of timestamps: RFC 3339 in UTC with exactly nine fractional digits.
//! Deserializing accepts any RFC 3339 time, so only serializing is custom.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Formats `t` as docs/api.md prescribes, e.g. `2026-11-24T06:15:30.191483000Z`.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `#[serde(serialize_with = "berth_api::time::serialize")]`
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// `#[serde(serialize_with = "berth_api::time::serialize_opt")]`
pub fn serialize_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_nine_fraction_digits_in_utc() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 6, 15, 30).unwrap() + chrono::Duration::microseconds(191_483);
        assert_eq!(format(&t), "2026-11-24T06:15:30.191483000Z");
    }
}
