//! The adapter's settings: their JSON Schema for the handshake, and their checking when a
//! session opens. Every refusal is a `config` error whose `field` names the bad setting. This
//! module also owns the list of hosts a session may talk to, since that list follows from the
//! settings alone. It must never send anything, and never put the secret or the integration
//! code into a message or a `Debug` line.

use serde_json::{Map, Value, json};
use tally_plugin_sdk::{ErrorKind, PluginError};
use url::{Host, Url};

/// The largest page Autotask serves (`MaxRecords`), and the page size used unless a smaller
/// one is set.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Where Autotask answers `zoneInformation` for every tenant.
pub const DEFAULT_ZONE_DISCOVERY_URL: &str = "https://webservices.autotask.net/atservicesrest";

/// The host of [`DEFAULT_ZONE_DISCOVERY_URL`].
const PUBLIC_DISCOVERY_HOST: &str = "webservices.autotask.net";

/// Autotask's zones are served from `webservices{N}.autotask.net`; with the public discovery
/// URL a session may talk to any of these. A zone outside them needs `zone_url`.
const PUBLIC_ZONE_NUMBERS: std::ops::RangeInclusive<u32> = 1..=30;

/// Names of the settings whose values are secrets.
pub const SECRET_SETTINGS: [&str; 2] = ["secret", "integration_code"];

const KNOWN: [&str; 6] =
    ["username", "secret", "integration_code", "zone_discovery_url", "zone_url", "page_size"];

/// Checked settings of one session.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API user's name (an e-mail address); sent as `UserName` and to `zoneInformation`.
    pub username: String,
    pub secret: String,
    /// The API tracking identifier, sent as `ApiIntegrationCode`.
    pub integration_code: String,
    /// Where the zone is looked up, without a trailing slash.
    pub zone_discovery_url: String,
    /// The zone's REST root with a trailing slash, when pinned (no discovery then).
    pub zone_url: Option<String>,
    pub page_size: u32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("username", &self.username)
            .field("secret", &"<secret>")
            .field("integration_code", &"<secret>")
            .field("zone_discovery_url", &self.zone_discovery_url)
            .field("zone_url", &self.zone_url)
            .field("page_size", &self.page_size)
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
                format!("`{unknown}` is not an Autotask setting (known: {})", KNOWN.join(", ")),
            ));
        }

        let username = required_text(object, "username")?;
        if username.chars().any(char::is_whitespace) {
            return Err(config("username", "the API user name must not contain spaces"));
        }
        let secret = required_text(object, "secret")?;
        let integration_code = required_text(object, "integration_code")?;
        let zone_discovery_url = match optional_text(object, "zone_discovery_url")? {
            Some(text) => root_url("zone_discovery_url", &text)?,
            None => DEFAULT_ZONE_DISCOVERY_URL.to_string(),
        };
        let zone_url = optional_text(object, "zone_url")?
            .map(|text| root_url("zone_url", &text).map(|url| format!("{url}/")))
            .transpose()?;
        let page_size = page_size(object)?;

        Ok(Settings { username, secret, integration_code, zone_discovery_url, zone_url, page_size })
    }

    /// The hosts (`host` or `host:port`) this session may send requests to: the discovery host,
    /// the pinned zone's host, and with the public discovery URL Autotask's zone hosts.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        if let Some(host) = host_port(&self.zone_discovery_url) {
            if host.eq_ignore_ascii_case(PUBLIC_DISCOVERY_HOST) {
                hosts.extend(PUBLIC_ZONE_NUMBERS.map(|n| format!("webservices{n}.autotask.net")));
            }
            hosts.insert(0, host);
        }
        if let Some(host) = self.zone_url.as_deref().and_then(host_port)
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
        hosts
    }
}

/// The JSON Schema of the settings object, for the handshake.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Autotask settings",
        "type": "object",
        "additionalProperties": false,
        "required": ["username", "secret", "integration_code"],
        "properties": {
            "username": {
                "type": "string",
                "minLength": 1,
                "description": "The API user's user name (an e-mail address)"
            },
            "secret": {
                "type": "string",
                "minLength": 1,
                "description": "The API user's secret (password)"
            },
            "integration_code": {
                "type": "string",
                "minLength": 1,
                "description": "The API tracking identifier, sent as ApiIntegrationCode"
            },
            "zone_discovery_url": {
                "type": ["string", "null"],
                "default": DEFAULT_ZONE_DISCOVERY_URL,
                "description": "Where the tenant's zone is looked up; http:// only for \
                                loopback hosts"
            },
            "zone_url": {
                "type": ["string", "null"],
                "description": "The zone's REST root, e.g. \
                                https://webservices5.autotask.net/ATServicesRest; skips the \
                                zone lookup"
            },
            "page_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": MAX_PAGE_SIZE,
                "description": "Rows per query page (MaxRecords)"
            }
        }
    })
}

pub(crate) fn config(field: &str, message: impl Into<String>) -> PluginError {
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

fn page_size(object: &Map<String, Value>) -> Result<u32, PluginError> {
    let size = match object.get("page_size") {
        None | Some(Value::Null) => return Ok(MAX_PAGE_SIZE),
        Some(value) => value.as_u64(),
    };
    match size.and_then(|size| u32::try_from(size).ok()) {
        Some(size @ 1..=MAX_PAGE_SIZE) => Ok(size),
        _ => Err(config(
            "page_size",
            format!("`page_size` must be a whole number from 1 to {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Checks a root URL setting and returns it without a trailing slash.
fn root_url(name: &str, text: &str) -> Result<String, PluginError> {
    let example = "a URL such as https://webservices.autotask.net/atservicesrest";
    let url = Url::parse(text)
        .map_err(|error| config(name, format!("`{name}` must be {example}: {error}")))?;
    let Some(host) = url.host() else {
        return Err(config(name, format!("`{name}` must be {example} (no host in `{text}`)")));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(config(
                name,
                format!(
                    "`{name}` must use https:// (http:// is accepted only for loopback hosts such \
                     as 127.0.0.1 or localhost, not for {host})"
                ),
            ));
        }
        other => return Err(config(name, format!("`{name}` must be {example}, not {other}:"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config(name, format!("`{name}` must not carry a user name or password")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(name, format!("`{name}` must not carry a query or a fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Whether a URL may be sent over `http://`: only to this machine.
pub(crate) fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(address) => address.is_loopback(),
        Host::Ipv6(address) => address.is_loopback(),
    }
}

/// `host` or `host:port` of a URL, the port only when it is not the scheme's default.
pub(crate) fn host_port(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}
