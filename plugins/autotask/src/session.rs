//! One opened session: its checked settings, the tenant's zone once known, and the building of
//! every request from them. Machines share a session through an `Arc`, so the zone found by
//! one operation serves every later one. This module owns where requests go: it builds API
//! URLs only below the zone's REST root, follows a `nextPageUrl` only on the zone's own host,
//! and puts the credentials only in the headers of API requests (never in the zone lookup, a
//! URL or a message).

use std::sync::RwLock;

use serde_json::Value;
use tally_plugin_sdk::{ErrorKind, HttpRequest, PluginError};
use url::Url;

use crate::settings::Settings;

/// The API version below the zone's REST root.
const VERSION: &str = "V1.0";

/// The tenant's zone: where its API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The REST root with a trailing slash, e.g. `https://webservices5.autotask.net/ATServicesRest/`.
    pub base: String,
}

impl Zone {
    /// Reads a zone URL, refusing one whose host the session may not talk to.
    pub fn parse(url: &str, settings: &Settings) -> Result<Zone, PluginError> {
        let parsed = Url::parse(url).map_err(|error| {
            zone_error(format!("Autotask named the zone `{url}`, which is not a URL: {error}"))
        })?;
        let Some(host) = parsed.host() else {
            return Err(zone_error(format!("Autotask named the zone `{url}`, which has no host")));
        };
        let secure = parsed.scheme() == "https"
            || (parsed.scheme() == "http" && crate::settings::is_loopback(&host));
        if !secure {
            return Err(zone_error(format!(
                "Autotask named the zone `{url}`; tally sends credentials only over https://"
            )));
        }
        let host_port = crate::settings::host_port(url).unwrap_or_default();
        if !settings.hosts().iter().any(|allowed| allowed.eq_ignore_ascii_case(&host_port)) {
            return Err(zone_error(format!(
                "Autotask placed user {} in the zone {url}, whose host {host_port} tally does not \
                 know; if that zone is right, set zone_url = \"{url}\" in [psa.settings]",
                settings.username
            ))
            .with_field("zone_url"));
        }
        let mut base = parsed.as_str().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Zone { base })
    }
}

fn zone_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message).retryable(false)
}

pub struct Session {
    settings: Settings,
    zone: RwLock<Option<Zone>>,
}

impl Session {
    pub fn new(settings: Settings) -> Result<Session, PluginError> {
        let zone = match &settings.zone_url {
            Some(url) => Some(Zone::parse(url, &settings)?),
            None => None,
        };
        Ok(Session { settings, zone: RwLock::new(zone) })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The zone, once pinned or looked up.
    pub fn zone(&self) -> Option<Zone> {
        self.zone.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Keeps a looked-up zone for every later operation of this session.
    pub fn learn_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(zone);
    }

    /// Whether the zone is pinned by `zone_url`, so never looked up.
    pub fn zone_pinned(&self) -> bool {
        self.settings.zone_url.is_some()
    }

    /// `GET {zone_discovery_url}/v1.0/zoneInformation?user=…`: unauthenticated, so it carries
    /// no credentials.
    pub fn zone_request(&self) -> Result<HttpRequest, PluginError> {
        let root = &self.settings.zone_discovery_url;
        let mut url = Url::parse(&format!("{root}/v1.0/zoneInformation")).map_err(|error| {
            crate::errors::internal(format!("the discovery URL broke: {error}"))
        })?;
        url.query_pairs_mut().append_pair("user", &self.settings.username);
        Ok(HttpRequest::new("GET", url.to_string(), "zoneInformation")
            .header("Accept", "application/json"))
    }

    /// `POST {zone}V1.0/{entity}/query` with `body`.
    pub fn query_request(&self, entity: &str, body: &str) -> Result<HttpRequest, PluginError> {
        let url = format!("{}{VERSION}/{entity}/query", self.base()?);
        Ok(self.authenticated("POST", url, entity, body))
    }

    /// `POST {nextPageUrl}` with the same body as the first page (case C02: a GET is refused
    /// with 405). Refused unless the URL is on the zone's own host.
    pub fn continuation_request(
        &self,
        entity: &str,
        next_page_url: &str,
        body: &str,
    ) -> Result<HttpRequest, PluginError> {
        let base = self.base()?;
        let zone = Url::parse(&base)
            .map_err(|error| crate::errors::internal(format!("the zone URL broke: {error}")))?;
        let next = zone.join(next_page_url).map_err(|error| {
            refused_link(entity, format!("`{next_page_url}` is not a URL: {error}"))
        })?;
        if next.origin() != zone.origin() {
            let host = next.host_str().unwrap_or("(none)");
            return Err(refused_link(
                entity,
                format!(
                    "points at {host}, not at the zone {}; tally sends credentials only to the \
                     zone",
                    zone.origin().ascii_serialization()
                ),
            ));
        }
        Ok(self.authenticated("POST", next.to_string(), entity, body))
    }

    /// `POST {zone}V1.0/{entity}` creating one record from `body`.
    pub fn create_request(&self, entity: &str, body: &Value) -> Result<HttpRequest, PluginError> {
        let url = format!("{}{VERSION}/{entity}", self.base()?);
        Ok(self.authenticated("POST", url, entity, &body.to_string()))
    }

    fn base(&self) -> Result<String, PluginError> {
        self.zone()
            .map(|zone| zone.base)
            .ok_or_else(|| crate::errors::internal("an API request was built before the zone"))
    }

    fn authenticated(&self, method: &str, url: String, entity: &str, body: &str) -> HttpRequest {
        let mut request = HttpRequest::new(method, url, entity)
            .header("ApiIntegrationCode", self.settings.integration_code.clone())
            .header("UserName", self.settings.username.clone())
            .header("Secret", self.settings.secret.clone())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json");
        request.body = Some(body.to_string());
        request
    }

    /// Whether `url` is an API URL of the current zone (so it can move with the tenant).
    pub fn in_zone(&self, url: &str) -> bool {
        self.zone().is_some_and(|zone| url.starts_with(&zone.base))
    }

    /// `url` moved from the zone `from` to the current zone.
    pub fn rebase(&self, url: &str, from: &Zone) -> Option<String> {
        let zone = self.zone()?;
        url.strip_prefix(&from.base).map(|rest| format!("{}{rest}", zone.base))
    }
}

fn refused_link(entity: &str, detail: String) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("Autotask's nextPageUrl for {entity} {detail}; the listing stops here"),
    )
    .retryable(false)
}
