//! Autotask's query filter: a list of conditions that must all hold, each
//! `{"op", "field", "value"}` or a group `{"op": "and"|"or", "items": [...]}`. Operators: eq,
//! noteq, gt, gte, lt, lte, beginsWith, endsWith, contains, exist, notExist, in, notIn. Field and
//! operator names ignore case, strings compare ignoring case, numbers as decimals, and two
//! values that both read as dates or date-times compare as instants. A filter that cannot be
//! read is refused with a message naming what is wrong; nothing here panics on input.

use std::cmp::Ordering;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Gt,
    Gte,
    Lt,
    Lte,
    BeginsWith,
    EndsWith,
    Contains,
    Exist,
    NotExist,
    In,
    NotIn,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        let ops = [
            ("eq", Op::Eq),
            ("noteq", Op::NotEq),
            ("gt", Op::Gt),
            ("gte", Op::Gte),
            ("lt", Op::Lt),
            ("lte", Op::Lte),
            ("beginswith", Op::BeginsWith),
            ("endswith", Op::EndsWith),
            ("contains", Op::Contains),
            ("exist", Op::Exist),
            ("notexist", Op::NotExist),
            ("in", Op::In),
            ("notin", Op::NotIn),
        ];
        ops.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, op)| *op)
    }
}

/// One condition or group of a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Condition { op: Op, field: String, value: Value },
    Group { any: bool, items: Vec<Filter> },
}

/// Reads a query's `filter` array; Autotask refuses a query without one.
pub fn parse(filter: Option<&Value>) -> Result<Vec<Filter>, String> {
    let Some(Value::Array(items)) = filter else {
        return Err("the query needs a filter: an array of conditions".to_owned());
    };
    if items.is_empty() {
        return Err("the query's filter is empty; give at least one condition".to_owned());
    }
    items.iter().map(parse_one).collect()
}

fn parse_one(item: &Value) -> Result<Filter, String> {
    let Value::Object(map) = item else {
        return Err(format!("a filter item must be an object, not {item}"));
    };
    let op = get(map, "op").and_then(Value::as_str).ok_or("a filter item has no `op`")?;
    if op.eq_ignore_ascii_case("and") || op.eq_ignore_ascii_case("or") {
        let Some(Value::Array(items)) = get(map, "items") else {
            return Err(format!("the `{op}` group has no `items` array"));
        };
        let items = items.iter().map(parse_one).collect::<Result<Vec<_>, _>>()?;
        return Ok(Filter::Group { any: op.eq_ignore_ascii_case("or"), items });
    }
    let op = Op::parse(op).ok_or_else(|| format!("`{op}` is not a filter operator"))?;
    let field = get(map, "field")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .ok_or("a filter condition has no `field`")?
        .to_owned();
    let value = get(map, "value").cloned().unwrap_or(Value::Null);
    if matches!(op, Op::In | Op::NotIn) && !value.is_array() {
        return Err(format!("`{field}` in/notIn needs an array value"));
    }
    let needs_value = !matches!(op, Op::Exist | Op::NotExist);
    if needs_value && value.is_null() {
        return Err(format!("the condition on `{field}` has no value"));
    }
    Ok(Filter::Condition { op, field, value })
}

/// A key of `map`, ignoring case.
pub fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Whether a row (a rendered entity) meets every filter item.
pub fn matches(filters: &[Filter], row: &Map<String, Value>) -> bool {
    filters.iter().all(|filter| matches_one(filter, row))
}

fn matches_one(filter: &Filter, row: &Map<String, Value>) -> bool {
    match filter {
        Filter::Group { any: true, items } => items.iter().any(|f| matches_one(f, row)),
        Filter::Group { any: false, items } => items.iter().all(|f| matches_one(f, row)),
        Filter::Condition { op, field, value } => {
            let have = get(row, field).unwrap_or(&Value::Null);
            condition(*op, have, value)
        }
    }
}

