//! The fields of each resource that `conditions` and `orderBy` may name, with their type and how
//! to read them from a record. A path not listed here is an unknown field, which the API answers
//! with 400, as ConnectWise does. Field names are matched without regard to case.

use std::cmp::Ordering;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::model::{Addition, Agreement, CatalogItem, Company};
use super::state::State;
use super::timestamps::today_midnight;

/// The type of a field, which decides what a condition may compare it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    Flag,
    Instant,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "a string",
            Kind::Flag => "a boolean",
            Kind::Instant => "a date",
        }
    }
}

/// One field's value in one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Number(Decimal),
    Text(&'a str),
    Flag(bool),
    Instant(OffsetDateTime),
}

/// Reads one field of a record; joined fields (`company/name`) look the other record up.
pub type Getter<T> = for<'a> fn(&'a T, &'a State) -> Scalar<'a>;

pub struct Field<T: 'static> {
    pub path: &'static str,
    pub kind: Kind,
    pub get: Getter<T>,
}

/// A record kind the API lists.
pub trait Record: Sized + 'static {
    /// The resource name ConnectWise uses in error bodies (`company`, `agreement`, …).
    const RESOURCE: &'static str;

    fn id(&self) -> i64;

    fn fields() -> &'static [Field<Self>];

    /// The field named `path`, ignoring case.
    fn field(path: &str) -> Option<&'static Field<Self>> {
        Self::fields().iter().find(|f| f.path.eq_ignore_ascii_case(path))
    }
}

/// Compares two strings the way ConnectWise's database does by default: without regard to case.
pub fn text_cmp(a: &str, b: &str) -> Ordering {
    a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
}

/// Orders two values of one field; nulls sort first, as in SQL Server.
pub fn scalar_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    match (a, b) {
        (Scalar::Null, Scalar::Null) => Ordering::Equal,
        (Scalar::Null, _) => Ordering::Less,
        (_, Scalar::Null) => Ordering::Greater,
        (Scalar::Number(a), Scalar::Number(b)) => a.cmp(b),
        (Scalar::Text(a), Scalar::Text(b)) => text_cmp(a, b),
        (Scalar::Flag(a), Scalar::Flag(b)) => a.cmp(b),
        (Scalar::Instant(a), Scalar::Instant(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

/// `_info/lastUpdated`, the stamp every write moves forward.
const fn last_updated<T>(get: Getter<T>) -> Field<T> {
    Field { path: "_info/lastUpdated", kind: Kind::Instant, get }
}

/// `_info/dateEntered`, the stamp a record is created with.
const fn date_entered<T>(get: Getter<T>) -> Field<T> {
    Field { path: "_info/dateEntered", kind: Kind::Instant, get }
}

fn num(value: i64) -> Scalar<'static> {
    Scalar::Number(Decimal::from(value))
}

fn opt_instant(value: Option<OffsetDateTime>) -> Scalar<'static> {
    value.map_or(Scalar::Null, Scalar::Instant)
}

fn opt_text(value: Option<&str>) -> Scalar<'_> {
    value.map_or(Scalar::Null, Scalar::Text)
}

impl Record for Company {
    const RESOURCE: &'static str = "company";

    fn id(&self) -> i64 {
        self.id
    }

    fn fields() -> &'static [Field<Company>] {
        &COMPANY_FIELDS
    }
}

