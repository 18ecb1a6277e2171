//! The MSP the benchmark measures: its size, the ConnectWise data the emulator serves, the usage
//! three vendors report for it, and the files tally reads (config, mapping file, CSV exports).
//!
//! Everything here is deterministic for a seed, so two runs measure the same data. It also
//! owns the arithmetic of what the API allows: the fewest requests that can read this data
//! through ConnectWise's paging, and what a simple client spends instead. It must never run
//! tally or talk to the emulator; `steps` does that.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_tests::connectwise::{CwData, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use time::OffsetDateTime;

/// How big the MSP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size {
    pub companies: usize,
    pub products: usize,
    pub agreements: usize,
    pub billing_lines: usize,
    pub vendors: usize,
    pub accounts_per_vendor: usize,
}

impl Size {
    /// A small MSP: 500 companies.
    pub fn small() -> Size {
        Size::with_companies(500)
    }

    /// A large MSP: 5,000 companies, 2,000 products, 7,500 agreements, 75,000 billing lines,
    /// and 3 vendors with 5,000 accounts each.
    pub fn large() -> Size {
        Size::with_companies(5000)
    }

    /// An MSP of `companies` companies in the proportions of the large one.
    pub fn with_companies(companies: usize) -> Size {
        let companies = companies.max(1);
        Size {
            companies,
            products: (companies * 2 / 5).max(SERVICE_PRODUCTS.len()),
            agreements: companies * 3 / 2,
            billing_lines: companies * 15,
            vendors: VENDORS.len(),
            accounts_per_vendor: companies,
        }
    }

    /// The size memory is compared against: a tenth of the companies (the small MSP for the
    /// large one).
    pub fn reference(&self) -> Size {
        Size::with_companies((self.companies / 10).max(5))
    }

    /// `small`, `large`, or a number of companies.
    pub fn parse(text: &str) -> Result<Size, String> {
        match text.trim() {
            "small" => Ok(Size::small()),
            "large" => Ok(Size::large()),
            other => match other.parse::<usize>() {
                Ok(n) if n >= 5 => Ok(Size::with_companies(n)),
                _ => Err(format!(
                    "`{other}` is not a size: give small (500 companies), large (5000) or a \
                     number of companies (at least 5)"
                )),
            },
        }
    }

    /// `small`, `large` or `N companies`, for the output.
    pub fn label(&self) -> String {
        if *self == Size::small() {
            "small".to_string()
        } else if *self == Size::large() {
            "large".to_string()
        } else {
            format!("{} companies", self.companies)
        }
    }
}

/// One vendor of the generated MSP: its name in tally.toml, the prefix of its account ids,
/// and its services with the ConnectWise product each is mapped to.
struct Vendor {
    name: &'static str,
    account_prefix: &'static str,
    /// (service name, product identifier, share of accounts that use it, decimal quantities)
    services: &'static [(&'static str, &'static str, f64, bool)],
}

const VENDORS: [Vendor; 3] = [
    Vendor {
        name: "safedns",
        account_prefix: "sd",
        services: &[("SafeDNS Pro", "SAFEDNS-SEAT", 0.9, false)],
    },
    Vendor {
        name: "cloudbackup",
        account_prefix: "cb",
        services: &[("Backup per TB", "BKP-TB", 0.6, true), ("EDR Agent", "EDR-AGENT", 0.5, false)],
    },
    Vendor {
        name: "securetrain",
        account_prefix: "st",
        services: &[
            ("Awareness Training", "SAT-USER", 0.5, false),
            ("M365 Business Premium", "M365-BP", 0.4, false),
        ],
    },
];

/// The product identifiers vendor services map to; `CwData::generate` gives them to the first
/// products, and half of all billing lines use them.
const SERVICE_PRODUCTS: [&str; 5] = ["SAFEDNS-SEAT", "M365-BP", "BKP-TB", "EDR-AGENT", "SAT-USER"];

/// The vendor whose account the mapping-edit step excludes, and whose name
/// `tally sync --integration` is given to reconcile.
pub const FIRST_VENDOR: &str = VENDORS[0].name;

/// One row of a vendor's CSV export.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub account_id: String,
    pub account_name: String,
    pub service: String,
    pub quantity: Decimal,
}

/// A generated MSP.
pub struct Msp {
    pub size: Size,
    pub data: CwData,
    /// Each vendor's name and its CSV rows.
    pub usage: Vec<(String, Vec<UsageRow>)>,
}

