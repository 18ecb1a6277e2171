//! Paging: page sizes and counts at the 1000-row boundary, byte-identical conditions on every
//! page (case C03), the `Link` header (its `rel="next"`, and refusal of another host),
//! de-duplication of shifted rows, checkpoints that never move past stored data, and resuming
//! a stopped listing from its `page_token`.

mod common;

use common::*;
use serde_json::{Value, json};
use tally_plugin_sdk::{
    Checkpoint, ErrorKind, HttpRequest, HttpResponse, ListMode, OpResult, Operation, Step,
    StepInput,
};

fn full_listing(rows: Vec<Value>) -> Run {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    drive(&mut *machine, listing_server(rows))
}

fn pages_of(run: &Run) -> Vec<Option<String>> {
    run.requests.iter().map(|r| param(&r.url, "page")).collect()
}

#[test]
fn zero_rows_take_one_request_and_one_empty_last_page() {
    let run = full_listing(Vec::new());
    assert_eq!(pages_of(&run), vec![Some("1".to_string())]);
    assert_eq!(run.pages.len(), 1);
    let (records, checkpoint, last) = &run.pages[0];
    assert!(records.is_empty());
    assert!(*last);
    assert_eq!(checkpoint, &Checkpoint::default());
    assert_eq!(run.end, Step::Done { result: OpResult::Listed });
}

#[test]
fn exactly_1000_rows_take_a_second_request_that_comes_back_empty() {
    let run = full_listing(company_rows(1..=1000));
    assert_eq!(pages_of(&run), vec![Some("1".into()), Some("2".into())]);
    assert_eq!(run.pages.len(), 2);
    assert_eq!(run.pages[0].0.len(), 1000);
    assert!(!run.pages[0].2);
    assert_eq!(run.pages[0].1.page_token.as_deref(), Some("2"));
    assert!(run.pages[1].0.is_empty());
    assert!(run.pages[1].2);
    assert_eq!(run.ids().len(), 1000);
}

#[test]
fn rows_1001_take_two_requests() {
    let run = full_listing(company_rows(1..=1001));
    assert_eq!(pages_of(&run), vec![Some("1".into()), Some("2".into())]);
    assert_eq!(run.pages[0].0.len(), 1000);
    assert_eq!(run.pages[1].0.len(), 1);
    assert!(run.pages[1].2);
    assert_eq!(run.ids().last().map(String::as_str), Some("1001"));
    for request in &run.requests {
        assert_eq!(param(&request.url, "pageSize").as_deref(), Some("1000"));
        assert_eq!(param(&request.url, "orderBy").as_deref(), Some("id asc"));
    }
}

#[test]
fn c03_every_page_carries_byte_identical_conditions_order_and_size() {
    // ConnectWise returns unfiltered rows to a request that lost its conditions.
    let mut filtered = vec![
        company_row(9001, "2024-05-02T00:00:00Z"),
        company_row(9002, "2024-05-02T00:00:00Z"),
        company_row(9003, "2024-05-02T00:00:00Z"),
    ];
    filtered.extend((1..=5).map(|id| company_row(id, "2024-04-01T00:00:00Z")));
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let checkpoint =
        Checkpoint { cursor: Some("2024-05-01T00:00:00Z".into()), tie_id: None, page_token: None };
    let mut machine = start(&plugin, list("companies", ListMode::Incremental, Some(checkpoint)));
    let run = drive(&mut *machine, listing_server(filtered));

    assert_eq!(run.ids(), vec!["9001", "9002", "9003"]);
    let expected = [
        "conditions=_info%2FlastUpdated%3E%3D%5B2024-05-01T00%3A00%3A00Z%5D&orderBy=id%20asc&pageSize=2&page=1",
        "conditions=_info%2FlastUpdated%3E%3D%5B2024-05-01T00%3A00%3A00Z%5D&orderBy=id%20asc&pageSize=2&page=2",
    ];
    let queries: Vec<&str> = run.requests.iter().map(|r| raw_query(&r.url)).collect();
    assert_eq!(queries, expected);
}

