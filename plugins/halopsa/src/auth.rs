//! The authentication layer every operation runs inside. [`Authed`] wraps an operation's
//! machine, which builds its requests without credentials: before a request goes out it adds
//! `Authorization: Bearer` with the session's token, and when the session has none yet it
//! first asks `/api/authinfo` for the authorisation server (unless `auth_url` is configured)
//! and `POST {auth_url}/token` for a token (client credentials, form-encoded).
//!
//! An expired token is renewed once per request, transparently: a 401 sends the token
//! request, then the same request again with the new token; a second 401 for that request is
//! an `auth` error. When another machine of the session renewed the token meanwhile, the
//! request is resent with that token instead of asking for another. The wrapped machine never
//! sees a 401 it could be spared, nor any authentication exchange. This layer must never send
//! the token or the client secret anywhere but to the hosts the session declared.

use std::sync::Arc;

use serde::Deserialize;
use tally_plugin_sdk::{HttpRequest, HttpResponse, Machine, PluginError, Step, StepInput};

use crate::errors;
use crate::session::Session;

const AUTHINFO: &str = "GET /api/authinfo";
const TOKEN: &str = "POST /auth/token";

enum State {
    NotStarted,
    /// The wrapped machine is running; its request, if any, is out.
    Running,
    /// `/api/authinfo` is out; a retryable failure stays here.
    AskingAuthInfo,
    /// The token request is out; a retryable failure stays here.
    AskingToken,
    Failed(PluginError),
}

/// Runs a machine whose requests need a bearer token.
pub struct Authed {
    session: Arc<Session>,
    inner: Box<dyn Machine>,
    state: State,
    /// The wrapped machine's request in flight, as it built it (without credentials).
    pending: Option<HttpRequest>,
    /// The token generation `pending` was last sent with.
    sent_with: u64,
    /// Whether the token was already renewed for `pending`.
    renewed: bool,
}

impl Authed {
    pub fn new(session: Arc<Session>, inner: Box<dyn Machine>) -> Authed {
        Authed {
            session,
            inner,
            state: State::NotStarted,
            pending: None,
            sent_with: 0,
            renewed: false,
        }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    /// Takes a step of the wrapped machine: a request goes out with credentials.
    fn forward(&mut self, step: Step) -> Step {
        self.state = State::Running;
        match step {
            Step::Send { request } => {
                self.pending = Some(request);
                self.renewed = false;
                self.send_pending()
            }
            other => other,
        }
    }

    /// Sends the pending request with the session's token, or gets a token first.
    fn send_pending(&mut self) -> Step {
        let (Some(token), Some(request)) = (self.session.token(), self.pending.clone()) else {
            return self.authenticate();
        };
        self.sent_with = token.generation;
        self.state = State::Running;
        Step::Send { request: request.header("Authorization", format!("Bearer {}", token.value)) }
    }

    fn authenticate(&mut self) -> Step {
        match self.session.auth_url() {
            Some(auth_url) => {
                self.state = State::AskingToken;
                Step::Send { request: self.session.token_request(&auth_url) }
            }
            None => {
                self.state = State::AskingAuthInfo;
                Step::Send { request: self.session.authinfo_request() }
            }
        }
    }

    /// A 401 to the pending request: renew once, or give up.
    fn unauthorized(&mut self, response: &HttpResponse) -> Step {
        if self.renewed {
            let endpoint = self.pending.as_ref().map_or("a request".to_string(), describe);
            return self.fail(errors::from_response(response, &endpoint));
        }
        self.renewed = true;
        match self.session.token() {
            // Another machine of the session renewed the token since this request went out.
            Some(token) if token.generation != self.sent_with => self.send_pending(),
            _ => self.authenticate(),
        }
    }
}

impl Machine for Authed {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::NotStarted, StepInput::Start) => {
                let step = self.inner.step(StepInput::Start);
                self.forward(step)
            }
            (State::Running, StepInput::Response { response })
                if response.status == 401 && self.pending.is_some() =>
            {
                self.unauthorized(&response)
            }
            (State::Running, input @ (StepInput::Response { .. } | StepInput::Continue)) => {
                let step = self.inner.step(input);
                self.forward(step)
            }
            (State::AskingAuthInfo, StepInput::Response { response }) => {
                match read_authinfo(&self.session, &response) {
                    Ok(auth_url) => {
                        self.state = State::AskingToken;
                        Step::Send { request: self.session.token_request(&auth_url) }
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::AskingToken, StepInput::Response { response }) => match read_token(&response) {
                Ok(value) => {
                    self.session.store_token(value);
                    self.send_pending()
                }
                Err(error) => self.fail(error),
            },
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the authentication step did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// `GET /api/RecurringInvoice/-94`, without the query.
fn describe(request: &HttpRequest) -> String {
    let path = url::Url::parse(&request.url).map(|url| url.path().to_string());
    format!("{} {}", request.method, path.unwrap_or_else(|_| request.endpoint.clone()))
}

#[derive(Deserialize)]
struct AuthInfo {
    auth_url: Option<String>,
}

/// The authorisation server `/api/authinfo` names. A Halo that does not answer it (404) or
/// names none uses `{base_url}/auth`, Halo's default.
fn read_authinfo(session: &Session, response: &HttpResponse) -> Result<String, PluginError> {
    let fallback = || format!("{}/auth", session.settings().base_url);
    if response.status == 404 {
        return session.learn_auth_url(&fallback());
    }
    if !errors::is_success(response) {
        return Err(errors::from_response(response, AUTHINFO));
    }
    let info: AuthInfo =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(AUTHINFO, error))?;
    match info.auth_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => session.learn_auth_url(url),
        None => session.learn_auth_url(&fallback()),
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    token_type: Option<String>,
}

/// The access token of a token answer.
fn read_token(response: &HttpResponse) -> Result<String, PluginError> {
    if !errors::is_success(response) {
        return Err(errors::from_token_response(response, TOKEN));
    }
    let body: TokenBody =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(TOKEN, error))?;
    if let Some(kind) = body.token_type.as_deref()
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(errors::auth(format!(
            "Halo's authorisation server issued a `{kind}` token, not a bearer token"
        )));
    }
    let token = body
        .access_token
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    token.ok_or_else(|| errors::malformed(TOKEN, "no usable `access_token`"))
}
