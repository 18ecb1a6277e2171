//! Faults a test arms on the Autotask emulator: 429 (with or without `Retry-After`), Autotask's
//! 500s, the thread-threshold refusal on demand, a fixed answer, a slow answer, a body cut in
//! half, and a 500 sent after the request took effect (an adjustment that landed while its
//! answer was lost). A rule matches by entity, optionally by method and by first or
//! continuation page, and fires a set number of times or always. This module only decides
//! which fault applies; `api` carries it out.

use std::time::Duration;

pub use crate::fault_rules::Times;
use crate::fault_rules::{self, Scope};

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: <seconds>` when given; nothing is processed.
    RateLimited { retry_after: Option<u64> },
    /// A 500 with `{"errors":[message]}`; nothing is processed.
    ServerError { message: String },
    /// The refusal Autotask sends beyond three concurrent requests on one endpoint.
    ThreadThreshold,
    /// Send exactly this status and body; nothing is processed.
    Respond { status: u16, body: String },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer normally but send only the first half of the body (status 200).
    TruncatedBody,
    /// Process the request (an adjustment takes effect), then answer a 500 as if it failed.
    ServerErrorAfterProcessing,
}

impl Fault {
    /// A 500 as Autotask sends for a failure of its own.
    pub fn server_error() -> Fault {
        Fault::ServerError { message: "An unexpected error has occurred.".to_owned() }
    }

    /// `429` with `Retry-After: <seconds>`.
    pub fn rate_limited_secs(seconds: u64) -> Fault {
        Fault::RateLimited { retry_after: Some(seconds) }
    }

    /// A short name for the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RateLimited { .. } => "rate_limited",
            Fault::ServerError { .. } => "server_error",
            Fault::ThreadThreshold => "thread_threshold",
            Fault::Respond { .. } => "respond",
            Fault::Delay(_) => "delay",
            Fault::TruncatedBody => "truncated_body",
            Fault::ServerErrorAfterProcessing => "server_error_after_processing",
        }
    }
}

/// A fault and the requests it applies to.
pub type FaultRule = fault_rules::FaultRule<EntityScope, Fault>;

impl FaultRule {
    /// Fires `fault` once on the next request for `entity` (`Companies`, `ContractServiceUnits`,
    /// `ContractServiceAdjustments`, …, ignoring case; `*` for any entity, `zoneInformation` for
    /// the zone lookup).
    pub fn new(entity: &str, fault: Fault) -> FaultRule {
        FaultRule::once(EntityScope { entity: entity.to_owned(), continuation: None }, fault)
    }

    /// Only for continuation pages (`…/query/next`).
    pub fn on_continuation(mut self) -> FaultRule {
        self.scope.continuation = Some(true);
        self
    }

    /// Only for first pages and other requests that are not continuations.
    pub fn on_first_page(mut self) -> FaultRule {
        self.scope.continuation = Some(false);
        self
    }
}

/// The requests an Autotask rule applies to: an entity, and optionally continuation pages only
/// or first pages only.
#[derive(Clone, Debug)]
pub struct EntityScope {
    entity: String,
    continuation: Option<bool>,
}

impl Scope<FaultTarget<'_>> for EntityScope {
    fn covers(&self, target: &FaultTarget<'_>) -> bool {
        (self.entity == "*" || self.entity.eq_ignore_ascii_case(target.entity))
            && self.continuation.is_none_or(|c| c == target.continuation)
    }
}

/// What a rule is matched against, besides the method.
pub struct FaultTarget<'a> {
    /// The entity name, or `zoneInformation`, or the path for anything else.
    pub entity: &'a str,
    pub continuation: bool,
}

/// The armed rules, in the order they were added; the first match fires.
pub type FaultBook = fault_rules::FaultBook<EntityScope, Fault>;
