//! Maps Halo rows to the common record model: clients to companies, items to products,
//! recurring invoices to agreements and their lines to billing lines. Quantities and prices
//! are read from their JSON text into decimals (`qty_order: 14.0` stays 14.0 exactly); ids are
//! whole numbers and may be negative (Halo numbers recurring invoices below zero);
//! timestamps go out exactly as received.
//!
//! Halo's lines have no dates of their own. An inactive line (`isinactive`) no longer bills:
//! it goes out with `cancelled_date` set to the UTC date of the invoice's `last_modified` (the
//! latest the line can have been switched off), so the host's in-force rule leaves it out.
//! A line without an item (a free-text line, `_itemid` 0 or absent) cannot be reconciled and
//! is not a billing line; it stays in the invoice, and every upsert sends it back.
//! This module must never read a number through `f64`, never decide what is in force today,
//! and never panic on a row: a row it cannot read is an error naming the row.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_plugin_sdk::{
    Agreement, BillingLine, Company, PluginError, Product, Quantity, RawJson, Record,
};
use time::Date;
use time::macros::format_description;

use crate::errors;
use crate::streams::Stream;

/// The cancelled date of an inactive line whose invoice carries no usable date: long past, so
/// the line is out of force on any day.
const LONG_AGO: &str = "1970-01-01";

/// One listed row: its id (for de-duplication) and the records it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub records: Vec<Record>,
}

/// Reads one row of `stream`'s listing.
pub fn read_row(stream: Stream, raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    match stream {
        Stream::Companies => company(raw, endpoint),
        Stream::Products => product(raw, endpoint),
        Stream::Agreements => {
            let invoice = Invoice::read(raw, endpoint)?;
            let mut records = vec![Record::Agreement(invoice.agreement(raw, endpoint)?)];
            for line in &invoice.lines {
                if let Some(line) = invoice.billing_line(line, endpoint)? {
                    records.push(Record::BillingLine(line));
                }
            }
            Ok(Row { id: invoice.id, records })
        }
    }
}

#[derive(Debug, Deserialize)]
struct HaloClient {
    #[serde(deserialize_with = "whole")]
    id: i64,
    name: Option<String>,
    inactive: Option<bool>,
    last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HaloItem {
    #[serde(deserialize_with = "whole")]
    id: i64,
    name: Option<String>,
    description: Option<String>,
    baseprice: Option<Box<RawValue>>,
    inactive: Option<bool>,
    last_modified: Option<String>,
}

fn company(raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    let row: HaloClient = typed(raw, endpoint)?;
    let record = Record::Company(Company {
        id: row.id.to_string(),
        name: row.name.unwrap_or_default(),
        identifier: None,
        active: row.inactive != Some(true),
        deleted: false,
        billable: true,
        updated_at: row.last_modified,
        raw: Some(RawJson::from_raw(raw)),
        raw_at: None,
    });
    Ok(Row { id: row.id, records: vec![record] })
}

fn product(raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    let row: HaloItem = typed(raw, endpoint)?;
    let unit_price = optional_decimal(row.baseprice.as_deref(), row.id, "baseprice", endpoint)?;
    let name = row.name.unwrap_or_default();
    let description = row.description.filter(|text| !text.trim().is_empty());
    let record = Record::Product(Product {
        id: row.id.to_string(),
        identifier: (!name.is_empty()).then(|| name.clone()),
        description: description.unwrap_or(name),
        active: row.inactive != Some(true),
        unit_price,
        updated_at: row.last_modified,
        raw: Some(RawJson::from_raw(raw)),
        raw_at: None,
    });
    Ok(Row { id: row.id, records: vec![record] })
}

/// A recurring invoice as read from Halo, its lines still as Halo wrote them.
pub struct Invoice {
    pub id: i64,
    pub client_id: i64,
    name: String,
    active: bool,
    recurring: bool,
    last_modified: Option<String>,
    /// The date an inactive line went out of force.
    cancelled_on: String,
    pub lines: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct HaloInvoice {
    #[serde(deserialize_with = "whole")]
    id: i64,
    #[serde(default, deserialize_with = "optional_whole")]
    client_id: Option<i64>,
    name: Option<String>,
    notes_1: Option<String>,
    disabled: Option<bool>,
    is_recurring_invoice: Option<bool>,
    last_modified: Option<String>,
    date_created: Option<String>,
    lines: Option<Vec<Box<RawValue>>>,
}

#[derive(Debug, Deserialize)]
struct HaloLine {
    #[serde(deserialize_with = "whole")]
    id: i64,
    #[serde(rename = "_itemid", default, deserialize_with = "optional_whole")]
    item_id: Option<i64>,
    qty_order: Option<Box<RawValue>>,
    unit_price: Option<Box<RawValue>>,
    isinactive: Option<bool>,
}

impl Invoice {
    /// Reads a recurring invoice; `endpoint` names the request it answers, for messages.
    pub fn read(raw: &RawValue, endpoint: &str) -> Result<Invoice, PluginError> {
        let row: HaloInvoice = typed(raw, endpoint)?;
        let Some(client_id) = row.client_id else {
            return Err(errors::bad_row(
                endpoint,
                format!("recurring invoice {} names no client_id", row.id),
            ));
        };
        let cancelled_on = [row.last_modified.as_deref(), row.date_created.as_deref()]
            .into_iter()
            .flatten()
            .find_map(date_of)
            .unwrap_or_else(|| LONG_AGO.to_string());
        // `name` is usually the client's name; the first note says what the invoice bills.
        let name = [row.notes_1, row.name]
            .into_iter()
            .flatten()
            .find(|text| !text.trim().is_empty())
            .unwrap_or_else(|| format!("Recurring invoice {}", row.id));
        Ok(Invoice {
            id: row.id,
            client_id,
            name,
            active: row.disabled != Some(true),
            recurring: row.is_recurring_invoice != Some(false),
            last_modified: row.last_modified,
            cancelled_on,
            lines: row.lines.unwrap_or_default(),
        })
    }

