//! `POST /api/RecurringInvoice` as Halo applies it: the body is an array of invoices (a single
//! object is taken as an array of one); an invoice with an id updates that invoice, one
//! without (or with id 0) is created. When an invoice carries `lines`, they become its lines:
//! a line with the id of one of its lines updates it, a line without an id is added, and
//! every line of the invoice the array leaves out is DELETED, as the real API does. Ids must
//! be JSON integers: `95.0` is refused with Halo's conversion message, and nothing of the
//! request is applied. The whole request is checked before anything changes.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::model::{HaloData, InvoiceLine, RecurringInvoice};

/// A refusal: Halo answers 400 with this message as a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// One invoice of the request, checked.
struct Planned {
    id: Option<i64>,
    client_id: Option<i64>,
    notes: Option<String>,
    disabled: Option<bool>,
    lines: Option<Vec<PlannedLine>>,
}

struct PlannedLine {
    id: Option<i64>,
    item_id: Option<i64>,
    description: Option<String>,
    qty_order: Option<Decimal>,
    unit_price: Option<Decimal>,
    inactive: Option<bool>,
}

/// Applies an upsert and returns the ids of the invoices it wrote, in request order.
pub fn apply(data: &mut HaloData, body: &Value, now: &str) -> Result<Vec<i64>, Refused> {
    let invoices: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![body],
        _ => return Err(Refused("The request body must be an array of recurring invoices".into())),
    };
    if invoices.is_empty() {
        return Err(Refused("The request body holds no recurring invoice".into()));
    }
    let mut plans = Vec::with_capacity(invoices.len());
    for (index, invoice) in invoices.iter().enumerate() {
        plans.push(plan(data, invoice, &format!("[{index}]"))?);
    }

    let mut next_invoice = data.invoices.iter().map(|i| i.id).max().unwrap_or(0).max(0) + 1;
    let mut next_line =
        data.invoices.iter().flat_map(|i| i.lines.iter().map(|l| l.id)).max().unwrap_or(0) + 1;
    let items: BTreeMap<i64, (String, String, Decimal, Decimal)> = data
        .items
        .iter()
        .map(|item| {
            (item.id, (item.description.clone(), item.name.clone(), item.baseprice, item.costprice))
        })
        .collect();

    let mut written = Vec::with_capacity(plans.len());
    for plan in plans {
        let index = match plan.id.and_then(|id| data.invoices.iter().position(|i| i.id == id)) {
            Some(index) => index,
            None => {
                let client_id = plan.client_id.unwrap_or_default();
                let mut invoice = RecurringInvoice::new(next_invoice, client_id, "");
                invoice.date_created = now.to_owned();
                next_invoice += 1;
                data.invoices.push(invoice);
                data.invoices.len() - 1
            }
        };
        let invoice = &mut data.invoices[index];
        if let Some(client_id) = plan.client_id {
            invoice.client_id = client_id;
        }
        if let Some(notes) = plan.notes {
            invoice.notes = notes;
        }
        if let Some(disabled) = plan.disabled {
            invoice.disabled = disabled;
        }
        if let Some(lines) = plan.lines {
            let mut kept = Vec::with_capacity(lines.len());
            for (sequence, line) in lines.into_iter().enumerate() {
                let mut current = match line.id.and_then(|id| invoice.line(id)) {
                    Some(existing) => existing.clone(),
                    None => {
                        let item_id = line.item_id.unwrap_or_default();
                        let (description, code, price, cost) =
                            items.get(&item_id).cloned().unwrap_or_default();
                        let id = next_line;
                        next_line += 1;
                        InvoiceLine {
                            id,
                            item_id,
                            description,
                            nominal_code: code,
                            qty_order: Decimal::ONE,
                            unit_price: price,
                            unit_cost: cost,
                            inactive: false,
                            sequence: sequence as i64 + 1,
                        }
                    }
                };
                if let Some(item_id) = line.item_id {
                    current.item_id = item_id;
                }
                if let Some(description) = line.description {
                    current.description = description;
                }
                if let Some(quantity) = line.qty_order {
                    current.qty_order = quantity;
                }
                if let Some(price) = line.unit_price {
                    current.unit_price = price;
                }
                if let Some(inactive) = line.inactive {
                    current.inactive = inactive;
                }
                kept.push(current);
            }
            // Every line the request left out is gone.
            invoice.lines = kept;
        }
        invoice.last_modified = now.to_owned();
        written.push(invoice.id);
    }
    Ok(written)
}