impl Msp {
    /// The MSP of `size` for `seed`. Vendor accounts carry the names of the PSA companies, so
    /// tally matches them automatically; most counts equal what the PSA bills, the rest differ.
    pub fn generate(seed: u64, size: Size) -> Msp {
        let data = CwData::generate(
            seed,
            size.companies,
            size.products,
            size.agreements,
            size.billing_lines,
        );
        let billed = billed_quantities(&data);
        let product_ids: HashMap<&str, i64> =
            data.products.iter().map(|p| (p.identifier.as_str(), p.id)).collect();

        let mut rng = StdRng::seed_from_u64(seed ^ 0x7a11_bec4);
        let mut usage = Vec::new();
        for vendor in &VENDORS {
            let mut rows = Vec::new();
            for company in data.companies.iter().take(size.accounts_per_vendor) {
                for &(service, product, share, decimal) in vendor.services {
                    if !rng.random_bool(share) {
                        continue;
                    }
                    let product_id = product_ids.get(product).copied().unwrap_or_default();
                    let quantity = match billed.get(&(company.id, product_id)) {
                        Some(q) if rng.random_bool(0.8) => *q,
                        _ if decimal => Decimal::new(rng.random_range(25..2000), 2),
                        _ => Decimal::from(rng.random_range(1..250)),
                    };
                    rows.push(UsageRow {
                        account_id: format!("{}-{}", vendor.account_prefix, company.id),
                        account_name: company.name.clone(),
                        service: service.to_string(),
                        quantity,
                    });
                }
            }
            usage.push((vendor.name.to_string(), rows));
        }
        Msp { size, data, usage }
    }

    pub fn usage_counts(&self) -> usize {
        self.usage.iter().map(|(_, rows)| rows.len()).sum()
    }

    /// Records a full listing reads: companies, products, agreements and billing lines.
    pub fn psa_records(&self) -> usize {
        self.data.companies.len()
            + self.data.products.len()
            + self.data.agreements.len()
            + self.data.additions.len()
    }

    /// Streams tally keeps for this data: the three top-level listings and one billing-line
    /// listing per agreement (ConnectWise serves additions only under their agreement).
    pub fn streams(&self) -> u64 {
        3 + self.data.agreements.len() as u64
    }

    /// The fewest requests a full read of this data can take.
    pub fn api_minimum(&self) -> Requests {
        self.requests_with(MAX_PAGE_SIZE, Paging::LinkHeader).with_lookup(CODEBASE_LOOKUP_REQUESTS)
    }

    /// What a simple client spends: the default page size, and one more page until a short one.
    pub fn baseline_requests(&self) -> Requests {
        self.requests_with(DEFAULT_PAGE_SIZE, Paging::UntilShortPage)
    }

    fn requests_with(&self, page_size: usize, paging: Paging) -> Requests {
        let mut per_agreement: HashMap<i64, usize> =
            self.data.agreements.iter().map(|a| (a.id, 0)).collect();
        for addition in &self.data.additions {
            *per_agreement.entry(addition.agreement_id).or_default() += 1;
        }
        Requests {
            codebase_lookup: 0,
            companies: paging.pages(self.data.companies.len(), page_size),
            products: paging.pages(self.data.products.len(), page_size),
            agreements: paging.pages(self.data.agreements.len(), page_size),
            billing_lines: per_agreement.values().map(|n| paging.pages(*n, page_size)).sum(),
        }
    }

    /// Writes the config, the mapping file and one CSV export per vendor into `dir`.
    pub fn write_files(&self, dir: &Path, emulator: &EmulatorSite) -> anyhow::Result<Files> {
        let config = dir.join("tally.toml");
        write_private(&config, &config_text(emulator))?;
        let mapping = dir.join("mapping.toml");
        std::fs::write(&mapping, mapping_text())
            .with_context(|| format!("cannot write {}", mapping.display()))?;
        let mut csv_files = Vec::new();
        for (vendor, rows) in &self.usage {
            let path = dir.join(format!("{vendor}.csv"));
            write_csv(&path, rows)?;
            csv_files.push((vendor.clone(), path));
        }
        Ok(Files { config, mapping, csv: csv_files })
    }
}

/// Requests sent once per tally process before its first listing: `GET /login/companyinfo`,
/// because the config leaves `codebase` unset, as `tally init` writes it.
pub const CODEBASE_LOOKUP_REQUESTS: u64 = 1;

