//! The streams the adapter offers: their names, the record each holds, and the Halo listing
//! behind it (path, wrapper key, fixed query). Billing lines are not a stream of their own:
//! `/api/RecurringInvoice?includelines=true` returns every invoice with its lines, so the
//! `agreements` stream's pages carry both the agreements and their billing lines, and one
//! listing reads both. This module only names things; it must never decide how a listing pages
//! or how a row maps to a record.

use tally_plugin_sdk::{RecordKind, StreamInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `/api/client`: companies.
    Companies,
    /// `/api/item`: products.
    Products,
    /// `/api/RecurringInvoice`: agreements, and their lines as billing lines.
    Agreements,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Companies, Stream::Products, Stream::Agreements];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Companies => "companies",
            Stream::Products => "products",
            Stream::Agreements => "agreements",
        }
    }

    pub fn from_name(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|stream| stream.name() == name)
    }

    /// The record the stream is named for; `agreements` pages also carry billing lines.
    pub fn record(self) -> RecordKind {
        match self {
            Stream::Companies => RecordKind::Company,
            Stream::Products => RecordKind::Product,
            Stream::Agreements => RecordKind::Agreement,
        }
    }

    /// The resource below `/api/`.
    pub fn path(self) -> &'static str {
        match self {
            Stream::Companies => "client",
            Stream::Products => "item",
            Stream::Agreements => "RecurringInvoice",
        }
    }

    /// The key of the rows in a paginated answer (`{"record_count": 250, "clients": [...]}`).
    pub fn wrapper(self) -> &'static str {
        match self {
            Stream::Companies => "clients",
            Stream::Products => "items",
            Stream::Agreements => "invoices",
        }
    }

    /// Query parameters every page of the listing carries besides the paging ones: inactive
    /// records are listed too (a full listing must see them to tell them from deleted ones),
    /// and invoices come with their lines.
    pub fn fixed_query(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Stream::Companies => &[("includeactive", "true"), ("includeinactive", "true")],
            Stream::Products => &[("includeinactive", "true")],
            Stream::Agreements => &[("includeinactive", "true"), ("includelines", "true")],
        }
    }

    /// `GET /api/client`, for messages and per-endpoint limits.
    pub fn endpoint(self) -> String {
        format!("GET /api/{}", self.path())
    }

    pub fn info(self) -> StreamInfo {
        StreamInfo {
            name: self.name().to_string(),
            record: self.record(),
            // Halo's listings have no "changed since" filter these three can rely on: every
            // listing reads everything.
            incremental: false,
            parent: None,
        }
    }
}
