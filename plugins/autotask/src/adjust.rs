//! `set_quantity` for Autotask, whose unit counts change only by creating a
//! `ContractServiceAdjustments` record: a whole-number delta from an effective date on
//! (case C13). The machine is given the *target*, never a delta: it reads the units in force on
//! the effective date, sends `target − units` (nothing when that is 0), then reads the units
//! again and answers with them. Because every attempt starts from a fresh read, a retry after a
//! crash, or after an answer that never arrived, finds the change already made and sends
//! nothing: the change can never be applied twice.
//!
//! A POST that may have landed (a 5xx, a body cut short) is never sent again as it was: the
//! machine re-reads and computes a new delta, at most [`MAX_POSTS`] times. Only a throttle
//! refusal (the thread or hourly threshold, which Autotask answers before doing anything) is
//! handed to the host as retryable, since the identical POST is then safe. This module must
//! never send a delta it did not compute from a read made after the last POST.

use std::sync::Arc;

use serde_json::json;
use tally_plugin_sdk::{
    ErrorKind, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Step, StepInput,
};
use time::Date;

use crate::errors;
use crate::lines::{LineReader, LineState, Progress};
use crate::query::Lookup;
use crate::records::{self, format_date};
use crate::session::Session;

/// The most adjustments one operation sends when it cannot tell whether the last one landed.
pub const MAX_POSTS: u32 = 3;

const ENTITY: &str = "ContractServiceAdjustments";

/// What `set_quantity` was asked, checked before it starts.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub line: u64,
    pub agreement: u64,
    pub units: i64,
    pub effective: Date,
}

enum State {
    NotStarted,
    /// Reading the line and its units on the effective date.
    Reading(LineReader),
    /// An adjustment is out; a throttle refusal stays here.
    Posting {
        line: LineState,
        posts: u32,
    },
    /// Reading the units again after an adjustment. `confirmed` when Autotask said it created
    /// it; `said` is what it said when it did not.
    Checking {
        line: LineState,
        lookup: Lookup,
        confirmed: bool,
        posts: u32,
        said: Option<String>,
    },
    Done,
    Failed(PluginError),
}

pub struct SetQuantity {
    session: Arc<Session>,
    target: Target,
    state: State,
}

