//! The zone step around every operation. Autotask serves each tenant from one zone, found with
//! an unauthenticated `GET zoneInformation?user=…`; [`Zoned`] asks once per session before the
//! wrapped machine starts, and once more per operation when a request is answered 401, since a
//! tenant can move: if the zone changed, the same request goes again to the new zone, else the
//! 401 goes to the wrapped machine as the refusal it is. This module must never start the
//! wrapped machine before the zone is known, and never send a request to a zone host the
//! session does not allow.

use std::sync::Arc;

use serde::Deserialize;
use tally_plugin_sdk::{
    ErrorKind, HttpRequest, HttpResponse, Machine, PluginError, Step, StepInput,
};

use crate::errors;
use crate::session::{Session, Zone};

const ENDPOINT: &str = "GET zoneInformation";

#[derive(Deserialize)]
struct ZoneInformation {
    url: Option<String>,
}

enum State {
    NotStarted,
    /// The first zone lookup is out; a retryable failure stays here.
    Discovering,
    /// Every input goes to the wrapped machine.
    Running,
    /// A request was answered 401 and the zone is being looked up again.
    Relooking {
        answer: HttpResponse,
        old: Zone,
    },
    Failed(PluginError),
}

/// Runs `inner` once the session knows its zone.
pub struct Zoned {
    session: Arc<Session>,
    inner: Box<dyn Machine>,
    state: State,
    /// The wrapped machine's last request, to send again in a new zone.
    pending: Option<HttpRequest>,
    relooked: bool,
}

impl Zoned {
    pub fn new(session: Arc<Session>, inner: Box<dyn Machine>) -> Zoned {
        Zoned { session, inner, state: State::NotStarted, pending: None, relooked: false }
    }

    fn run(&mut self, input: StepInput) -> Step {
        self.state = State::Running;
        let step = self.inner.step(input);
        if let Step::Send { request } = &step {
            self.pending = Some(request.clone());
        }
        step
    }

    fn lookup(&mut self) -> Result<HttpRequest, PluginError> {
        self.session.zone_request()
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    /// Whether a response calls for a second look at the zone.
    fn moved(&self, response: &HttpResponse) -> bool {
        response.status == 401
            && !self.relooked
            && !self.session.zone_pinned()
            && self.pending.as_ref().is_some_and(|request| self.session.in_zone(&request.url))
    }
}

impl Machine for Zoned {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::Running, StepInput::Response { response }) if self.moved(&response) => {
                let Some(old) = self.session.zone() else {
                    return self.run(StepInput::Response { response });
                };
                match self.lookup() {
                    Ok(request) => {
                        self.relooked = true;
                        self.state = State::Relooking { answer: response, old };
                        Step::Send { request }
                    }
                    Err(_) => self.run(StepInput::Response { response }),
                }
            }
            (State::Running, input) => self.run(input),
            (State::NotStarted, StepInput::Start) => {
                if self.session.zone().is_some() {
                    return self.run(StepInput::Start);
                }
                match self.lookup() {
                    Ok(request) => {
                        self.state = State::Discovering;
                        Step::Send { request }
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::Discovering, StepInput::Response { response }) => {
                match read(&self.session, &response) {
                    Ok(zone) => {
                        self.session.learn_zone(zone);
                        self.run(StepInput::Start)
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::Relooking { .. }, StepInput::Response { response }) => {
                let State::Relooking { answer, old } =
                    std::mem::replace(&mut self.state, State::Running)
                else {
                    return self.fail(errors::internal("the zone step lost its state"));
                };
                let moved = read(&self.session, &response).ok().filter(|zone| *zone != old);
                let Some(zone) = moved else {
                    return self.run(StepInput::Response { response: answer });
                };
                self.session.learn_zone(zone);
                let again = self.pending.as_ref().and_then(|request| {
                    let url = self.session.rebase(&request.url, &old)?;
                    Some(HttpRequest { url, ..request.clone() })
                });
                match again {
                    Some(request) => {
                        self.pending = Some(request.clone());
                        Step::Send { request }
                    }
                    None => self.run(StepInput::Response { response: answer }),
                }
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the zone step did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// The zone in a `zoneInformation` answer.
fn read(session: &Session, response: &HttpResponse) -> Result<Zone, PluginError> {
    let username = &session.settings().username;
    if !errors::is_success(response) {
        let error = errors::from_response(response, ENDPOINT);
        if error.retryable {
            return Err(error);
        }
        return Err(PluginError::new(
            ErrorKind::Config,
            format!(
                "Autotask could not find the zone of user {username} ({}); check username, or \
                 set zone_url",
                error.message
            ),
        )
        .with_field("username")
        .retryable(false));
    }
    let info: ZoneInformation =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(ENDPOINT, error))?;
    let Some(url) = info.url.filter(|url| !url.trim().is_empty()) else {
        return Err(PluginError::new(
            ErrorKind::Config,
            format!("Autotask named no zone for user {username}; check username, or set zone_url"),
        )
        .with_field("username")
        .retryable(false));
    };
    Zone::parse(url.trim(), session.settings())
}