    /// The invoice as an agreement; its raw JSON leaves the lines out (they go with each line).
    pub fn agreement(&self, raw: &RawValue, endpoint: &str) -> Result<Agreement, PluginError> {
        let mut header: Map<String, Value> =
            serde_json::from_str(raw.get()).map_err(|error| errors::malformed(endpoint, error))?;
        header.remove("lines");
        Ok(Agreement {
            id: self.id.to_string(),
            company_id: self.client_id.to_string(),
            name: self.name.clone(),
            active: self.active,
            recurring: self.recurring,
            updated_at: self.last_modified.clone(),
            raw: Some(RawJson::from_value(&Value::Object(header))),
            raw_at: None,
        })
    }

    /// The id of one of this invoice's lines as Halo wrote it.
    pub fn line_id(&self, line: &RawValue, endpoint: &str) -> Result<i64, PluginError> {
        Ok(self.halo_line(line, endpoint)?.id)
    }

    fn halo_line(&self, line: &RawValue, endpoint: &str) -> Result<HaloLine, PluginError> {
        serde_json::from_str(line.get()).map_err(|error| {
            errors::bad_row(endpoint, format!("a line of recurring invoice {}: {error}", self.id))
        })
    }

    /// One of this invoice's lines as a billing line; `None` for a line without an item.
    pub fn billing_line(
        &self,
        line: &RawValue,
        endpoint: &str,
    ) -> Result<Option<BillingLine>, PluginError> {
        let row = self.halo_line(line, endpoint)?;
        let Some(item_id) = row.item_id.filter(|id| *id > 0) else { return Ok(None) };
        let Some(quantity) =
            optional_decimal(row.qty_order.as_deref(), row.id, "qty_order", endpoint)?
        else {
            return Err(errors::bad_row(
                endpoint,
                format!("line {} of recurring invoice {} has no qty_order", row.id, self.id),
            ));
        };
        let unit_price =
            optional_decimal(row.unit_price.as_deref(), row.id, "unit_price", endpoint)?;
        let cancelled_date = (row.isinactive == Some(true)).then(|| self.cancelled_on.clone());
        Ok(Some(BillingLine {
            id: row.id.to_string(),
            agreement_id: self.id.to_string(),
            company_id: self.client_id.to_string(),
            product_id: item_id.to_string(),
            quantity,
            included_quantity: None,
            unit_price,
            effective_date: None,
            cancelled_date,
            updated_at: self.last_modified.clone(),
            raw: Some(RawJson::from_raw(line)),
            raw_at: None,
        }))
    }
}

/// Reads a decimal from JSON text, exactly (see `tally_plugin_sdk::decimal`).
pub use tally_plugin_sdk::decimal::parse as parse_decimal;

fn optional_decimal(
    raw: Option<&RawValue>,
    id: i64,
    field: &str,
    endpoint: &str,
) -> Result<Option<Quantity>, PluginError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    tally_plugin_sdk::decimal::from_json_text(text).map(|value| value.map(Quantity)).map_err(|()| {
        errors::bad_row(endpoint, format!("row {id}: `{field}` is {text}, not a decimal number"))
    })
}

/// Reads an id: a JSON integer, or a float with nothing after the point (`95.0`), which some
/// Halo versions and proxies write. Ids always go back to Halo as integers.
fn whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number_to_id(&number).ok_or_else(|| {
        serde::de::Error::custom(format_args!("the id {number} is not a whole number"))
    })
}

fn optional_whole<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => number_to_id(&number).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format_args!("the id {number} is not a whole number"))
        }),
    }
}

/// Floats hold every whole number up to 2^53 exactly.
fn number_to_id(number: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    number.as_i64().or_else(|| {
        let float = number.as_f64()?;
        (float.fract() == 0.0 && float.abs() <= EXACT).then_some(float as i64)
    })
}

/// The `YYYY-MM-DD` a Halo timestamp (`2025-03-20T18:50:25.057`) starts with.
fn date_of(timestamp: &str) -> Option<String> {
    let format = format_description!("[year]-[month]-[day]");
    let day = timestamp.trim().get(..10)?;
    Date::parse(day, format).ok().and_then(|date| date.format(format).ok())
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
