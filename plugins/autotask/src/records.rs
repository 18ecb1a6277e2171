//! Maps Autotask rows (Companies, Services, Contracts, ContractServices, ContractServiceUnits)
//! to the common record model, and decides which unit row is in force on a date. Units and
//! prices are read from their JSON text into decimals (case C15); timestamps go out exactly as
//! received; a unit row covers the calendar dates of its `startDate` through its `endDate`, as
//! written. This module must never read a number through `f64`, and never panic on a row: a
//! row it cannot read is an error naming the row.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tally_plugin_sdk::{
    Agreement, BillingLine, Company, PluginError, Product, Quantity, RawJson, Record,
};
use time::Date;
use time::macros::format_description;

use crate::errors;

/// Autotask's `companyType` of a customer.
pub const COMPANY_TYPE_CUSTOMER: i64 = 1;
/// Autotask's `contractType` of a recurring service contract.
pub const CONTRACT_TYPE_RECURRING_SERVICE: i64 = 7;
/// Autotask's contract `status` of an active contract.
const CONTRACT_STATUS_ACTIVE: i64 = 1;

/// One listed row: the record, and what paging needs from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    /// The row's cursor field exactly as received.
    pub updated_at: Option<String>,
    pub record: Record,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompanyRow {
    id: u64,
    company_name: Option<String>,
    company_number: Option<Value>,
    company_type: Option<i64>,
    is_active: Option<bool>,
    last_activity_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceRow<'a> {
    id: u64,
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    last_modified_date: Option<String>,
    #[serde(borrow)]
    unit_price: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContractRow {
    id: u64,
    #[serde(rename = "companyID")]
    company_id: Option<u64>,
    contract_name: Option<String>,
    contract_type: Option<i64>,
    status: Option<i64>,
}

/// A contract service: which service is on which contract.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractService {
    pub id: u64,
    pub contract_id: u64,
    pub service_id: u64,
    pub unit_price: Option<Decimal>,
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContractServiceRow<'a> {
    id: u64,
    #[serde(rename = "contractID")]
    contract_id: Option<u64>,
    #[serde(rename = "serviceID")]
    service_id: Option<u64>,
    #[serde(borrow)]
    unit_price: Option<&'a RawValue>,
    #[serde(borrow)]
    adjusted_price: Option<&'a RawValue>,
}

/// One period's units of a contract service.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitRow {
    pub id: u64,
    pub contract_service_id: u64,
    pub start: Date,
    pub end: Date,
    pub units: Decimal,
    pub price: Option<Decimal>,
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnitRowWire<'a> {
    id: u64,
    #[serde(rename = "contractServiceID")]
    contract_service_id: Option<u64>,
    start_date: Option<String>,
    end_date: Option<String>,
    #[serde(borrow)]
    units: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
}

fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue, endpoint: &str) -> Result<T, PluginError> {
    serde_json::from_str(raw.get()).map_err(|error| errors::bad_row(endpoint, error))
}

fn raw_json(raw: &RawValue) -> Option<RawJson> {
    Some(RawJson::from_raw(raw))
}

