//! The JSON shapes the emulator serves, after Halo's own (the recurring invoice and its lines
//! follow `samples/halopsa-recurringinvoice.json` field for field). Decimals go out as JSON
//! numbers the way Halo writes them (`14.0`, `10.32`). This module only renders; it never
//! decides what a listing holds.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::model::{Client, Contract, InvoiceLine, Item, RecurringInvoice};

/// A decimal as Halo writes numbers: a JSON float (`1.0`, `10.32`).
pub fn number(value: Decimal) -> Value {
    value.to_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
}

pub fn client(client: &Client) -> Value {
    json!({
        "id": client.id,
        "name": client.name,
        "toplevel_id": client.toplevel_id,
        "toplevel_name": client.toplevel_name,
        "inactive": client.inactive,
        "colour": "#2bd3c6",
        "use": "client",
        "is_vip": false,
        "taxable": true,
        "client_to_invoice": 0,
        "messagegroup_id": -1,
        "override_org_name": "",
    })
}

pub fn item(item: &Item) -> Value {
    json!({
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "baseprice": number(item.baseprice),
        "costprice": number(item.costprice),
        "inactive": item.inactive,
        "use": "item",
        "taxcode": 0,
        "supplier_id": 0,
        "quantity_in_stock": 0.0,
        "assetgroup_id": 0,
    })
}

pub fn line(invoice: &RecurringInvoice, line: &InvoiceLine) -> Value {
    let net = line.qty_order * line.unit_price;
    json!({
        "id": line.id,
        "ihid": invoice.id,
        "item_code": "",
        "item_shortdescription": line.description,
        "nominal_code": line.nominal_code,
        "qty_order": number(line.qty_order),
        "unit_price": number(line.unit_price),
        "unit_cost": number(line.unit_cost),
        "net_amount": number(net),
        "_itemid": line.item_id,
        "contract_id": -1,
        "recurring_invoice_id": -1,
        "recurring_invoice_line_id": 0,
        "prorata_next_invoice": false,
        "prorata_quantity": 0.0,
        "prorata_unit_price": 0.0,
        "isinactive": line.inactive,
        "prorata_data": [],
        "quantity_users": [],
        "quantity_assets": [],
        "quantity_licences": [],
        "quantity_subscriptions": [],
        "recurring_invoice_quantity_type": 0,
        "sequenceid": line.sequence,
        "onetimecharge": false,
        "needsreviewbeforecreation": false,
        "supplier": 0,
        "original_client_id": invoice.client_id,
        "total_price": number(net),
    })
}

/// A recurring invoice; `client_name` is joined in as Halo does; lines only when asked for.
pub fn invoice(invoice: &RecurringInvoice, client_name: &str, with_lines: bool) -> Value {
    let due: Decimal = invoice
        .lines
        .iter()
        .filter(|line| !line.inactive)
        .map(|line| line.qty_order * line.unit_price)
        .sum();
    let mut body = json!({
        "id": invoice.id,
        "use": "invoice",
        "client_id": invoice.client_id,
        "client_name": client_name,
        "sitenumber": 0,
        "invoicenumber": "0",
        "posted": false,
        "name": client_name,
        "last_modified": invoice.last_modified,
        "notes_1": invoice.notes,
        "type": 1,
        "contract_id": invoice.contract_id,
        "contract_ref": "",
        "currency": "\u{a3}",
        "currency_code": 1,
        "amountdue": number(due),
        "disabled": invoice.disabled,
        "is_recurring_invoice": true,
        "nextcreationdate": "2024-04-30T23:00:00",
        "nextcreationperiod": "01/05/2024 0:00 - 31/05/2024 0:00",
        "period": 2,
        "period_start_date": "2023-05-01T00:00:00",
        "period_end_date": "2023-05-31T00:00:00",
        "invoice_prorata_periods_ahead": 1,
        "recurring_invoice_id": 0,
        "date_created": invoice.date_created,
    });
    if with_lines {
        let lines: Vec<Value> = invoice.lines.iter().map(|l| line(invoice, l)).collect();
        body["lines"] = Value::Array(lines);
    }
    body
}

pub fn contract(contract: &Contract, client_name: &str) -> Value {
    json!({
        "id": contract.id,
        "client_id": contract.client_id,
        "client_name": client_name,
        "ref": contract.reference,
        "start_date": format!("{}T00:00:00", contract.start_date),
        "end_date": format!("{}T00:00:00", contract.end_date),
        "active": contract.active,
        "billing_description": "",
        "periodchargeamount": 0.0,
    })
}