/// How a client finds the end of a listing.
#[derive(Debug, Clone, Copy)]
enum Paging {
    /// Reads ConnectWise's `Link` header; ConnectWise sends one only when a listing has more
    /// than one page, so a single full page gives no sign it is the last and costs one more
    /// (empty) request.
    LinkHeader,
    /// Asks for the next page until one comes back short.
    UntilShortPage,
}

impl Paging {
    fn pages(self, rows: usize, page_size: usize) -> u64 {
        let pages = match self {
            Paging::LinkHeader if rows == page_size => 2,
            Paging::LinkHeader => rows.div_ceil(page_size).max(1),
            Paging::UntilShortPage => rows / page_size + 1,
        };
        pages as u64
    }
}

/// Requests by endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub codebase_lookup: u64,
    pub companies: u64,
    pub products: u64,
    pub agreements: u64,
    pub billing_lines: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.codebase_lookup + self.companies + self.products + self.agreements + self.billing_lines
    }

    fn with_lookup(mut self, lookups: u64) -> Requests {
        self.codebase_lookup = lookups;
        self
    }

    /// Sorts the emulator's per-path counters into endpoints; anything else (a probe, a write)
    /// is `other`.
    pub fn from_paths(counts: &std::collections::BTreeMap<String, usize>) -> (Requests, u64) {
        let mut requests = Requests::default();
        let mut other = 0;
        for (path, n) in counts {
            let n = *n as u64;
            let api = path.split_once("/apis/3.0/").map(|(_, rest)| rest);
            match api {
                _ if path.starts_with("/login/companyinfo") => requests.codebase_lookup += n,
                Some("company/companies") => requests.companies += n,
                Some("procurement/catalog") => requests.products += n,
                Some("finance/agreements") => requests.agreements += n,
                Some(rest)
                    if rest.starts_with("finance/agreements/") && rest.ends_with("/additions") =>
                {
                    requests.billing_lines += n
                }
                _ => other += n,
            }
        }
        (requests, other)
    }
}

/// Where the emulator listens and what it accepts, for the config.
pub struct EmulatorSite {
    pub base_url: String,
    pub company_id: String,
    pub public_key: String,
    pub client_id: String,
}

/// The environment variable the config reads the private key from.
pub const PRIVATE_KEY_VAR: &str = "TALLY_BENCH_CW_PRIVATE_KEY";

/// The files tally reads.
pub struct Files {
    pub config: PathBuf,
    pub mapping: PathBuf,
    pub csv: Vec<(String, PathBuf)>,
}

fn config_text(site: &EmulatorSite) -> String {
    let mut vendors = String::new();
    for vendor in &VENDORS {
        let _ = write!(vendors, "\n[[vendor]]\nname = \"{}\"\nsource = \"csv\"\n", vendor.name);
    }
    format!(
        r#"# Written by tally-bench: the generated MSP, against the ConnectWise emulator.
journal = "tally.redb"
mapping = "mapping.toml"

[agent]
listen = "127.0.0.1:0"

[psa]
plugin = "connectwise"
apply = "none"

[psa.settings]
site = "{site}"
company_id = "{company}"
public_key = "{public}"
private_key = "${{{PRIVATE_KEY_VAR}}}"
client_id = "{client}"
{vendors}"#,
        site = site.base_url,
        company = site.company_id,
        public = site.public_key,
        client = site.client_id,
    )
}

/// Service mappings only: accounts carry the PSA companies' names and match by themselves.
fn mapping_text() -> String {
    let mut text = String::from(
        "# Written by tally-bench. Accounts match PSA companies by name; services are mapped \
         here.\n",
    );
    for vendor in &VENDORS {
        for (service, product, _, _) in vendor.services {
            let _ = write!(
                text,
                "\n[[service]]\nvendor = \"{}\"\nid = \"{}\"\nproduct = \"{product}\"\n",
                vendor.name,
                service_id(service)
            );
        }
    }
    text
}

/// The id tally gives a service imported by name: its words in lower case, joined by dashes.
fn service_id(name: &str) -> String {
    tally_agent::intake::records::slug(name)
}

/// The entry the mapping-edit step appends: `account` of the first vendor excluded.
pub fn exclusion_entry(account: &str) -> String {
    format!("\n[[account]]\nvendor = \"{FIRST_VENDOR}\"\nid = \"{account}\"\nexclude = true\n")
}

