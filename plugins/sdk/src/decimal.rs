//! Exact decimals from a PSA's JSON text. Vendor and PSA quantities (1.75 TB, prorated seats)
//! must never pass through `f64`: these read the number exactly as the source wrote it.

use rust_decimal::Decimal;

/// A decimal written as a JSON number (`1.75`, `4E+1`) or a numeric string, trimmed.
pub fn parse(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// A decimal from one JSON value's raw text: `null` is `Ok(None)`, a number or a quoted number
/// is `Ok(Some(_))`, anything else is `Err(())` for the caller to name the field.
#[allow(clippy::result_unit_err)]
pub fn from_json_text(text: &str) -> Result<Option<Decimal>, ()> {
    let text = text.trim();
    if text == "null" {
        return Ok(None);
    }
    let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    parse(unquoted).map(Some).ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_exactly_as_written() {
        assert_eq!(parse("1.75"), Some(Decimal::new(175, 2)));
        assert_eq!(parse("0.30000000000000004").unwrap().to_string(), "0.30000000000000004");
        assert_eq!(parse("4E+1"), Some(Decimal::from(40)));
        assert_eq!(from_json_text("\"12.5\""), Ok(Some(Decimal::new(125, 1))));
        assert_eq!(from_json_text("null"), Ok(None));
        assert_eq!(from_json_text("\"lots\""), Err(()));
        assert_eq!(from_json_text("true"), Err(()));
    }
}
