//! Instants as ConnectWise writes and reads them: always UTC, rendered as ISO-8601 with a `Z`,
//! with milliseconds when the instant has any and whole seconds otherwise, and the write stamp
//! that makes `_info.lastUpdated` move forward on every write. Nothing here ever looks at the
//! host's local time zone.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Renders an instant the way ConnectWise does: `2024-05-01T11:15:07.263Z` or, when the
/// instant falls on a whole second, `2024-05-01T11:15:07Z`.
pub fn format_instant(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let millis = at.millisecond();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if millis == 0 { format!("{base}Z") } else { format!("{base}.{millis:03}Z") }
}

/// Parses an ISO-8601 instant as clients send it in bodies and conditions. An explicit offset
/// is honoured; a value without one is taken as UTC, as ConnectWise does.
pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(truncate_to_millis(at.to_offset(UtcOffset::UTC)));
    }
    let without_offset = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(at) = PrimitiveDateTime::parse(text, &without_offset) {
        return Some(truncate_to_millis(at.assume_utc()));
    }
    let date_only = format_description!(version = 2, "[year]-[month]-[day]");
    time::Date::parse(text, &date_only).ok().map(|d| d.midnight().assume_utc())
}

/// ConnectWise keeps instants to the millisecond; finer digits are dropped on the way in.
pub fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    let nanos = at.nanosecond();
    at - Duration::nanoseconds(i64::from(nanos % 1_000_000))
}

/// The current instant in UTC, to the millisecond.
pub fn now_millis() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc())
}

/// The `lastUpdated` a write gives a record whose previous value was `previous`: the current
/// instant, but always at least a millisecond later than before, so that two quick writes (or a
/// fixture dated in the future) still move the stamp forward.
pub fn next_stamp(previous: OffsetDateTime) -> OffsetDateTime {
    let now = now_millis();
    let floor = truncate_to_millis(previous) + Duration::milliseconds(1);
    if now >= floor { now } else { floor }
}

/// Today's date at midnight UTC, the form ConnectWise uses for effective and cancelled dates.
pub fn today_midnight() -> OffsetDateTime {
    OffsetDateTime::now_utc().date().midnight().assume_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn renders_millis_only_when_present() {
        assert_eq!(
            format_instant(datetime!(2024-05-01 11:15:07.263 UTC)),
            "2024-05-01T11:15:07.263Z"
        );
        assert_eq!(format_instant(datetime!(2024-05-01 11:15:07 UTC)), "2024-05-01T11:15:07Z");
        assert_eq!(format_instant(datetime!(2024-05-01 15:04:05 -4)), "2024-05-01T19:04:05Z");
    }

    #[test]
    fn parses_offsets_fractions_and_bare_forms() {
        let want = datetime!(2024-05-01 19:04:05 UTC);
        assert_eq!(parse_instant("2024-05-01T15:04:05-04:00"), Some(want));
        assert_eq!(parse_instant("2024-05-01T19:04:05"), Some(want));
        assert_eq!(
            parse_instant("2024-05-01T19:04:05.2639Z"),
            Some(datetime!(2024-05-01 19:04:05.263 UTC))
        );
        assert_eq!(parse_instant("2024-05-01"), Some(datetime!(2024-05-01 0:00 UTC)));
        assert_eq!(parse_instant("05/01/2024 3:04 PM"), None);
    }

    #[test]
    fn stamps_always_move_forward() {
        let future = now_millis() + Duration::hours(1);
        assert_eq!(next_stamp(future), future + Duration::milliseconds(1));
        let past = datetime!(2020-01-01 0:00 UTC);
        assert!(next_stamp(past) > past);
    }
}
