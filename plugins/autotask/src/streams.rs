//! The streams the adapter offers: their names, the record each holds, the Autotask entity it
//! queries, the fields it asks for, its fixed conditions and its cursor field. Companies and
//! services carry a last-changed date, so their incremental listings read what changed;
//! contracts and contract services carry none, so an incremental listing of those reads only
//! rows with a higher id than the checkpoint, and changes arrive with a full listing. This
//! module only names things; it must never decide how a listing pages.

use tally_plugin_sdk::{RecordKind, StreamInfo};

use crate::query::Condition;
use crate::records::CONTRACT_TYPE_RECURRING_SERVICE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Companies,
    Products,
    Agreements,
    BillingLines,
}

pub const CONTRACT_SERVICE_FIELDS: [&str; 8] = [
    "id",
    "contractID",
    "serviceID",
    "unitPrice",
    "adjustedPrice",
    "unitCost",
    "invoiceDescription",
    "internalDescription",
];

pub const UNIT_FIELDS: [&str; 8] = [
    "id",
    "contractID",
    "contractServiceID",
    "serviceID",
    "startDate",
    "endDate",
    "units",
    "price",
];

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

    /// The Autotask entity the stream's pages query.
    pub fn entity(self) -> &'static str {
        match self {
            Stream::Companies => "Companies",
            Stream::Products => "Services",
            Stream::Agreements => "Contracts",
            Stream::BillingLines => "ContractServices",
        }
    }

    /// The field an incremental listing compares with the checkpoint's cursor; `None` for
    /// streams that page by id alone.
    pub fn cursor_field(self) -> Option<&'static str> {
        match self {
            Stream::Companies => Some("lastActivityDate"),
            Stream::Products => Some("lastModifiedDate"),
            Stream::Agreements | Stream::BillingLines => None,
        }
    }

    /// The fields the stream's query asks for.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Stream::Companies => &[
                "id",
                "companyName",
                "companyNumber",
                "companyType",
                "isActive",
                "lastActivityDate",
                "phone",
                "city",
                "state",
                "webAddress",
            ],
            Stream::Products => &[
                "id",
                "name",
                "description",
                "invoiceDescription",
                "isActive",
                "lastModifiedDate",
                "unitPrice",
                "periodType",
            ],
            Stream::Agreements => &[
                "id",
                "companyID",
                "contractName",
                "contractNumber",
                "contractType",
                "contractCategory",
                "status",
                "startDate",
                "endDate",
            ],
            Stream::BillingLines => &CONTRACT_SERVICE_FIELDS,
        }
    }

    /// Conditions every query of the stream carries: contracts are recurring service
    /// contracts only (the only ones with contract services and units).
    pub fn fixed_conditions(self) -> Vec<Condition> {
        match self {
            Stream::Agreements => {
                vec![Condition::eq("contractType", CONTRACT_TYPE_RECURRING_SERVICE)]
            }
            _ => Vec::new(),
        }
    }

    pub fn info(self) -> StreamInfo {
        StreamInfo {
            name: self.name().to_string(),
            record: self.record(),
            incremental: self.cursor_field().is_some(),
            parent: None,
        }
    }
}
