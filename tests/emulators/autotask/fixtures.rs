//! The data the Autotask emulator starts with. `AtData::sample()` is the same small MSP as the
//! ConnectWise sample (the same customers, with their untidy names, and the same five SKUs as
//! service names), kept as Autotask keeps it: recurring service contracts whose services carry
//! monthly unit rows from 2024 to 2028, whole units only, a prospect, a dead company, an
//! inactive contract and a block-hours contract. Contract service 77 is case C13's
//! "Fabrikam, M365-BP, 40 units". `AtData::generate` builds large deterministic data sets for
//! the benchmark.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use time::macros::{date, datetime};
use time::{Date, Duration, Month};

use super::model::{
    Adjustment, Company, Contract, ContractService, Service, UnitRow, company_type,
    contract_status, contract_type,
};
use crate::names::SKU_FAMILIES;

/// Everything the emulator serves, as plain records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AtData {
    pub companies: Vec<Company>,
    pub services: Vec<Service>,
    pub contracts: Vec<Contract>,
    pub contract_services: Vec<ContractService>,
    pub units: Vec<UnitRow>,
    pub adjustments: Vec<Adjustment>,
}

/// Ids of notable records in [`AtData::sample`], for tests and the demo.
pub mod sample_ids {
    /// "Contoso Ltd".
    pub const CONTOSO: i64 = 174;
    /// "Contoso Limited": merged away, now a dead, inactive company.
    pub const CONTOSO_LIMITED: i64 = 175;
    pub const OBRIEN: i64 = 176;
    pub const MULLER: i64 = 177;
    /// "Fabrikam<NBSP>Inc".
    pub const FABRIKAM: i64 = 178;
    /// "Tailspin Toys<ZWSP>".
    pub const TAILSPIN: i64 = 179;
    /// "Northwind  Traders" (two spaces).
    pub const NORTHWIND: i64 = 180;
    /// "Woodgrove Bank": a prospect.
    pub const WOODGROVE: i64 = 181;

    pub const SAFEDNS_SEAT: i64 = 300;
    pub const M365_BP: i64 = 301;
    pub const BKP_TB: i64 = 302;
    pub const EDR_AGENT: i64 = 303;
    pub const SAT_USER: i64 = 304;
    /// An inactive service on no contract.
    pub const LEGACY_AV: i64 = 305;

    /// Fabrikam's recurring service contract.
    pub const FABRIKAM_CONTRACT: i64 = 12;
    /// Contoso Ltd's recurring service contract.
    pub const CONTOSO_CONTRACT: i64 = 13;
    /// Contoso Limited's contract, inactive since the merge.
    pub const CONTOSO_LIMITED_CONTRACT: i64 = 14;
    /// O'Brien & Sons' block-hours contract (not recurring).
    pub const OBRIEN_BLOCK_HOURS: i64 = 19;

    /// Fabrikam's M365-BP: 40 units in every period (case C13).
    pub const FABRIKAM_M365: i64 = 77;
    /// Contoso's SAFEDNS-SEAT: 40 units, then 42 from 2024-04-01 (adjusted).
    pub const CONTOSO_SAFEDNS: i64 = 70;
}

/// The first and last day of the sample's and the generator's unit periods.
const PERIODS_FROM: Date = date!(2024 - 01 - 01);
const PERIODS_TO: Date = date!(2028 - 12 - 31);

/// `mantissa × 10^-scale`, e.g. `dec(2150, 2)` is 21.50.
fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

/// Calendar months from `from` to `to`, as `(first day, last day)`.
fn months(from: Date, to: Date) -> Vec<(Date, Date)> {
    let mut periods = Vec::new();
    let mut start = from;
    while start <= to {
        let (year, month) = (start.year(), start.month());
        let next = match month {
            Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
            _ => Date::from_calendar_date(year, month.next(), 1),
        };
        let Ok(next) = next else { break };
        let end = next.previous_day().unwrap_or(next).min(to);
        periods.push((start, end));
        start = next;
    }
    periods
}

