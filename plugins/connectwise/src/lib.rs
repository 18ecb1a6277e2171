//! The ConnectWise PSA adapter: a tally plugin that lists companies, catalog products,
//! agreements and agreement additions (billing lines), and reads, sets and creates additions,
//! through ConnectWise's REST API (`{site}/{codebase}apis/3.0/`).
//!
//! Like every tally plugin it performs no I/O: each operation is a machine that answers HTTP
//! requests for the host to send and turns the responses into records and results. This file
//! is the plugin's front door: the handshake, opening a session, and checking an operation's
//! arguments before its machine starts. The concerns live next to it: `settings` (what a
//! valid setting is), `session` (where requests go, with which credentials), `codebase` (the
//! companyinfo step), `conditions` (the query grammar and its encoding), `paging` (listings),
//! `records` (rows to the record model), `operations` (the one-request operations) and
//! `errors` (ConnectWise's failures as typed errors). Nothing here may panic on the host's or
//! ConnectWise's data.

pub mod codebase;
pub mod conditions;
pub mod errors;
pub mod operations;
pub mod paging;
pub mod records;
pub mod session;
pub mod settings;
pub mod streams;

use std::sync::Arc;

use tally_plugin_sdk::{
    Capability, Checkpoint, ErrorKind, Handshake, Limits, ListMode, Machine, Operation, Plugin,
    PluginError, PluginKind, QuantityWrites, StepInput,
};

use crate::codebase::Discover;
use crate::conditions::updated_since;
use crate::operations::{CreateLine, Probe, ProbeMachine, ReadLine, SetQuantity, Single};
use crate::paging::{ListMachine, Listing};
use crate::session::Session;
use crate::settings::{MAX_PAGE_SIZE, SECRET_SETTINGS, Settings};
use crate::streams::Stream;

/// The plugin's name in the handshake and in `[psa] plugin = "connectwise"`.
pub const NAME: &str = "connectwise";

/// Requests in flight at once. ConnectWise publishes no fixed cap for its REST API; its cloud
/// throttles an integration by answering 429 with `Retry-After`, which the host honours and
/// backs off from. Reading billing lines takes one request per agreement, so at a hosted PSA's
/// round trip (about 20 ms) a large MSP's 7,500 agreements take a minute at 4 in flight and
/// under half that at 8. MSPs that share their API member with other integrations lower it
/// with `psa.max_concurrency`.
const MAX_CONCURRENCY: u32 = 8;

/// One session with one ConnectWise site.
pub struct ConnectWise {
    session: Arc<Session>,
}

impl Plugin for ConnectWise {
    fn handshake() -> Handshake {
        Handshake {
            abi_version: tally_plugin_sdk::abi::ABI_VERSION,
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: PluginKind::Psa,
            streams: Stream::ALL.into_iter().map(Stream::info).collect(),
            capabilities: vec![
                Capability::ReadLine,
                Capability::SetQuantity,
                Capability::CreateLine,
            ],
            quantity_writes: QuantityWrites::Absolute,
            settings_schema: settings::schema(),
            secret_settings: SECRET_SETTINGS.iter().map(|name| name.to_string()).collect(),
            limits: Limits {
                max_concurrency: MAX_CONCURRENCY,
                per_endpoint_concurrency: None,
                requests_per_minute: None,
                requests_per_hour: None,
                max_page_size: Some(MAX_PAGE_SIZE),
            },
            build: tally_plugin_sdk::build_info(),
        }
    }

    fn open(settings: &serde_json::Value) -> Result<Self, PluginError> {
        let settings = Settings::parse(settings)?;
        Ok(ConnectWise { session: Arc::new(Session::new(settings)) })
    }

    fn hosts(&self) -> Vec<String> {
        vec![self.session.settings().host.clone()]
    }

    fn start(&self, operation: Operation) -> Result<Box<dyn Machine>, PluginError> {
        let session = Arc::clone(&self.session);
        let inner: Box<dyn Machine> = match operation {
            Operation::Probe => {
                let probe = Box::new(Single::new(Arc::clone(&session), Probe));
                return Ok(Box::new(ProbeMachine::new(Box::new(Discover::new(session, probe)))));
            }
            Operation::List { stream, mode, checkpoint, parent_id, lookback_seconds } => {
                let listing = listing(&stream, mode, checkpoint, parent_id, lookback_seconds)?;
                Box::new(ListMachine::new(Arc::clone(&session), listing))
            }
            Operation::ReadLine { line } => {
                let exchange = ReadLine {
                    agreement: errors::parse_id("agreement_id", &line.agreement_id)?,
                    line: errors::parse_id("line_id", &line.id)?,
                };
                Box::new(Single::new(Arc::clone(&session), exchange))
            }
            Operation::SetQuantity { line, quantity, effective_date } => {
                operations::parse_date("effective_date", &effective_date)?;
                let exchange = SetQuantity {
                    agreement: errors::parse_id("agreement_id", &line.agreement_id)?,
                    line: errors::parse_id("line_id", &line.id)?,
                    quantity,
                };
                Box::new(Single::new(Arc::clone(&session), exchange))
            }
            Operation::CreateLine {
                company_id,
                agreement_id,
                product_id,
                quantity,
                effective_date,
            } => {
                errors::parse_id("company_id", &company_id)?;
                let exchange = CreateLine {
                    company_id,
                    agreement: errors::parse_id("agreement_id", &agreement_id)?,
                    product: errors::parse_id("product_id", &product_id)?,
                    quantity,
                    effective_date: operations::parse_date("effective_date", &effective_date)?,
                };
                Box::new(Single::new(Arc::clone(&session), exchange))
            }
        };
        Ok(Box::new(Discover::new(session, inner)))
    }
}

/// Checks a listing's arguments and fixes its `conditions` once, for every page.
fn listing(
    stream: &str,
    mode: ListMode,
    checkpoint: Option<Checkpoint>,
    parent_id: Option<String>,
    lookback_seconds: u64,
) -> Result<Listing, PluginError> {
    let Some(stream) = Stream::from_name(stream) else {
        let known: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            format!("ConnectWise has no stream `{stream}` (streams: {})", known.join(", ")),
        )
        .retryable(false));
    };
    let parent = match (stream.parent(), parent_id) {
        (Some(_), Some(id)) => Some(errors::parse_id("parent_id", &id)?),
        (Some(parent), None) => {
            return Err(PluginError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "`{}` is listed per {}: parent_id is required",
                    stream.name(),
                    parent.name()
                ),
            )
            .with_field("parent_id")
            .retryable(false));
        }
        (None, _) => None,
    };

    let start = checkpoint.unwrap_or_default();
    let conditions = match (mode, start.cursor.as_deref()) {
        (ListMode::Incremental, Some(cursor)) => Some(updated_since(cursor, lookback_seconds)?),
        _ => None,
    };
    let first_page = match start.page_token.as_deref() {
        None => 1,
        Some(token) => token.parse::<u64>().ok().filter(|page| *page >= 1).ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidRequest,
                format!("the checkpoint's page_token `{token}` is not a ConnectWise page number"),
            )
            .with_field("page_token")
            .retryable(false)
        })?,
    };
    Ok(Listing { stream, parent, conditions, start, first_page })
}

/// Names a step input for protocol-error messages.
pub(crate) fn describe_input(input: &StepInput) -> &'static str {
    match input {
        StepInput::Start => "start",
        StepInput::Response { .. } => "a response",
        StepInput::Continue => "continue",
    }
}

tally_plugin_sdk::export_plugin!(ConnectWise);
