//! The records the journal keeps, in the words of DESIGN.md's glossary.
//!
//! These are storage types: plain structs that encode with postcard (no tagged enums, no
//! `serde_json::Value`; raw source JSON is kept as text). They change only together with a new
//! journal format version and a migration. Quantities are decimals; times are UTC, as Unix
//! milliseconds or RFC 3339 text exactly as a source wrote them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_plugin_sdk as sdk;

/// Unix time in milliseconds, UTC.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// RFC 3339 text of a Unix-milliseconds time, UTC.
pub fn format_millis(at: Millis) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(at as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Fields every PSA record carries in the journal besides its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// When a listing last wrote this record as seen. A billing line that a full listing of
    /// its agreement returned unchanged in the listing's last page keeps its earlier time: that
    /// listing retires by the lines it delivered, not by this time.
    pub seen_at: Millis,
    /// Set when a complete full listing no longer returned it.
    pub retired_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub identifier: Option<String>,
    pub active: bool,
    pub deleted: bool,
    pub billable: bool,
    pub updated_at: Option<String>,
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub identifier: Option<String>,
    pub description: String,
    pub active: bool,
    pub unit_price: Option<Decimal>,
    pub updated_at: Option<String>,
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub active: bool,
    pub recurring: bool,
    pub updated_at: Option<String>,
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingLine {
    pub id: String,
    pub agreement_id: String,
    pub company_id: String,
    pub product_id: String,
    pub quantity: Decimal,
    pub included_quantity: Option<Decimal>,
    pub unit_price: Option<Decimal>,
    /// `YYYY-MM-DD`.
    pub effective_date: Option<String>,
    /// `YYYY-MM-DD`.
    pub cancelled_date: Option<String>,
    pub updated_at: Option<String>,
    pub seen: Seen,
}

impl BillingLine {
    /// Whether the line bills on `today` (`YYYY-MM-DD`): effective on or before today and not
    /// cancelled on or before today (case C32). ISO dates compare as text.
    pub fn in_force_on(&self, today: &str) -> bool {
        let started = self.effective_date.as_deref().is_none_or(|d| d <= today);
        let cancelled = self.cancelled_date.as_deref().is_some_and(|d| d <= today);
        started && !cancelled && self.seen.retired_at.is_none()
    }

    /// Whether the line starts after `today`.
    pub fn is_future_on(&self, today: &str) -> bool {
        self.effective_date.as_deref().is_some_and(|d| d > today)
    }
}

/// A customer as a vendor knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub vendor: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A vendor SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub vendor: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The latest quantity a vendor reported for one account and service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageCount {
    pub vendor: String,
    pub account_id: String,
    pub service_id: String,
    pub quantity: Decimal,
    pub received_at: Millis,
    /// Earlier reports, newest first, a few at most (for stability guardrails).
    pub previous: Vec<(Decimal, Millis)>,
}

/// Where a vendor integration stands, in Gradient's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntegrationStatus {
    Inactive,
    Pending,
    Active,
    Disabled,
    Error,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Inactive => "inactive",
            IntegrationStatus::Pending => "pending",
            IntegrationStatus::Active => "active",
            IntegrationStatus::Disabled => "disabled",
            IntegrationStatus::Error => "error",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "inactive" => IntegrationStatus::Inactive,
            "pending" => IntegrationStatus::Pending,
            "active" => IntegrationStatus::Active,
            "disabled" => IntegrationStatus::Disabled,
            "error" => IntegrationStatus::Error,
            _ => return None,
        })
    }
}

/// A vendor integration: the key a vendor pushes with, and what it has done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub name: String,
    pub source: String,
    pub key_salt: Vec<u8>,
    pub key_hash: Vec<u8>,
    /// Hash of the vendor key bound on the first successful call.
    pub vendor_key_hash: Option<Vec<u8>>,
    pub status: IntegrationStatus,
    pub created_at: Millis,
    pub last_contact_at: Option<Millis>,
    pub last_usage_at: Option<Millis>,
    pub removed_at: Option<Millis>,
}

