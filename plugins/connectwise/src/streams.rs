//! The streams the adapter offers: their names, the record each holds, whether it reads
//! incrementally, its parent, and the ConnectWise resource it lists. This module only names
//! things; it must never decide how a listing pages or how a row maps to a record.

use tally_plugin_sdk::{RecordKind, StreamInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Companies,
    Products,
    Agreements,
    BillingLines,
}

impl Stream {
    pub const ALL: [Stream; 4] =
        [Stream::Companies, Stream::Products, Stream::Agreements, Stream::BillingLines];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Companies => "companies",
            Stream::Products => "products",
            Stream::Agreements => "agreements",
            Stream::BillingLines => "billing_lines",
        }
    }

    pub fn from_name(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|stream| stream.name() == name)
    }

    pub fn record(self) -> RecordKind {
        match self {
            Stream::Companies => RecordKind::Company,
            Stream::Products => RecordKind::Product,
            Stream::Agreements => RecordKind::Agreement,
            Stream::BillingLines => RecordKind::BillingLine,
        }
    }

    /// The stream whose records this one is listed under.
    pub fn parent(self) -> Option<Stream> {
        match self {
            Stream::BillingLines => Some(Stream::Agreements),
            _ => None,
        }
    }

    /// The resource path below `apis/3.0/`; `parent` is the agreement id for billing lines.
    pub fn path(self, parent: Option<u64>) -> String {
        match (self, parent) {
            (Stream::Companies, _) => "company/companies".to_string(),
            (Stream::Products, _) => "procurement/catalog".to_string(),
            (Stream::Agreements, _) => "finance/agreements".to_string(),
            (Stream::BillingLines, Some(agreement)) => {
                format!("finance/agreements/{agreement}/additions")
            }
            (Stream::BillingLines, None) => "finance/agreements/additions".to_string(),
        }
    }

    /// The endpoint name for the host's per-endpoint limits and logs: the path without ids.
    pub fn endpoint(self) -> &'static str {
        match self {
            Stream::Companies => "company/companies",
            Stream::Products => "procurement/catalog",
            Stream::Agreements => "finance/agreements",
            Stream::BillingLines => "finance/agreements/additions",
        }
    }

    pub fn info(self) -> StreamInfo {
        StreamInfo {
            name: self.name().to_string(),
            record: self.record(),
            incremental: true,
            parent: self.parent().map(|parent| parent.name().to_string()),
        }
    }
}