#[test]
fn a_stopped_listing_resumes_from_its_page_token_with_the_same_conditions() {
    let rows: Vec<Value> =
        (1..=5).map(|id| company_row(id, &format!("2024-05-0{id}T00:00:00Z"))).collect();
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let start_checkpoint = Checkpoint {
        cursor: Some("2024-04-01T00:00:00Z".into()),
        tie_id: Some("7".into()),
        page_token: None,
    };

    // Read one page, then stop: the host keeps the page's checkpoint.
    let mut machine =
        start(&plugin, list("companies", ListMode::Incremental, Some(start_checkpoint.clone())));
    let first = sent(machine.step(StepInput::Start));
    let mut server = listing_server(rows.clone());
    let step = respond(&mut *machine, server(&first));
    let stored = match step {
        Step::Page { records, checkpoint, last } => {
            assert_eq!(records.len(), 2);
            assert!(!last);
            checkpoint
        }
        other => panic!("expected a page, got {other:?}"),
    };
    // The cursor stays where the listing started: later pages may hold older rows.
    assert_eq!(stored.cursor, start_checkpoint.cursor);
    assert_eq!(stored.tie_id, start_checkpoint.tie_id);
    assert_eq!(stored.page_token.as_deref(), Some("2"));

    let mut resumed = start(&plugin, list("companies", ListMode::Incremental, Some(stored)));
    let run = drive(&mut *resumed, listing_server(rows));
    assert_eq!(pages_of(&run), vec![Some("2".into()), Some("3".into())]);
    assert_eq!(param(&run.requests[0].url, "conditions"), param(&first.url, "conditions"));
    assert_eq!(run.ids(), vec!["3", "4", "5"]);
    let end = run.last_checkpoint();
    assert_eq!(end.cursor.as_deref(), Some("2024-05-05T00:00:00Z"));
    assert_eq!(end.tie_id.as_deref(), Some("5"));
    assert_eq!(end.page_token, None);
}

#[test]
fn a_bad_page_token_is_refused() {
    let plugin = open(settings());
    for token in ["0", "two", "-1", ""] {
        let checkpoint = Checkpoint { cursor: None, tie_id: None, page_token: Some(token.into()) };
        let error = start_error(&plugin, list("companies", ListMode::Full, Some(checkpoint)));
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{token}");
    }
}

#[test]
fn rows_that_shift_onto_the_next_page_are_given_once() {
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let mut answers = vec![
        json!([company_row(1, "2024-05-01T00:00:00Z"), company_row(2, "2024-05-01T00:00:00Z")]),
        json!([company_row(2, "2024-05-01T00:00:00Z"), company_row(3, "2024-05-01T00:00:00Z")]),
        json!([company_row(4, "2024-05-01T00:00:00Z")]),
    ]
    .into_iter();
    let run = drive(&mut *machine, |_| ok(answers.next().unwrap_or_default().to_string()));
    assert_eq!(run.ids(), vec!["1", "2", "3", "4"]);
}

#[test]
fn a_server_that_ignores_page_is_stopped_as_incomplete() {
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let same =
        json!([company_row(1, "2024-05-01T00:00:00Z"), company_row(2, "2024-05-01T00:00:00Z")]);
    let run = drive(&mut *machine, |_| ok(same.to_string()));
    let error = failed(run.end.clone());
    assert_eq!(error.kind, ErrorKind::Incomplete);
    assert!(!error.retryable);
    assert!(run.pages.iter().all(|(_, _, last)| !last));
    assert_eq!(run.requests.len(), 4);
}

fn link_page(rows: usize, link: &str) -> HttpResponse {
    let body = serde_json::to_string(&company_rows(1..=rows as u64)).unwrap_or_default();
    with_header(ok(body), "Link", link)
}