/// What a mapping entry points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A PSA company or product id.
    Id(String),
    /// Deliberately not billed.
    Excluded,
    /// An automatic match the mapping file turned off.
    Unmapped,
}

/// Where a mapping entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Exact name match after level-1 normalisation.
    Auto,
    /// The mapping file.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub target: Target,
    pub origin: Origin,
}

/// The state of one stream: its checkpoint and how its last listing ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamState {
    pub checkpoint: sdk::Checkpoint,
    /// `Some` while a listing is under way: when it started and whether it is full.
    pub listing: Option<Listing>,
    pub last_complete_at: Option<Millis>,
    pub last_full_at: Option<Millis>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Millis>,
    pub records_read: u64,
    pub pages_read: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub started_at: Millis,
    pub full: bool,
    /// Records stored so far by this listing.
    pub records: u64,
    pub pages: u64,
    /// The checkpoint the listing started from (what the stream returns to if it is abandoned).
    pub from: sdk::Checkpoint,
}

/// A card: one company and product, both quantities, and what to do.
///
/// Usage that cannot be placed on a company and product (an unmapped or excluded account or
/// service) gets a card of its own, keyed by vendor, account and service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Short stable id users type (`tally approve c-1a2b3c4d`).
    pub id: String,
    /// The journal key: `company<SEP>product`, or `~vendor<SEP>account<SEP>service`.
    pub key: String,
    pub company_id: String,
    pub company_name: String,
    pub product_id: String,
    pub product_name: String,
    pub vendor_quantity: Option<Decimal>,
    pub psa_quantity: Option<Decimal>,
    /// The quantity a write would set, after the product's rounding rule.
    pub target: Option<Decimal>,
    pub status: CardStatus,
    /// The line a change would be written to, when one is chosen.
    pub line_id: Option<String>,
    pub agreement_id: Option<String>,
    pub unit_price: Option<Decimal>,
    /// Contributing vendor usage: `vendor/account/service` and its quantity.
    pub sources: Vec<(String, Decimal)>,
    /// Human-readable notes: line choice, guardrails, flags.
    pub notes: Vec<String>,
    pub decision: Decision,
    pub computed_at: Millis,
}

#[cfg(test)]
impl Card {
    /// A `match` card under `key` with nothing else filled in, for tests to build on.
    pub fn blank(key: &str) -> Card {
        Card {
            id: crate::reconcile::card_id(key),
            key: key.into(),
            company_id: String::new(),
            company_name: String::new(),
            product_id: String::new(),
            product_name: String::new(),
            vendor_quantity: None,
            psa_quantity: None,
            target: None,
            status: CardStatus::Match,
            line_id: None,
            agreement_id: None,
            unit_price: None,
            sources: Vec::new(),
            notes: Vec::new(),
            decision: Decision::None,
            computed_at: 0,
        }
    }
}

/// An approval given with `tally approve`, for one card and one target quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub card_key: String,
    /// The PSA quantity the approval was given against: a line changed since voids it.
    pub from: Option<Decimal>,
    pub target: Decimal,
    pub approved_at: Millis,
    pub approved_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CardStatus {
    Match,
    Reconcile,
    New,
    Stale,
    Unmapped,
    Excluded,
}