static COMPANY_FIELDS: [Field<Company>; 15] = [
    Field { path: "id", kind: Kind::Number, get: |c, _| num(c.id) },
    Field { path: "identifier", kind: Kind::Text, get: |c, _| Scalar::Text(&c.identifier) },
    Field { path: "name", kind: Kind::Text, get: |c, _| Scalar::Text(&c.name) },
    Field { path: "status/id", kind: Kind::Number, get: |c, _| num(c.status.id) },
    Field { path: "status/name", kind: Kind::Text, get: |c, _| Scalar::Text(&c.status.name) },
    Field { path: "deletedFlag", kind: Kind::Flag, get: |c, _| Scalar::Flag(c.deleted_flag) },
    Field { path: "leadFlag", kind: Kind::Flag, get: |c, _| Scalar::Flag(c.lead_flag) },
    Field { path: "dateDeleted", kind: Kind::Instant, get: |c, _| opt_instant(c.date_deleted) },
    Field { path: "phoneNumber", kind: Kind::Text, get: |c, _| Scalar::Text(&c.phone_number) },
    Field { path: "website", kind: Kind::Text, get: |c, _| Scalar::Text(&c.website) },
    Field { path: "city", kind: Kind::Text, get: |c, _| opt_text(c.city.as_deref()) },
    Field { path: "state", kind: Kind::Text, get: |c, _| opt_text(c.state.as_deref()) },
    last_updated(|c, _| Scalar::Instant(c.last_updated)),
    date_entered(|c, _| Scalar::Instant(c.date_entered)),
    Field { path: "_info/updatedBy", kind: Kind::Text, get: |c, _| Scalar::Text(&c.updated_by) },
];

impl Record for CatalogItem {
    const RESOURCE: &'static str = "catalogItem";

    fn id(&self) -> i64 {
        self.id
    }

    fn fields() -> &'static [Field<CatalogItem>] {
        &CATALOG_FIELDS
    }
}

static CATALOG_FIELDS: [Field<CatalogItem>; 12] = [
    Field { path: "id", kind: Kind::Number, get: |p, _| num(p.id) },
    Field { path: "identifier", kind: Kind::Text, get: |p, _| Scalar::Text(&p.identifier) },
    Field { path: "description", kind: Kind::Text, get: |p, _| Scalar::Text(&p.description) },
    Field { path: "inactiveFlag", kind: Kind::Flag, get: |p, _| Scalar::Flag(p.inactive_flag) },
    Field { path: "price", kind: Kind::Number, get: |p, _| Scalar::Number(p.price) },
    Field { path: "cost", kind: Kind::Number, get: |p, _| Scalar::Number(p.cost) },
    Field { path: "recurringFlag", kind: Kind::Flag, get: |p, _| Scalar::Flag(p.recurring_flag) },
    Field { path: "productClass", kind: Kind::Text, get: |p, _| Scalar::Text(&p.product_class) },
    Field { path: "category/id", kind: Kind::Number, get: |p, _| num(p.category.id) },
    Field { path: "category/name", kind: Kind::Text, get: |p, _| Scalar::Text(&p.category.name) },
    last_updated(|p, _| Scalar::Instant(p.last_updated)),
    date_entered(|p, _| Scalar::Instant(p.date_entered)),
];

impl Record for Agreement {
    const RESOURCE: &'static str = "agreement";

    fn id(&self) -> i64 {
        self.id
    }

    fn fields() -> &'static [Field<Agreement>] {
        &AGREEMENT_FIELDS
    }
}

fn company_of<'a>(a: &Agreement, state: &'a State) -> Option<&'a Company> {
    state.company(a.company_id)
}

