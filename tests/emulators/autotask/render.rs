//! The JSON shapes of Autotask's REST answers, after `shared/samples/autotask-*.json`: each
//! entity as a flat camelCase object with `…ID` references, instants as
//! `2012-06-18T13:15:47.000Z`, period dates as midnight UTC, and the `{items, pageDetails}`
//! envelope of a query. Field projection (`IncludeFields`) happens here too. Nothing here reads
//! or changes state.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};
use time::{Date, OffsetDateTime, UtcOffset};

use super::model::{Company, Contract, ContractService, Service, UnitRow};

/// `2024-05-01T11:15:07.263Z`: Autotask writes milliseconds always.
pub fn format_instant(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// `2024-05-01T00:00:00Z`: a period bound or a contract date.
pub fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}T00:00:00Z", date.year(), u8::from(date.month()), date.day())
}

/// A price as a JSON number; Autotask's API writes them as doubles.
fn number(value: Decimal) -> Value {
    value.to_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
}

pub fn company(c: &Company) -> Value {
    json!({
        "id": c.id,
        "userDefinedFields": [],
        "address1": "",
        "address2": "",
        "city": c.city,
        "companyName": c.name,
        "companyNumber": c.number,
        "companyType": c.company_type,
        "createDate": format_instant(c.create_date),
        "isActive": c.is_active,
        "isClientPortalActive": false,
        "lastActivityDate": format_instant(c.last_activity),
        "ownerResourceID": 29682885,
        "phone": c.phone,
        "postalCode": "",
        "state": c.state,
        "taxID": "",
        "webAddress": c.web_address,
        "countryID": 237,
        "currencyID": 1,
        "createdByResourceID": 29682885
    })
}

pub fn service(s: &Service) -> Value {
    json!({
        "id": s.id,
        "billingCodeID": 29682801,
        "createDate": format_instant(s.create_date),
        "creatorResourceID": 29682885,
        "description": s.description,
        "invoiceDescription": s.description,
        "isActive": s.is_active,
        "lastModifiedDate": format_instant(s.last_modified),
        "markupRate": null,
        "name": s.name,
        "periodType": s.period_type,
        "serviceLevelAgreementID": null,
        "unitCost": number(s.unit_cost),
        "unitPrice": number(s.unit_price),
        "updateResourceID": 29682885,
        "vendorCompanyID": null
    })
}

pub fn contract(c: &Contract) -> Value {
    json!({
        "id": c.id,
        "userDefinedFields": "",
        "companyID": c.company_id,
        "billingPreference": 2,
        "contractCategory": c.category,
        "contractName": c.name,
        "contractNumber": c.number,
        "contractPeriodType": "m",
        "contractType": c.contract_type,
        "isDefaultContract": false,
        "endDate": format_date(c.end),
        "estimatedCost": 0.0,
        "estimatedHours": 0.0,
        "estimatedRevenue": 0.0,
        "setupFee": 0.0,
        "startDate": format_date(c.start),
        "status": c.status,
        "timeReportingRequiresStartAndStopTimes": 1,
        "serviceLevelAgreementID": 1,
        "purchaseOrderNumber": "",
        "internalCurrencySetupFee": 0.0,
        "contractExclusionSetID": null
    })
}

pub fn contract_service(s: &ContractService) -> Value {
    json!({
        "id": s.id,
        "contractID": s.contract_id,
        "serviceID": s.service_id,
        "unitPrice": number(s.unit_price),
        "adjustedPrice": s.adjusted_price.map(number),
        "unitCost": number(s.unit_cost),
        "internalCurrencyUnitPrice": number(s.unit_price),
        "internalCurrencyAdjustedPrice": s.adjusted_price.map(number),
        "invoiceDescription": s.invoice_description,
        "internalDescription": "",
        "quoteItemID": null
    })
}

pub fn unit_row(u: &UnitRow) -> Value {
    json!({
        "id": u.id,
        "approveAndPostDate": null,
        "contractID": u.contract_id,
        "contractServiceID": u.contract_service_id,
        "cost": number(u.cost),
        "endDate": format_date(u.end),
        "internalCurrencyPrice": number(u.price),
        "organizationalLevelAssociationID": null,
        "price": number(u.price),
        "serviceID": u.service_id,
        "startDate": format_date(u.start),
        "units": u.units,
        "vendorCompanyID": null
    })
}

/// Keeps only `fields` (compared ignoring case) and always `id`; all fields when empty.
pub fn project(row: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return row;
    }
    let Value::Object(map) = row else { return row };
    let kept: Map<String, Value> = map
        .into_iter()
        .filter(|(key, _)| key == "id" || fields.iter().any(|f| f.eq_ignore_ascii_case(key)))
        .collect();
    Value::Object(kept)
}

/// The `{items, pageDetails}` envelope of one query page.
pub fn page(items: Vec<Value>, max_records: usize, next: Option<String>) -> Value {
    json!({
        "items": items,
        "pageDetails": {
            "count": items.len(),
            "requestCount": max_records,
            "prevPageUrl": null,
            "nextPageUrl": next
        }
    })
}
