//! The fields of a vendor's request body, read the way vendor scripts send them: a JSON object
//! (or, for the bulk account call, an array of them, or one object where PowerShell's
//! `ConvertTo-Json` dropped the array), or a form body (`application/x-www-form-urlencoded`,
//! which Python's `requests.patch(data=…)` sends).
//!
//! Numbers are kept as the text the vendor wrote, so a quantity becomes an exact decimal and
//! never passes through `f64`. Every error names the field, with its position in an array
//! (`[2].name`). This module only reads; it never stores anything.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::records;

/// A problem with one field, or with the body as a whole (`field` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.field, self.message)
        }
    }
}

fn body_error(message: impl Into<String>) -> FieldError {
    FieldError { field: String::new(), message: message.into() }
}

enum Value {
    Json(Box<RawValue>),
    Text(String),
}

/// The fields of one object in a request body.
pub struct Fields {
    /// Prefix of every field name in errors: `[2].` for the third object of an array.
    at: String,
    map: HashMap<String, Value>,
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

fn json_error(e: serde_json::Error) -> FieldError {
    body_error(format!(
        "the body is not valid JSON: {e}; send Content-Type: application/json with a JSON body"
    ))
}

impl Fields {
    /// One object: a JSON object, or a form body.
    pub fn object(body: &[u8], content_type: Option<&str>) -> Result<Fields, FieldError> {
        if is_form(content_type) {
            return Ok(Fields::form(body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(body_error("the body is empty; send a JSON object"));
        }
        let raw: Box<RawValue> = serde_json::from_slice(body).map_err(json_error)?;
        Fields::from_raw(&raw, String::new())
    }

    /// An array of objects; a single object counts as an array of one.
    pub fn list(body: &[u8], content_type: Option<&str>) -> Result<Vec<Fields>, FieldError> {
        if is_form(content_type) {
            return Ok(vec![Fields::form(body)]);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(body_error("the body is empty; send a JSON array of objects"));
        }
        let raw: Box<RawValue> = serde_json::from_slice(body).map_err(json_error)?;
        if raw.get().trim_start().starts_with('[') {
            let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get()).map_err(json_error)?;
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Fields::from_raw(&item, format!("[{i}].")))
                .collect()
        } else {
            Ok(vec![Fields::from_raw(&raw, String::new())?])
        }
    }

    fn form(body: &[u8]) -> Fields {
        let map = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::Text(v.into_owned())))
            .collect();
        Fields { at: String::new(), map }
    }

    fn from_raw(raw: &RawValue, at: String) -> Result<Fields, FieldError> {
        if !raw.get().trim_start().starts_with('{') {
            let what = if at.is_empty() { "the body".to_string() } else { format!("item {at}") };
            return Err(body_error(format!(
                "{} must be a JSON object, not {}",
                what.trim_end_matches('.'),
                kind(raw.get())
            )));
        }
        let map: HashMap<String, Box<RawValue>> =
            serde_json::from_str(raw.get()).map_err(json_error)?;
        Ok(Fields { at, map: map.into_iter().map(|(k, v)| (k, Value::Json(v))).collect() })
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.at)
    }

    fn error(&self, field: &str, message: impl Into<String>) -> FieldError {
        FieldError { field: self.name(field), message: message.into() }
    }

    pub fn has(&self, field: &str) -> bool {
        match self.map.get(field) {
            Some(Value::Json(raw)) => raw.get().trim() != "null",
            Some(Value::Text(_)) => true,
            None => false,
        }
    }

    /// A text field; a whole JSON number counts as its digits (vendor ids are often numbers).
    pub fn text(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Text(text)) => Ok(Some(text.clone())),
            Some(Value::Json(raw)) => {
                let text = raw.get().trim();
                if text == "null" {
                    return Ok(None);
                }
                if text.starts_with('"') {
                    let s: String = serde_json::from_str(text)
                        .map_err(|e| self.error(field, format!("is not a valid string: {e}")))?;
                    return Ok(Some(s));
                }
                if !text.is_empty()
                    && text.trim_start_matches('-').chars().all(|c| c.is_ascii_digit())
                {
                    return Ok(Some(text.to_string()));
                }
                Err(self.error(field, format!("must be text, not {}", kind(text))))
            }
        }
    }

    pub fn required_text(&self, field: &str) -> Result<String, FieldError> {
        self.text(field)?.ok_or_else(|| self.error(field, "is required"))
    }

    /// A quantity: a JSON number (or a string or form value holding one), read exactly.
    pub fn quantity(&self, field: &str) -> Result<Option<Decimal>, FieldError> {
        let text = match self.map.get(field) {
            None => return Ok(None),
            Some(Value::Text(text)) => text.clone(),
            Some(Value::Json(raw)) => {
                let text = raw.get().trim();
                if text == "null" {
                    return Ok(None);
                }
                if text.starts_with('"') {
                    serde_json::from_str::<String>(text)
                        .map_err(|e| self.error(field, format!("is not a valid string: {e}")))?
                } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    text.to_string()
                } else {
                    return Err(self.error(field, format!("must be a number, not {}", kind(text))));
                }
            }
        };
        records::parse_quantity(&text)
            .map(Some)
            .map_err(|reason| self.error(field, format!("{:?} {reason}", text.trim())))
    }

    /// Names of fields this object has that are not in `known`, for a debug log.
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        let mut names: Vec<&str> =
            self.map.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
        names.sort_unstable();
        names
    }

    /// A required id, checked ([`records::clean_id`]).
    pub fn id(&self, field: &str, what: &str) -> Result<String, FieldError> {
        let raw = self.required_text(field)?;
        records::clean_id(what, &raw).map_err(|m| self.error(field, strip_subject(&m, what)))
    }

    pub fn name_field(
        &self,
        field: &str,
        what: &str,
        required: bool,
    ) -> Result<Option<String>, FieldError> {
        let raw = if required { Some(self.required_text(field)?) } else { self.text(field)? };
        raw.map(|raw| {
            records::clean_name(what, &raw).map_err(|m| self.error(field, strip_subject(&m, what)))
        })
        .transpose()
    }

    pub fn description(&self, field: &str) -> Result<Option<String>, FieldError> {
        self.text(field)?
            .map(|raw| {
                records::clean_description(field, &raw)
                    .map_err(|m| self.error(field, strip_subject(&m, field)))
            })
            .transpose()
    }
}

