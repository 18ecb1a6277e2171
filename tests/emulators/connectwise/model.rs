//! The records the emulator holds: companies, catalog items, agreements and agreement additions,
//! as plain structs a test can build and inspect. They keep what ConnectWise stores, not how it
//! renders it: references to other records are ids, joined at render time as the real API does,
//! and quantities and prices are decimals. The JSON shapes live in `render`.

use rust_decimal::Decimal;
use time::OffsetDateTime;
use time::macros::datetime;

use super::timestamps::now_millis;

/// A `{id, name}` reference such as a company status, company type or billing cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub id: i64,
    pub name: String,
}

impl Reference {
    pub fn new(id: i64, name: &str) -> Reference {
        Reference { id, name: name.to_owned() }
    }

    /// Company status "Active" (id 1), the ConnectWise default.
    pub fn status_active() -> Reference {
        Reference::new(1, "Active")
    }

    /// Company status "Inactive" (id 2).
    pub fn status_inactive() -> Reference {
        Reference::new(2, "Inactive")
    }

    /// Company type "Customer" (id 1).
    pub fn type_customer() -> Reference {
        Reference::new(1, "Customer")
    }

    /// Company type "Prospect" (id 4).
    pub fn type_prospect() -> Reference {
        Reference::new(4, "Prospect")
    }

    /// Billing cycle "Monthly" (id 2), the usual one for managed-services agreements.
    pub fn cycle_monthly() -> Reference {
        Reference::new(2, "Monthly")
    }
}

/// A ConnectWise company (`company/companies`).
#[derive(Clone, Debug, PartialEq)]
pub struct Company {
    pub id: i64,
    pub identifier: String,
    pub name: String,
    pub status: Reference,
    pub types: Vec<Reference>,
    pub lead_flag: bool,
    pub deleted_flag: bool,
    pub date_deleted: Option<OffsetDateTime>,
    pub deleted_by: Option<String>,
    pub phone_number: String,
    pub website: String,
    pub city: Option<String>,
    pub state: Option<String>,
    pub date_entered: OffsetDateTime,
    pub last_updated: OffsetDateTime,
    pub updated_by: String,
}

impl Company {
    /// An active customer, last updated now.
    pub fn new(id: i64, identifier: &str, name: &str) -> Company {
        Company {
            id,
            identifier: identifier.to_owned(),
            name: name.to_owned(),
            status: Reference::status_active(),
            types: vec![Reference::type_customer()],
            lead_flag: false,
            deleted_flag: false,
            date_deleted: None,
            deleted_by: None,
            phone_number: String::new(),
            website: String::new(),
            city: None,
            state: None,
            date_entered: datetime!(2019-03-04 14:22:10 UTC),
            last_updated: now_millis(),
            updated_by: "admin1".to_owned(),
        }
    }
}

/// A procurement catalog item (`procurement/catalog`): the PSA's product.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogItem {
    pub id: i64,
    pub identifier: String,
    pub description: String,
    pub customer_description: String,
    pub inactive_flag: bool,
    pub price: Decimal,
    pub cost: Decimal,
    pub taxable_flag: bool,
    pub recurring_flag: bool,
    pub product_class: String,
    pub category: Reference,
    pub subcategory: Reference,
    pub unit_of_measure: Reference,
    pub date_entered: OffsetDateTime,
    pub last_updated: OffsetDateTime,
    pub updated_by: String,
}

impl CatalogItem {
    /// An active, recurring, non-inventory service item, last updated now.
    pub fn new(id: i64, identifier: &str, description: &str, price: Decimal) -> CatalogItem {
        CatalogItem {
            id,
            identifier: identifier.to_owned(),
            description: description.to_owned(),
            customer_description: description.to_owned(),
            inactive_flag: false,
            price,
            cost: Decimal::ZERO,
            taxable_flag: false,
            recurring_flag: true,
            product_class: "NonInventory".to_owned(),
            category: Reference::new(18, "Managed Services"),
            subcategory: Reference::new(42, "Licensing"),
            unit_of_measure: Reference::new(1, "Each"),
            date_entered: datetime!(2019-03-04 14:22:10 UTC),
            last_updated: now_millis(),
            updated_by: "admin1".to_owned(),
        }
    }
}

