//! The HaloPSA adapter: a tally plugin that lists clients (companies), items (products) and
//! recurring invoices with their lines (agreements and billing lines), and reads and sets a
//! line's quantity, through Halo's REST API (`{base_url}/api/`).
//!
//! Like every tally plugin it performs no I/O: each operation is a machine that answers HTTP
//! requests for the host to send and turns the responses into records and results. This file
//! is the plugin's front door: the handshake, opening a session, and checking an operation's
//! arguments before its machine starts. The concerns live next to it: `settings` (what a valid
//! setting is), `session` (where requests go; the shared token), `auth` (authinfo, the token
//! and its renewal), `streams` (the listings), `paging` (reading a listing whole, case C01),
//! `records` (rows to the record model), `operations` (the line operations and the probe) and
//! `errors` (Halo's failures as typed errors). Nothing here may panic on the host's or Halo's
//! data.

pub mod auth;
pub mod errors;
pub mod operations;
pub mod paging;
pub mod records;
pub mod session;
pub mod settings;
pub mod streams;

use std::sync::Arc;

use tally_plugin_sdk::{
    Capability, Checkpoint, ErrorKind, Handshake, Limits, Machine, Operation, Plugin, PluginError,
    PluginKind, QuantityWrites, StepInput,
};

use crate::auth::Authed;
use crate::operations::{LineMachine, LineOp, Probe, ProbeMachine};
use crate::paging::{ListMachine, Listing, Resume};
use crate::session::Session;
use crate::settings::{SECRET_SETTINGS, SERVED_PAGE_SIZE, Settings};
use crate::streams::Stream;

/// The plugin's name in the handshake and in `[psa] plugin = "halopsa"`.
pub const NAME: &str = "halopsa";

/// Requests in flight at once.
const MAX_CONCURRENCY: u32 = 2;

/// Hosted Halo allows about 300 requests in a rolling five minutes: 55 a minute stays under
/// it with room for the token requests.
const REQUESTS_PER_MINUTE: u32 = 55;

/// One session with one Halo instance.
pub struct HaloPsa {
    session: Arc<Session>,
}

impl Plugin for HaloPsa {
    fn handshake() -> Handshake {
        Handshake {
            abi_version: tally_plugin_sdk::abi::ABI_VERSION,
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: PluginKind::Psa,
            streams: Stream::ALL.into_iter().map(Stream::info).collect(),
            capabilities: vec![Capability::ReadLine, Capability::SetQuantity],
            quantity_writes: QuantityWrites::Absolute,
            settings_schema: settings::schema(),
            secret_settings: SECRET_SETTINGS.iter().map(|name| name.to_string()).collect(),
            limits: Limits {
                max_concurrency: MAX_CONCURRENCY,
                per_endpoint_concurrency: None,
                requests_per_minute: Some(REQUESTS_PER_MINUTE),
                requests_per_hour: None,
                max_page_size: Some(SERVED_PAGE_SIZE),
            },
            build: tally_plugin_sdk::build_info(),
        }
    }

    fn open(settings: &serde_json::Value) -> Result<Self, PluginError> {
        let settings = Settings::parse(settings)?;
        Ok(HaloPsa { session: Arc::new(Session::new(settings)) })
    }

    fn hosts(&self) -> Vec<String> {
        self.session.hosts()
    }

    fn start(&self, operation: Operation) -> Result<Box<dyn Machine>, PluginError> {
        let session = Arc::clone(&self.session);
        let inner: Box<dyn Machine> = match operation {
            Operation::Probe => {
                let probe = Box::new(Probe::new(Arc::clone(&session)));
                return Ok(Box::new(ProbeMachine::new(Box::new(Authed::new(session, probe)))));
            }
            Operation::List { stream, mode: _, checkpoint, parent_id, lookback_seconds: _ } => {
                let listing = listing(&stream, checkpoint, parent_id)?;
                Box::new(ListMachine::new(Arc::clone(&session), listing))
            }
            Operation::ReadLine { line } => {
                let invoice = errors::parse_id("agreement_id", &line.agreement_id)?;
                let id = errors::parse_id("line_id", &line.id)?;
                Box::new(LineMachine::new(Arc::clone(&session), invoice, id, LineOp::Read))
            }
            Operation::SetQuantity { line, quantity, effective_date } => {
                check_date("effective_date", &effective_date)?;
                if quantity.0.is_sign_negative() && !quantity.0.is_zero() {
                    return Err(PluginError::new(
                        ErrorKind::InvalidRequest,
                        format!("a line's quantity cannot be negative ({})", quantity.0),
                    )
                    .with_field("quantity")
                    .retryable(false));
                }
                let invoice = errors::parse_id("agreement_id", &line.agreement_id)?;
                let id = errors::parse_id("line_id", &line.id)?;
                let op = LineOp::SetQuantity(quantity);
                Box::new(LineMachine::new(Arc::clone(&session), invoice, id, op))
            }
            Operation::CreateLine { .. } => {
                return Err(PluginError::new(
                    ErrorKind::Unsupported,
                    "the HaloPSA adapter does not create recurring invoice lines; add the line \
                     in Halo, and tally reconciles it from the next sync",
                )
                .retryable(false));
            }
        };
        Ok(Box::new(Authed::new(session, inner)))
    }
}

/// Checks a listing's arguments. Every Halo listing reads everything, whatever the mode: none
/// of them can ask for "changed since".
fn listing(
    stream: &str,
    checkpoint: Option<Checkpoint>,
    parent_id: Option<String>,
) -> Result<Listing, PluginError> {
    let Some(stream) = Stream::from_name(stream) else {
        let known: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
        let hint = if stream == "billing_lines" {
            " (billing lines come with the `agreements` listing)"
        } else {
            ""
        };
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            format!("HaloPSA has no stream `{stream}`{hint} (streams: {})", known.join(", ")),
        )
        .retryable(false));
    };
    if let Some(parent) = parent_id {
        return Err(PluginError::new(
            ErrorKind::InvalidRequest,
            format!("`{}` is not listed per parent record (parent_id `{parent}`)", stream.name()),
        )
        .with_field("parent_id")
        .retryable(false));
    }
    let resume = match checkpoint.and_then(|c| c.page_token) {
        None => Resume::START,
        Some(token) => Resume::parse(&token).ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidRequest,
                format!("the checkpoint's page_token `{token}` is not a HaloPSA listing position"),
            )
            .with_field("page_token")
            .retryable(false)
        })?,
    };
    Ok(Listing { stream, resume })
}

/// Checks a `YYYY-MM-DD` date. Halo's lines have no date of their own: a quantity changes
/// from the next invoice the recurring invoice raises.
fn check_date(field: &str, text: &str) -> Result<(), PluginError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).map(|_| ()).map_err(|_| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("{field} `{text}` is not a date written YYYY-MM-DD"),
        )
        .with_field(field)
        .retryable(false)
    })
}

/// Names a step input for protocol-error messages.
pub(crate) fn describe_input(input: &StepInput) -> &'static str {
    match input {
        StepInput::Start => "start",
        StepInput::Response { .. } => "a response",
        StepInput::Continue => "continue",
    }
}

tally_plugin_sdk::export_plugin!(HaloPsa);
