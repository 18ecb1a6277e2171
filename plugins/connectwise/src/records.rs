//! Maps ConnectWise rows (companies, catalog items, agreements, agreement additions) to the
//! common record model. Numbers that are quantities or prices are read from their JSON text
//! into decimals, so `1.75` and `0.30000000000000004` stay exactly as written (case C15);
//! timestamps go out exactly as received; dates become the UTC calendar date of the
//! timestamp, `YYYY-MM-DD` (case C32: the host decides what is in force). This module must
//! never read a number through `f64`, never decide what is in force today, and never panic on
//! a row: a row it cannot read is an error naming the row.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tally_plugin_sdk::{
    Agreement, BillingLine, Company, PluginError, Product, Quantity, RawJson, Record, Span,
};
use time::macros::format_description;
use time::{Date, UtcOffset};

use crate::conditions::parse_instant;
use crate::errors;
use crate::settings::Settings;
use crate::streams::Stream;

/// One listed row: the record, and what paging needs from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    /// `_info.lastUpdated` exactly as received.
    pub updated_at: Option<String>,
    pub record: Record,
}

/// What a row's mapping needs besides the row.
pub struct RowContext<'a> {
    pub settings: &'a Settings,
    /// The request the row answers, for messages (`GET company/companies`).
    pub endpoint: &'a str,
    /// For billing lines: the agreement they were listed under.
    pub agreement_id: Option<u64>,
    /// For billing lines: the company to use when the addition does not name one.
    pub company_id: Option<&'a str>,
    /// The response body the rows were read from: a record then names its row's place in it
    /// (`raw_at`) instead of carrying a copy.
    pub body: Option<&'a str>,
}

