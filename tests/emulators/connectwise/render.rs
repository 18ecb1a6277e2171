//! The JSON ConnectWise returns for each record, modelled on the real bodies in
//! `shared/samples/cw-*.json`: references as `{id, name, _info: {…_href}}`, decimals written the
//! way .NET writes them (`45.0`, `1.75`), instants in UTC with a `Z`, `_info.lastUpdated` on
//! every record, and joined references (an agreement's company, an addition's product) read from
//! the current records. Also the `fields=` projection.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Number, Value, json};
use time::OffsetDateTime;

use super::model::{Addition, Agreement, CatalogItem, Company, Reference};
use super::state::State;
use super::timestamps::{format_instant, today_midnight};

/// What rendering needs besides the record: the API base URL for `_href` links and the other
/// records for joins.
pub struct RenderCtx<'a> {
    /// For example `http://127.0.0.1:41234/v4_6_release/apis/3.0`.
    pub api_base: &'a str,
    pub state: &'a State,
}

/// A record the API can return.
pub trait ToJson {
    fn to_json(&self, ctx: &RenderCtx<'_>) -> Value;
}

impl ToJson for Company {
    fn to_json(&self, ctx: &RenderCtx<'_>) -> Value {
        company(self, ctx)
    }
}

impl ToJson for CatalogItem {
    fn to_json(&self, ctx: &RenderCtx<'_>) -> Value {
        catalog_item(self, ctx)
    }
}

impl ToJson for Agreement {
    fn to_json(&self, ctx: &RenderCtx<'_>) -> Value {
        agreement(self, ctx)
    }
}

impl ToJson for Addition {
    fn to_json(&self, ctx: &RenderCtx<'_>) -> Value {
        addition(self, ctx)
    }
}

/// A decimal as .NET's serializer writes one: never in exponent form, and with at least one
/// fractional digit (`45.0`, `1.75`).
pub fn decimal(value: Decimal) -> Value {
    let mut text = value.normalize().to_string();
    if !text.contains('.') {
        text.push_str(".0");
    }
    Number::from_str(&text).map_or(Value::Null, Value::Number)
}

pub fn instant(at: OffsetDateTime) -> Value {
    Value::String(format_instant(at))
}

fn opt_instant(at: Option<OffsetDateTime>) -> Value {
    at.map_or(Value::Null, instant)
}

fn reference(r: &Reference, href: String) -> Value {
    json!({ "id": r.id, "name": r.name, "_info": { "href": href } })
}

fn named_reference(r: &Reference, key: &str, href: String) -> Value {
    let mut info = Map::new();
    info.insert(format!("{key}_href"), Value::String(href));
    json!({ "id": r.id, "name": r.name, "_info": info })
}

fn company_reference(ctx: &RenderCtx<'_>, company_id: i64) -> Value {
    let company = ctx.state.company(company_id);
    json!({
        "id": company_id,
        "identifier": company.map(|c| c.identifier.as_str()),
        "name": company.map(|c| c.name.as_str()),
        "_info": { "company_href": format!("{}/company/companies/{company_id}", ctx.api_base) },
    })
}

/// A stable GUID-shaped value per company, like ConnectWise's `mobileGuid`.
fn mobile_guid(id: i64) -> String {
    let id = id.unsigned_abs();
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", id, id & 0xffff, id & 0xfff, id & 0xfff, id)
}

pub fn company(c: &Company, ctx: &RenderCtx<'_>) -> Value {
    let base = ctx.api_base;
    let id = c.id;
    let types: Vec<Value> = c
        .types
        .iter()
        .map(|t| named_reference(t, "type", format!("{base}/company/companies/types/{}", t.id)))
        .collect();
    json!({
        "id": id,
        "identifier": c.identifier,
        "name": c.name,
        "status": named_reference(
            &c.status,
            "status",
            format!("{base}/company/companies/statuses/{}", c.status.id),
        ),
        "types": types,
        "addressLine1": null,
        "addressLine2": null,
        "city": c.city,
        "state": c.state,
        "zip": null,
        "country": null,
        "phoneNumber": c.phone_number,
        "faxNumber": "",
        "website": c.website,
        "territoryId": 1,
        "marketId": null,
        "accountNumber": "",
        "defaultContact": null,
        "dateAcquired": instant(c.date_entered),
        "annualRevenue": decimal(Decimal::ZERO),
        "numberOfEmployees": null,
        "timeZone": { "id": 1, "name": "US Eastern", "_info": null },
        "leadSource": null,
        "leadFlag": c.lead_flag,
        "unsubscribeFlag": false,
        "calendarId": null,
        "vendorIdentifier": null,
        "taxIdentifier": null,
        "taxCode": {
            "id": 11,
            "name": "State",
            "_info": { "taxCode_href": format!("{base}/finance/taxCodes/11") },
        },
        "billingTerms": { "id": 2, "name": "Net 30 days", "_info": null },
        "invoiceTemplate": null,
        "pricingSchedule": null,
        "companyEntityType": null,
        "billToCompany": {
            "id": id,
            "identifier": c.identifier,
            "name": c.name,
            "_info": { "company_href": format!("{base}/company/companies/{id}") },
        },
        "billingSite": null,
        "billingContact": null,
        "invoiceDeliveryMethod": { "id": 1, "name": "Mail", "_info": null },
        "invoiceToEmailAddress": null,
        "invoiceCCEmailAddress": null,
        "deletedFlag": c.deleted_flag,
        "dateDeleted": opt_instant(c.date_deleted),
        "deletedBy": c.deleted_by,
        "mobileGuid": mobile_guid(id),
        "currency": null,
        "territoryManager": null,
        "_info": {
            "lastUpdated": instant(c.last_updated),
            "updatedBy": c.updated_by,
            "dateEntered": instant(c.date_entered),
            "enteredBy": "admin1",
            "contacts_href": format!("{base}/company/contacts?conditions=company/id={id}"),
            "agreements_href": format!("{base}/finance/agreements?conditions=company/id={id}"),
            "sites_href": format!("{base}/company/companies/{id}/sites"),
        },
    })
}

pub fn catalog_item(p: &CatalogItem, ctx: &RenderCtx<'_>) -> Value {
    let base = ctx.api_base;
    let monthly = p.recurring_flag.then(|| {
        named_reference(
            &Reference::cycle_monthly(),
            "billingCycle",
            format!("{base}/finance/billingCycles/2"),
        )
    });
    json!({
        "id": p.id,
        "identifier": p.identifier,
        "description": p.description,
        "inactiveFlag": p.inactive_flag,
        "subcategory": reference(
            &p.subcategory,
            format!("{base}/procurement/subcategories/{}", p.subcategory.id),
        ),
        "type": { "id": 2, "name": "Service", "_info": null },
        "productClass": p.product_class,
        "serializedFlag": false,
        "serializedCostFlag": false,
        "phaseProductFlag": false,
        "unitOfMeasure": named_reference(
            &p.unit_of_measure,
            "unitOfMeasure",
            format!("{base}/procurement/unitOfMeasures/{}", p.unit_of_measure.id),
        ),
        "minStockLevel": 0,
        "price": decimal(p.price),
        "cost": decimal(p.cost),
        "priceAttribute": "FixedFee",
        "taxableFlag": p.taxable_flag,
        "dropShipFlag": false,
        "specialOrderFlag": false,
        "customerDescription": p.customer_description,
        "manufacturer": null,
        "manufacturerPartNumber": p.identifier,
        "vendor": null,
        "vendorSku": null,
        "notes": null,
        "integrationXRef": null,
        "recurringFlag": p.recurring_flag,
        "recurringRevenue": decimal(if p.recurring_flag { p.price } else { Decimal::ZERO }),
        "recurringCost": decimal(if p.recurring_flag { p.cost } else { Decimal::ZERO }),
        "recurringOneTimeFlag": false,
        "recurringBillCycle": monthly,
        "recurringCycleType": "ProratedCycle",
        "calculatedPriceFlag": false,
        "calculatedCostFlag": false,
        "category": named_reference(
            &p.category,
            "category",
            format!("{base}/procurement/categories/{}", p.category.id),
        ),
        "_info": {
            "lastUpdated": instant(p.last_updated),
            "updatedBy": p.updated_by,
            "dateEntered": instant(p.date_entered),
            "enteredBy": "admin1",
        },
    })
}

pub fn agreement(a: &Agreement, ctx: &RenderCtx<'_>) -> Value {
    let base = ctx.api_base;
    let id = a.id;
    let cycle = a.billing_cycle.as_ref().map(|c| {
        named_reference(c, "billingCycle", format!("{base}/finance/billingCycles/{}", c.id))
    });
    json!({
        "id": id,
        "name": a.name,
        "type": named_reference(
            &a.agreement_type,
            "type",
            format!("{base}/finance/agreements/types/{}", a.agreement_type.id),
        ),
        "company": company_reference(ctx, a.company_id),
        "contact": null,
        "site": null,
        "customerPO": "",
        "location": { "id": 2, "name": "Main", "_info": null },
        "department": { "id": 10, "identifier": "Services", "name": "Services", "_info": null },
        "restrictLocationFlag": false,
        "restrictDepartmentFlag": false,
        "startDate": instant(a.start_date),
        "endDate": opt_instant(a.end_date),
        "noEndingDateFlag": a.no_ending_date_flag,
        "cancelledFlag": a.cancelled_flag,
        "dateCancelled": opt_instant(a.date_cancelled),
        "reasonCancelled": null,
        "workOrder": "",
        "internalNotes": "",
        "applicationUnits": "Amount",
        "applicationLimit": decimal(Decimal::ZERO),
        "applicationUnlimitedFlag": false,
        "oneTimeFlag": a.bill_one_time_flag,
        "coverAgreementTime": false,
        "coverAgreementProduct": false,
        "coverAgreementExpense": false,
        "coverSalesTax": false,
        "carryOverUnused": false,
        "allowOverruns": false,
        "expiredDays": 0,
        "limit": 0,
        "expireWhenZero": false,
        "chargeToFirm": false,
        "employeeCompRate": "Actual",
        "employeeCompNotExceed": "Billing",
        "compHourlyRate": decimal(Decimal::ZERO),
        "compLimitAmount": decimal(Decimal::ZERO),
        "billingCycle": cycle,
        "billOneTimeFlag": a.bill_one_time_flag,
        "billingTerms": { "id": 2, "name": "Net 30 days", "_info": null },
        "invoicingCycle": "ContractYear",
        "billAmount": decimal(a.bill_amount),
        "taxable": false,
        "prorateFirstBill": false,
        "billStartDate": instant(a.start_date),
        "restrictDownPayment": false,
        "invoiceDescription": "",
        "topComment": false,
        "bottomComment": false,
        "workRole": null,
        "workType": null,
        "projectType": null,
        "invoiceTemplate": null,
        "billTime": "Billable",
        "billExpenses": "Billable",
        "billProducts": "Billable",
        "billableTimeInvoice": false,
        "billableExpenseInvoice": false,
        "billableProductInvoice": false,
        "agreementStatus": a.agreement_status,
        "_info": {
            "lastUpdated": instant(a.last_updated),
            "updatedBy": a.updated_by,
            "dateEntered": instant(a.date_entered),
            "enteredBy": "admin1",
            "additions_href": format!("{base}/finance/agreements/{id}/additions"),
        },
    })
}

pub fn addition(a: &Addition, ctx: &RenderCtx<'_>) -> Value {
    let base = ctx.api_base;
    let product = ctx.state.catalog_item(a.product_id);
    let billed = a.quantity - a.less_included;
    let ext_price = billed * a.unit_price;
    let ext_cost = billed * a.unit_cost;
    json!({
        "id": a.id,
        "product": {
            "id": a.product_id,
            "identifier": product.map(|p| p.identifier.as_str()),
            "description": product.map(|p| p.description.as_str()),
            "_info": { "product_href": format!("{base}/procurement/catalog/{}", a.product_id) },
        },
        "quantity": decimal(a.quantity),
        "lessIncluded": decimal(a.less_included),
        "unitPrice": decimal(a.unit_price),
        "unitCost": decimal(a.unit_cost),
        "billCustomer": a.bill_customer.as_str(),
        "effectiveDate": opt_instant(a.effective_date),
        "cancelledDate": opt_instant(a.cancelled_date),
        "taxableFlag": a.taxable_flag,
        "serialNumber": null,
        "invoiceDescription": a.invoice_description,
        "purchaseItemFlag": false,
        "specialOrderFlag": false,
        "agreementId": a.agreement_id,
        "description": a.description,
        "billedQuantity": decimal(billed),
        "uom": product.map_or("Each", |p| p.unit_of_measure.name.as_str()),
        "extPrice": decimal(ext_price),
        "extCost": decimal(ext_cost),
        "margin": decimal(ext_price - ext_cost),
        "prorateCost": decimal(ext_cost),
        "proratePrice": decimal(ext_price),
        "prorateCurrentPeriodFlag": true,
        "opportunity": null,
        "agreementStatus": a.status_on(today_midnight()),
        "_info": {
            "lastUpdated": instant(a.last_updated),
            "updatedBy": a.updated_by,
            "dateEntered": instant(a.date_entered),
            "enteredBy": "admin1",
            "agreement_href": format!("{base}/finance/agreements/{}", a.agreement_id),
        },
    })
}

/// Keeps only the listed field paths (`fields=id,name,_info/lastUpdated`), nesting as in the
/// record; paths that do not exist are left out, as ConnectWise does.
pub fn project(value: Value, paths: &[String]) -> Value {
    let mut out = Map::new();
    for path in paths {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(found) = lookup(&value, &segments) {
            insert(&mut out, &segments, found.clone());
        }
    }
    Value::Object(out)
}

fn lookup<'a>(value: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    segments.iter().try_fold(value, |v, s| {
        let map = v.as_object()?;
        map.get(*s).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(s)).map(|kv| kv.1))
    })
}

fn insert(out: &mut Map<String, Value>, segments: &[&str], value: Value) {
    let [head, rest @ ..] = segments else { return };
    if rest.is_empty() {
        out.insert((*head).to_owned(), value);
        return;
    }
    let child = out.entry((*head).to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = child {
        insert(map, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_look_like_dotnet() {
        assert_eq!(decimal(Decimal::new(45, 0)).to_string(), "45.0");
        assert_eq!(decimal(Decimal::new(4500, 2)).to_string(), "45.0");
        assert_eq!(decimal(Decimal::new(1750, 3)).to_string(), "1.75");
        assert_eq!(decimal(Decimal::new(-5, 1)).to_string(), "-0.5");
    }

    #[test]
    fn projection_keeps_nesting() {
        let value = json!({"id": 1, "name": "x", "_info": {"lastUpdated": "t", "updatedBy": "u"}});
        let paths = vec!["id".to_owned(), "_info/lastUpdated".to_owned(), "nope".to_owned()];
        assert_eq!(project(value, &paths), json!({"id": 1, "_info": {"lastUpdated": "t"}}));
    }
}