static AGREEMENT_FIELDS: [Field<Agreement>; 18] = [
    Field { path: "id", kind: Kind::Number, get: |a, _| num(a.id) },
    Field { path: "name", kind: Kind::Text, get: |a, _| Scalar::Text(&a.name) },
    Field { path: "company/id", kind: Kind::Number, get: |a, _| num(a.company_id) },
    Field {
        path: "company/identifier",
        kind: Kind::Text,
        get: |a, s| opt_text(company_of(a, s).map(|c| c.identifier.as_str())),
    },
    Field {
        path: "company/name",
        kind: Kind::Text,
        get: |a, s| opt_text(company_of(a, s).map(|c| c.name.as_str())),
    },
    Field { path: "type/id", kind: Kind::Number, get: |a, _| num(a.agreement_type.id) },
    Field { path: "type/name", kind: Kind::Text, get: |a, _| Scalar::Text(&a.agreement_type.name) },
    Field {
        path: "agreementStatus",
        kind: Kind::Text,
        get: |a, _| Scalar::Text(&a.agreement_status),
    },
    Field { path: "cancelledFlag", kind: Kind::Flag, get: |a, _| Scalar::Flag(a.cancelled_flag) },
    Field {
        path: "noEndingDateFlag",
        kind: Kind::Flag,
        get: |a, _| Scalar::Flag(a.no_ending_date_flag),
    },
    Field {
        path: "billOneTimeFlag",
        kind: Kind::Flag,
        get: |a, _| Scalar::Flag(a.bill_one_time_flag),
    },
    Field {
        path: "billingCycle/id",
        kind: Kind::Number,
        get: |a, _| a.billing_cycle.as_ref().map_or(Scalar::Null, |c| num(c.id)),
    },
    Field { path: "startDate", kind: Kind::Instant, get: |a, _| Scalar::Instant(a.start_date) },
    Field { path: "endDate", kind: Kind::Instant, get: |a, _| opt_instant(a.end_date) },
    Field { path: "dateCancelled", kind: Kind::Instant, get: |a, _| opt_instant(a.date_cancelled) },
    last_updated(|a, _| Scalar::Instant(a.last_updated)),
    date_entered(|a, _| Scalar::Instant(a.date_entered)),
    Field { path: "_info/updatedBy", kind: Kind::Text, get: |a, _| Scalar::Text(&a.updated_by) },
];

impl Record for Addition {
    const RESOURCE: &'static str = "addition";

    fn id(&self) -> i64 {
        self.id
    }

    fn fields() -> &'static [Field<Addition>] {
        &ADDITION_FIELDS
    }
}

fn product_of<'a>(a: &Addition, state: &'a State) -> Option<&'a CatalogItem> {
    state.catalog_item(a.product_id)
}

static ADDITION_FIELDS: [Field<Addition>; 16] = [
    Field { path: "id", kind: Kind::Number, get: |a, _| num(a.id) },
    Field { path: "agreementId", kind: Kind::Number, get: |a, _| num(a.agreement_id) },
    Field { path: "product/id", kind: Kind::Number, get: |a, _| num(a.product_id) },
    Field {
        path: "product/identifier",
        kind: Kind::Text,
        get: |a, s| opt_text(product_of(a, s).map(|p| p.identifier.as_str())),
    },
    Field {
        path: "product/description",
        kind: Kind::Text,
        get: |a, s| opt_text(product_of(a, s).map(|p| p.description.as_str())),
    },
    Field { path: "quantity", kind: Kind::Number, get: |a, _| Scalar::Number(a.quantity) },
    Field { path: "lessIncluded", kind: Kind::Number, get: |a, _| Scalar::Number(a.less_included) },
    Field { path: "unitPrice", kind: Kind::Number, get: |a, _| Scalar::Number(a.unit_price) },
    Field { path: "unitCost", kind: Kind::Number, get: |a, _| Scalar::Number(a.unit_cost) },
    Field {
        path: "billCustomer",
        kind: Kind::Text,
        get: |a, _| Scalar::Text(a.bill_customer.as_str()),
    },
    Field { path: "effectiveDate", kind: Kind::Instant, get: |a, _| opt_instant(a.effective_date) },
    Field { path: "cancelledDate", kind: Kind::Instant, get: |a, _| opt_instant(a.cancelled_date) },
    Field {
        path: "agreementStatus",
        kind: Kind::Text,
        get: |a, _| Scalar::Text(a.status_on(today_midnight())),
    },
    Field { path: "description", kind: Kind::Text, get: |a, _| Scalar::Text(&a.description) },
    last_updated(|a, _| Scalar::Instant(a.last_updated)),
    date_entered(|a, _| Scalar::Instant(a.date_entered)),
];
