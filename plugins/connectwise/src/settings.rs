//! The adapter's settings: their JSON Schema for the handshake, and their checking when a
//! session opens. Every refusal is a `config` error whose `field` names the bad setting, so the
//! user is told which line of `[psa.settings]` to fix. This module owns what a valid setting
//! is; it must never send anything, and it must never put a secret (the keys, the client id)
//! into a message or a `Debug` line.

use serde_json::{Value, json};
use tally_plugin_sdk::PluginError;
use tally_plugin_sdk::settings::{
    self, WebUrl, config_error as config, optional_flag, optional_text, required_text, whole_number,
};

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
        let object = settings::object(settings, &KNOWN, "a ConnectWise setting")?;

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
        let page_size = whole_number(object, "page_size", MAX_PAGE_SIZE, MAX_PAGE_SIZE)?;
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

/// Checks `site` and returns it as `scheme://host[:port]` with its `host[:port]`.
fn site(text: &str) -> Result<(String, String), PluginError> {
    let WebUrl { url, host_port } =
        settings::web_url("site", text, "a URL such as https://api-na.myconnectwise.net")?;
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
    Ok((format!("{}://{host_port}", url.scheme()), host_port))
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
