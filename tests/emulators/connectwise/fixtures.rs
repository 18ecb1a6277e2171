//! The data an emulator starts with. `CwData::sample()` is a small MSP with the untidiness real
//! ConnectWise data has (punctuation, invisible and non-ASCII characters in names, decimal
//! quantities, several lines of one product on one agreement, cancelled and future-dated lines,
//! a prospect, a merged company, a one-time agreement) for `tally demo` and tests;
//! `CwData::generate` builds large deterministic data sets for the benchmark.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::model::{Addition, Agreement, BillCustomer, CatalogItem, Company, Reference};
use super::timestamps::today_midnight;
use crate::names::SKU_FAMILIES;

/// Everything the emulator serves, as plain records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CwData {
    pub companies: Vec<Company>,
    pub products: Vec<CatalogItem>,
    pub agreements: Vec<Agreement>,
    pub additions: Vec<Addition>,
}

/// `mantissa × 10^-scale`, e.g. `dec(175, 2)` is 1.75.
fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

/// Ids of notable records in [`CwData::sample`], for tests and the demo.
pub mod sample_ids {
    /// "Contoso Ltd": the surviving company of a merge.
    pub const CONTOSO: i64 = 250;
    /// "Contoso Limited": merged into 250, `deletedFlag` true, status still Active (C12).
    pub const CONTOSO_MERGED: i64 = 251;
    /// "O'Brien & Sons".
    pub const OBRIEN: i64 = 19301;
    /// "Müller Bäckerei GmbH".
    pub const MULLER: i64 = 19302;
    /// "Fabrikam<NBSP>Inc".
    pub const FABRIKAM: i64 = 19303;
    /// "Tailspin Toys<ZWSP>".
    pub const TAILSPIN: i64 = 19304;
    /// "Northwind  Traders" (two spaces).
    pub const NORTHWIND: i64 = 19305;
    /// "Woodgrove Bank": a prospect.
    pub const WOODGROVE: i64 = 19306;

    pub const SAFEDNS_SEAT: i64 = 101;
    pub const M365_BP: i64 = 102;
    pub const BKP_TB: i64 = 103;
    pub const EDR_AGENT: i64 = 104;
    pub const SAT_USER: i64 = 105;

    /// Contoso Ltd's agreement: SAFEDNS-SEAT lines 1 (cancelled), 2 (in force), 3 (future).
    pub const CONTOSO_AGREEMENT: i64 = 5001;
    /// O'Brien & Sons' one-time (non-recurring) agreement.
    pub const OBRIEN_ONE_TIME: i64 = 5004;
    /// Northwind's agreement, with two EDR-AGENT lines in force at once (16 and 17).
    pub const NORTHWIND_AGREEMENT: i64 = 5008;
}

