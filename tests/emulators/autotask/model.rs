//! The records the Autotask emulator holds: companies, services, contracts, contract services,
//! contract service unit rows and the adjustments applied to them, as plain structs a test can
//! build and inspect. They keep what Autotask stores (ids for references, decimals for prices,
//! whole units, dates for periods); the JSON shapes live in `render`.

use rust_decimal::Decimal;
use time::macros::datetime;
use time::{Date, OffsetDateTime};

/// Autotask's `companyType` values.
pub mod company_type {
    pub const CUSTOMER: i64 = 1;
    pub const LEAD: i64 = 2;
    pub const PROSPECT: i64 = 3;
    pub const DEAD: i64 = 4;
    pub const VENDOR: i64 = 7;
    pub const PARTNER: i64 = 8;
}

/// Autotask's `contractType` values.
pub mod contract_type {
    pub const TIME_AND_MATERIALS: i64 = 1;
    pub const FIXED_PRICE: i64 = 3;
    pub const BLOCK_HOURS: i64 = 4;
    pub const RECURRING_SERVICE: i64 = 7;
}

/// Autotask's contract `status` values.
pub mod contract_status {
    pub const INACTIVE: i64 = 0;
    pub const ACTIVE: i64 = 1;
}

/// An Autotask company (`Companies`).
#[derive(Clone, Debug, PartialEq)]
pub struct Company {
    pub id: i64,
    pub name: String,
    pub number: String,
    pub company_type: i64,
    pub is_active: bool,
    pub phone: String,
    pub city: String,
    pub state: String,
    pub web_address: String,
    pub create_date: OffsetDateTime,
    /// `lastActivityDate`: moves on every change.
    pub last_activity: OffsetDateTime,
}

impl Company {
    /// An active customer.
    pub fn new(id: i64, name: &str) -> Company {
        Company {
            id,
            name: name.to_owned(),
            number: format!("{:06}", 289_000 + id),
            company_type: company_type::CUSTOMER,
            is_active: true,
            phone: String::new(),
            city: String::new(),
            state: String::new(),
            web_address: String::new(),
            create_date: datetime!(2019-03-04 14:22:10 UTC),
            last_activity: datetime!(2024-05-01 09:00:00 UTC),
        }
    }
}

/// An Autotask service (`Services`): the PSA's product.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    /// 1 monthly, 2 quarterly, 3 semi-annual, 4 yearly.
    pub period_type: i64,
    pub create_date: OffsetDateTime,
    /// `lastModifiedDate`: moves on every change.
    pub last_modified: OffsetDateTime,
}

impl Service {
    /// An active monthly service.
    pub fn new(id: i64, name: &str, description: &str, unit_price: Decimal) -> Service {
        Service {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            is_active: true,
            unit_price,
            unit_cost: Decimal::ZERO,
            period_type: 1,
            create_date: datetime!(2019-03-04 14:22:10 UTC),
            last_modified: datetime!(2024-02-12 09:41:12 UTC),
        }
    }
}

/// An Autotask contract (`Contracts`).
#[derive(Clone, Debug, PartialEq)]
pub struct Contract {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    pub number: String,
    pub contract_type: i64,
    pub category: i64,
    pub status: i64,
    pub start: Date,
    pub end: Date,
}

impl Contract {
    /// An active recurring service contract over `start..=end`.
    pub fn recurring(id: i64, company_id: i64, name: &str, start: Date, end: Date) -> Contract {
        Contract {
            id,
            company_id,
            name: name.to_owned(),
            number: format!("{}", 2_343_400 + id),
            contract_type: contract_type::RECURRING_SERVICE,
            category: 15,
            status: contract_status::ACTIVE,
            start,
            end,
        }
    }
}

/// A service on a contract (`ContractServices`); its units live in [`UnitRow`]s.
#[derive(Clone, Debug, PartialEq)]
pub struct ContractService {
    pub id: i64,
    pub contract_id: i64,
    pub service_id: i64,
    pub unit_price: Decimal,
    pub adjusted_price: Option<Decimal>,
    pub unit_cost: Decimal,
    pub invoice_description: String,
}

/// One period's units of a contract service (`ContractServiceUnits`).
#[derive(Clone, Debug, PartialEq)]
pub struct UnitRow {
    pub id: i64,
    pub contract_id: i64,
    pub contract_service_id: i64,
    pub service_id: i64,
    /// First day of the period.
    pub start: Date,
    /// Last day of the period.
    pub end: Date,
    pub units: i64,
    pub price: Decimal,
    pub cost: Decimal,
}

impl UnitRow {
    pub fn covers(&self, date: Date) -> bool {
        self.start <= date && date <= self.end
    }
}

/// A contract service adjustment the API accepted (`ContractServiceAdjustments`, create-only).
#[derive(Clone, Debug, PartialEq)]
pub struct Adjustment {
    pub id: i64,
    pub contract_id: i64,
    pub service_id: i64,
    pub contract_service_id: i64,
    pub unit_change: i64,
    pub effective_date: Date,
    pub created_at: OffsetDateTime,
}