fn tree(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// A company; `billable` only for customers (not prospects, leads, vendors or partners).
pub fn company(raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    let row: CompanyRow = parse(raw, endpoint)?;
    let identifier = row.company_number.as_ref().and_then(text).filter(|n| !n.is_empty());
    let record = Record::Company(Company {
        id: row.id.to_string(),
        name: row.company_name.unwrap_or_default(),
        identifier,
        active: row.is_active.unwrap_or(false),
        deleted: false,
        billable: row.company_type == Some(COMPANY_TYPE_CUSTOMER),
        updated_at: row.last_activity_date.clone(),
        raw: raw_json(raw),
        raw_at: None,
    });
    Ok(Row { id: row.id, updated_at: row.last_activity_date, record })
}

/// A service: Autotask's product. Services have no code of their own, so the name is both
/// the identifier a mapping can use and, without a description, the description.
pub fn product(raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    let row: ServiceRow<'_> = parse(raw, endpoint)?;
    let name = row.name.unwrap_or_default();
    let description = row.description.filter(|d| !d.trim().is_empty()).unwrap_or(name.clone());
    let unit_price = decimal(row.unit_price, "unitPrice", row.id, endpoint)?.map(Quantity);
    let record = Record::Product(Product {
        id: row.id.to_string(),
        identifier: (!name.is_empty()).then_some(name),
        description,
        active: row.is_active.unwrap_or(false),
        unit_price,
        updated_at: row.last_modified_date.clone(),
        raw: raw_json(raw),
        raw_at: None,
    });
    Ok(Row { id: row.id, updated_at: row.last_modified_date, record })
}

/// A contract: active when its status is Active, recurring when it is a recurring service
/// contract.
pub fn agreement(raw: &RawValue, endpoint: &str) -> Result<Row, PluginError> {
    let row: ContractRow = parse(raw, endpoint)?;
    let record = Record::Agreement(Agreement {
        id: row.id.to_string(),
        company_id: row.company_id.map(|id| id.to_string()).unwrap_or_default(),
        name: row.contract_name.unwrap_or_default(),
        active: row.status == Some(CONTRACT_STATUS_ACTIVE),
        recurring: row.contract_type == Some(CONTRACT_TYPE_RECURRING_SERVICE),
        updated_at: None,
        raw: raw_json(raw),
        raw_at: None,
    });
    Ok(Row { id: row.id, updated_at: None, record })
}

/// The `companyID` of a contract row.
pub fn contract_company(raw: &RawValue, endpoint: &str) -> Result<(u64, Option<u64>), PluginError> {
    let row: ContractRow = parse(raw, endpoint)?;
    Ok((row.id, row.company_id))
}

pub fn contract_service(raw: &RawValue, endpoint: &str) -> Result<ContractService, PluginError> {
    let row: ContractServiceRow<'_> = parse(raw, endpoint)?;
    let (Some(contract_id), Some(service_id)) = (row.contract_id, row.service_id) else {
        return Err(errors::bad_row(
            endpoint,
            format!("contract service {} names no contractID or serviceID", row.id),
        ));
    };
    let adjusted = decimal(row.adjusted_price, "adjustedPrice", row.id, endpoint)?;
    let unit_price = match adjusted {
        Some(price) => Some(price),
        None => decimal(row.unit_price, "unitPrice", row.id, endpoint)?,
    };
    Ok(ContractService { id: row.id, contract_id, service_id, unit_price, raw: tree(raw) })
}

pub fn unit_row(raw: &RawValue, endpoint: &str) -> Result<UnitRow, PluginError> {
    let row: UnitRowWire<'_> = parse(raw, endpoint)?;
    let bad = |detail: &str| {
        errors::bad_row(endpoint, format!("contract service unit row {}: {detail}", row.id))
    };
    let contract_service_id = row.contract_service_id.ok_or_else(|| bad("no contractServiceID"))?;
    let start = row.start_date.as_deref().and_then(date_of).ok_or_else(|| bad("no startDate"))?;
    let end = row.end_date.as_deref().and_then(date_of).ok_or_else(|| bad("no endDate"))?;
    let units = decimal(row.units, "units", row.id, endpoint)?.ok_or_else(|| bad("no units"))?;
    let price = decimal(row.price, "price", row.id, endpoint)?;
    Ok(UnitRow { id: row.id, contract_service_id, start, end, units, price, raw: tree(raw) })
}

/// The unit row in force on `on`: the one whose dates cover it; if rows overlap, the one that
/// started last (then the highest id).
pub fn in_force(rows: &[UnitRow], contract_service_id: u64, on: Date) -> Option<&UnitRow> {
    rows.iter()
        .filter(|row| row.contract_service_id == contract_service_id)
        .filter(|row| row.start <= on && on <= row.end)
        .max_by_key(|row| (row.start, row.id))
}

/// A billing line: a contract service with the units of the row in force, 0 when no row
/// covers the date.
pub fn billing_line(
    service: &ContractService,
    unit: Option<&UnitRow>,
    company_id: Option<u64>,
) -> BillingLine {
    let raw = serde_json::json!({ "contractService": service.raw, "unit": unit.map(|u| &u.raw) });
    BillingLine {
        id: service.id.to_string(),
        agreement_id: service.contract_id.to_string(),
        company_id: company_id.map(|id| id.to_string()).unwrap_or_default(),
        product_id: service.service_id.to_string(),
        quantity: Quantity(unit.map(|u| u.units).unwrap_or(Decimal::ZERO)),
        included_quantity: None,
        unit_price: service.unit_price.or(unit.and_then(|u| u.price)).map(Quantity),
        effective_date: unit.map(|u| format_date(u.start)),
        cancelled_date: None,
        updated_at: None,
        raw: Some(RawJson::from_value(&raw)),
        raw_at: None,
    }
}

/// Reads every row of a look-up with `read`.
pub fn read_all<T>(
    items: &[Box<RawValue>],
    endpoint: &str,
    read: impl Fn(&RawValue, &str) -> Result<T, PluginError>,
) -> Result<Vec<T>, PluginError> {
    items.iter().map(|raw| read(raw, endpoint)).collect()
}

/// A decimal field, from its JSON text (a number or a numeric string); `null` is `None`.
fn decimal(
    raw: Option<&RawValue>,
    field: &str,
    id: u64,
    endpoint: &str,
) -> Result<Option<Decimal>, PluginError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    tally_plugin_sdk::decimal::from_json_text(text).map_err(|()| {
        let text = text.trim_matches('"');
        errors::bad_row(endpoint, format!("row {id}: {field} `{text}` is not a number"))
    })
}

/// A text field that Autotask may write as a string or a number.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The calendar date an Autotask date-time is written on (`2024-05-01T00:00:00Z` → 2024-05-01).
pub fn date_of(text: &str) -> Option<Date> {
    let day = text.trim().get(..10)?;
    Date::parse(day, format_description!("[year]-[month]-[day]")).ok()
}

/// `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

/// Reads an operation's `YYYY-MM-DD` date.
pub fn parse_date(field: &str, text: &str) -> Result<Date, PluginError> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).map_err(|_| {
        errors::invalid(field, format!("{field} `{text}` is not a date written YYYY-MM-DD"))
    })
}

/// A whole number of units from an operation's quantity (case C15: never truncated).
pub fn whole_units(quantity: Decimal) -> Result<i64, PluginError> {
    let normalized = quantity.normalize();
    if !normalized.fract().is_zero() {
        return Err(errors::invalid(
            "quantity",
            format!(
                "Autotask units are whole numbers and {quantity} is not one; round it by the \
                 product's rule before writing it"
            ),
        ));
    }
    if normalized.is_sign_negative() && !normalized.is_zero() {
        return Err(errors::invalid("quantity", format!("units cannot be negative ({quantity})")));
    }
    i64::from_str(&normalized.trunc().to_string())
        .map_err(|_| errors::invalid("quantity", format!("{quantity} units is out of range")))
}
