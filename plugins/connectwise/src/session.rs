//! One opened session: its checked settings, the credentials headers, the codebase once known,
//! and the building of every request URL from them. Machines share a session through an `Arc`,
//! so the codebase found by one operation serves every later one. This module owns where
//! requests go: it must never build a URL on any host but the configured site, and never let
//! the credentials appear anywhere but in the headers of an API request.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tally_plugin_sdk::HttpRequest;

use crate::conditions::{Query, encode};
use crate::errors;
use crate::settings::Settings;

/// The API version the adapter reads and writes.
const ACCEPT: &str = "application/vnd.connectwise.com+json; version=2022.1";

pub struct Session {
    settings: Settings,
    /// `Basic base64(company_id+public_key:private_key)`.
    authorization: String,
    codebase: OnceLock<String>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        let credentials =
            format!("{}+{}:{}", settings.company_id, settings.public_key, settings.private_key);
        let authorization = format!("Basic {}", STANDARD.encode(credentials));
        let codebase = OnceLock::new();
        if let Some(configured) = &settings.codebase {
            let _ = codebase.set(configured.clone());
        }
        Session { settings, authorization, codebase }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The codebase (`v4_6_release/`), once configured or discovered.
    pub fn codebase(&self) -> Option<&str> {
        self.codebase.get().map(String::as_str)
    }

    /// Keeps a discovered codebase for every later operation of this session. The first one
    /// kept stays: two operations discovering at once find the same value.
    pub fn learn_codebase(&self, codebase: String) {
        let _ = self.codebase.set(codebase);
    }

    /// `GET {site}/login/companyinfo/{company_id}`: unauthenticated, so it carries no
    /// credentials.
    pub fn companyinfo_request(&self) -> HttpRequest {
        let url = format!(
            "{}/login/companyinfo/{}",
            self.settings.site,
            encode(&self.settings.company_id)
        );
        HttpRequest::new("GET", url, "login/companyinfo").header("Accept", "application/json")
    }

    /// An authenticated API request for `path` (below `apis/3.0/`) with `query`.
    ///
    /// Fails only when the codebase is not known yet, which the codebase step rules out.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &Query,
        endpoint: &str,
    ) -> Result<HttpRequest, tally_plugin_sdk::PluginError> {
        let Some(codebase) = self.codebase() else {
            return Err(errors::internal("an API request was built before the codebase was known"));
        };
        let mut url = format!("{}/{codebase}apis/3.0/{path}", self.settings.site);
        let query = query.encoded();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        Ok(HttpRequest::new(method, url, endpoint)
            .header("Authorization", self.authorization.clone())
            .header("clientId", self.settings.client_id.clone())
            .header("Accept", ACCEPT))
    }
}