impl SetQuantity {
    pub fn new(session: Arc<Session>, target: Target) -> SetQuantity {
        SetQuantity { session, target, state: State::NotStarted }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    fn done(&mut self, line: &LineState) -> Step {
        self.state = State::Done;
        Step::Done { result: OpResult::Line { line: line.line() } }
    }

    /// The units in force on the effective date; an error when no row covers it.
    fn units_on(&self, line: &LineState) -> Result<i64, PluginError> {
        let Some(row) = line.in_force() else {
            return Err(errors::invalid(
                "effective_date",
                format!(
                    "contract service {} has no unit row covering {} (its contract does not bill \
                     then); choose an effective date inside a billing period",
                    self.target.line,
                    format_date(self.target.effective)
                ),
            ));
        };
        records::whole_units(row.units).map_err(|_| {
            errors::bad_row(
                &format!("POST {ENTITY}"),
                format!("unit row {} holds {} units, not a whole number", row.id, row.units),
            )
        })
    }

    /// Sends `target − units` if it is not 0, else answers with the line.
    fn adjust(&mut self, line: LineState, posts: u32) -> Step {
        let units = match self.units_on(&line) {
            Ok(units) => units,
            Err(error) => return self.fail(error),
        };
        let delta = self.target.units - units;
        if delta == 0 {
            return self.done(&line);
        }
        match self.adjustment(&line, delta) {
            Ok(request) => {
                self.state = State::Posting { line, posts: posts + 1 };
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    fn adjustment(&self, line: &LineState, delta: i64) -> Result<HttpRequest, PluginError> {
        let body = json!({
            "contractID": line.service.contract_id,
            "serviceID": line.service.service_id,
            "unitChange": delta,
            "effectiveDate": format!("{}T00:00:00", format_date(self.target.effective)),
        });
        self.session.create_request(ENTITY, &body)
    }

    fn answer_post(&mut self, response: &HttpResponse) -> Step {
        let created = errors::is_success(response);
        let said = if created {
            match serde_json::from_str::<serde_json::Value>(&response.body) {
                Ok(body) if body.get("itemId").is_some_and(|id| id.is_u64()) => None,
                _ => Some("an answer without the new adjustment's itemId".to_string()),
            }
        } else {
            let error = errors::from_response(response, &format!("POST {ENTITY}"));
            let uncertain = response.status >= 500 && error.kind == ErrorKind::Server;
            if errors::is_throttle(response) || !uncertain {
                // Refused before anything was done (a throttle: retry as is), or refused for
                // good (credentials, a bad request): the host decides.
                return self.fail(error);
            }
            Some(error.message)
        };

        let State::Posting { line, posts, .. } = std::mem::replace(&mut self.state, State::Done)
        else {
            return self.fail(errors::internal("an adjustment answer arrived out of turn"));
        };
        match Lookup::start(Arc::clone(&self.session), line.units_query()) {
            Ok((lookup, request)) => {
                let confirmed = said.is_none();
                self.state = State::Checking { line, lookup, confirmed, posts, said };
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    fn answer_check(&mut self, response: &HttpResponse) -> Step {
        let State::Checking { lookup, .. } = &mut self.state else {
            return self.fail(errors::internal("unit rows arrived out of turn"));
        };
        match lookup.answer(response) {
            Ok(Some(request)) => return Step::Send { request },
            Ok(None) => {}
            Err(error) => return self.fail(error),
        }
        let State::Checking { mut line, lookup, confirmed, posts, said } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return self.fail(errors::internal("unit rows arrived out of turn"));
        };
        let endpoint = lookup.endpoint();
        line.units = match records::read_all(&lookup.into_items(), &endpoint, records::unit_row) {
            Ok(units) => units,
            Err(error) => return self.fail(error),
        };
        let units = match self.units_on(&line) {
            Ok(units) => units,
            Err(error) => return self.fail(error),
        };
        if units == self.target.units {
            return self.done(&line);
        }
        let date = format_date(self.target.effective);
        if confirmed {
            return self.fail(
                PluginError::new(
                    ErrorKind::Conflict,
                    format!(
                        "Autotask created the adjustment of contract service {}, yet its units on \
                         {date} are {units}, not {}: the line changed at the same time; read it \
                         again before deciding",
                        self.target.line, self.target.units
                    ),
                )
                .retryable(false),
            );
        }
        if posts >= MAX_POSTS {
            let said = said.unwrap_or_default();
            return self.fail(
                PluginError::new(
                    ErrorKind::Server,
                    format!(
                        "Autotask did not confirm {posts} adjustments of contract service {} \
                         (last: {said}); its units on {date} are {units}, not {}",
                        self.target.line, self.target.units
                    ),
                )
                .retryable(false),
            );
        }
        self.adjust(line, posts)
    }
}

impl Machine for SetQuantity {
    fn step(&mut self, input: StepInput) -> Step {
        match (&mut self.state, input) {
            (State::NotStarted, StepInput::Start) => {
                let session = Arc::clone(&self.session);
                let Target { line, agreement, effective, .. } = self.target;
                match LineReader::start(session, line, agreement, effective) {
                    Ok((reader, request)) => {
                        self.state = State::Reading(reader);
                        Step::Send { request }
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::Reading(reader), StepInput::Response { response }) => {
                match reader.answer(&response) {
                    Ok(Progress::Send(request)) => Step::Send { request },
                    Ok(Progress::Read(line)) => self.adjust(line, 0),
                    Err(error) => self.fail(error),
                }
            }
            (State::Posting { .. }, StepInput::Response { response }) => {
                self.answer_post(&response)
            }
            (State::Checking { .. }, StepInput::Response { response }) => {
                self.answer_check(&response)
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "setting a quantity did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}
