//! The Autotask adapter: a tally plugin that lists companies, services (products), recurring
//! service contracts (agreements) and contract services with their units in force (billing
//! lines), reads one line, and sets a line's units through contract service adjustments, over
//! Autotask's REST API (`{zone}V1.0/`).
//!
//! Like every tally plugin it performs no I/O: each operation is a machine that answers HTTP
//! requests for the host to send and turns the responses into records and results. This file
//! is the plugin's front door: the handshake, opening a session, and checking an operation's
//! arguments before its machine starts. The concerns live next to it: `settings` (what a valid
//! setting is, which hosts a session may reach), `session` (where requests go, with which
//! credentials), `zone` (the zone lookup before every operation), `query` (the query body and
//! its pages), `streams`, `paging` (listings), `records` (rows to the record model), `lines`
//! (reading one line), `adjust` (writing units as deltas), `probe` and `errors` (Autotask's
//! failures as typed errors). Nothing here may panic on the host's or Autotask's data.

pub mod adjust;
pub mod errors;
pub mod lines;
pub mod paging;
pub mod probe;
pub mod query;
pub mod records;
pub mod session;
pub mod settings;
pub mod streams;
pub mod zone;

use std::sync::Arc;

use tally_plugin_sdk::{
    Capability, Checkpoint, ErrorKind, Handshake, Limits, ListMode, Machine, Operation, Plugin,
    PluginError, PluginKind, QuantityWrites, StepInput,
};
use time::{Date, OffsetDateTime};

use crate::adjust::{SetQuantity, Target};
use crate::lines::ReadLine;
use crate::paging::{ListMachine, Listing};
use crate::probe::{Probe, ProbeMachine};
use crate::session::Session;
use crate::settings::{MAX_PAGE_SIZE, SECRET_SETTINGS, Settings};
use crate::streams::Stream;
use crate::zone::Zoned;

/// The plugin's name in the handshake and in `[psa] plugin = "autotask"`.
pub const NAME: &str = "autotask";

/// Requests in flight at once for one session, over all endpoints.
const MAX_CONCURRENCY: u32 = 4;

/// Requests in flight at once against one entity: Autotask allows 3 per integration and
/// endpoint, and frees a slot a little after it answers (case C09), so 2 leaves headroom.
const PER_ENDPOINT_CONCURRENCY: u32 = 2;

/// Autotask allows 10,000 requests an hour per database, shared by every integration; this
/// leaves a tenth for the others.
const REQUESTS_PER_HOUR: u32 = 9_000;

/// One session with one Autotask tenant.
pub struct Autotask {
    session: Arc<Session>,
    /// The date whose units are "in force"; today in UTC unless fixed (tests).
    today: Option<Date>,
}

impl Autotask {
    /// The same session, reading units in force on `today` instead of the current date, so
    /// that tests do not depend on the clock.
    pub fn with_today(mut self, today: Date) -> Autotask {
        self.today = Some(today);
        self
    }

    fn today(&self) -> Date {
        self.today.unwrap_or_else(|| OffsetDateTime::now_utc().date())
    }
}

impl Plugin for Autotask {
    fn handshake() -> Handshake {
        Handshake {
            abi_version: tally_plugin_sdk::abi::ABI_VERSION,
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: PluginKind::Psa,
            streams: Stream::ALL.into_iter().map(Stream::info).collect(),
            capabilities: vec![Capability::ReadLine, Capability::SetQuantity],
            quantity_writes: QuantityWrites::Delta,
            settings_schema: settings::schema(),
            secret_settings: SECRET_SETTINGS.iter().map(|name| name.to_string()).collect(),
            limits: Limits {
                max_concurrency: MAX_CONCURRENCY,
                per_endpoint_concurrency: Some(PER_ENDPOINT_CONCURRENCY),
                requests_per_minute: None,
                requests_per_hour: Some(REQUESTS_PER_HOUR),
                max_page_size: Some(MAX_PAGE_SIZE),
            },
            build: tally_plugin_sdk::build_info(),
        }
    }

    fn open(settings: &serde_json::Value) -> Result<Self, PluginError> {
        let settings = Settings::parse(settings)?;
        Ok(Autotask { session: Arc::new(Session::new(settings)?), today: None })
    }

    fn hosts(&self) -> Vec<String> {
        self.session.settings().hosts()
    }

    fn start(&self, operation: Operation) -> Result<Box<dyn Machine>, PluginError> {
        let session = Arc::clone(&self.session);
        let inner: Box<dyn Machine> = match operation {
            Operation::Probe => {
                let probe = Zoned::new(Arc::clone(&session), Box::new(Probe::new(session)));
                return Ok(Box::new(ProbeMachine::new(Box::new(probe))));
            }
            Operation::List { stream, mode, checkpoint, parent_id, lookback_seconds } => {
                let today = self.today();
                let listing =
                    listing(&stream, mode, checkpoint, parent_id, lookback_seconds, today)?;
                Box::new(ListMachine::new(Arc::clone(&session), listing)?)
            }
            Operation::ReadLine { line } => {
                let agreement = errors::parse_id("agreement_id", &line.agreement_id)?;
                let id = errors::parse_id("line_id", &line.id)?;
                Box::new(ReadLine::new(Arc::clone(&session), id, agreement, self.today()))
            }
            Operation::SetQuantity { line, quantity, effective_date } => {
                let target = Target {
                    line: errors::parse_id("line_id", &line.id)?,
                    agreement: errors::parse_id("agreement_id", &line.agreement_id)?,
                    units: records::whole_units(quantity.0)?,
                    effective: records::parse_date("effective_date", &effective_date)?,
                };
                Box::new(SetQuantity::new(Arc::clone(&session), target))
            }
            Operation::CreateLine { .. } => {
                return Err(PluginError::new(
                    ErrorKind::Unsupported,
                    "the Autotask adapter does not create billing lines: add the service to the \
                     contract in Autotask, then sync",
                )
                .retryable(false));
            }
        };
        Ok(Box::new(Zoned::new(session, inner)))
    }
}

/// Checks a listing's arguments.
fn listing(
    stream: &str,
    mode: ListMode,
    checkpoint: Option<Checkpoint>,
    parent_id: Option<String>,
    lookback_seconds: u64,
    today: Date,
) -> Result<Listing, PluginError> {
    let Some(stream) = Stream::from_name(stream) else {
        let known: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            format!("Autotask has no stream `{stream}` (streams: {})", known.join(", ")),
        )
        .retryable(false));
    };
    if let Some(parent) = parent_id {
        return Err(errors::invalid(
            "parent_id",
            format!(
                "`{}` is listed whole, not per parent record; parent_id `{parent}` must be left out",
                stream.name()
            ),
        ));
    }
    Ok(Listing { stream, mode, start: checkpoint.unwrap_or_default(), lookback_seconds, today })
}

/// Names a step input for protocol-error messages.
pub(crate) fn describe_input(input: &StepInput) -> &'static str {
    match input {
        StepInput::Start => "start",
        StepInput::Response { .. } => "a response",
        StepInput::Continue => "continue",
    }
}

tally_plugin_sdk::export_plugin!(Autotask);
