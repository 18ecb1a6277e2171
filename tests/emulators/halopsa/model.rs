//! The records the HaloPSA emulator holds: clients, items, recurring invoices with their lines,
//! and client contracts, as plain structs a test can build and inspect, plus the two data sets
//! it serves: `HaloData::sample()` (the shared sample invoice and what it refers to) and
//! `HaloData::generate(seed, clients)` (a deterministic tenant of any size). Quantities and
//! prices are decimals; the JSON shapes live in `render`. Nothing here knows HTTP.

use rust_decimal::Decimal;

/// A Halo client (`/api/client`): a company.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: i64,
    pub name: String,
    pub inactive: bool,
    pub toplevel_id: i64,
    pub toplevel_name: String,
}

impl Client {
    /// An active client under the default top level.
    pub fn new(id: i64, name: &str) -> Client {
        Client {
            id,
            name: name.to_owned(),
            inactive: false,
            toplevel_id: 1,
            toplevel_name: "Customers".to_owned(),
        }
    }
}

/// A Halo item (`/api/item`): a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub baseprice: Decimal,
    pub costprice: Decimal,
    pub inactive: bool,
}

impl Item {
    pub fn new(id: i64, name: &str, description: &str, baseprice: Decimal) -> Item {
        Item {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            baseprice,
            costprice: Decimal::ZERO,
            inactive: false,
        }
    }
}

/// One line of a recurring invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceLine {
    pub id: i64,
    /// `_itemid`; 0 for a free-text line.
    pub item_id: i64,
    pub description: String,
    pub nominal_code: String,
    pub qty_order: Decimal,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    pub inactive: bool,
    pub sequence: i64,
}

impl InvoiceLine {
    pub fn new(id: i64, item: &Item, qty_order: Decimal) -> InvoiceLine {
        InvoiceLine {
            id,
            item_id: item.id,
            description: item.description.clone(),
            nominal_code: item.name.clone(),
            qty_order,
            unit_price: item.baseprice,
            unit_cost: item.costprice,
            inactive: false,
            sequence: 1,
        }
    }
}

/// A recurring invoice (`/api/RecurringInvoice`): an agreement. Ids may be negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecurringInvoice {
    pub id: i64,
    pub client_id: i64,
    /// `notes_1`: what the invoice bills.
    pub notes: String,
    pub disabled: bool,
    pub contract_id: i64,
    /// `2025-03-20T18:50:25.057`, as Halo writes it (no offset).
    pub last_modified: String,
    pub date_created: String,
    pub lines: Vec<InvoiceLine>,
}

impl RecurringInvoice {
    pub fn new(id: i64, client_id: i64, notes: &str) -> RecurringInvoice {
        RecurringInvoice {
            id,
            client_id,
            notes: notes.to_owned(),
            disabled: false,
            contract_id: 0,
            last_modified: "2025-03-20T18:50:25.057".to_owned(),
            date_created: "2023-06-22T14:00:19.463".to_owned(),
            lines: Vec::new(),
        }
    }

    pub fn line(&self, id: i64) -> Option<&InvoiceLine> {
        self.lines.iter().find(|line| line.id == id)
    }
}

/// A client contract (`/api/clientcontract`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub id: i64,
    pub client_id: i64,
    pub reference: String,
    /// `YYYY-MM-DD`.
    pub start_date: String,
    pub end_date: String,
    pub active: bool,
}

/// Everything one emulated Halo tenant holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HaloData {
    pub clients: Vec<Client>,
    pub items: Vec<Item>,
    pub invoices: Vec<RecurringInvoice>,
    pub contracts: Vec<Contract>,
}

