//! The `conditions` grammar and its encoding: names with quotes, `&`, `+`, `#` and non-ASCII
//! letters arrive exactly as written; instants are UTC, 24-hour, whole seconds, in brackets
//! (case C06); incremental listings query `>=` the truncated second (case C16) less the
//! lookback (case C17), and the cursor is kept exactly as received.

mod common;

use common::*;
use percent_encoding::percent_decode_str;
use tally_connectwise::conditions::{Query, equals_text, instant, text, updated_since};
use tally_plugin_sdk::{Checkpoint, ErrorKind, ListMode, Operation, StepInput};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

/// Reverses the grammar's string escaping: `"a \"b\" \\ c"` → `a "b" \ c`.
fn unquote(quoted: &str) -> String {
    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(quoted);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn string_values_are_escaped_for_the_grammar() {
    assert_eq!(text("Contoso"), r#""Contoso""#);
    assert_eq!(text(r#"The "Best" Co\Ltd"#), r#""The \"Best\" Co\\Ltd""#);
    assert_eq!(text("O'Brien"), r#""O'Brien""#);
}

#[test]
fn names_are_encoded_exactly_once_and_round_trip() {
    let cases = [
        ("O'Brien & Sons", "conditions=name%3D%22O%27Brien%20%26%20Sons%22"),
        ("Smith+Jones #1", "conditions=name%3D%22Smith%2BJones%20%231%22"),
        (r#"The "Best" Co\Ltd"#, "conditions=name%3D%22The%20%5C%22Best%5C%22%20Co%5C%5CLtd%22"),
        ("Müller Straße", "conditions=name%3D%22M%C3%BCller%20Stra%C3%9Fe%22"),
        ("Zoë's Café", "conditions=name%3D%22Zo%C3%AB%27s%20Caf%C3%A9%22"),
    ];
    for (name, expected) in cases {
        let query = Query::new().pair("conditions", equals_text("name", name)).encoded();
        assert_eq!(query, expected, "{name}");

        let value = query.strip_prefix("conditions=").unwrap_or_default();
        let decoded = percent_decode_str(value).decode_utf8_lossy().into_owned();
        let quoted = decoded.strip_prefix("name=").unwrap_or_default();
        assert_eq!(unquote(quoted), name, "{name}");
    }
}

#[test]
fn an_incremental_listing_url_is_pinned() {
    let plugin = open(settings());
    let checkpoint = Checkpoint {
        cursor: Some("2024-05-01T15:04:05-04:00".into()),
        tie_id: None,
        page_token: None,
    };
    let mut machine = start(&plugin, list("companies", ListMode::Incremental, Some(checkpoint)));
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(
        request.url,
        "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?\
         conditions=_info%2FlastUpdated%3E%3D%5B2024-05-01T19%3A04%3A05Z%5D\
         &orderBy=id%20asc&pageSize=1000&page=1"
    );
    assert_eq!(request.method, "GET");
    assert_eq!(request.endpoint, "company/companies");
}

/// The `conditions` the first page request of an incremental listing from `cursor` carries.
fn condition_for(cursor: &str, lookback_seconds: u64) -> String {
    let plugin = open(settings());
    let operation = Operation::List {
        stream: "companies".into(),
        mode: ListMode::Incremental,
        checkpoint: Some(Checkpoint {
            cursor: Some(cursor.into()),
            tie_id: None,
            page_token: None,
        }),
        parent_id: None,
        lookback_seconds,
    };
    let mut machine = start(&plugin, operation);
    let request = sent(machine.step(StepInput::Start));
    param(&request.url, "conditions").unwrap_or_default()
}

#[test]
fn c06_an_offset_checkpoint_becomes_a_utc_24_hour_condition() {
    assert_eq!(
        condition_for("2024-05-01T15:04:05-04:00", 0),
        "_info/lastUpdated>=[2024-05-01T19:04:05Z]"
    );
}

#[test]
fn c06_every_hour_and_both_us_dst_switch_dates_round_trip_to_the_same_instant() {
    // 2024-03-10 and 2024-11-03 are the US switch dates; 2024-05-01 is the case's own date.
    let dates = ["2024-03-10", "2024-11-03", "2024-05-01", "2024-12-31"];
    let offsets = [("-04:00", -4 * 3600), ("-05:00", -5 * 3600), ("Z", 0), ("+05:30", 19_800)];
    for date in dates {
        for hour in 0..24 {
            for (offset, offset_seconds) in offsets {
                let cursor = format!("{date}T{hour:02}:04:05.250{offset}");
                let condition = condition_for(&cursor, 0);

                let at = match condition_instant(&condition) {
                    Some(at) => at,
                    None => panic!("{cursor} → {condition} has no instant"),
                };
                let expected = match OffsetDateTime::parse(&cursor, &Rfc3339) {
                    Ok(expected) => expected.replace_millisecond(0).ok(),
                    Err(error) => panic!("{cursor}: {error}"),
                };
                assert_eq!(Some(at), expected, "{cursor} → {condition}");
                assert_eq!(at.offset(), UtcOffset::UTC, "{cursor} → {condition}");
                assert!(condition.ends_with("Z]"), "{condition}");

                // The hour written is the 24-hour UTC hour, computed here without a library.
                let utc_hour = (i64::from(hour) * 3600 - offset_seconds).rem_euclid(86_400) / 3600;
                let written = &condition[condition.len() - 10..condition.len() - 8];
                assert_eq!(written, format!("{utc_hour:02}"), "{cursor} → {condition}");
            }
        }
    }
}

#[test]
fn c06_the_dst_switch_hours_land_on_their_utc_instants() {
    let cases = [
        ("2024-03-10T01:30:00-05:00", "[2024-03-10T06:30:00Z]"),
        ("2024-03-10T03:30:00-04:00", "[2024-03-10T07:30:00Z]"),
        ("2024-11-03T01:30:00-04:00", "[2024-11-03T05:30:00Z]"),
        ("2024-11-03T01:30:00-05:00", "[2024-11-03T06:30:00Z]"),
        ("2024-05-01T23:59:59.999-04:00", "[2024-05-02T03:59:59Z]"),
    ];
    for (cursor, bracketed) in cases {
        assert_eq!(condition_for(cursor, 0), format!("_info/lastUpdated>={bracketed}"), "{cursor}");
    }
}

#[test]
fn instants_are_never_written_with_a_12_hour_clock() {
    assert_eq!(
        instant(datetime!(2024-05-01 15:00:00 UTC)).ok(),
        Some("[2024-05-01T15:00:00Z]".into())
    );
    assert_eq!(
        instant(datetime!(2024-05-01 00:30:00 UTC)).ok(),
        Some("[2024-05-01T00:30:00Z]".into())
    );
    assert_eq!(
        instant(datetime!(2024-05-01 12:30:00 UTC)).ok(),
        Some("[2024-05-01T12:30:00Z]".into())
    );
}

#[test]
fn c16_a_millisecond_cursor_is_kept_exactly_and_queried_from_its_whole_second() {
    let rows: Vec<_> = (1..=3).map(|id| company_row(id, "2024-05-01T11:15:07.263Z")).collect();

    let plugin = open(settings());
    let mut first = start(&plugin, list("companies", ListMode::Incremental, None));
    let run = drive(&mut *first, listing_server(rows.clone()));
    assert_eq!(run.ids(), vec!["1", "2", "3"]);
    let checkpoint = run.last_checkpoint().clone();
    assert_eq!(checkpoint.cursor.as_deref(), Some("2024-05-01T11:15:07.263Z"));
    assert_eq!(checkpoint.tie_id.as_deref(), Some("3"));
    assert_eq!(checkpoint.page_token, None);

    // The second run asks `>=` the truncated second, sees the same rows (the host drops them
    // by id and updated_at) and keeps the cursor exactly as it was.
    let mut second =
        start(&plugin, list("companies", ListMode::Incremental, Some(checkpoint.clone())));
    let run = drive(&mut *second, listing_server(rows));
    assert_eq!(
        raw_param(&run.requests[0].url, "conditions"),
        Some("_info%2FlastUpdated%3E%3D%5B2024-05-01T11%3A15%3A07Z%5D")
    );
    assert_eq!(run.ids(), vec!["1", "2", "3"]);
    assert_eq!(run.last_checkpoint(), &checkpoint);
    for record in run.records() {
        if let tally_plugin_sdk::Record::Company(company) = record {
            assert_eq!(company.updated_at.as_deref(), Some("2024-05-01T11:15:07.263Z"));
        }
    }
}

#[test]
fn c17_the_lookback_picks_up_a_row_that_became_visible_behind_the_cursor() {
    let rows = vec![
        company_row(40, "2024-05-01T11:40:00Z"),
        company_row(41, "2024-05-01T11:59:59.900Z"),
        company_row(42, "2024-05-01T11:59:59.869Z"),
    ];
    let checkpoint = Checkpoint {
        cursor: Some("2024-05-01T11:59:59.900Z".into()),
        tie_id: Some("41".into()),
        page_token: None,
    };
    let plugin = open(settings());
    let operation = Operation::List {
        stream: "companies".into(),
        mode: ListMode::Incremental,
        checkpoint: Some(checkpoint.clone()),
        parent_id: None,
        lookback_seconds: 600,
    };
    let mut machine = start(&plugin, operation);
    let run = drive(&mut *machine, listing_server(rows));

    assert_eq!(
        param(&run.requests[0].url, "conditions").as_deref(),
        Some("_info/lastUpdated>=[2024-05-01T11:49:59Z]")
    );
    assert_eq!(run.ids(), vec!["41", "42"]);
    assert_eq!(run.last_checkpoint(), &checkpoint);
}

#[test]
fn a_cursor_that_is_not_a_timestamp_or_a_lookback_past_the_calendar_is_refused() {
    let plugin = open(settings());
    let bad = Checkpoint { cursor: Some("yesterday".into()), tie_id: None, page_token: None };
    let error = start_error(&plugin, list("companies", ListMode::Incremental, Some(bad)));
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(error.message.contains("yesterday"));

    let error = match updated_since("2024-05-01T00:00:00Z", u64::MAX) {
        Ok(condition) => panic!("accepted: {condition}"),
        Err(error) => error,
    };
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
}

#[test]
fn a_full_listing_has_no_conditions_even_with_a_cursor() {
    let plugin = open(settings());
    let checkpoint =
        Checkpoint { cursor: Some("2024-05-01T00:00:00Z".into()), tie_id: None, page_token: None };
    let mut machine = start(&plugin, list("companies", ListMode::Full, Some(checkpoint)));
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(raw_query(&request.url), "orderBy=id%20asc&pageSize=1000&page=1");
}