/// Reads one row of `stream`'s listing.
pub fn read_row(
    stream: Stream,
    raw: &RawValue,
    context: &RowContext<'_>,
) -> Result<Row, PluginError> {
    match stream {
        Stream::Companies => company(raw, context),
        Stream::Products => product(raw, context),
        Stream::Agreements => agreement(raw, context),
        Stream::BillingLines => {
            let Some(agreement_id) = context.agreement_id else {
                return Err(errors::internal("billing lines were read without their agreement"));
            };
            let mut line = billing_line(raw, agreement_id, context.company_id, context.endpoint)?;
            if let Record::BillingLine(record) = &mut line.record {
                (record.raw, record.raw_at) = source(raw, context.body);
            }
            Ok(line)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Info {
    #[serde(rename = "lastUpdated")]
    last_updated: Option<String>,
}

/// A `{id, name, identifier}` reference to another record.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    id: Option<u64>,
    name: Option<String>,
    inactive_flag: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwCompany {
    id: u64,
    name: Option<String>,
    identifier: Option<String>,
    status: Option<Reference>,
    types: Option<Vec<Reference>>,
    #[serde(rename = "type")]
    single_type: Option<Reference>,
    lead_flag: Option<bool>,
    deleted_flag: Option<bool>,
    #[serde(rename = "_info")]
    info: Option<Info>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwProduct {
    id: u64,
    identifier: Option<String>,
    description: Option<String>,
    inactive_flag: Option<bool>,
    price: Option<Box<RawValue>>,
    #[serde(rename = "_info")]
    info: Option<Info>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAgreement {
    id: u64,
    name: Option<String>,
    company: Option<Reference>,
    agreement_status: Option<String>,
    cancelled_flag: Option<bool>,
    billing_cycle: Option<Reference>,
    #[serde(rename = "_info")]
    info: Option<Info>,
}

/// An agreement addition, borrowing from its row: a large MSP has tens of thousands, and
/// each is read on every full sync.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAddition<'a> {
    id: u64,
    product: Option<IdOf>,
    company: Option<IdOf>,
    agreement: Option<AgreementOf>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    less_included: Option<&'a RawValue>,
    #[serde(borrow)]
    unit_price: Option<&'a RawValue>,
    #[serde(borrow)]
    effective_date: Option<Text<'a>>,
    #[serde(borrow)]
    cancelled_date: Option<Text<'a>>,
    #[serde(rename = "_info")]
    info: Option<Info>,
}

/// A string borrowed from its row unless it holds escapes (serde borrows a `Cow` only as a
/// field of its own, not inside an `Option`).
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a reference, where nothing else of it is read.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a reference such as {\"id\": 310}")]
struct IdOf {
    id: Option<u64>,
}

/// An addition's `agreement` reference: only its company's id is read.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a reference such as {\"id\": 5001}")]
struct AgreementOf {
    company: Option<IdOf>,
}

fn company(raw: &RawValue, context: &RowContext<'_>) -> Result<Row, PluginError> {
    let row: CwCompany = typed(raw, context.endpoint)?;
    let updated_at = row.info.and_then(|info| info.last_updated);
    let status = row.status.unwrap_or_default();
    let status_name = status.name.as_deref().unwrap_or("");

    let inactive = status.inactive_flag == Some(true) || has_word(status_name, &["inactive"]);
    let prospect = row.lead_flag == Some(true)
        || row.types.iter().flatten().chain(row.single_type.as_ref()).any(|t| {
            has_word(t.name.as_deref().unwrap_or(""), &["prospect", "prospects", "lead", "leads"])
        })
        || has_word(status_name, &["prospect", "lead"])
        || squeezed(status_name) == "notapproved";

    let (copy, raw_at) = source(raw, context.body);
    let record = Record::Company(Company {
        id: row.id.to_string(),
        name: row.name.unwrap_or_default(),
        identifier: row.identifier,
        active: !inactive,
        deleted: row.deleted_flag == Some(true),
        billable: context.settings.include_prospects || !prospect,
        updated_at: updated_at.clone(),
        raw: copy,
        raw_at,
    });
    Ok(Row { id: row.id, updated_at, record })
}

fn product(raw: &RawValue, context: &RowContext<'_>) -> Result<Row, PluginError> {
    let row: CwProduct = typed(raw, context.endpoint)?;
    let updated_at = row.info.and_then(|info| info.last_updated);
    let unit_price = optional_decimal(row.price.as_deref(), row.id, "price", context.endpoint)?;

    let (copy, raw_at) = source(raw, context.body);
    let record = Record::Product(Product {
        id: row.id.to_string(),
        identifier: row.identifier,
        description: row.description.unwrap_or_default(),
        active: row.inactive_flag != Some(true),
        unit_price,
        updated_at: updated_at.clone(),
        raw: copy,
        raw_at,
    });
    Ok(Row { id: row.id, updated_at, record })
}

fn agreement(raw: &RawValue, context: &RowContext<'_>) -> Result<Row, PluginError> {
    let row: CwAgreement = typed(raw, context.endpoint)?;
    let updated_at = row.info.and_then(|info| info.last_updated);
    let Some(company_id) = row.company.and_then(|company| company.id) else {
        return Err(errors::bad_row(
            context.endpoint,
            format!("agreement {} names no company id", row.id),
        ));
    };

    // An agreement without `agreementStatus` (older ConnectWise versions) is judged by its
    // cancelled flag alone.
    let status_active =
        row.agreement_status.as_deref().is_none_or(|status| status.eq_ignore_ascii_case("active"));
    let has_cycle =
        row.billing_cycle.is_some_and(|cycle| cycle.id.is_some() || cycle.name.is_some());

    let (copy, raw_at) = source(raw, context.body);
    let record = Record::Agreement(Agreement {
        id: row.id.to_string(),
        company_id: company_id.to_string(),
        name: row.name.unwrap_or_default(),
        active: status_active && row.cancelled_flag != Some(true),
        recurring: has_cycle || context.settings.include_non_recurring,
        updated_at: updated_at.clone(),
        raw: copy,
        raw_at,
    });
    Ok(Row { id: row.id, updated_at, record })
}

/// A record's source JSON: the place of its row in `body` when it was read from there, else a
/// copy of the row.
fn source(raw: &RawValue, body: Option<&str>) -> (Option<RawJson>, Option<Span>) {
    match body.and_then(|body| Span::of(body, raw.get())) {
        Some(span) => (None, Some(span)),
        None => (Some(RawJson::from_raw(raw)), None),
    }
}

/// Reads an agreement addition as a billing line of `agreement_id`.
///
/// The company comes from the addition's own `company` or `agreement.company` when present;
/// ConnectWise's additions usually carry neither, and then it is `company_id` when the caller
/// knows it (a line it just created), else the empty string: the host fills it from the
/// agreement's `company_id`.
pub fn billing_line(
    raw: &RawValue,
    agreement_id: u64,
    company_id: Option<&str>,
    endpoint: &str,
) -> Result<Row, PluginError> {
    let row: CwAddition = typed(raw, endpoint)?;
    let updated_at = row.info.and_then(|info| info.last_updated);
    let id = row.id;

    let Some(product_id) = row.product.and_then(|product| product.id) else {
        return Err(errors::bad_row(endpoint, format!("addition {id} names no product id")));
    };
    let Some(quantity) = optional_decimal(row.quantity, id, "quantity", endpoint)? else {
        return Err(errors::bad_row(endpoint, format!("addition {id} has no quantity")));
    };
    let included_quantity = optional_decimal(row.less_included, id, "lessIncluded", endpoint)?;
    let unit_price = optional_decimal(row.unit_price, id, "unitPrice", endpoint)?;
    let effective_date =
        utc_date(row.effective_date.as_ref().map(Text::as_str), id, "effectiveDate", endpoint)?;
    let cancelled_date =
        utc_date(row.cancelled_date.as_ref().map(Text::as_str), id, "cancelledDate", endpoint)?;
    let company = row
        .company
        .and_then(|company| company.id)
        .or_else(|| row.agreement.and_then(|a| a.company).and_then(|company| company.id))
        .map(|id| id.to_string())
        .or_else(|| company_id.map(str::to_string))
        .unwrap_or_default();

    let record = Record::BillingLine(BillingLine {
        id: id.to_string(),
        agreement_id: agreement_id.to_string(),
        company_id: company,
        product_id: product_id.to_string(),
        quantity,
        included_quantity,
        unit_price,
        effective_date,
        cancelled_date,
        updated_at: updated_at.clone(),
        raw: Some(RawJson::from_raw(raw)),
        raw_at: None,
    });
    Ok(Row { id, updated_at, record })
}

/// Reads a decimal from JSON text, exactly (see `tally_plugin_sdk::decimal`).
pub use tally_plugin_sdk::decimal::parse as parse_decimal;

fn optional_decimal(
    raw: Option<&RawValue>,
    id: u64,
    field: &str,
    endpoint: &str,
) -> Result<Option<Quantity>, PluginError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    tally_plugin_sdk::decimal::from_json_text(text).map(|value| value.map(Quantity)).map_err(|()| {
        errors::bad_row(endpoint, format!("row {id}: `{field}` is {text}, not a decimal number"))
    })
}

/// The UTC calendar date of an ISO-8601 timestamp (or of a bare `YYYY-MM-DD`).
fn utc_date(
    text: Option<&str>,
    id: u64,
    field: &str,
    endpoint: &str,
) -> Result<Option<String>, PluginError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let date_format = format_description!("[year]-[month]-[day]");
    let date = match parse_instant(text) {
        Some(at) => at.checked_to_offset(UtcOffset::UTC).map(|utc| utc.date()),
        None => Date::parse(text, date_format).ok(),
    };
    let written = date.and_then(|date| date.format(date_format).ok());
    written.map(Some).ok_or_else(|| {
        errors::bad_row(endpoint, format!("row {id}: `{field}` is `{text}`, not an ISO-8601 date"))
    })
}

fn typed<'a, T: Deserialize<'a>>(raw: &'a RawValue, endpoint: &str) -> Result<T, PluginError> {
    serde_json::from_str(raw.get()).map_err(|error| {
        let id = serde_json::from_str::<IdOnly>(raw.get()).ok().and_then(|row| row.id);
        let which = id.map_or_else(|| "a row".to_string(), |id| format!("row {id}"));
        errors::bad_row(endpoint, format!("{which}: {error}"))
    })
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<Value>,
}

/// Whether `text`, split into lowercase words, holds one of `words`.
fn has_word(text: &str, words: &[&str]) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|word| words.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

/// `text` in lowercase without spaces or punctuation: "Not-Approved" → "notapproved".
fn squeezed(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}