fn decimal(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

impl HaloData {
    /// The shared sample (`samples/halopsa-recurringinvoice.json`): client 420 with recurring
    /// invoice -94 and its two lines (24963: item 1402 × 1; 24967: item 1000 × 14), plus a
    /// second client without an invoice and a contract.
    pub fn sample() -> HaloData {
        let gold = Item::new(
            1402,
            "Synergy-MS-Gold-Infra",
            "Synergy Managed Services - Gold Infrastructure",
            decimal("825.0"),
        );
        let m365 = Item {
            costprice: decimal("10.32"),
            ..Item::new(
                1000,
                "Microsoft-365-Apps-Business",
                "Microsoft 365 Apps for Business",
                decimal("10.32"),
            )
        };
        let mut invoice = RecurringInvoice::new(-94, 420, "Synergy Gallery IT Support");
        invoice.lines = vec![
            InvoiceLine { sequence: 1, ..InvoiceLine::new(24963, &gold, decimal("1.0")) },
            InvoiceLine { sequence: 5, ..InvoiceLine::new(24967, &m365, decimal("14.0")) },
        ];
        HaloData {
            clients: vec![
                Client::new(420, "Harbourside Brewing Limited"),
                Client::new(421, "Synergy Gallery"),
            ],
            items: vec![m365, gold],
            invoices: vec![invoice],
            contracts: vec![Contract {
                id: 31,
                client_id: 420,
                reference: "HB-MSA-2023".to_owned(),
                start_date: "2023-05-01".to_owned(),
                end_date: "2026-04-30".to_owned(),
                active: true,
            }],
        }
    }

    /// A deterministic tenant of `clients` clients: the same seed gives the same data. Every
    /// tenth client is inactive; each client has one recurring invoice (ids alternate between
    /// negative and positive) with one to four lines over a catalog of twelve items, some
    /// inactive, some with fractional quantities; every third client has a contract.
    pub fn generate(seed: u64, clients: usize) -> HaloData {
        let mut random = SplitMix(seed);
        let catalog: Vec<Item> = CATALOG
            .iter()
            .enumerate()
            .map(|(i, (name, description, price))| {
                Item::new(1000 + i as i64, name, description, decimal(price))
            })
            .collect();

        let mut data = HaloData { items: catalog.clone(), ..HaloData::default() };
        let mut next_line = 30_000;
        for n in 0..clients {
            let id = 12 + n as i64;
            let first = FIRST[random.below(FIRST.len())];
            let second = SECOND[random.below(SECOND.len())];
            let mut client = Client::new(id, &format!("{first} {second} {}", n + 1));
            client.inactive = n % 10 == 9;
            data.clients.push(client);

            let invoice_id = if n % 2 == 0 { -(n as i64) - 1 } else { n as i64 + 1 };
            let mut invoice = RecurringInvoice::new(
                invoice_id,
                id,
                &format!("{first} {second} managed services"),
            );
            let mut offsets: Vec<usize> = (0..catalog.len()).collect();
            let lines = 1 + random.below(4);
            for sequence in 0..lines {
                let pick = offsets.remove(random.below(offsets.len()));
                let item = &catalog[pick];
                let quantity = if random.below(8) == 0 {
                    Decimal::new(5 + 10 * random.below(20) as i64, 1)
                } else {
                    Decimal::from(1 + random.below(200) as i64)
                };
                let mut line = InvoiceLine::new(next_line, item, quantity);
                line.sequence = sequence as i64 + 1;
                line.inactive = random.below(15) == 0;
                next_line += 1;
                invoice.lines.push(line);
            }
            if n % 3 == 0 {
                let contract_id = 100 + n as i64;
                invoice.contract_id = contract_id;
                data.contracts.push(Contract {
                    id: contract_id,
                    client_id: id,
                    reference: format!("MSA-{id}"),
                    start_date: "2024-01-01".to_owned(),
                    end_date: "2026-12-31".to_owned(),
                    active: true,
                });
            }
            data.invoices.push(invoice);
        }
        data
    }
}

const CATALOG: [(&str, &str, &str); 12] = [
    ("Microsoft-365-Business-Basic", "Microsoft 365 Business Basic", "6.00"),
    ("Microsoft-365-Business-Standard", "Microsoft 365 Business Standard", "12.50"),
    ("Microsoft-365-Business-Premium", "Microsoft 365 Business Premium", "22.00"),
    ("Microsoft-365-Apps-Business", "Microsoft 365 Apps for Business", "10.32"),
    ("SafeDNS-Pro", "SafeDNS Pro DNS filtering", "1.75"),
    ("DNSFilter-Seat", "DNSFilter per seat", "2.10"),
    ("Backup-Server", "Server backup", "45.00"),
    ("Backup-M365", "Microsoft 365 backup per user", "3.25"),
    ("EDR-Endpoint", "Endpoint detection and response", "5.40"),
    ("Security-Training", "Security awareness training per user", "1.95"),
    ("Synergy-MS-Gold-Infra", "Synergy Managed Services - Gold Infrastructure", "825.00"),
    ("Synergy-MS-Silver-Infra", "Synergy Managed Services - Silver Infrastructure", "540.00"),
];

const FIRST: [&str; 10] = [
    "Harbourside",
    "Northgate",
    "Copperleaf",
    "Bluewater",
    "Stonebridge",
    "Riverside",
    "Oakfield",
    "Summit",
    "Lakeshore",
    "Foxglove",
];

const SECOND: [&str; 8] =
    ["Brewing", "Dental", "Logistics", "Architects", "Bakery", "Legal", "Clinic", "Motors"];

/// splitmix64: a tiny, well-known generator, so the data set never depends on a crate's
/// algorithm choice.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}