/// A finance agreement (`finance/agreements`): the contract holding the additions.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    pub id: i64,
    pub name: String,
    pub company_id: i64,
    pub agreement_type: Reference,
    /// "Active", "Cancelled", "Expired" or "Inactive".
    pub agreement_status: String,
    pub cancelled_flag: bool,
    pub date_cancelled: Option<OffsetDateTime>,
    pub start_date: OffsetDateTime,
    pub end_date: Option<OffsetDateTime>,
    pub no_ending_date_flag: bool,
    /// `None` for an agreement that bills once rather than on a cycle.
    pub billing_cycle: Option<Reference>,
    pub bill_one_time_flag: bool,
    pub bill_amount: Decimal,
    pub date_entered: OffsetDateTime,
    pub last_updated: OffsetDateTime,
    pub updated_by: String,
}

impl Agreement {
    /// An active, monthly, open-ended managed-services agreement, last updated now.
    pub fn new(id: i64, company_id: i64, name: &str) -> Agreement {
        Agreement {
            id,
            name: name.to_owned(),
            company_id,
            agreement_type: Reference::new(3, "Managed Services"),
            agreement_status: "Active".to_owned(),
            cancelled_flag: false,
            date_cancelled: None,
            start_date: datetime!(2023-01-01 0:00 UTC),
            end_date: None,
            no_ending_date_flag: true,
            billing_cycle: Some(Reference::cycle_monthly()),
            bill_one_time_flag: false,
            bill_amount: Decimal::ZERO,
            date_entered: datetime!(2022-12-15 09:30:00 UTC),
            last_updated: now_millis(),
            updated_by: "admin1".to_owned(),
        }
    }

    /// Marks the agreement as billing once (no billing cycle), like "Block Time - One time".
    pub fn one_time(mut self) -> Agreement {
        self.agreement_type = Reference::new(5, "Block Time - One time");
        self.billing_cycle = None;
        self.bill_one_time_flag = true;
        self
    }
}

/// Whom an addition bills: ConnectWise's `billCustomer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillCustomer {
    Billable,
    DoNotBill,
    NoCharge,
}

impl BillCustomer {
    pub fn as_str(self) -> &'static str {
        match self {
            BillCustomer::Billable => "Billable",
            BillCustomer::DoNotBill => "DoNotBill",
            BillCustomer::NoCharge => "NoCharge",
        }
    }

    /// Reads the wire value, ignoring case as ConnectWise does.
    pub fn parse(text: &str) -> Option<BillCustomer> {
        [BillCustomer::Billable, BillCustomer::DoNotBill, BillCustomer::NoCharge]
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(text))
    }
}

/// An agreement addition (`finance/agreements/{id}/additions`): one recurring billing line.
#[derive(Clone, Debug, PartialEq)]
pub struct Addition {
    pub id: i64,
    pub agreement_id: i64,
    pub product_id: i64,
    pub quantity: Decimal,
    pub less_included: Decimal,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    pub bill_customer: BillCustomer,
    pub effective_date: Option<OffsetDateTime>,
    pub cancelled_date: Option<OffsetDateTime>,
    pub description: String,
    pub invoice_description: Option<String>,
    pub taxable_flag: bool,
    pub date_entered: OffsetDateTime,
    pub last_updated: OffsetDateTime,
    pub updated_by: String,
}

impl Addition {
    /// A billable addition of `product` effective from 2024-01-01, priced from the catalog,
    /// last updated now.
    pub fn new(id: i64, agreement_id: i64, product: &CatalogItem, quantity: Decimal) -> Addition {
        Addition {
            id,
            agreement_id,
            product_id: product.id,
            quantity,
            less_included: Decimal::ZERO,
            unit_price: product.price,
            unit_cost: product.cost,
            bill_customer: BillCustomer::Billable,
            effective_date: Some(datetime!(2024-01-01 0:00 UTC)),
            cancelled_date: None,
            description: product.description.clone(),
            invoice_description: None,
            taxable_flag: product.taxable_flag,
            date_entered: datetime!(2024-01-01 08:00:00 UTC),
            last_updated: now_millis(),
            updated_by: "admin1".to_owned(),
        }
    }

    /// ConnectWise's addition status as of `today`: "Cancelled" once the cancelled date has
    /// passed, otherwise "Active".
    pub fn status_on(&self, today: OffsetDateTime) -> &'static str {
        match self.cancelled_date {
            Some(cancelled) if cancelled <= today => "Cancelled",
            _ => "Active",
        }
    }
}