impl CwData {
    /// A small, realistic MSP for the demo and for tests (see `sample_ids`).
    pub fn sample() -> CwData {
        use sample_ids::*;

        let product = |id, identifier: &str, description: &str, price, cost, updated| {
            let mut p = CatalogItem::new(id, identifier, description, price);
            p.cost = cost;
            p.last_updated = updated;
            p
        };
        let products = vec![
            product(
                SAFEDNS_SEAT,
                "SAFEDNS-SEAT",
                "SafeDNS Pro - per seat",
                dec(250, 2),
                dec(120, 2),
                datetime!(2024-02-12 09:41:12 UTC),
            ),
            product(
                M365_BP,
                "M365-BP",
                "Microsoft 365 Business Premium",
                dec(2200, 2),
                dec(1980, 2),
                datetime!(2024-02-12 09:43:55.507 UTC),
            ),
            product(
                BKP_TB,
                "BKP-TB",
                "Cloud Backup - per TB",
                dec(45, 0),
                dec(18, 0),
                datetime!(2024-03-01 16:02:41 UTC),
            ),
            product(
                EDR_AGENT,
                "EDR-AGENT",
                "Endpoint Detection & Response - per agent",
                dec(650, 2),
                dec(325, 2),
                datetime!(2024-03-01 16:05:09.118 UTC),
            ),
            product(
                SAT_USER,
                "SAT-USER",
                "Security Awareness Training - per user",
                dec(175, 2),
                dec(90, 2),
                datetime!(2024-03-04 08:12:30 UTC),
            ),
        ];

        let company = |id, identifier: &str, name: &str, updated| {
            let mut c = Company::new(id, identifier, name);
            c.last_updated = updated;
            c.phone_number = format!("555010{:04}", id % 10_000);
            c.website = format!("www.{}.example", identifier.to_ascii_lowercase());
            c
        };
        let shared_stamp = datetime!(2024-05-01 11:15:07.263 UTC);
        let mut contoso_merged = company(
            CONTOSO_MERGED,
            "ContosoLimited",
            "Contoso Limited",
            datetime!(2024-04-01 0:00 UTC),
        );
        contoso_merged.deleted_flag = true;
        let mut woodgrove = company(
            WOODGROVE,
            "WoodgroveBank",
            "Woodgrove Bank",
            datetime!(2024-05-02 14:20:00 UTC),
        );
        woodgrove.types = vec![Reference::type_prospect()];
        woodgrove.lead_flag = true;
        let mut muller = company(
            MULLER,
            "MullerBackerei",
            "Müller Bäckerei GmbH",
            datetime!(2024-04-18 07:55:31.940 UTC),
        );
        muller.city = Some("München".to_owned());
        let companies = vec![
            company(CONTOSO, "ContosoLtd", "Contoso Ltd", datetime!(2024-04-01 0:00 UTC)),
            contoso_merged,
            company(OBRIEN, "OBrienSons", "O'Brien & Sons", datetime!(2024-03-22 18:30:02 UTC)),
            muller,
            company(FABRIKAM, "Fabrikam", "Fabrikam\u{a0}Inc", shared_stamp),
            company(TAILSPIN, "TailspinToys", "Tailspin Toys\u{200b}", shared_stamp),
            company(NORTHWIND, "NorthwindTraders", "Northwind  Traders", shared_stamp),
            woodgrove,
        ];

        let agreement = |id, company_id, name: &str, updated| {
            let mut a = Agreement::new(id, company_id, name);
            a.last_updated = updated;
            a
        };
        let mut one_time = agreement(
            OBRIEN_ONE_TIME,
            OBRIEN,
            "Onboarding Block - One time",
            datetime!(2024-02-29 17:00:00 UTC),
        )
        .one_time();
        one_time.no_ending_date_flag = false;
        one_time.start_date = datetime!(2024-02-01 0:00 UTC);
        one_time.end_date = Some(datetime!(2024-02-29 0:00 UTC));
        one_time.bill_amount = dec(1500, 0);
        let agreements = vec![
            agreement(
                CONTOSO_AGREEMENT,
                CONTOSO,
                "Managed Services",
                datetime!(2024-04-01 0:00 UTC),
            ),
            agreement(5002, CONTOSO_MERGED, "Managed Services", datetime!(2024-01-15 10:00:00 UTC)),
            agreement(5003, OBRIEN, "Managed Services", datetime!(2024-03-22 18:31:44.020 UTC)),
            one_time,
            agreement(5005, MULLER, "Managed Services DE", datetime!(2024-04-18 07:58:00 UTC)),
            agreement(5006, FABRIKAM, "Managed Services", shared_stamp),
            agreement(5007, TAILSPIN, "Managed Services", shared_stamp),
            agreement(NORTHWIND_AGREEMENT, NORTHWIND, "Managed Services", shared_stamp),
        ];

        let by_id = |id: i64| products.iter().find(|p| p.id == id).cloned();
        let mut additions = Vec::new();
        let mut line = |id, agreement_id, product_id, quantity, effective: OffsetDateTime| {
            if let Some(product) = by_id(product_id) {
                let mut a = Addition::new(id, agreement_id, &product, quantity);
                a.effective_date = Some(effective);
                a.date_entered = effective.min(datetime!(2024-05-01 0:00 UTC));
                a.last_updated = datetime!(2024-05-01 09:00:00 UTC) + Duration::minutes(id);
                additions.push(a);
            }
        };
        let jan = datetime!(2024-01-01 0:00 UTC);
        line(1, CONTOSO_AGREEMENT, SAFEDNS_SEAT, dec(40, 0), jan);
        line(2, CONTOSO_AGREEMENT, SAFEDNS_SEAT, dec(42, 0), datetime!(2024-04-01 0:00 UTC));
        line(3, CONTOSO_AGREEMENT, SAFEDNS_SEAT, dec(5, 0), today_midnight() + Duration::days(45));
        line(4, CONTOSO_AGREEMENT, M365_BP, dec(25, 0), jan);
        line(5, 5002, SAFEDNS_SEAT, dec(7, 0), jan);
        line(6, 5003, M365_BP, dec(8, 0), jan);
        line(7, 5003, SAFEDNS_SEAT, dec(10, 0), jan);
        line(8, OBRIEN_ONE_TIME, SAT_USER, dec(12, 0), datetime!(2024-02-01 0:00 UTC));
        line(9, 5005, SAFEDNS_SEAT, dec(15, 0), jan);
        line(10, 5005, BKP_TB, dec(5, 1), jan);
        line(11, 5006, BKP_TB, dec(175, 2), jan);
        line(12, 5006, SAFEDNS_SEAT, dec(12, 0), jan);
        line(13, 5007, BKP_TB, dec(225, 2), jan);
        line(14, 5007, M365_BP, dec(30, 0), jan);
        line(15, NORTHWIND_AGREEMENT, SAT_USER, dec(50, 0), jan);
        line(16, NORTHWIND_AGREEMENT, EDR_AGENT, dec(20, 0), jan);
        line(17, NORTHWIND_AGREEMENT, EDR_AGENT, dec(30, 0), datetime!(2024-03-01 0:00 UTC));
        line(18, 5006, M365_BP, dec(3, 0), jan);
        for a in &mut additions {
            match a.id {
                1 => a.cancelled_date = Some(datetime!(2024-03-31 0:00 UTC)),
                8 => a.cancelled_date = Some(datetime!(2024-02-29 0:00 UTC)),
                18 => a.bill_customer = BillCustomer::NoCharge,
                _ => {}
            }
        }

        CwData { companies, products, agreements, additions }
    }

