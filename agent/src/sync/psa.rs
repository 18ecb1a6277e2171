//! What the sync engine needs from a PSA: run one operation of the plugin contract to its end.
//!
//! The plugin host implements this over a loaded plugin and the HTTP executor; the engine and
//! the outbox see only this trait, which keeps them free of transport details.

use std::future::Future;

use tally_plugin_sdk as sdk;

/// A failed operation, as the engine must tell them apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PsaError {
    /// The PSA answered with a typed error after the host's retries.
    #[error("{0}")]
    Plugin(sdk::PluginError),
    /// No answer: the request may or may not have reached the PSA.
    #[error("no answer from the PSA: {0}")]
    Transport(String),
    /// The plugin or the host broke the contract (malformed reply, refused destination).
    #[error("{0}")]
    Host(String),
}

impl PsaError {
    /// Whether the PSA gave no definite answer: none at all, or only "try again later" (a 503
    /// of maintenance, a proxy in front of a PSA that is down), after the host's retries.
    pub fn unanswered(&self) -> bool {
        match self {
            PsaError::Transport(_) => true,
            PsaError::Plugin(e) => e.retryable,
            PsaError::Host(_) => false,
        }
    }

    /// Whether a write that failed this way may nevertheless have been applied: the PSA never
    /// said it was not.
    pub fn outcome_unknown(&self) -> bool {
        self.unanswered()
    }
}

/// One page of a listing, as a plugin returned it.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<sdk::Record>,
    pub checkpoint: sdk::Checkpoint,
    pub last: bool,
    /// The response body that records naming their source JSON by place (`raw_at`) refer to;
    /// each place lies within it.
    pub source: Option<std::sync::Arc<str>>,
}

/// A PSA session the engine can run operations in.
pub trait Psa: Sync {
    fn handshake(&self) -> &sdk::Handshake;

    /// Runs `operation` to its end. For listings, `on_page` is called for every page, in order,
    /// and must have stored it (with its checkpoint) before it returns; an error from it stops
    /// the listing.
    fn run(
        &self,
        operation: sdk::Operation,
        on_page: &mut (dyn FnMut(Page) -> anyhow::Result<()> + Send),
    ) -> impl Future<Output = Result<sdk::OpResult, PsaError>> + Send;

    /// Requests sent so far in this session.
    fn requests(&self) -> u64;
}
