//! Rows to records: the ConnectWise samples mapped field by field, prospects and deleted
//! companies, recurring agreements, exact decimals (case C15) and UTC dates that let the host
//! decide which addition is in force (case C32). A row that cannot be read fails the page.

mod common;

use common::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_plugin_sdk::{
    Agreement, BillingLine, Company, ErrorKind, ListMode, Operation, Product, Quantity, Record,
    Span, Step, StepInput,
};

fn listed(settings: Value, stream: &str, rows: Value) -> Vec<Record> {
    listed_text(settings, stream, rows.to_string())
}

/// Lists a body given as text, so numbers reach the adapter exactly as written.
fn listed_text(settings: Value, stream: &str, body: String) -> Vec<Record> {
    let plugin = open(settings);
    let operation = Operation::List {
        stream: stream.into(),
        mode: ListMode::Full,
        checkpoint: None,
        parent_id: (stream == "billing_lines").then(|| "5001".to_string()),
        lookback_seconds: 0,
    };
    let mut machine = start(&plugin, operation);
    let run = drive(&mut *machine, |_| ok(body.clone()));
    if let Step::Failed { error } = &run.end {
        panic!("listing failed: {error}");
    }
    run.pages.into_iter().flat_map(|(records, _, _)| records).collect()
}

fn companies(settings: Value, rows: Value) -> Vec<Company> {
    listed(settings, "companies", rows)
        .into_iter()
        .map(|r| match r {
            Record::Company(c) => c,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn agreements(settings: Value, rows: Value) -> Vec<Agreement> {
    listed(settings, "agreements", rows)
        .into_iter()
        .map(|r| match r {
            Record::Agreement(a) => a,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn lines(rows: Value) -> Vec<BillingLine> {
    listed(settings(), "billing_lines", rows)
        .into_iter()
        .map(|r| match r {
            Record::BillingLine(l) => l,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// The source JSON a listed record names by place in the body it was read from.
fn placed(body: &str, span: Option<Span>) -> Value {
    let span = span.expect("a listed record names its row's place in the body");
    serde_json::from_str(span.text(body).expect("the place lies within the body")).unwrap()
}

fn decimal(text: &str) -> Quantity {
    match Decimal::from_str_exact(text) {
        Ok(value) => Quantity(value),
        Err(error) => panic!("{text}: {error}"),
    }
}

#[test]
fn the_company_sample_maps_to_a_company() {
    let sample = fixture_json("cw-company.json");
    let company = companies(settings(), json!([sample.clone()])).remove(0);
    assert_eq!(company.id, "2");
    assert_eq!(company.name, "TestCompany");
    assert_eq!(company.identifier.as_deref(), Some("YourCompany"));
    assert!(company.active);
    assert!(!company.deleted);
    assert!(company.billable, "a Partner company is billable");
    // Exactly as received, even the sample's odd spacing.
    assert_eq!(company.updated_at.as_deref(), Some("2015-12-24T22: 08: 22Z"));
    assert!(company.raw.is_none(), "the row is named by place, not copied");
    assert_eq!(placed(&json!([sample.clone()]).to_string(), company.raw_at), sample);
}

#[test]
fn a_timestamp_that_does_not_parse_passes_through_but_never_becomes_the_cursor() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(&mut *machine, |_| ok(format!("[{}]", fixture("cw-company.json"))));
    assert_eq!(run.ids(), vec!["2"]);
    assert_eq!(run.last_checkpoint().cursor, None);
}

#[test]
fn prospects_leads_and_unapproved_companies_are_not_billable_unless_included() {
    let mut prospect = company_row(1, "2024-05-01T00:00:00Z");
    prospect["types"] = json!([{"id": 4, "name": "Prospect"}]);
    let mut lead = company_row(2, "2024-05-01T00:00:00Z");
    lead["leadFlag"] = json!(true);
    let mut unapproved = company_row(3, "2024-05-01T00:00:00Z");
    unapproved["status"] = json!({"id": 7, "name": "Not Approved"});
    let customer = company_row(4, "2024-05-01T00:00:00Z");
    let rows = json!([prospect, lead, unapproved, customer]);

    let billable: Vec<bool> =
        companies(settings(), rows.clone()).iter().map(|c| c.billable).collect();
    assert_eq!(billable, vec![false, false, false, true]);

    let included = settings_with(json!({ "include_prospects": true }));
    let billable: Vec<bool> = companies(included, rows).iter().map(|c| c.billable).collect();
    assert_eq!(billable, vec![true, true, true, true]);
}

#[test]
fn inactive_and_deleted_companies_say_so() {
    let mut inactive = company_row(1, "2024-05-01T00:00:00Z");
    inactive["status"] = json!({"id": 2, "name": "Inactive"});
    let mut flagged = company_row(2, "2024-05-01T00:00:00Z");
    flagged["status"] = json!({"id": 9, "name": "Gone", "inactiveFlag": true});
    let mut deleted = company_row(3, "2024-05-01T00:00:00Z");
    deleted["deletedFlag"] = json!(true);

    let found = companies(settings(), json!([inactive, flagged, deleted]));
    let states: Vec<(bool, bool)> = found.iter().map(|c| (c.active, c.deleted)).collect();
    assert_eq!(states, vec![(false, false), (false, false), (true, true)]);
}

#[test]
fn the_agreement_sample_maps_to_a_non_recurring_active_agreement() {
    let sample = fixture_json("cw-agreement.json");
    let agreement = agreements(settings(), json!([sample.clone()])).remove(0);
    assert_eq!(agreement.id, "1");
    assert_eq!(agreement.company_id, "2");
    assert_eq!(agreement.name, "Gold Rate");
    assert!(agreement.active);
    assert!(!agreement.recurring, "the sample has no billing cycle");
    assert_eq!(placed(&json!([sample.clone()]).to_string(), agreement.raw_at), sample);

    let included = settings_with(json!({ "include_non_recurring": true }));
    assert!(agreements(included, json!([sample])).remove(0).recurring);
}

#[test]
fn agreements_are_active_only_when_active_and_not_cancelled() {
    let base = json!({
        "id": 10, "name": "Managed", "company": {"id": 250},
        "agreementStatus": "Active", "cancelledFlag": false,
        "billingCycle": {"id": 2, "name": "Monthly"},
        "_info": {"lastUpdated": "2024-05-01T00:00:00Z"}
    });
    let mut cancelled = base.clone();
    cancelled["id"] = json!(11);
    cancelled["cancelledFlag"] = json!(true);
    let mut expired = base.clone();
    expired["id"] = json!(12);
    expired["agreementStatus"] = json!("Expired");

    let found = agreements(settings(), json!([base, cancelled, expired]));
    let states: Vec<(bool, bool)> = found.iter().map(|a| (a.active, a.recurring)).collect();
    assert_eq!(states, vec![(true, true), (false, true), (false, true)]);
    assert_eq!(found[0].company_id, "250");
    assert_eq!(found[0].updated_at.as_deref(), Some("2024-05-01T00:00:00Z"));
}

#[test]
fn the_catalog_item_maps_to_a_product_with_an_exact_price() {
    let body = format!("[{}]", fixture("cw-catalog-item.json"));
    let product = match listed_text(settings(), "products", body).remove(0) {
        Record::Product(p) => p,
        other => panic!("{other:?}"),
    };
    let expected = Product {
        id: "310".into(),
        identifier: Some("SAFEDNS-SEAT".into()),
        description: "SafeDNS Pro seat".into(),
        active: true,
        unit_price: Some(decimal("3.10")),
        updated_at: Some("2024-05-01T11:15:07.263Z".into()),
        raw: None,
        raw_at: product.raw_at,
    };
    assert_eq!(product, expected);
    assert_eq!(product.unit_price.map(|p| p.0.to_string()).as_deref(), Some("3.10"));
}

#[test]
fn the_addition_sample_maps_to_a_billing_line_without_a_company() {
    let body = format!("[{}]", fixture("cw-addition.json"));
    let line = match listed_text(settings(), "billing_lines", body).remove(0) {
        Record::BillingLine(line) => line,
        other => panic!("{other:?}"),
    };
    assert_eq!(line.id, "7001");
    assert_eq!(line.agreement_id, "5001");
    // ConnectWise additions do not name the company: the host fills it from the agreement.
    assert_eq!(line.company_id, "");
    assert_eq!(line.product_id, "310");
    assert_eq!(line.quantity, decimal("42"));
    assert_eq!(line.included_quantity, Some(decimal("0")));
    assert_eq!(line.unit_price.map(|p| p.0.to_string()).as_deref(), Some("3.10"));
    assert_eq!(line.effective_date.as_deref(), Some("2024-04-01"));
    assert_eq!(line.cancelled_date, None);
    assert_eq!(line.updated_at.as_deref(), Some("2024-05-02T08:30:00.120Z"));
}

#[test]
fn an_addition_that_names_its_company_keeps_it() {
    let mut with_company = fixture_json("cw-addition.json");
    with_company["company"] = json!({"id": 250});
    let mut through_agreement = fixture_json("cw-addition.json");
    through_agreement["id"] = json!(7002);
    through_agreement["agreement"] = json!({"id": 5001, "company": {"id": 251}});
    let found = lines(json!([with_company, through_agreement]));
    assert_eq!(found[0].company_id, "250");
    assert_eq!(found[1].company_id, "251");
}

#[test]
fn c15_decimal_quantities_are_read_exactly_as_written() {
    // The body is written by hand so the numbers reach the adapter as this exact text.
    let body = r#"[
        {"id": 1, "product": {"id": 9}, "quantity": 1.75, "lessIncluded": 0.5, "unitPrice": 12.345678901234567890},
        {"id": 2, "product": {"id": 9}, "quantity": 0.30000000000000004, "unitPrice": 0.1},
        {"id": 3, "product": {"id": 9}, "quantity": 40, "unitPrice": 1E+1},
        {"id": 4, "product": {"id": 9}, "quantity": "2.50", "unitPrice": null}
    ]"#;
    let plugin = open(settings());
    let mut machine = start(&plugin, lines_of("5001"));
    let run = drive(&mut *machine, |_| ok(body));
    let found: Vec<(String, Option<String>, Option<String>)> = run
        .records()
        .into_iter()
        .map(|record| match record {
            Record::BillingLine(line) => (
                line.quantity.0.to_string(),
                line.included_quantity.map(|q| q.0.to_string()),
                line.unit_price.map(|q| q.0.to_string()),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("1.75".into(), Some("0.5".into()), Some("12.345678901234567890".into())),
            ("0.30000000000000004".into(), None, Some("0.1".into())),
            ("40".into(), None, Some("10".into())),
            ("2.50".into(), None, None),
        ]
    );
    assert_ne!(found[1].0, "0.3", "float noise is kept, never rounded away");
}

#[test]
fn c32_effective_and_cancelled_dates_are_utc_calendar_dates() {
    let rows = json!([
        {"id": 1, "product": {"id": 9, "identifier": "SAFEDNS-SEAT"}, "quantity": 40,
         "effectiveDate": "2024-01-01T00:00:00Z", "cancelledDate": "2024-03-31T00:00:00Z"},
        {"id": 2, "product": {"id": 9, "identifier": "SAFEDNS-SEAT"}, "quantity": 42,
         "effectiveDate": "2024-04-01T00:00:00Z", "cancelledDate": null},
        {"id": 3, "product": {"id": 9, "identifier": "SAFEDNS-SEAT"}, "quantity": 5,
         "effectiveDate": "2024-07-01T00:00:00Z", "cancelledDate": null},
        {"id": 4, "product": {"id": 9}, "quantity": 1,
         "effectiveDate": "2024-03-31T21:30:00-05:00", "cancelledDate": "2024-06-30"}
    ]);
    let found: Vec<(String, Option<String>, Option<String>)> =
        lines(rows).into_iter().map(|l| (l.id, l.effective_date, l.cancelled_date)).collect();
    assert_eq!(
        found,
        vec![
            ("1".into(), Some("2024-01-01".into()), Some("2024-03-31".into())),
            ("2".into(), Some("2024-04-01".into()), None),
            ("3".into(), Some("2024-07-01".into()), None),
            ("4".into(), Some("2024-04-01".into()), Some("2024-06-30".into())),
        ]
    );
}

#[test]
fn a_date_written_with_json_escapes_reads_as_its_text() {
    let body = r#"[{"id": 5, "product": {"id": 9}, "quantity": 1,
        "effectiveDate": "2024\u002d04\u002d01T00:00:00Z", "cancelledDate": "2024-06-30"}]"#;
    let line = match listed_text(settings(), "billing_lines", body.to_string()).remove(0) {
        Record::BillingLine(line) => line,
        other => panic!("{other:?}"),
    };
    assert_eq!(line.effective_date.as_deref(), Some("2024-04-01"));
    assert_eq!(line.cancelled_date.as_deref(), Some("2024-06-30"));
}

#[test]
fn a_row_that_cannot_be_read_fails_the_page_and_gives_no_records() {
    let bad_rows = [
        json!([{"id": 1, "product": {"id": 9}, "quantity": "lots"}]),
        json!([{"id": 1, "product": {"id": 9}}]),
        json!([{"id": 1, "quantity": 2}]),
        json!([{"id": "one", "product": {"id": 9}, "quantity": 2}]),
        json!([{"id": 1, "product": {"id": 9}, "quantity": 2, "effectiveDate": "soon"}]),
        json!(["not an object"]),
    ];
    // The failure `operation` ends in when its one page is `body`.
    let refused = |operation: Operation, body: String| {
        let plugin = open(settings());
        let mut machine = start(&plugin, operation);
        let _ = sent(machine.step(StepInput::Start));
        failed(respond(&mut *machine, ok(body)))
    };
    for rows in bad_rows {
        let error = refused(lines_of("5001"), rows.to_string());
        assert_eq!(error.kind, ErrorKind::MalformedResponse, "{rows}");
        assert!(!error.retryable, "{rows}: the data, not the transfer, is at fault");
    }

    let body = r#"[{"id": 5, "name": "No company"}]"#;
    let error = refused(list("agreements", ListMode::Full, None), body.to_string());
    assert!(error.message.contains("agreement 5"), "{}", error.message);

    let body = r#"[{"id": 7, "product": "SAFEDNS", "quantity": 2}]"#;
    let error = refused(lines_of("5001"), body.to_string());
    assert!(
        error.message.contains("row 7") && error.message.contains(r#"a reference such as {"id""#),
        "{}",
        error.message
    );
}