fn plan(data: &HaloData, invoice: &Value, path: &str) -> Result<Planned, Refused> {
    let Some(object) = invoice.as_object() else {
        return Err(Refused(format!("Path '{path}': a recurring invoice must be an object")));
    };
    let id = optional_integer(object, "id", path)?.filter(|id| *id != 0);
    let existing = id.and_then(|id| data.invoices.iter().find(|i| i.id == id));
    if let (Some(id), None) = (id, existing) {
        return Err(Refused(format!("Recurring invoice {id} does not exist")));
    }
    let client_id = optional_integer(object, "client_id", path)?;
    match (existing, client_id) {
        (None, None) => {
            return Err(Refused(format!("Path '{path}': a new recurring invoice needs client_id")));
        }
        (_, Some(client)) if !data.clients.iter().any(|c| c.id == client) => {
            return Err(Refused(format!("Client {client} does not exist")));
        }
        _ => {}
    }
    let notes = optional_text(object, "notes_1", path)?;
    let disabled = optional_bool(object, "disabled", path)?;
    let lines = match object.get("lines") {
        None | Some(Value::Null) => None,
        Some(Value::Array(lines)) => {
            let mut planned = Vec::with_capacity(lines.len());
            for (index, line) in lines.iter().enumerate() {
                let path = format!("{path}.lines[{index}]");
                planned.push(plan_line(data, existing, line, &path)?);
            }
            Some(planned)
        }
        Some(_) => return Err(Refused(format!("Path '{path}.lines': lines must be an array"))),
    };
    Ok(Planned { id, client_id, notes, disabled, lines })
}

fn plan_line(
    data: &HaloData,
    invoice: Option<&RecurringInvoice>,
    line: &Value,
    path: &str,
) -> Result<PlannedLine, Refused> {
    let Some(object) = line.as_object() else {
        return Err(Refused(format!("Path '{path}': a line must be an object")));
    };
    let id = optional_integer(object, "id", path)?.filter(|id| *id != 0);
    if let Some(id) = id
        && invoice.is_none_or(|invoice| invoice.line(id).is_none())
    {
        return Err(Refused(format!(
            "Recurring invoice line {id} does not belong to this invoice"
        )));
    }
    // `ihid` must be an integer too, though the invoice decides where a line belongs.
    optional_integer(object, "ihid", path)?;
    let item_id = optional_integer(object, "_itemid", path)?;
    if let Some(item) = item_id
        && item > 0
        && !data.items.iter().any(|i| i.id == item)
    {
        return Err(Refused(format!("Item {item} does not exist")));
    }
    if id.is_none() && item_id.is_none() {
        return Err(Refused(format!("Path '{path}': a new line needs _itemid")));
    }
    Ok(PlannedLine {
        id,
        item_id,
        description: optional_text(object, "item_shortdescription", path)?,
        qty_order: optional_decimal(object, "qty_order", path)?,
        unit_price: optional_decimal(object, "unit_price", path)?,
        inactive: optional_bool(object, "isinactive", path)?,
    })
}

/// An integer field, refused the way Halo's JSON reader refuses `95.0`.
fn optional_integer(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<i64>, Refused> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
            number.as_i64().map(Some).ok_or_else(|| {
                Refused(format!(
                    "Value {number} is too large for type 'System.Int32'. Path '{path}.{key}'"
                ))
            })
        }
        Some(other) => Err(Refused(format!(
            "Error converting value {other} to type 'System.Int32'. Path '{path}.{key}'"
        ))),
    }
}

fn optional_decimal(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Decimal>, Refused> {
    let refuse = |value: &Value| {
        Refused(format!(
            "Error converting value {value} to type 'System.Double'. Path '{path}.{key}'"
        ))
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Number(number)) => {
            parse_decimal(&number.to_string()).map(Some).ok_or_else(|| refuse(value))
        }
        Some(value @ Value::String(text)) => {
            parse_decimal(text).map(Some).ok_or_else(|| refuse(value))
        }
        Some(value) => Err(refuse(value)),
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.contains(['e', 'E']) { Decimal::from_scientific(text).ok() } else { text.parse().ok() }
}

fn optional_bool(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>, Refused> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(Refused(format!(
            "Error converting value {other} to type 'System.Boolean'. Path '{path}.{key}'"
        ))),
    }
}

fn optional_text(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, Refused> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(Refused(format!(
            "Error converting value {other} to type 'System.String'. Path '{path}.{key}'"
        ))),
    }
}