impl AtData {
    /// A small, realistic MSP for the demo and for tests (see `sample_ids`).
    pub fn sample() -> AtData {
        use sample_ids::*;

        let service = |id, name: &str, description: &str, price, cost| {
            let mut s = Service::new(id, name, description, price);
            s.unit_cost = cost;
            s
        };
        let mut legacy =
            service(LEGACY_AV, "LEGACY-AV", "Legacy antivirus", dec(300, 2), dec(0, 0));
        legacy.is_active = false;
        let mut services = vec![
            service(
                SAFEDNS_SEAT,
                "SAFEDNS-SEAT",
                "SafeDNS Pro - per seat",
                dec(250, 2),
                dec(120, 2),
            ),
            service(
                M365_BP,
                "M365-BP",
                "Microsoft 365 Business Premium",
                dec(2200, 2),
                dec(1980, 2),
            ),
            service(BKP_TB, "BKP-TB", "Cloud Backup - per TB", dec(45, 0), dec(18, 0)),
            service(
                EDR_AGENT,
                "EDR-AGENT",
                "Endpoint Detection & Response - per agent",
                dec(650, 2),
                dec(325, 2),
            ),
            service(
                SAT_USER,
                "SAT-USER",
                "Security Awareness Training - per user",
                dec(175, 2),
                dec(90, 2),
            ),
            legacy,
        ];
        services[1].last_modified = datetime!(2024-02-12 09:43:55.507 UTC);
        services[2].last_modified = datetime!(2024-03-01 16:02:41 UTC);

        let shared_stamp = datetime!(2024-05-01 11:15:07.263 UTC);
        let company = |id, name: &str, kind, active, stamp| {
            let mut c = Company::new(id, name);
            c.company_type = kind;
            c.is_active = active;
            c.last_activity = stamp;
            c.phone = format!("555-010-{:04}", id % 10_000);
            c
        };
        let mut muller = company(
            MULLER,
            "Müller Bäckerei GmbH",
            company_type::CUSTOMER,
            true,
            datetime!(2024-04-18 07:55:31.940 UTC),
        );
        muller.city = "München".to_owned();
        let companies = vec![
            company(
                CONTOSO,
                "Contoso Ltd",
                company_type::CUSTOMER,
                true,
                datetime!(2024-04-01 0:00 UTC),
            ),
            company(
                CONTOSO_LIMITED,
                "Contoso Limited",
                company_type::DEAD,
                false,
                datetime!(2024-04-01 0:00 UTC),
            ),
            company(
                OBRIEN,
                "O'Brien & Sons",
                company_type::CUSTOMER,
                true,
                datetime!(2024-03-22 18:30:02 UTC),
            ),
            muller,
            company(FABRIKAM, "Fabrikam\u{a0}Inc", company_type::CUSTOMER, true, shared_stamp),
            company(TAILSPIN, "Tailspin Toys\u{200b}", company_type::CUSTOMER, true, shared_stamp),
            company(NORTHWIND, "Northwind  Traders", company_type::CUSTOMER, true, shared_stamp),
            company(
                WOODGROVE,
                "Woodgrove Bank",
                company_type::PROSPECT,
                true,
                datetime!(2024-05-02 14:20:00 UTC),
            ),
        ];

        let contract = |id, company_id, name: &str| {
            Contract::recurring(id, company_id, name, PERIODS_FROM, PERIODS_TO)
        };
        let mut inactive = contract(CONTOSO_LIMITED_CONTRACT, CONTOSO_LIMITED, "Managed Services");
        inactive.status = contract_status::INACTIVE;
        let mut block = contract(OBRIEN_BLOCK_HOURS, OBRIEN, "Onboarding Block Hours");
        block.contract_type = contract_type::BLOCK_HOURS;
        let contracts = vec![
            contract(FABRIKAM_CONTRACT, FABRIKAM, "Managed Services"),
            contract(CONTOSO_CONTRACT, CONTOSO, "Managed Services"),
            inactive,
            contract(15, OBRIEN, "Managed Services"),
            contract(16, MULLER, "Managed Services DE"),
            contract(17, TAILSPIN, "Managed Services"),
            contract(18, NORTHWIND, "Managed Services"),
            block,
        ];

        let mut data = AtData { companies, services, contracts, ..AtData::default() };
        let lines = [
            (CONTOSO_SAFEDNS, CONTOSO_CONTRACT, SAFEDNS_SEAT, 40),
            (71, CONTOSO_CONTRACT, M365_BP, 25),
            (72, CONTOSO_LIMITED_CONTRACT, SAFEDNS_SEAT, 7),
            (73, 15, M365_BP, 8),
            (74, 15, SAFEDNS_SEAT, 10),
            (75, 16, SAFEDNS_SEAT, 15),
            (76, 16, BKP_TB, 1),
            (FABRIKAM_M365, FABRIKAM_CONTRACT, M365_BP, 40),
            (78, FABRIKAM_CONTRACT, SAFEDNS_SEAT, 12),
            (79, FABRIKAM_CONTRACT, BKP_TB, 2),
            (80, 17, BKP_TB, 3),
            (81, 17, M365_BP, 30),
            (82, 18, SAT_USER, 50),
            (83, 18, EDR_AGENT, 50),
        ];
        for (id, contract_id, service_id, units) in lines {
            data.add_line(id, contract_id, service_id, units);
        }
        // Contoso added two seats from April 2024: the periods from then on hold 42.
        for row in data.units.iter_mut() {
            if row.contract_service_id == CONTOSO_SAFEDNS && row.start >= date!(2024 - 04 - 01) {
                row.units += 2;
            }
        }
        data.adjustments.push(Adjustment {
            id: 29_690_001,
            contract_id: CONTOSO_CONTRACT,
            service_id: SAFEDNS_SEAT,
            contract_service_id: CONTOSO_SAFEDNS,
            unit_change: 2,
            effective_date: date!(2024 - 04 - 01),
            created_at: datetime!(2024-03-28 10:12:00 UTC),
        });
        data
    }

