//! The codebase step that comes before every operation when `codebase` is not configured:
//! `GET {site}/login/companyinfo/{company_id}` and its `Codebase` field, kept in the session
//! so a session asks once. [`Discover`] wraps an operation's machine and starts it only when
//! the codebase is known. This module must never send credentials (the endpoint is public)
//! and never start the wrapped machine on a codebase it could not read.

use std::sync::Arc;

use serde::Deserialize;
use tally_plugin_sdk::{ErrorKind, HttpResponse, Machine, PluginError, Step, StepInput};

use crate::errors;
use crate::session::Session;
use crate::settings::normalize_codebase;

const ENDPOINT: &str = "GET login/companyinfo";

#[derive(Deserialize)]
struct CompanyInfo {
    #[serde(rename = "Codebase")]
    codebase: Option<String>,
}

enum State {
    NotStarted,
    /// The companyinfo request is out; a retryable failure stays here.
    Asking,
    /// The codebase is known; every input goes to the wrapped machine.
    Running,
    Failed(PluginError),
}

/// Runs `inner` once the session knows its codebase.
pub struct Discover {
    session: Arc<Session>,
    inner: Box<dyn Machine>,
    state: State,
}

impl Discover {
    pub fn new(session: Arc<Session>, inner: Box<dyn Machine>) -> Discover {
        Discover { session, inner, state: State::NotStarted }
    }
}

impl Machine for Discover {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::Running, input) => self.inner.step(input),
            (State::NotStarted, StepInput::Start) => {
                if self.session.codebase().is_some() {
                    self.state = State::Running;
                    return self.inner.step(StepInput::Start);
                }
                self.state = State::Asking;
                Step::Send { request: self.session.companyinfo_request() }
            }
            (State::Asking, StepInput::Response { response }) => {
                match read(&self.session, &response) {
                    Ok(codebase) => {
                        self.session.learn_codebase(codebase);
                        self.state = State::Running;
                        self.inner.step(StepInput::Start)
                    }
                    Err(error) => {
                        if !error.retryable {
                            self.state = State::Failed(error.clone());
                        }
                        Step::Failed { error }
                    }
                }
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the codebase step did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// The codebase in a companyinfo answer.
fn read(session: &Session, response: &HttpResponse) -> Result<String, PluginError> {
    let company_id = &session.settings().company_id;
    if response.status == 404 {
        return Err(PluginError::new(
            ErrorKind::Config,
            format!(
                "ConnectWise at {} does not know the company id `{company_id}` (companyinfo \
                 answered 404)",
                session.settings().site
            ),
        )
        .with_field("company_id")
        .retryable(false));
    }
    if !errors::is_success(response) {
        return Err(errors::from_response(response, ENDPOINT));
    }

    let info: Option<CompanyInfo> =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(ENDPOINT, error))?;
    let Some(info) = info else {
        return Err(PluginError::new(
            ErrorKind::Config,
            format!(
                "ConnectWise does not know the company id `{company_id}` (companyinfo is null)"
            ),
        )
        .with_field("company_id")
        .retryable(false));
    };
    let reported = info.codebase.unwrap_or_default();
    normalize_codebase(&reported).ok_or_else(|| {
        PluginError::new(
            ErrorKind::Config,
            format!(
                "ConnectWise reported the codebase `{reported}` for company `{company_id}`, \
                 which is not one path segment; set `codebase` (e.g. v4_6_release/)"
            ),
        )
        .with_field("codebase")
        .retryable(false)
    })
}
