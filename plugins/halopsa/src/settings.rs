//! The adapter's settings: their JSON Schema for the handshake, and their checking when a
//! session opens. Every refusal is a `config` error whose `field` names the bad setting, so the
//! user is told which line of `[psa.settings]` to fix. This module owns what a valid setting
//! is; it must never send anything, and never put the client secret into a message or a
//! `Debug` line.

use serde_json::{Value, json};
use tally_plugin_sdk::PluginError;
use tally_plugin_sdk::settings::{
    self, WebUrl, config_error as config, optional_text, required_text, whole_number,
};

/// The most rows hosted Halo serves in one page, whatever the request asks (case C01).
pub const SERVED_PAGE_SIZE: u32 = 100;

/// The largest `page_size` a user may ask for (an on-premises Halo may serve more than 100).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Names of the settings whose values are secrets.
pub const SECRET_SETTINGS: [&str; 1] = ["client_secret"];

const KNOWN: [&str; 6] =
    ["base_url", "client_id", "client_secret", "tenant", "auth_url", "page_size"];

/// Checked settings of one session.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The Halo web address as `scheme://host[:port][/path]`, without a trailing slash; the
    /// API is below `{base_url}/api/`.
    pub base_url: String,
    /// The host (`host` or `host:port`) of `base_url`.
    pub host: String,
    pub client_id: String,
    pub client_secret: String,
    /// The tenant of a hosted Halo, sent as `?tenant=` on the token request.
    pub tenant: Option<String>,
    /// The authorisation server, when configured; otherwise `/api/authinfo` names it.
    pub auth_url: Option<String>,
    /// The host of `auth_url`, when configured.
    pub auth_host: Option<String>,
    /// Rows asked for per page; Halo may serve fewer.
    pub page_size: u32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<secret>")
            .field("tenant", &self.tenant)
            .field("auth_url", &self.auth_url)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Settings {
    /// Checks a settings object. The host has already checked it against [`schema`]; this
    /// checks again, and checks what a schema cannot say (loopback-only `http://`).
    pub fn parse(settings: &Value) -> Result<Settings, PluginError> {
        let object = settings::object(settings, &KNOWN, "a HaloPSA setting")?;

        let (base_url, host) = web_address("base_url", &required_text(object, "base_url")?)?;
        let client_id = required_text(object, "client_id")?;
        let client_secret = required_text(object, "client_secret")?;
        let tenant = optional_text(object, "tenant")?;
        if let Some(tenant) = &tenant
            && !tenant.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(config(
                "tenant",
                "`tenant` must be the tenant name only (letters, digits, `-`, `_`, `.`)",
            ));
        }
        let (auth_url, auth_host) = match optional_text(object, "auth_url")? {
            Some(text) => {
                let (url, host) = web_address("auth_url", &text)?;
                (Some(url), Some(host))
            }
            None => (None, None),
        };
        let page_size = whole_number(object, "page_size", SERVED_PAGE_SIZE, MAX_PAGE_SIZE)?;

        Ok(Settings {
            base_url,
            host,
            client_id,
            client_secret,
            tenant,
            auth_url,
            auth_host,
            page_size,
        })
    }
}

/// The JSON Schema of the settings object, for the handshake.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "HaloPSA settings",
        "type": "object",
        "additionalProperties": false,
        "required": ["base_url", "client_id", "client_secret"],
        "properties": {
            "base_url": {
                "type": "string",
                "minLength": 1,
                "description": "The Halo web address, e.g. https://acme.halopsa.com; http:// only \
                                for loopback hosts"
            },
            "client_id": {
                "type": "string",
                "minLength": 1,
                "description": "The client id of the Halo API application (Client ID and Secret \
                                (Services) authentication)"
            },
            "client_secret": {
                "type": "string",
                "minLength": 1,
                "description": "The client secret of the Halo API application"
            },
            "tenant": {
                "type": ["string", "null"],
                "description": "The tenant name of a hosted Halo, sent as ?tenant= when asking \
                                for a token"
            },
            "auth_url": {
                "type": ["string", "null"],
                "description": "The authorisation server, e.g. https://acme.halopsa.com/auth; \
                                found with /api/authinfo when left out"
            },
            "page_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": SERVED_PAGE_SIZE,
                "description": "Rows asked for per page; hosted Halo serves at most 100"
            }
        }
    })
}

/// Checks a web address setting and returns it without a trailing slash, with its
/// `host[:port]`. A path is kept (an on-premises Halo may live below one); a query, a fragment
/// or credentials are refused.
pub fn web_address(field: &str, text: &str) -> Result<(String, String), PluginError> {
    let WebUrl { url, host_port } =
        settings::web_url(field, text, "a URL such as https://acme.halopsa.com")?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(
            field,
            format!("`{field}` must not carry a query or fragment (`{text}`)"),
        ));
    }
    let path = url.path().trim_end_matches('/');
    Ok((format!("{}://{host_port}{path}", url.scheme()), host_port))
}
