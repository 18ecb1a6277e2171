//! Checks every PSA plugin makes on its settings when a session opens: the settings object and
//! its known names, typed readers for text, flags and bounded numbers, and web addresses that
//! must use `https://` (`http://` only for a loopback host). Every refusal is a `config`
//! [`PluginError`] whose `field` names the setting, so the user is told which line of
//! `[psa.settings]` to fix. These functions only read what they are given: they never send
//! anything, and never put a setting's value into a message unless it is the value at fault.
//!
//! ```
//! use serde_json::json;
//! use tally_plugin_sdk::settings;
//!
//! let given = json!({ "base_url": "http://127.0.0.1:8080/", "page_size": 50 });
//! let object = settings::object(&given, &["base_url", "page_size"], "a HaloPSA setting")?;
//! let base_url = settings::required_text(object, "base_url")?;
//! let web = settings::web_url("base_url", &base_url, "a URL such as https://acme.halopsa.com")?;
//! assert_eq!(web.host_port, "127.0.0.1:8080");
//! assert_eq!(settings::whole_number(object, "page_size", 100, 1000)?, 50);
//! # Ok::<(), tally_plugin_sdk::PluginError>(())
//! ```

use serde_json::{Map, Value};
use url::{Host, Url};

use crate::{ErrorKind, PluginError};

/// A refused setting: a `config` error naming `field`, never retried.
pub fn config_error(field: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Config, message).with_field(field).retryable(false)
}

/// The settings as a JSON object holding only `known` names; `what` names one setting in the
/// refusal of an unknown name (`a ConnectWise setting`).
pub fn object<'a>(
    settings: &'a Value,
    known: &[&str],
    what: &str,
) -> Result<&'a Map<String, Value>, PluginError> {
    let Some(object) = settings.as_object() else {
        return Err(config_error("settings", "the settings must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(config_error(
            unknown,
            format!("`{unknown}` is not {what} (known: {})", known.join(", ")),
        ));
    }
    Ok(object)
}

/// A string setting, trimmed; absent, `null` and blank all read as "not set". Control
/// characters are refused.
pub fn optional_text(
    object: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, PluginError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.chars().any(char::is_control) {
                return Err(config_error(
                    name,
                    format!("`{name}` must not contain control characters"),
                ));
            }
            Ok((!text.is_empty()).then(|| text.to_string()))
        }
        Some(_) => Err(config_error(name, format!("`{name}` must be a string"))),
    }
}

/// A string setting that must be set (see [`optional_text`]).
pub fn required_text(object: &Map<String, Value>, name: &str) -> Result<String, PluginError> {
    optional_text(object, name)?.ok_or_else(|| config_error(name, format!("`{name}` is required")))
}

/// A flag; absent and `null` read as `false`.
pub fn optional_flag(object: &Map<String, Value>, name: &str) -> Result<bool, PluginError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(config_error(name, format!("`{name}` must be true or false"))),
    }
}

/// A whole number from 1 to `max`; absent and `null` read as `default`.
pub fn whole_number(
    object: &Map<String, Value>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, PluginError> {
    let number = match object.get(name) {
        None | Some(Value::Null) => return Ok(default),
        Some(value) => value.as_u64(),
    };
    match number.and_then(|number| u32::try_from(number).ok()) {
        Some(number) if (1..=max).contains(&number) => Ok(number),
        _ => Err(config_error(name, format!("`{name}` must be a whole number from 1 to {max}"))),
    }
}

/// A checked web address and the `host` or `host:port` requests to it go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebUrl {
    pub url: Url,
    /// The port only when it is not the scheme's default.
    pub host_port: String,
}

/// Checks the web address `text` of setting `field`: a URL with a host, `https://` (`http://`
/// only for a loopback host), and no user name or password. `example` ends the refusals' advice
/// (`a URL such as https://acme.halopsa.com`). Paths, queries and fragments are the caller's to
/// judge.
pub fn web_url(field: &str, text: &str, example: &str) -> Result<WebUrl, PluginError> {
    let url = Url::parse(text)
        .map_err(|error| config_error(field, format!("`{field}` must be {example}: {error}")))?;
    let Some(host) = url.host() else {
        return Err(config_error(
            field,
            format!("`{field}` must be {example} (no host in `{text}`)"),
        ));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(config_error(
                field,
                format!(
                    "`{field}` must use https:// (http:// is accepted only for loopback hosts \
                     such as 127.0.0.1 or localhost, not for {host})"
                ),
            ));
        }
        other => {
            return Err(config_error(
                field,
                format!("`{field}` must be {example}, not a {other}: URL"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config_error(
            field,
            format!("`{field}` must not carry a user name or password"),
        ));
    }
    let host_port = host_port(&url).unwrap_or_default();
    Ok(WebUrl { url, host_port })
}

/// Whether `http://` may be used with `host`: only for this machine (`localhost`, 127.0.0.0/8,
/// `::1`).
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(address) => address.is_loopback(),
        Host::Ipv6(address) => address.is_loopback(),
    }
}

/// `host` or `host:port` of a URL, the port only when it is not the scheme's default; `None`
/// for a URL without a host.
pub fn host_port(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(error: PluginError) -> Option<String> {
        error.field
    }

    #[test]
    fn http_is_refused_beyond_loopback_hosts() {
        for loopback in ["http://127.0.0.1:9000", "http://localhost", "http://[::1]:81/x"] {
            assert!(web_url("site", loopback, "a URL").is_ok(), "{loopback}");
        }
        let refused = web_url("site", "http://psa.example.com", "a URL").unwrap_err();
        assert!(refused.message.contains("loopback"), "{}", refused.message);
        assert_eq!(field_of(refused).as_deref(), Some("site"));
        assert!(web_url("site", "ftp://psa.example.com", "a URL").is_err());
        assert!(web_url("site", "https://user:pw@psa.example.com", "a URL").is_err());
        assert!(web_url("site", "psa.example.com", "a URL").is_err());
    }

    #[test]
    fn host_port_keeps_only_a_port_that_is_not_the_default() {
        let web = web_url("site", "https://PSA.example.com:443/path", "a URL").unwrap();
        assert_eq!(web.host_port, "psa.example.com");
        let web = web_url("site", "http://[::1]:8080", "a URL").unwrap();
        assert_eq!(web.host_port, "[::1]:8080");
    }

    #[test]
    fn readers_name_the_setting_at_fault() {
        let given = json!({ "name": " x ", "blank": "  ", "flag": "yes", "size": 0, "big": 5000 });
        let map = given.as_object().unwrap();
        assert_eq!(optional_text(map, "name").unwrap().as_deref(), Some("x"));
        assert_eq!(optional_text(map, "blank").unwrap(), None);
        assert_eq!(
            field_of(required_text(map, "missing").unwrap_err()).as_deref(),
            Some("missing")
        );
        assert_eq!(field_of(optional_flag(map, "flag").unwrap_err()).as_deref(), Some("flag"));
        assert_eq!(whole_number(map, "absent", 7, 10).unwrap(), 7);
        assert_eq!(
            whole_number(map, "size", 7, 10).unwrap_err().message,
            "`size` must be a whole number from 1 to 10"
        );
        assert!(whole_number(map, "big", 7, 10).is_err());
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let given = json!({ "name": "x", "nmae": "y" });
        let unknown = object(&given, &["name"], "a test setting").unwrap_err();
        assert_eq!(unknown.message, "`nmae` is not a test setting (known: name)");
        assert_eq!(field_of(unknown).as_deref(), Some("nmae"));
        assert!(object(&json!([]), &["name"], "a test setting").is_err());
    }
}
