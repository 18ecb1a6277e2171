//! One opened session: its checked settings, the authorisation server once known, the bearer
//! token shared by every machine of the session (behind a mutex, with a generation number so
//! that machines that hit one expiry together renew it once), and the building of every
//! request URL. This module owns where requests go: it must never build a URL on a host the
//! session did not declare, and never let the client secret appear anywhere but in the body of
//! a token request, nor the token anywhere but in an `Authorization` header.

use std::sync::{Mutex, MutexGuard};

use tally_plugin_sdk::{ErrorKind, HttpRequest, PluginError};
use url::form_urlencoded;

use crate::settings::{Settings, web_address};

/// A bearer token and the generation it was issued in.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    /// Counts the tokens this session has been issued; 0 means none yet.
    pub generation: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<secret>")
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Default)]
struct AuthState {
    /// The authorisation server (`https://acme.halopsa.com/auth`), configured or learnt.
    auth_url: Option<String>,
    token: Option<Token>,
    issued: u64,
}

pub struct Session {
    settings: Settings,
    auth: Mutex<AuthState>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        let auth = AuthState { auth_url: settings.auth_url.clone(), ..AuthState::default() };
        Session { settings, auth: Mutex::new(auth) }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The hosts this session may send requests to: the Halo host, and the authorisation
    /// server's when it is configured on another one.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.settings.host.clone()];
        if let Some(auth_host) = &self.settings.auth_host
            && !hosts.contains(auth_host)
        {
            hosts.push(auth_host.clone());
        }
        hosts
    }

    fn auth(&self) -> MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current token, if one was issued.
    pub fn token(&self) -> Option<Token> {
        self.auth().token.clone()
    }

    /// Keeps a newly issued token for every machine of the session.
    pub fn store_token(&self, value: String) -> Token {
        let mut auth = self.auth();
        auth.issued += 1;
        let token = Token { value, generation: auth.issued };
        auth.token = Some(token.clone());
        token
    }

    pub fn auth_url(&self) -> Option<String> {
        self.auth().auth_url.clone()
    }

    /// Checks and keeps the authorisation server `/api/authinfo` named. It must be on a host
    /// the session declared (the Halo host, or the configured `auth_url`'s): the client secret
    /// goes there.
    pub fn learn_auth_url(&self, text: &str) -> Result<String, PluginError> {
        let refuse = |why: String| {
            PluginError::new(
                ErrorKind::Config,
                format!("Halo's /api/authinfo names the authorisation server `{text}`, {why}"),
            )
            .with_field("auth_url")
            .retryable(false)
        };
        let (url, host) = web_address("auth_url", text)
            .map_err(|error| refuse(format!("which tally cannot use: {}", error.message)))?;
        if !self.hosts().contains(&host) {
            return Err(refuse(format!(
                "on another host than {}; set `auth_url` to it if that server is trusted",
                self.settings.base_url
            )));
        }
        self.auth().auth_url = Some(url.clone());
        Ok(url)
    }

    /// `GET {base_url}/api/authinfo`: public, so it carries no credentials.
    pub fn authinfo_request(&self) -> HttpRequest {
        HttpRequest::new("GET", format!("{}/api/authinfo", self.settings.base_url), "authinfo")
            .header("Accept", "application/json")
    }

    /// `POST {auth_url}/token[?tenant=]` with the client credentials, form-encoded.
    pub fn token_request(&self, auth_url: &str) -> HttpRequest {
        let mut url = format!("{auth_url}/token");
        if let Some(tenant) = &self.settings.tenant {
            url.push_str("?tenant=");
            url.push_str(&form_urlencoded::byte_serialize(tenant.as_bytes()).collect::<String>());
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("client_secret", &self.settings.client_secret)
            .append_pair("scope", "all")
            .finish();
        let mut request = HttpRequest::new("POST", url, "auth/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        request.body = Some(body);
        request
    }

    /// An API request for `path` (below `/api/`) with `query`, without credentials: the
    /// authentication layer adds the bearer token when it sends it.
    pub fn api_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        endpoint: &str,
    ) -> HttpRequest {
        let mut url = format!("{}/api/{path}", self.settings.base_url);
        if !query.is_empty() {
            let mut encoded = form_urlencoded::Serializer::new(String::new());
            for (name, value) in query {
                encoded.append_pair(name, value);
            }
            url.push('?');
            url.push_str(&encoded.finish());
        }
        HttpRequest::new(method, url, endpoint).header("Accept", "application/json")
    }
}