fn write_csv(path: &Path, rows: &[UsageRow]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writer.write_record(["account_id", "account_name", "service", "quantity"])?;
    for row in rows {
        let quantity = row.quantity.to_string();
        writer.write_record([&row.account_id, &row.account_name, &row.service, &quantity])?;
    }
    writer.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a file only this user can read: the config names a secret's variable, and tally warns
/// about configs others can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// What ConnectWise bills today per (company, product): lines in force on recurring agreements
/// that are not cancelled. Vendor counts copy most of these so that most cards match.
fn billed_quantities(data: &CwData) -> HashMap<(i64, i64), Decimal> {
    let now = OffsetDateTime::now_utc();
    let agreements: HashMap<i64, (i64, bool)> = data
        .agreements
        .iter()
        .map(|a| (a.id, (a.company_id, !a.cancelled_flag && a.billing_cycle.is_some())))
        .collect();
    let mut billed = HashMap::new();
    for line in &data.additions {
        let Some(&(company, recurring)) = agreements.get(&line.agreement_id) else { continue };
        let started = line.effective_date.is_none_or(|d| d <= now);
        let cancelled = line.cancelled_date.is_some_and(|d| d <= now);
        if recurring && started && !cancelled {
            *billed.entry((company, line.product_id)).or_insert(Decimal::ZERO) += line.quantity;
        }
    }
    billed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_size_is_the_one_the_issue_names() {
        let large = Size::large();
        assert_eq!(
            (large.companies, large.products, large.agreements, large.billing_lines),
            (5000, 2000, 7500, 75_000)
        );
        assert_eq!((large.vendors, large.accounts_per_vendor), (3, 5000));
        assert_eq!(large.reference(), Size::small());
    }

    #[test]
    fn link_header_paging_needs_one_more_request_only_for_a_single_full_page() {
        assert_eq!(Paging::LinkHeader.pages(0, 1000), 1);
        assert_eq!(Paging::LinkHeader.pages(999, 1000), 1);
        assert_eq!(Paging::LinkHeader.pages(1000, 1000), 2);
        assert_eq!(Paging::LinkHeader.pages(2000, 1000), 2);
        assert_eq!(Paging::LinkHeader.pages(2001, 1000), 3);
        assert_eq!(Paging::UntilShortPage.pages(0, 25), 1);
        assert_eq!(Paging::UntilShortPage.pages(24, 25), 1);
        assert_eq!(Paging::UntilShortPage.pages(25, 25), 2);
        assert_eq!(Paging::UntilShortPage.pages(5000, 25), 201);
    }

    #[test]
    fn generated_usage_is_deterministic_and_names_every_vendor() {
        let a = Msp::generate(3, Size::with_companies(40));
        let b = Msp::generate(3, Size::with_companies(40));
        let rows = |m: &Msp| -> Vec<(String, String, String)> {
            m.usage
                .iter()
                .flat_map(|(v, rows)| {
                    rows.iter()
                        .map(move |r| (v.clone(), r.account_id.clone(), r.quantity.to_string()))
                })
                .collect()
        };
        assert_eq!(rows(&a), rows(&b));
        assert_eq!(a.usage.len(), 3);
        assert!(a.usage.iter().all(|(_, rows)| !rows.is_empty()));
    }

    #[test]
    fn service_ids_are_the_slugs_tally_gives_imported_services() {
        assert_eq!(service_id("SafeDNS Pro"), "safedns-pro");
        assert_eq!(service_id("M365 Business Premium"), "m365-business-premium");
    }

    #[test]
    fn paths_sort_into_endpoints() {
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("/login/companyinfo/tallydemo".to_string(), 1);
        counts.insert("/v4_6_release/apis/3.0/company/companies".to_string(), 5);
        counts.insert("/v4_6_release/apis/3.0/finance/agreements".to_string(), 8);
        counts.insert("/v4_6_release/apis/3.0/finance/agreements/10001/additions".to_string(), 1);
        counts.insert("/v4_6_release/apis/3.0/finance/agreements/10002/additions".to_string(), 2);
        counts.insert("/v4_6_release/apis/3.0/procurement/catalog".to_string(), 2);
        counts.insert("/v4_6_release/apis/3.0/finance/agreements/10002/additions/7".to_string(), 1);
        let (requests, other) = Requests::from_paths(&counts);
        assert_eq!(
            requests,
            Requests {
                codebase_lookup: 1,
                companies: 5,
                products: 2,
                agreements: 8,
                billing_lines: 3
            }
        );
        assert_eq!(other, 1);
    }
}
