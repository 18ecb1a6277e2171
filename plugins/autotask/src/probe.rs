//! The connection probe: one `Companies` query for one id, after the zone lookup, proving the
//! zone, the user name, the secret and the integration code together. Autotask refuses bad
//! credentials with 401 or 500 alike (case C10), and a probe that fails at start-up means the
//! settings are wrong far more often than the server is, so every failure of the probe is a
//! `config` error naming the settings to check, never retryable: the host must not loop on it.

use std::sync::Arc;

use tally_plugin_sdk::{ErrorKind, Machine, OpResult, PluginError, Step, StepInput};

use crate::errors;
use crate::query::{Condition, Query, read_page};
use crate::session::Session;

enum State {
    NotStarted,
    Awaiting,
    Done,
}

/// `POST Companies/query` for one id.
pub struct Probe {
    session: Arc<Session>,
    query: Query,
    state: State,
}

impl Probe {
    pub fn new(session: Arc<Session>) -> Probe {
        let query = Query::new("Companies", 1, &["id"], &[Condition::gte("id", 0)]);
        Probe { session, query, state: State::NotStarted }
    }
}

impl Machine for Probe {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::NotStarted, StepInput::Start) => {
                match self.query.first_request(&self.session) {
                    Ok(request) => {
                        self.state = State::Awaiting;
                        Step::Send { request }
                    }
                    Err(error) => Step::Failed { error },
                }
            }
            (State::Awaiting, StepInput::Response { response }) => {
                match read_page(&response, &self.query.endpoint()) {
                    Ok(_) => {
                        self.state = State::Done;
                        let zone = self.session.zone().map(|z| z.base).unwrap_or_default();
                        let user = &self.session.settings().username;
                        Step::Done {
                            result: OpResult::Probed {
                                detail: format!(
                                    "Autotask (zone {zone}) accepted the credentials of {user}"
                                ),
                            },
                        }
                    }
                    Err(error) => Step::Failed { error },
                }
            }
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the probe did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// Wraps the probe (zone step included) so that every failure reads as a configuration
/// problem, and ends the probe there.
pub struct ProbeMachine {
    inner: Box<dyn Machine>,
    failed: Option<PluginError>,
}

impl ProbeMachine {
    pub fn new(inner: Box<dyn Machine>) -> ProbeMachine {
        ProbeMachine { inner, failed: None }
    }
}

impl Machine for ProbeMachine {
    fn step(&mut self, input: StepInput) -> Step {
        if let Some(error) = &self.failed {
            return Step::Failed { error: error.clone() };
        }
        match self.inner.step(input) {
            Step::Failed { error } => {
                let error = probe_failure(error);
                self.failed = Some(error.clone());
                Step::Failed { error }
            }
            step => step,
        }
    }
}

/// A failed probe: `config`, never retryable, naming the settings that take part.
pub fn probe_failure(error: PluginError) -> PluginError {
    let field = error.field.clone().or_else(|| match error.kind {
        ErrorKind::Auth => Some("username".to_string()),
        _ => None,
    });
    let message = if error.kind == ErrorKind::Config {
        error.message
    } else {
        format!(
            "the connection check failed: {}; check username, secret and integration_code \
             (and zone_discovery_url or zone_url)",
            error.message
        )
    };
    PluginError {
        kind: ErrorKind::Config,
        message,
        retryable: false,
        retry_after_seconds: None,
        field,
    }
}