    /// Adds a contract service with `units` in every monthly period of its contract, priced
    /// from its service. Unit row ids follow the ones already there.
    pub fn add_line(&mut self, id: i64, contract_id: i64, service_id: i64, units: i64) {
        let (price, cost) = self
            .services
            .iter()
            .find(|s| s.id == service_id)
            .map(|s| (s.unit_price, s.unit_cost))
            .unwrap_or_default();
        let (from, to) = self
            .contracts
            .iter()
            .find(|c| c.id == contract_id)
            .map(|c| (c.start, c.end))
            .unwrap_or((PERIODS_FROM, PERIODS_TO));
        self.contract_services.push(ContractService {
            id,
            contract_id,
            service_id,
            unit_price: price,
            adjusted_price: None,
            unit_cost: cost,
            invoice_description: String::new(),
        });
        let last_row = self.units.iter().map(|u| u.id).max().unwrap_or(10_000);
        for (row_id, (start, end)) in (last_row + 1..).zip(months(from, to)) {
            self.units.push(UnitRow {
                id: row_id,
                contract_id,
                contract_service_id: id,
                service_id,
                start,
                end,
                units,
                price,
                cost,
            });
        }
    }

    /// A deterministic data set of the given sizes for the benchmark: the same `seed` gives the
    /// same records. Ids have gaps, as real ones do; a few companies are prospects or inactive,
    /// a few contracts inactive. Every contract service has one unit row per year from 2024 to
    /// 2028, so that the data set stays small enough to query quickly.
    pub fn generate(
        seed: u64,
        companies: usize,
        services: usize,
        contracts: usize,
        contract_services: usize,
    ) -> AtData {
        let mut rng = StdRng::seed_from_u64(seed);
        let epoch = datetime!(2024-06-01 0:00 UTC);
        let mut data = AtData::default();

        let mut next_id = 1000;
        for i in 0..companies {
            let id = next_id;
            next_id += 1 + if rng.random_bool(0.1) { rng.random_range(1..5) } else { 0 };
            let mut c = Company::new(
                id,
                &format!("{} {}", FIRST[i % FIRST.len()], SECOND[(i / FIRST.len()) % SECOND.len()]),
            );
            if i >= FIRST.len() * SECOND.len() {
                c.name = format!("{} {i}", c.name);
            }
            c.last_activity = epoch - Duration::seconds(rng.random_range(0..(2 * 365 * 24 * 3600)))
                + Duration::milliseconds(rng.random_range(0..1000));
            match rng.random_range(0..100) {
                0..=2 => c.company_type = company_type::PROSPECT,
                3 | 4 => c.is_active = false,
                _ => {}
            }
            data.companies.push(c);
        }

        for i in 0..services {
            let id = 5000 + i64::try_from(i).unwrap_or(0);
            let (family, text) = SKU_FAMILIES[i % SKU_FAMILIES.len()];
            let mut s = Service::new(
                id,
                &format!("{family}-{i:05}"),
                &format!("{text} (plan {i})"),
                dec(rng.random_range(100..15_000), 2),
            );
            s.is_active = !rng.random_bool(0.03);
            s.last_modified = epoch - Duration::seconds(rng.random_range(0..(365 * 24 * 3600)));
            data.services.push(s);
        }

        for i in 0..contracts {
            let id = 20_000 + i64::try_from(i).unwrap_or(0);
            let company_id = match data.companies.get(i) {
                Some(c) => c.id,
                None if data.companies.is_empty() => 0,
                None => data.companies[rng.random_range(0..data.companies.len())].id,
            };
            let mut c =
                Contract::recurring(id, company_id, "Managed Services", PERIODS_FROM, PERIODS_TO);
            if rng.random_bool(0.04) {
                c.status = contract_status::INACTIVE;
            }
            data.contracts.push(c);
        }

        if !data.contracts.is_empty() && !data.services.is_empty() {
            let mut next_row = 100_000;
            for i in 0..contract_services {
                let id = 40_000 + i64::try_from(i).unwrap_or(0);
                let contract = &data.contracts[rng.random_range(0..data.contracts.len())];
                let service = &data.services[rng.random_range(0..data.services.len())];
                let units = rng.random_range(1..250);
                data.contract_services.push(ContractService {
                    id,
                    contract_id: contract.id,
                    service_id: service.id,
                    unit_price: service.unit_price,
                    adjusted_price: None,
                    unit_cost: service.unit_cost,
                    invoice_description: String::new(),
                });
                for year in PERIODS_FROM.year()..=PERIODS_TO.year() {
                    let (Ok(start), Ok(end)) = (
                        Date::from_calendar_date(year, Month::January, 1),
                        Date::from_calendar_date(year, Month::December, 31),
                    ) else {
                        continue;
                    };
                    next_row += 1;
                    data.units.push(UnitRow {
                        id: next_row,
                        contract_id: contract.id,
                        contract_service_id: id,
                        service_id: service.id,
                        start,
                        end,
                        units,
                        price: service.unit_price,
                        cost: service.unit_cost,
                    });
                }
            }
        }
        data
    }
}

const FIRST: [&str; 12] = [
    "Blue", "North", "Silver", "Harbor", "Granite", "Cedar", "Summit", "River", "Oak", "Pioneer",
    "Lakeside", "Östra",
];

const SECOND: [&str; 12] = [
    "Ridge",
    "Point",
    "Dental",
    "Legal",
    "Logistics",
    "Builders",
    "Medical",
    "Accounting",
    "Partners",
    "Foods",
    "Clinic",
    "Motors",
];
