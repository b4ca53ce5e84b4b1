//! Timestamps as the store keeps them: unix milliseconds for indexes, RFC 3339 UTC for people.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Fixed millisecond precision so stored strings sort and line up in exports.
const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub(crate) fn unix_millis(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    // Only reachable for dates hundreds of millions of years away; clamp rather than fail.
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn now_millis() -> i64 {
    unix_millis(OffsetDateTime::now_utc())
}

/// The RFC 3339 UTC form of a unix-millisecond time.
pub(crate) fn rfc3339(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(RFC3339_MILLIS).ok())
        // Years outside 0000..=9999 have no RFC 3339 form; keep the row rather than lose it.
        .unwrap_or_else(|| format!("@{millis}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_with_fixed_millis_in_utc() {
        let at = datetime!(2025-03-04 05:06:07.08 +02:00);
        let ms = unix_millis(at);
        assert_eq!(ms, 1_741_057_567_080);
        assert_eq!(rfc3339(ms), "2025-03-04T03:06:07.080Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