impl CardStatus {
    pub const ALL: [CardStatus; 6] = [
        CardStatus::Match,
        CardStatus::Reconcile,
        CardStatus::New,
        CardStatus::Stale,
        CardStatus::Unmapped,
        CardStatus::Excluded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Match => "match",
            CardStatus::Reconcile => "reconcile",
            CardStatus::New => "new",
            CardStatus::Stale => "stale",
            CardStatus::Unmapped => "unmapped",
            CardStatus::Excluded => "excluded",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        CardStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// What the apply policy made of a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Nothing to write.
    None,
    /// Report only (policy `none`).
    ReportOnly,
    /// Waiting for `tally approve`, with the reason.
    Held(String),
    /// Approved or allowed; an outbox entry will carry it.
    Apply,
    /// Cannot be written, with the reason (ambiguous lines, deleted company, rounding rule).
    Blocked(String),
}

/// A remote write decided but not yet confirmed by the PSA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub company_id: String,
    pub product_id: String,
    pub agreement_id: String,
    /// Empty for a line to create.
    pub line_id: String,
    pub old_quantity: Option<Decimal>,
    pub target_quantity: Decimal,
    pub effective_date: String,
    pub decided_by: String,
    pub created_at: Millis,
    pub state: OutboxState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxState {
    /// Committed, not yet sent.
    Intent,
    /// A request may have reached the PSA: check the line before sending again.
    Sent,
    /// The PSA confirmed the target.
    Done,
    /// Gave up, with `last_error`.
    Failed,
    /// The line changed in the PSA since the card was computed; not overwritten.
    Conflict,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Intent => "intent",
            OutboxState::Sent => "sent",
            OutboxState::Done => "done",
            OutboxState::Failed => "failed",
            OutboxState::Conflict => "conflict",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, OutboxState::Intent | OutboxState::Sent)
    }
}

/// One applied (or refused) change, kept for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at: Millis,
    pub outbox_id: u64,
    pub company_id: String,
    pub product_id: String,
    pub line_id: String,
    pub old_quantity: Option<Decimal>,
    pub new_quantity: Decimal,
    pub decided_by: String,
    pub outcome: String,
    pub psa_answer: String,
}

/// One sync, from start to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: u64,
    pub full: bool,
    pub trigger: String,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub streams_complete: u32,
    pub streams_incomplete: u32,
    pub records: u64,
    pub requests: u64,
    pub outcome: Option<String>,
    /// The process that runs it, to tell a crashed run from a running one.
    pub pid: u32,
}

/// How a vendor quantity becomes a PSA quantity for one product (case C15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Rounding {
    /// Send the vendor's decimal as it is; refused toward a whole-number product.
    #[default]
    Exact,
    /// Up to the next whole number.
    Ceil,
    /// To the nearest whole number, halves away from zero.
    Round,
}

/// Per-product rules from the mapping file: rounding and guardrails (cases C14, C15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProductRules {
    pub rounding: Rounding,
    /// The PSA takes whole numbers only for this product.
    pub whole_units: bool,
    /// Changes larger than this percentage wait for approval.
    pub max_auto_change_pct: Option<Decimal>,
    /// Changes larger than this many units wait for approval.
    pub max_auto_change_abs: Option<Decimal>,
    /// A vendor count of zero never applies by itself.
    pub never_auto_zero: bool,
    /// A change applies by itself only after this many consecutive equal vendor reports.
    pub require_stable_pulls: u32,
    /// Overrides the PSA's apply policy for this product.
    pub apply: Option<String>,
}

/// The mapping file as the agent last read it, for `tally status` in any process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MappingFileState {
    pub path: String,
    /// SHA-256 of the file in force.
    pub hash: Option<String>,
    pub loaded_at: Option<Millis>,
    /// The last attempt's error (file:line:column: reason), while the previous mapping stays.
    pub error: Option<String>,
    pub error_at: Option<Millis>,
    pub accounts_mapped: u64,
    pub services_mapped: u64,
}

/// One call a vendor made to the intake API: when, what, and how tally answered. Never holds a
/// key or a request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeCall {
    pub at: Millis,
    pub method: String,
    pub path: String,
    /// The HTTP status tally answered with.
    pub status: u16,
    /// What the answer said: "Success - ..." or the error message.
    pub message: String,
}

/// What a vendor integration's calls to the intake API looked like, for `tally integration
/// check`: the latest call and the latest refused one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IntakeContact {
    pub calls: u64,
    pub failures: u64,
    pub last: Option<IntakeCall>,
    pub last_failure: Option<IntakeCall>,
}