/// "account id is empty; …" → "is empty; …", since the field name leads the message.
fn strip_subject(message: &str, subject: &str) -> String {
    message.strip_prefix(subject).map(str::trim_start).unwrap_or(message).to_string()
}

/// What kind of JSON value some text is, for messages.
fn kind(text: &str) -> String {
    let text = text.trim();
    let shown: String = text.chars().take(40).collect();
    match text.chars().next() {
        Some('{') => "an object".to_string(),
        Some('[') => "an array".to_string(),
        Some('"') => format!("the string {shown}"),
        Some('t') | Some('f') => format!("the boolean {shown}"),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_exactly_from_json_numbers() {
        let f =
            Fields::object(br#"{"accountId": 7, "unitCount": 0.30000000000000004}"#, None).unwrap();
        assert_eq!(f.required_text("accountId").unwrap(), "7");
        assert_eq!(f.quantity("unitCount").unwrap().unwrap().to_string(), "0.30000000000000004");
    }

    #[test]
    fn field_errors_name_the_field() {
        let f = Fields::object(br#"{"unitCount": -3, "accountId": true}"#, None).unwrap();
        let e = f.quantity("unitCount").unwrap_err();
        assert_eq!(e.to_string(), "`unitCount` \"-3\" is negative; quantities are zero or more");
        let e = f.required_text("accountId").unwrap_err();
        assert_eq!(e.to_string(), "`accountId` must be text, not the boolean true");
        let e = f.required_text("name").unwrap_err();
        assert_eq!(e.to_string(), "`name` is required");
        let f = Fields::object(br#"{"unitCount": "ten"}"#, None).unwrap();
        assert!(f.quantity("unitCount").unwrap_err().to_string().contains("not a number"));
        let f = Fields::object(br#"{"unitCount": [1]}"#, None).unwrap();
        assert!(f.quantity("unitCount").unwrap_err().to_string().contains("must be a number"));
    }

    #[test]
    fn a_single_object_is_a_list_of_one_and_items_are_numbered() {
        let one = Fields::list(br#"{"id": "a", "name": "A"}"#, None).unwrap();
        assert_eq!(one.len(), 1);
        let many = Fields::list(br#"[{"id": "a", "name": "A"}, {"id": "b"}]"#, None).unwrap();
        assert_eq!(many[1].required_text("name").unwrap_err().field, "[1].name");
        let bad = Fields::list(br#"[{"id": "a"}, 3]"#, None).err().unwrap();
        assert!(bad.message.contains("item [1] must be a JSON object"), "{bad}");
    }

    #[test]
    fn form_bodies_are_read_too() {
        let f = Fields::object(
            b"name=Acme+Ltd&unitCount=4.5",
            Some("application/x-www-form-urlencoded"),
        )
        .unwrap();
        assert_eq!(f.required_text("name").unwrap(), "Acme Ltd");
        assert_eq!(f.quantity("unitCount").unwrap().unwrap().to_string(), "4.5");
    }

    #[test]
    fn malformed_json_says_where() {
        let e = Fields::object(b"{\"accountId\": ", None).err().unwrap();
        assert!(e.message.starts_with("the body is not valid JSON"), "{e}");
        assert!(e.message.contains("line 1"), "{e}");
    }
}
