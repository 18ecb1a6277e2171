//! The two writes tally makes to ConnectWise, checked the way ConnectWise checks them: a JSON
//! Patch array on an agreement addition (`replace`/`add`/`remove`, paths with or without a
//! leading `/`, names ignoring case as .NET does) and a new addition from a POST body. Both are
//! all-or-nothing: every operation is validated before anything changes, and a refusal is a 400
//! `InvalidObject` naming the field.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::errors::ApiError;
use super::model::{Addition, BillCustomer};
use super::state::State;
use super::timestamps::{now_millis, parse_instant, today_midnight};

const RESOURCE: &str = "addition";

/// Who the emulator records in `_info.updatedBy` for writes made through the API.
pub const API_MEMBER: &str = "TallyApi";

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_object(RESOURCE, "InvalidField", message, field)
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid_object(
        RESOURCE,
        "MissingRequiredField",
        format!("{field} is required."),
        field,
    )
}

/// Reads a decimal from a JSON number or a numeric string.
fn decimal_of(field: &str, value: &Value) -> Result<Decimal, ApiError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(invalid(field, format!("The field {field} must be a number."))),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| invalid(field, format!("The value '{text}' is not valid for {field}.")))
}

fn instant_of(field: &str, value: &Value) -> Result<Option<OffsetDateTime>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => parse_instant(s).map(Some).ok_or_else(|| {
            invalid(field, format!("The value '{s}' is not a valid date for {field}."))
        }),
        _ => Err(invalid(field, format!("The field {field} must be a date string."))),
    }
}

fn text_of(field: &str, value: &Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(field, format!("The field {field} must be a string."))),
    }
}

fn flag_of(field: &str, value: &Value) -> Result<bool, ApiError> {
    value.as_bool().ok_or_else(|| invalid(field, format!("The field {field} must be a boolean.")))
}

fn bill_customer_of(value: &Value) -> Result<BillCustomer, ApiError> {
    let field = "billCustomer";
    let text = value.as_str().ok_or_else(|| invalid(field, "billCustomer must be a string."))?;
    BillCustomer::parse(text).ok_or_else(|| {
        invalid(
            field,
            format!("billCustomer '{text}' is not one of Billable, DoNotBill, NoCharge."),
        )
    })
}

fn product_id_of(value: &Value, state: &State) -> Result<i64, ApiError> {
    let id_value = match value {
        Value::Object(map) => map.get("id").unwrap_or(&Value::Null),
        other => other,
    };
    let id = id_value.as_i64().ok_or_else(|| missing("product"))?;
    if state.catalog_item(id).is_none() {
        return Err(invalid("product", format!("Product with id {id} was not found.")));
    }
    Ok(id)
}

/// Sets one field of `addition` from a patch or POST value.
fn set_field(
    addition: &mut Addition,
    field: &str,
    value: &Value,
    state: &State,
) -> Result<(), ApiError> {
    match field.to_ascii_lowercase().as_str() {
        "quantity" => addition.quantity = decimal_of("quantity", value)?,
        "lessincluded" => addition.less_included = decimal_of("lessIncluded", value)?,
        "unitprice" => addition.unit_price = decimal_of("unitPrice", value)?,
        "unitcost" => addition.unit_cost = decimal_of("unitCost", value)?,
        "billcustomer" => addition.bill_customer = bill_customer_of(value)?,
        "effectivedate" => {
            addition.effective_date =
                Some(instant_of("effectiveDate", value)?.ok_or_else(|| missing("effectiveDate"))?);
        }
        "cancelleddate" => addition.cancelled_date = instant_of("cancelledDate", value)?,
        "description" => addition.description = text_of("description", value)?.unwrap_or_default(),
        "invoicedescription" => {
            addition.invoice_description = text_of("invoiceDescription", value)?;
        }
        "taxableflag" => addition.taxable_flag = flag_of("taxableFlag", value)?,
        "product" | "product/id" => addition.product_id = product_id_of(value, state)?,
        "id" | "agreementid" => {
            return Err(invalid(field, format!("The field {field} cannot be changed.")));
        }
        _ if field.starts_with("_info") => {
            return Err(invalid(field, format!("The field {field} is read-only.")));
        }
        _ => return Err(invalid(field, format!("The field {field} does not exist on addition."))),
    }
    Ok(())
}

/// Applies a JSON Patch array to a copy of `addition` and returns the copy; on any error the
/// addition is left as it was.
pub fn apply_patch(
    addition: &Addition,
    patch: &Value,
    state: &State,
) -> Result<Addition, ApiError> {
    let Some(operations) = patch.as_array() else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON Patch array, e.g. \
             [{\"op\":\"replace\",\"path\":\"quantity\",\"value\":45}]",
        ));
    };
    if operations.is_empty() {
        return Err(ApiError::bad_request("The patch contains no operations."));
    }
    let mut patched = addition.clone();
    for operation in operations {
        let Some(operation) = operation.as_object() else {
            return Err(ApiError::bad_request("Each patch operation must be an object."));
        };
        let op = operation.get("op").and_then(Value::as_str).ok_or_else(|| missing("op"))?;
        let path = operation.get("path").and_then(Value::as_str).ok_or_else(|| missing("path"))?;
        let field = path.trim_start_matches('/');
        match op.to_ascii_lowercase().as_str() {
            "replace" | "add" => {
                let value = operation.get("value").ok_or_else(|| missing("value"))?;
                set_field(&mut patched, field, value, state)?;
            }
            "remove" => set_field(&mut patched, field, &Value::Null, state)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "The patch operation '{other}' is not supported; use replace."
                )));
            }
        }
    }
    patched.updated_by = API_MEMBER.to_owned();
    Ok(patched)
}

/// Builds the addition a POST body asks for on `agreement_id`, with id `id`. Only `product`
/// is required; the rest default as ConnectWise defaults them (price and cost from the catalog,
/// effective today).
pub fn new_addition(
    agreement_id: i64,
    id: i64,
    body: &Value,
    state: &State,
) -> Result<Addition, ApiError> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::bad_request("The request body must be a JSON object."));
    };
    let product_id = product_id_of(fields.get("product").unwrap_or(&Value::Null), state)?;
    let Some(product) = state.catalog_item(product_id) else { return Err(missing("product")) };

    let mut addition = Addition::new(id, agreement_id, product, Decimal::ZERO);
    addition.effective_date = Some(today_midnight());
    let now = now_millis();
    addition.date_entered = now;
    addition.last_updated = now;
    addition.updated_by = API_MEMBER.to_owned();
    for (name, value) in settable(fields) {
        set_field(&mut addition, name, value, state)?;
    }
    Ok(addition)
}

/// The POST fields that `set_field` takes; anything else in the body (identity, `_info`, computed
/// fields a client copied from a GET) is ignored, as on ConnectWise.
fn settable(fields: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    const SETTABLE: [&str; 10] = [
        "quantity",
        "lessIncluded",
        "unitPrice",
        "unitCost",
        "billCustomer",
        "effectiveDate",
        "cancelledDate",
        "description",
        "invoiceDescription",
        "taxableFlag",
    ];
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .filter(|(k, _)| SETTABLE.iter().any(|s| s.eq_ignore_ascii_case(k)))
}