#[test]
fn a_link_to_another_host_is_refused_and_no_page_is_given() {
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let link = r#"<https://evil.example.com/v4_6_release/apis/3.0/company/companies?pageSize=2&page=2>; rel="next", <https://evil.example.com/v4_6_release/apis/3.0/company/companies?pageSize=2&page=9>; rel="last""#;
    let error = failed(respond(&mut *machine, link_page(2, link)));
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(!error.retryable);
    assert!(error.message.contains("evil.example.com"), "{}", error.message);
    assert!(error.message.contains("another host"), "{}", error.message);

    // The machine stays failed.
    let again = failed(machine.step(StepInput::Continue));
    assert_eq!(again, error);
}

#[test]
fn a_link_on_another_port_is_another_host() {
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let link = r#"<https://api-na.myconnectwise.net:8443/v4_6_release/apis/3.0/company/companies?page=2>; rel="next""#;
    let error = failed(respond(&mut *machine, link_page(2, link)));
    assert!(error.message.contains("another host"), "{}", error.message);
}

#[test]
fn the_next_page_comes_from_the_link_and_no_next_link_ends_the_listing() {
    let plugin = open(settings_with(json!({ "page_size": 2 })));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let first = sent(machine.step(StepInput::Start));
    assert_eq!(param(&first.url, "page").as_deref(), Some("1"));

    let link = r#"<https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=2&page=2>; rel="next", <https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=2&page=2>; rel="last""#;
    match respond(&mut *machine, link_page(2, link)) {
        Step::Page { checkpoint, last, .. } => {
            assert!(!last);
            assert_eq!(checkpoint.page_token.as_deref(), Some("2"));
        }
        other => panic!("expected a page, got {other:?}"),
    }
    let second = sent(machine.step(StepInput::Continue));
    assert_eq!(param(&second.url, "page").as_deref(), Some("2"));
    assert_eq!(raw_query(&second.url), "orderBy=id%20asc&pageSize=2&page=2");

    // A full page whose Link has no rel="next" is the last one.
    let body = serde_json::to_string(&vec![
        company_row(3, "2024-05-01T00:00:00Z"),
        company_row(4, "2024-05-01T00:00:00Z"),
    ])
    .unwrap_or_default();
    let link = r#"<https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=2&page=1>; rel="first""#;
    match respond(&mut *machine, with_header(ok(body), "Link", link)) {
        Step::Page { last, checkpoint, .. } => {
            assert!(last);
            assert_eq!(checkpoint.page_token, None);
        }
        other => panic!("expected the last page, got {other:?}"),
    }
    assert_eq!(machine.step(StepInput::Continue), Step::Done { result: OpResult::Listed });
}

#[test]
fn billing_lines_are_listed_under_their_agreement() {
    let plugin = open(settings());
    let mut machine = start(&plugin, lines_of("5001"));
    let run = drive(&mut *machine, |request: &HttpRequest| {
        assert_eq!(
            request.url,
            format!("{API}finance/agreements/5001/additions?orderBy=id%20asc&pageSize=1000&page=1")
        );
        assert_eq!(request.endpoint, "finance/agreements/additions");
        ok(format!("[{}]", fixture("cw-addition.json")))
    });
    assert_eq!(run.ids(), vec!["7001"]);
}

#[test]
fn listing_arguments_are_checked_before_any_request() {
    let plugin = open(settings());
    let missing_parent = list("billing_lines", ListMode::Full, None);
    let error = start_error(&plugin, missing_parent);
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert_eq!(error.field.as_deref(), Some("parent_id"));

    for parent in ["abc", "12a", "-5", "1.5", ""] {
        let operation = Operation::List {
            stream: "billing_lines".into(),
            mode: ListMode::Full,
            checkpoint: None,
            parent_id: Some(parent.into()),
            lookback_seconds: 0,
        };
        let error = start_error(&plugin, operation);
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{parent}");
    }

    let error = start_error(&plugin, list("tickets", ListMode::Full, None));
    assert_eq!(error.kind, ErrorKind::Unsupported);
}