    /// A deterministic data set of the given sizes for the benchmark: the same `seed` gives the
    /// same records. Ids have gaps, as real ones do; names carry a little of the sample's
    /// untidiness; a few companies are deleted or prospects, a few agreements cancelled or
    /// one-time, a few additions cancelled, future-dated or fractional.
    pub fn generate(
        seed: u64,
        companies: usize,
        products: usize,
        agreements: usize,
        additions: usize,
    ) -> CwData {
        let mut rng = StdRng::seed_from_u64(seed);
        let epoch = datetime!(2024-06-01 0:00 UTC);
        let stamp = |rng: &mut StdRng| {
            let seconds = rng.random_range(0..(2 * 365 * 24 * 3600));
            let millis = if rng.random_bool(0.5) { rng.random_range(0..1000) } else { 0 };
            epoch - Duration::seconds(seconds) + Duration::milliseconds(millis)
        };

        let mut names = HashSet::new();
        let mut next_id = 100;
        let mut company_list = Vec::with_capacity(companies);
        for _ in 0..companies {
            let id = next_id;
            next_id += 1 + if rng.random_bool(0.1) { rng.random_range(1..5) } else { 0 };
            let name = company_name(&mut rng, &mut names);
            let letters: String =
                name.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
            let mut c = Company::new(id, &format!("{letters}{id}"), &name);
            c.last_updated = stamp(&mut rng);
            c.phone_number = format!("555{:07}", id % 10_000_000);
            match rng.random_range(0..100) {
                0 => c.deleted_flag = true,
                1..=3 => {
                    c.types = vec![Reference::type_prospect()];
                    c.lead_flag = true;
                }
                4 | 5 => c.status = Reference::status_inactive(),
                _ => {}
            }
            company_list.push(c);
        }

        let mut product_list = Vec::with_capacity(products);
        for i in 0..products {
            let id = 1000 + i64::try_from(i).unwrap_or(i64::MAX - 1000);
            let (identifier, description) = match SAMPLE_SKUS.get(i) {
                Some((sku, text)) => ((*sku).to_owned(), (*text).to_owned()),
                None => {
                    let (family, text) = SKU_FAMILIES[i % SKU_FAMILIES.len()];
                    (format!("{family}-{i:05}"), format!("{text} (plan {i})"))
                }
            };
            let price = dec(rng.random_range(100..15_000), 2);
            let mut p = CatalogItem::new(id, &identifier, &description, price);
            p.cost = (price * dec(rng.random_range(30..90), 2)).round_dp(2);
            p.inactive_flag = rng.random_bool(0.03);
            p.last_updated = stamp(&mut rng);
            product_list.push(p);
        }

        let mut agreement_list = Vec::with_capacity(agreements);
        for i in 0..agreements {
            let id = 10_000 + i64::try_from(i).unwrap_or(0);
            let company_id = match company_list.get(i) {
                Some(c) => c.id,
                None if company_list.is_empty() => 0,
                None => company_list[rng.random_range(0..company_list.len())].id,
            };
            let mut a = Agreement::new(id, company_id, "Managed Services");
            a.last_updated = stamp(&mut rng);
            match rng.random_range(0..100) {
                0..=3 => {
                    a.agreement_status = "Cancelled".to_owned();
                    a.cancelled_flag = true;
                    a.date_cancelled = Some(a.last_updated);
                }
                4..=8 => a = a.one_time(),
                _ => {}
            }
            agreement_list.push(a);
        }

        let mut addition_list = Vec::with_capacity(additions);
        if !agreement_list.is_empty() && !product_list.is_empty() {
            for i in 0..additions {
                let id = 1 + i64::try_from(i).unwrap_or(0);
                let agreement_id = agreement_list[rng.random_range(0..agreement_list.len())].id;
                let product = if rng.random_bool(0.5) {
                    &product_list[rng.random_range(0..product_list.len().min(SAMPLE_SKUS.len()))]
                } else {
                    &product_list[rng.random_range(0..product_list.len())]
                };
                let quantity = if rng.random_bool(0.15) {
                    dec(rng.random_range(25..2000), 2)
                } else {
                    dec(rng.random_range(1..250), 0)
                };
                let mut a = Addition::new(id, agreement_id, product, quantity);
                a.effective_date = Some(epoch - Duration::days(rng.random_range(30..900)));
                match rng.random_range(0..100) {
                    0..=4 => {
                        a.cancelled_date = Some(epoch - Duration::days(rng.random_range(1..30)));
                    }
                    5 | 6 => {
                        a.effective_date = Some(FUTURE + Duration::days(rng.random_range(0..90)))
                    }
                    _ => {}
                }
                a.last_updated = stamp(&mut rng);
                addition_list.push(a);
            }
        }
        addition_list.sort_by_key(|a| (a.agreement_id, a.id));

        CwData {
            companies: company_list,
            products: product_list,
            agreements: agreement_list,
            additions: addition_list,
        }
    }
}

