//! One billing line as Autotask holds it: a contract service, the company of its contract, and
//! its unit rows around one date. [`LineReader`] reads those three in turn; [`ReadLine`] is the
//! `read_line` operation built on it (the units in force today). Writing lives in `adjust`.
//! This module only reads; it must never send anything but queries.

use std::sync::Arc;

use tally_plugin_sdk::{
    BillingLine, ErrorKind, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Step,
    StepInput,
};
use time::Date;

use crate::errors;
use crate::paging::unit_query;
use crate::query::{Condition, Lookup, Query};
use crate::records::{self, ContractService, UnitRow};
use crate::session::Session;
use crate::streams::CONTRACT_SERVICE_FIELDS;

/// A line as read: its contract service, company and unit rows around `on`.
#[derive(Debug, Clone)]
pub struct LineState {
    pub service: ContractService,
    pub company: Option<u64>,
    pub units: Vec<UnitRow>,
    pub on: Date,
}

impl LineState {
    /// The unit row in force on the date the line was read for.
    pub fn in_force(&self) -> Option<&UnitRow> {
        records::in_force(&self.units, self.service.id, self.on)
    }

    /// The line with the units in force on that date (0 when no row covers it).
    pub fn line(&self) -> BillingLine {
        records::billing_line(&self.service, self.in_force(), self.company)
    }

    /// The query that reads the line's unit rows again.
    pub fn units_query(&self) -> Query {
        unit_query(vec![self.service.id], self.on)
    }
}

/// What a step of the reader leads to.
pub enum Progress {
    Send(HttpRequest),
    Read(LineState),
}

enum Phase {
    Service(Lookup),
    Contract(Lookup, ContractService),
    Units(Lookup, ContractService, Option<u64>),
}

/// Reads a line: `ContractServices` by id, its contract's `companyID`, its unit rows.
pub struct LineReader {
    session: Arc<Session>,
    line: u64,
    agreement: u64,
    on: Date,
    phase: Option<Phase>,
}

impl LineReader {
    pub fn start(
        session: Arc<Session>,
        line: u64,
        agreement: u64,
        on: Date,
    ) -> Result<(LineReader, HttpRequest), PluginError> {
        let query = Query::new(
            "ContractServices",
            crate::settings::MAX_PAGE_SIZE,
            &CONTRACT_SERVICE_FIELDS,
            &[Condition::eq("id", line)],
        );
        let (lookup, request) = Lookup::start(Arc::clone(&session), query)?;
        let reader =
            LineReader { session, line, agreement, on, phase: Some(Phase::Service(lookup)) };
        Ok((reader, request))
    }

    /// Takes the answer to the last request. On an error nothing changes, so the same request
    /// can be answered again.
    pub fn answer(&mut self, response: &HttpResponse) -> Result<Progress, PluginError> {
        let lookup = match self.phase.as_mut() {
            Some(
                Phase::Service(lookup) | Phase::Contract(lookup, _) | Phase::Units(lookup, ..),
            ) => lookup,
            None => return Err(errors::internal("the line was already read")),
        };
        if let Some(request) = lookup.answer(response)? {
            return Ok(Progress::Send(request));
        }
        let Some(phase) = self.phase.take() else {
            return Err(errors::internal("the line was already read"));
        };
        match phase {
            Phase::Service(lookup) => {
                let service = self.service(lookup)?;
                let query = Query::new(
                    "Contracts",
                    crate::settings::MAX_PAGE_SIZE,
                    &["id", "companyID"],
                    &[Condition::eq("id", service.contract_id)],
                );
                let (lookup, request) = Lookup::start(Arc::clone(&self.session), query)?;
                self.phase = Some(Phase::Contract(lookup, service));
                Ok(Progress::Send(request))
            }
            Phase::Contract(lookup, service) => {
                let endpoint = lookup.endpoint();
                let contracts =
                    records::read_all(&lookup.into_items(), &endpoint, records::contract_company)?;
                let company = contracts
                    .into_iter()
                    .find(|(id, _)| *id == service.contract_id)
                    .and_then(|(_, company)| company);
                let query = unit_query(vec![service.id], self.on);
                let (lookup, request) = Lookup::start(Arc::clone(&self.session), query)?;
                self.phase = Some(Phase::Units(lookup, service, company));
                Ok(Progress::Send(request))
            }
            Phase::Units(lookup, service, company) => {
                let endpoint = lookup.endpoint();
                let units = records::read_all(&lookup.into_items(), &endpoint, records::unit_row)?;
                Ok(Progress::Read(LineState { service, company, units, on: self.on }))
            }
        }
    }

    fn service(&self, lookup: Lookup) -> Result<ContractService, PluginError> {
        let endpoint = lookup.endpoint();
        let services =
            records::read_all(&lookup.into_items(), &endpoint, records::contract_service)?;
        let Some(service) = services.into_iter().find(|s| s.id == self.line) else {
            return Err(PluginError::new(
                ErrorKind::NotFound,
                format!("Autotask has no contract service {} (the billing line)", self.line),
            )
            .retryable(false));
        };
        if service.contract_id != self.agreement {
            return Err(PluginError::new(
                ErrorKind::NotFound,
                format!(
                    "contract service {} is on contract {}, not on contract {}",
                    self.line, service.contract_id, self.agreement
                ),
            )
            .retryable(false));
        }
        Ok(service)
    }
}

enum State {
    NotStarted,
    Reading(LineReader),
    Done,
    Failed(PluginError),
}

/// `read_line`: the line with the units in force on `today`.
pub struct ReadLine {
    session: Arc<Session>,
    line: u64,
    agreement: u64,
    today: Date,
    state: State,
}

impl ReadLine {
    pub fn new(session: Arc<Session>, line: u64, agreement: u64, today: Date) -> ReadLine {
        ReadLine { session, line, agreement, today, state: State::NotStarted }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }
}

impl Machine for ReadLine {
    fn step(&mut self, input: StepInput) -> Step {
        match (&mut self.state, input) {
            (State::NotStarted, StepInput::Start) => {
                let session = Arc::clone(&self.session);
                match LineReader::start(session, self.line, self.agreement, self.today) {
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
                    Ok(Progress::Read(line)) => {
                        self.state = State::Done;
                        Step::Done { result: OpResult::Line { line: line.line() } }
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "reading a line did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}
