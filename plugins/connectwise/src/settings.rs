//! The adapter's settings: their JSON Schema for the handshake, and their checking when a
//! session opens. Every refusal is a `config` error whose `field` names the bad setting, so the
//! user is told which line of `[psa.settings]` to fix. This module owns what a valid setting
//! is; it must never send anything, and it must never put a secret (the keys, the client id)
//! into a message or a `Debug` line.

use serde_json::{Map, Value, json};
use tally_plugin_sdk::{ErrorKind, PluginError};
use url::{Host, Url};

/// The largest page ConnectWise serves, and the page size used unless a smaller one is set.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Names of the settings whose values are secrets.
pub const SECRET_SETTINGS: [&str; 3] = ["public_key", "private_key", "client_id"];

/// Checked settings of one session.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The server as `scheme://host[:port]`, without a trailing slash.
    pub site: String,
    /// The host (`host` or `host:port`) requests may go to; the only one.
    pub host: String,
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
    /// The codebase path segment with its trailing slash (`v4_6_release/`), when configured.
    pub codebase: Option<String>,
    pub page_size: u32,
    pub include_prospects: bool,
    pub include_non_recurring: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("site", &self.site)
            .field("company_id", &self.company_id)
            .field("public_key", &"<secret>")
            .field("private_key", &"<secret>")
            .field("client_id", &"<secret>")
            .field("codebase", &self.codebase)
            .field("page_size", &self.page_size)
            .field("include_prospects", &self.include_prospects)
            .field("include_non_recurring", &self.include_non_recurring)
            .finish()
    }
}

impl Settings {
    /// Checks a settings object. The host has already checked it against [`schema`]; this
    /// checks again, and checks what a schema cannot say (loopback-only `http://`).
    pub fn parse(settings: &Value) -> Result<Settings, PluginError> {
        let Some(object) = settings.as_object() else {
            return Err(config("settings", "the settings must be a JSON object"));
        };
        if let Some(unknown) = object.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(config(
                unknown,
                format!("`{unknown}` is not a ConnectWise setting (known: {})", KNOWN.join(", ")),
            ));
        }

        let (site, host) = site(&required_text(object, "site")?)?;
        let company_id = required_text(object, "company_id")?;
        if company_id.contains(':') || company_id.chars().any(char::is_whitespace) {
            return Err(config("company_id", "the company id must not contain `:` or spaces"));
        }
        let public_key = required_text(object, "public_key")?;
        if public_key.contains(':') {
            return Err(config("public_key", "the public key must not contain `:`"));
        }
        let private_key = required_text(object, "private_key")?;
        let client_id = required_text(object, "client_id")?;
        let codebase = optional_text(object, "codebase")?.map(|c| codebase(&c)).transpose()?;
        let page_size = page_size(object)?;
        let include_prospects = optional_flag(object, "include_prospects")?;
        let include_non_recurring = optional_flag(object, "include_non_recurring")?;

        Ok(Settings {
            site,
            host,
            company_id,
            public_key,
            private_key,
            client_id,
            codebase,
            page_size,
            include_prospects,
            include_non_recurring,
        })
    }
}

const KNOWN: [&str; 9] = [
    "site",
    "company_id",
    "public_key",
    "private_key",
    "client_id",
    "codebase",
    "page_size",
    "include_prospects",
    "include_non_recurring",
];

/// The JSON Schema of the settings object, for the handshake.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ConnectWise PSA settings",
        "type": "object",
        "additionalProperties": false,
        "required": ["site", "company_id", "public_key", "private_key", "client_id"],
        "properties": {
            "site": {
                "type": "string",
                "minLength": 1,
                "description": "The API server, e.g. https://api-na.myconnectwise.net; \
                                http:// only for loopback hosts"
            },
            "company_id": {
                "type": "string",
                "minLength": 1,
                "description": "The company id typed at the ConnectWise login"
            },
            "public_key": {
                "type": "string",
                "minLength": 1,
                "description": "The API member's public key"
            },
            "private_key": {
                "type": "string",
                "minLength": 1,
                "description": "The API member's private key"
            },
            "client_id": {
                "type": "string",
                "minLength": 1,
                "description": "The integration's clientId from the ConnectWise developer portal"
            },
            "codebase": {
                "type": ["string", "null"],
                "pattern": "^[A-Za-z0-9_.-]+/?$",
                "description": "e.g. v4_6_release/; found with /login/companyinfo when left out"
            },
            "page_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": MAX_PAGE_SIZE,
                "description": "Rows per page request"
            },
            "include_prospects": {
                "type": ["boolean", "null"],
                "default": false,
                "description": "Treat prospects, leads and unapproved companies as billable"
            },
            "include_non_recurring": {
                "type": ["boolean", "null"],
                "default": false,
                "description": "Treat agreements without a billing cycle as recurring"
            }
        }
    })
}