#[test]
fn each_stream_lists_its_resource() {
    let plugin = open(settings());
    for (stream, path) in [
        ("companies", "company/companies"),
        ("products", "procurement/catalog"),
        ("agreements", "finance/agreements"),
    ] {
        let mut machine = start(&plugin, list(stream, ListMode::Full, None));
        let request = sent(machine.step(StepInput::Start));
        assert_eq!(request.url, format!("{API}{path}?orderBy=id%20asc&pageSize=1000&page=1"));
    }
}

#[test]
fn c12_companies_listings_never_filter_out_deleted_companies() {
    let plugin = open(settings());
    let checkpoint =
        Checkpoint { cursor: Some("2024-04-01T00:00:00Z".into()), tie_id: None, page_token: None };
    let mut deleted = company_row(251, "2024-04-01T00:00:00Z");
    deleted["deletedFlag"] = json!(true);
    for mode in [ListMode::Full, ListMode::Incremental] {
        let mut machine = start(&plugin, list("companies", mode, Some(checkpoint.clone())));
        let run = drive(&mut *machine, |request: &HttpRequest| {
            assert!(!request.url.to_ascii_lowercase().contains("deletedflag"), "{}", request.url);
            ok(json!([company_row(250, "2024-04-01T00:00:00Z"), deleted]).to_string())
        });
        match run.records().last() {
            Some(tally_plugin_sdk::Record::Company(company)) => {
                assert_eq!(company.id, "251");
                assert!(company.deleted);
                assert!(company.active, "a merged company keeps its Active status");
            }
            other => panic!("expected company 251, got {other:?}"),
        }
    }
}

#[test]
fn odd_link_headers_never_panic_and_relative_links_stay_on_the_site() {
    // (Link header on a full first page, the next page or `None` for a refusal, last page)
    let cases = [
        ("<", Some(2), false),
        (">", Some(2), false),
        ("<>", Some(2), false),
        ("<a>; rel", Some(2), false),
        ("<https://api-na.myconnectwise.net/x?page=2>;rel=next", Some(2), false),
        (
            r#"</v4_6_release/apis/3.0/company/companies?pageSize=2&page=2>; rel="next""#,
            Some(2),
            false,
        ),
        (r#"<?page=1>; rel="prev first", <?page=4>; rel="last next""#, Some(4), false),
        ("<ünïcode>; rel=\"next\"", Some(2), false),
        (r#"<https://api-na.myconnectwise.net/x?page=1>; rel="first""#, None, true),
        (r#"<https://api-na.myconnectwise.net/x?page=1>; rel="next""#, None, false),
        (r#"<https://api-na.myconnectwise.net/x?page=ü>; rel="next""#, None, false),
    ];
    for (link, next, last) in cases {
        let plugin = open(settings_with(json!({ "page_size": 2 })));
        let mut machine = start(&plugin, list("companies", ListMode::Full, None));
        let _ = sent(machine.step(StepInput::Start));
        let step = respond(&mut *machine, link_page(2, link));
        match step {
            Step::Page { checkpoint, last: true, .. } => {
                assert!(last, "{link}: ended the listing");
                assert_eq!(checkpoint.page_token, None);
            }
            Step::Page { checkpoint, last: false, .. } => {
                assert_eq!(checkpoint.page_token, next.map(|n| n.to_string()), "{link}");
            }
            Step::Failed { error } => {
                assert!(next.is_none() && !last, "{link}: {error}");
                assert_eq!(error.kind, ErrorKind::MalformedResponse, "{link}");
                assert!(!error.retryable, "{link}");
            }
            other => panic!("{link}: unexpected {other:?}"),
        }
    }
}