/// Where `generate` puts future-dated additions: fixed, so that a seed always gives the same
/// data, and far enough ahead to stay in the future for years.
const FUTURE: OffsetDateTime = datetime!(2031-01-01 0:00 UTC);

const SAMPLE_SKUS: [(&str, &str); 5] = [
    ("SAFEDNS-SEAT", "SafeDNS Pro - per seat"),
    ("M365-BP", "Microsoft 365 Business Premium"),
    ("BKP-TB", "Cloud Backup - per TB"),
    ("EDR-AGENT", "Endpoint Detection & Response - per agent"),
    ("SAT-USER", "Security Awareness Training - per user"),
];

const FIRST: [&str; 24] = [
    "Blue", "North", "Silver", "Harbor", "Granite", "Cedar", "Summit", "River", "Oak", "Pioneer",
    "Lakeside", "Red", "Golden", "Iron", "Maple", "Prairie", "Coastal", "Eagle", "Bright", "Stone",
    "Crescent", "Metro", "Valley", "Östra",
];

const SECOND: [&str; 24] = [
    "Ridge",
    "Point",
    "Bridge",
    "Field",
    "Works",
    "Dental",
    "Legal",
    "Logistics",
    "Builders",
    "Medical",
    "Accounting",
    "Partners",
    "Foods",
    "Motors",
    "Realty",
    "Design",
    "Systems",
    "Clinic",
    "Farms",
    "Studio",
    "Insurance",
    "Consulting",
    "Bakery",
    "Café",
];

const SUFFIX: [&str; 8] = ["Inc", "LLC", "Ltd", "Inc.", "GmbH", "& Co", "Group", "Corp"];

/// A company name, unique within `taken`, sometimes with the untidiness real data has.
fn company_name(rng: &mut StdRng, taken: &mut HashSet<String>) -> String {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let second = SECOND[rng.random_range(0..SECOND.len())];
    let suffix = SUFFIX[rng.random_range(0..SUFFIX.len())];
    let mut name = match rng.random_range(0..100) {
        0 | 1 => format!("{first}\u{a0}{second} {suffix}"),
        2 => format!("{first} {second} {suffix}\u{200b}"),
        3 => format!("{first}  {second} {suffix}"),
        4 | 5 => format!("{first}'s {second} {suffix}"),
        6 | 7 => format!("{first} & {second} {suffix}"),
        _ => format!("{first} {second} {suffix}"),
    };
    let base = name.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base} {n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_is_deterministic_and_sized() {
        let a = CwData::generate(7, 50, 10, 60, 300);
        let b = CwData::generate(7, 50, 10, 60, 300);
        assert_eq!(a, b);
        assert_eq!((a.companies.len(), a.products.len()), (50, 10));
        assert_eq!((a.agreements.len(), a.additions.len()), (60, 300));
        let names: HashSet<_> = a.companies.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names.len(), 50);
        assert_ne!(a, CwData::generate(8, 50, 10, 60, 300));
    }

    #[test]
    fn sample_has_its_untidy_cases() {
        let data = CwData::sample();
        let names: Vec<&str> = data.companies.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"O'Brien & Sons"));
        assert!(names.iter().any(|n| n.contains('\u{a0}')));
        assert!(names.iter().any(|n| n.contains('\u{200b}')));
        assert!(names.iter().any(|n| n.contains("  ")));
        assert!(data.companies.iter().any(|c| c.deleted_flag));
        assert!(data.agreements.iter().any(|a| a.billing_cycle.is_none()));
        assert!(data.additions.iter().any(|a| a.quantity.scale() > 0));
        assert!(data.additions.iter().any(|a| a.effective_date > Some(today_midnight())));
        assert_eq!(data.additions.len(), 18);
    }
}