fn config(field: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Config, message).with_field(field).retryable(false)
}

fn required_text(object: &Map<String, Value>, name: &str) -> Result<String, PluginError> {
    optional_text(object, name)?.ok_or_else(|| config(name, format!("`{name}` is required")))
}

/// A string setting, trimmed; absent, `null` and blank all read as "not set".
fn optional_text(object: &Map<String, Value>, name: &str) -> Result<Option<String>, PluginError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.chars().any(char::is_control) {
                return Err(config(name, format!("`{name}` must not contain control characters")));
            }
            Ok((!text.is_empty()).then(|| text.to_string()))
        }
        Some(_) => Err(config(name, format!("`{name}` must be a string"))),
    }
}

fn optional_flag(object: &Map<String, Value>, name: &str) -> Result<bool, PluginError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(config(name, format!("`{name}` must be true or false"))),
    }
}

fn page_size(object: &Map<String, Value>) -> Result<u32, PluginError> {
    let size = match object.get("page_size") {
        None | Some(Value::Null) => return Ok(MAX_PAGE_SIZE),
        Some(value) => value.as_u64(),
    };
    match size {
        Some(size @ 1..=1000) => u32::try_from(size).map_err(|_| page_size_error()),
        _ => Err(page_size_error()),
    }
}

fn page_size_error() -> PluginError {
    config("page_size", format!("`page_size` must be a whole number from 1 to {MAX_PAGE_SIZE}"))
}

/// Checks `site` and returns it as `scheme://host[:port]` with its `host[:port]`.
fn site(text: &str) -> Result<(String, String), PluginError> {
    let example = "a URL such as https://api-na.myconnectwise.net";
    let url = Url::parse(text)
        .map_err(|error| config("site", format!("`site` must be {example}: {error}")))?;
    let Some(host) = url.host() else {
        return Err(config("site", format!("`site` must be {example} (no host in `{text}`)")));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(config(
                "site",
                format!(
                    "`site` must use https:// (http:// is accepted only for loopback hosts such \
                     as 127.0.0.1 or localhost, not for {host})"
                ),
            ));
        }
        other => {
            return Err(config("site", format!("`site` must be {example}, not a {other}: URL")));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config("site", "`site` must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(config(
            "site",
            format!(
                "`site` must be the server's address only, like {}; the codebase goes in \
                 `codebase`",
                "https://api-na.myconnectwise.net"
            ),
        ));
    }

    let host_port = match url.port() {
        Some(port) => format!("{}:{port}", host),
        None => host.to_string(),
    };
    Ok((format!("{}://{host_port}", url.scheme()), host_port))
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(address) => address.is_loopback(),
        Host::Ipv6(address) => address.is_loopback(),
    }
}

/// Checks a configured codebase.
fn codebase(text: &str) -> Result<String, PluginError> {
    normalize_codebase(text).ok_or_else(|| {
        config(
            "codebase",
            format!("`codebase` must be one path segment such as v4_6_release/, not `{text}`"),
        )
    })
}

/// A codebase as one plain path segment with a trailing slash (`v4_6_release/`), or `None`
/// when `text` is not one (empty, `..`, or characters that would change the URL's meaning).
pub fn normalize_codebase(text: &str) -> Option<String> {
    let segment = text.trim().trim_matches('/');
    let plain = segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let usable = !segment.is_empty() && plain && segment != "." && segment != "..";
    usable.then(|| format!("{segment}/"))
}
