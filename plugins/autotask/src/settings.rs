//! The adapter's settings: their JSON Schema for the handshake, and their checking when a
//! session opens. Every refusal is a `config` error whose `field` names the bad setting. This
//! module also owns the list of hosts a session may talk to, since that list follows from the
//! settings alone. It must never send anything, and never put the secret or the integration
//! code into a message or a `Debug` line.

use serde_json::{Value, json};
use tally_plugin_sdk::PluginError;
pub(crate) use tally_plugin_sdk::settings::is_loopback;
use tally_plugin_sdk::settings::{
    self, config_error as config, optional_text, required_text, whole_number,
};
use url::Url;

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
        let object = settings::object(settings, &KNOWN, "an Autotask setting")?;

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
        let page_size = whole_number(object, "page_size", MAX_PAGE_SIZE, MAX_PAGE_SIZE)?;

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

/// Checks a root URL setting and returns it without a trailing slash.
fn root_url(name: &str, text: &str) -> Result<String, PluginError> {
    let example = "a URL such as https://webservices.autotask.net/atservicesrest";
    let url = settings::web_url(name, text, example)?.url;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(name, format!("`{name}` must not carry a query or a fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `host` or `host:port` of a URL, the port only when it is not the scheme's default.
pub(crate) fn host_port(url: &str) -> Option<String> {
    settings::host_port(&Url::parse(url).ok()?)
}