fn condition(op: Op, have: &Value, want: &Value) -> bool {
    let present = !have.is_null() && have.as_str() != Some("");
    match op {
        Op::Exist => present,
        Op::NotExist => !present,
        Op::Eq => compare(have, want) == Some(Ordering::Equal),
        Op::NotEq => compare(have, want) != Some(Ordering::Equal),
        Op::Gt => compare(have, want) == Some(Ordering::Greater),
        Op::Gte => matches!(compare(have, want), Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => compare(have, want) == Some(Ordering::Less),
        Op::Lte => matches!(compare(have, want), Some(Ordering::Less | Ordering::Equal)),
        Op::In => list(want).iter().any(|w| compare(have, w) == Some(Ordering::Equal)),
        Op::NotIn => !list(want).iter().any(|w| compare(have, w) == Some(Ordering::Equal)),
        Op::BeginsWith => text_op(have, want, |h, w| h.starts_with(w)),
        Op::EndsWith => text_op(have, want, |h, w| h.ends_with(w)),
        Op::Contains => text_op(have, want, |h, w| h.contains(w)),
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn text_op(have: &Value, want: &Value, test: impl Fn(&str, &str) -> bool) -> bool {
    match (text(have), text(want)) {
        (Some(h), Some(w)) => test(&h.to_lowercase(), &w.to_lowercase()),
        _ => false,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Orders a row's value against a filter value; `None` when they cannot be compared.
pub fn compare(have: &Value, want: &Value) -> Option<Ordering> {
    if have.is_null() || want.is_null() {
        return (have.is_null() && want.is_null()).then_some(Ordering::Equal);
    }
    if let (Some(h), Some(w)) = (boolean(have), boolean(want)) {
        return Some(h.cmp(&w));
    }
    if let (Some(h), Some(w)) = (decimal(have), decimal(want)) {
        return Some(h.cmp(&w));
    }
    let (h, w) = (text(have)?, text(want)?);
    if let (Some(h), Some(w)) = (instant(&h), instant(&w)) {
        return Some(h.cmp(&w));
    }
    Some(h.to_lowercase().cmp(&w.to_lowercase()))
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
        }
        Value::String(s) if s.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-') => {
            Decimal::from_str(s).ok()
        }
        _ => None,
    }
}

/// A date or date-time; one without an offset is UTC.
pub fn instant(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at.to_offset(UtcOffset::UTC));
    }
    let without_offset = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(at) = PrimitiveDateTime::parse(text, &without_offset) {
        return Some(at.assume_utc());
    }
    let date = time::macros::format_description!(version = 2, "[year]-[month]-[day]");
    time::Date::parse(text, &date).ok().map(|d| d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn check(filter: Value, row_value: Value) -> bool {
        let filters = parse(Some(&filter)).expect("a valid filter");
        matches(&filters, &row(row_value))
    }

    #[test]
    fn operators() {
        let company = json!({
            "id": 174, "companyName": "Contoso Ltd", "isActive": true,
            "lastActivityDate": "2024-05-01T11:15:07.263Z", "taxID": ""
        });
        assert!(check(json!([{"op": "eq", "field": "ID", "value": 174}]), company.clone()));
        assert!(check(json!([{"op": "eq", "field": "id", "value": "174"}]), company.clone()));
        assert!(check(
            json!([{"op": "gte", "field": "lastActivityDate", "value": "2024-05-01T11:15:07.263Z"}]),
            company.clone()
        ));
        assert!(!check(
            json!([{"op": "gt", "field": "lastActivityDate", "value": "2024-05-01T11:15:07.263"}]),
            company.clone()
        ));
        assert!(check(
            json!([{"op": "beginsWith", "field": "companyName", "value": "contoso"}]),
            company.clone()
        ));
        assert!(check(
            json!([{"op": "contains", "field": "companyName", "value": "TOSO L"}]),
            company.clone()
        ));
        assert!(check(json!([{"op": "in", "field": "id", "value": [1, 174]}]), company.clone()));
        assert!(check(json!([{"op": "notExist", "field": "taxID"}]), company.clone()));
        assert!(check(
            json!([{"op": "eq", "field": "isActive", "value": "true"}]),
            company.clone()
        ));
        assert!(check(
            json!([{"op": "or", "items": [
                {"op": "eq", "field": "id", "value": 1},
                {"op": "and", "items": [
                    {"op": "noteq", "field": "companyName", "value": "x"},
                    {"op": "lt", "field": "id", "value": 200}
                ]}
            ]}]),
            company
        ));
    }

    #[test]
    fn refusals() {
        assert!(parse(None).is_err());
        assert!(parse(Some(&json!([]))).is_err());
        assert!(parse(Some(&json!([{"op": "like", "field": "id", "value": 1}]))).is_err());
        assert!(parse(Some(&json!([{"op": "in", "field": "id", "value": 1}]))).is_err());
        assert!(parse(Some(&json!([{"op": "and"}]))).is_err());
    }
}
