//! The emulator's data and the rules Autotask applies to it: every record indexed by id (unit
//! rows also by contract service), queries evaluated in id order and cut into pages of at most
//! 500 with continuation tokens that remember the query's body, and contract service
//! adjustments that split the unit row covering the effective date and move every later row by
//! the same delta, so that the units on a date are the base units plus every adjustment
//! effective on or before it. It knows nothing of HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::filter::{self, Filter};
use super::fixtures::AtData;
use super::model::{Adjustment, Company, Contract, ContractService, Service, UnitRow};
use super::render;

/// The largest page Autotask serves.
pub const MAX_RECORDS: usize = 500;

/// The entities the API knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    Companies,
    Services,
    Contracts,
    ContractServices,
    ContractServiceUnits,
    ContractServiceAdjustments,
}

impl Entity {
    pub const ALL: [Entity; 6] = [
        Entity::Companies,
        Entity::Services,
        Entity::Contracts,
        Entity::ContractServices,
        Entity::ContractServiceUnits,
        Entity::ContractServiceAdjustments,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entity::Companies => "Companies",
            Entity::Services => "Services",
            Entity::Contracts => "Contracts",
            Entity::ContractServices => "ContractServices",
            Entity::ContractServiceUnits => "ContractServiceUnits",
            Entity::ContractServiceAdjustments => "ContractServiceAdjustments",
        }
    }

    /// The entity named `name` in a path, ignoring case.
    pub fn from_path(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name().eq_ignore_ascii_case(name))
    }
}

/// Why a query or a write was refused: the status and the text of `{"errors":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }
}

/// A query's page: the rows, and the token of the rest if there is more.
pub struct QueryPage {
    pub items: Vec<Value>,
    pub max_records: usize,
    pub next_token: Option<String>,
}

/// What a continuation token remembers.
#[derive(Clone, Debug)]
struct Paging {
    entity: Entity,
    body: Value,
    last_id: i64,
}

/// How many writes the API has applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub adjustments: usize,
}

/// All records, indexed for the queries the API serves.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) companies: BTreeMap<i64, Company>,
    pub(crate) services: BTreeMap<i64, Service>,
    pub(crate) contracts: BTreeMap<i64, Contract>,
    pub(crate) contract_services: BTreeMap<i64, ContractService>,
    pub(crate) units: BTreeMap<i64, UnitRow>,
    /// (contract service id, unit row id).
    units_by_service: BTreeSet<(i64, i64)>,
    pub(crate) adjustments: Vec<Adjustment>,
    tokens: HashMap<String, Paging>,
    next_token: u64,
    pub(crate) writes: WriteCounts,
}

impl State {
    pub fn new(data: AtData) -> State {
        let mut state = State {
            companies: data.companies.into_iter().map(|c| (c.id, c)).collect(),
            services: data.services.into_iter().map(|s| (s.id, s)).collect(),
            contracts: data.contracts.into_iter().map(|c| (c.id, c)).collect(),
            contract_services: data.contract_services.into_iter().map(|s| (s.id, s)).collect(),
            ..State::default()
        };
        for row in data.units {
            state.put_unit_row(row);
        }
        state.adjustments = data.adjustments;
        state
    }

    /// A copy of every record, in id order.
    pub fn snapshot(&self) -> AtData {
        AtData {
            companies: self.companies.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            contracts: self.contracts.values().cloned().collect(),
            contract_services: self.contract_services.values().cloned().collect(),
            units: self.units.values().cloned().collect(),
            adjustments: self.adjustments.clone(),
        }
    }

    pub fn put_unit_row(&mut self, row: UnitRow) {
        if let Some(old) = self.units.get(&row.id) {
            self.units_by_service.remove(&(old.contract_service_id, old.id));
        }
        self.units_by_service.insert((row.contract_service_id, row.id));
        self.units.insert(row.id, row);
    }

    pub fn remove_unit_row(&mut self, id: i64) -> Option<UnitRow> {
        let row = self.units.remove(&id)?;
        self.units_by_service.remove(&(row.contract_service_id, row.id));
        Some(row)
    }

    /// The unit rows of one contract service, by start date.
    pub fn unit_rows_of(&self, contract_service_id: i64) -> Vec<UnitRow> {
        let mut rows: Vec<UnitRow> = self
            .units_by_service
            .range((contract_service_id, i64::MIN)..=(contract_service_id, i64::MAX))
            .filter_map(|(_, id)| self.units.get(id).cloned())
            .collect();
        rows.sort_by_key(|row| (row.start, row.id));
        rows
    }

    /// The units of a contract service on `date`: the row covering it, if any.
    pub fn units_on(&self, contract_service_id: i64, date: Date) -> Option<i64> {
        self.unit_rows_of(contract_service_id)
            .into_iter()
            .filter(|row| row.covers(date))
            .max_by_key(|row| (row.start, row.id))
            .map(|row| row.units)
    }

    /// `POST {entity}/query`: the first page of a query.
    pub fn query(&mut self, entity: Entity, body: &Value) -> Result<QueryPage, Refusal> {
        self.page(entity, body, i64::MIN)
    }

    /// `POST {entity}/query/next?paging={token}`: the next page, only for the same body.
    pub fn continue_query(
        &mut self,
        entity: Entity,
        token: &str,
        body: &Value,
    ) -> Result<QueryPage, Refusal> {
        let Some(paging) = self.tokens.get(token).cloned() else {
            return Err(Refusal::new(400, "The paging token is invalid or has expired."));
        };
        if paging.entity != entity {
            return Err(Refusal::new(
                400,
                format!("The paging token belongs to a {} query.", paging.entity.name()),
            ));
        }
        if paging.body != *body {
            return Err(Refusal::new(
                400,
                "The request body does not match the query of the paging token; post the same \
                 body to nextPageUrl.",
            ));
        }
        self.page(entity, body, paging.last_id)
    }

    /// Rows of `entity` with an id above `after` that meet the body's filter, one page.
    fn page(&mut self, entity: Entity, body: &Value, after: i64) -> Result<QueryPage, Refusal> {
        let Value::Object(query) = body else {
            return Err(Refusal::new(400, "The request body must be a JSON query object."));
        };
        if entity == Entity::ContractServiceAdjustments {
            return Err(Refusal::new(405, "ContractServiceAdjustments cannot be queried."));
        }
        let filters =
            filter::parse(filter::get(query, "filter")).map_err(|e| Refusal::new(400, e))?;
        let max_records = match filter::get(query, "MaxRecords") {
            None | Some(Value::Null) => MAX_RECORDS,
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(MAX_RECORDS).min(MAX_RECORDS),
                _ => {
                    return Err(Refusal::new(
                        400,
                        "MaxRecords must be a whole number from 1 to 500.",
                    ));
                }
            },
        };
        let fields: Vec<String> = match filter::get(query, "IncludeFields") {
            Some(Value::Array(fields)) => {
                fields.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };

        let mut items = Vec::new();
        let mut last_id = after;
        let mut more = false;
        for (id, row) in self.candidates(entity, &filters, after) {
            let Value::Object(map) = &row else { continue };
            if !filter::matches(&filters, map) {
                continue;
            }
            if items.len() == max_records {
                more = true;
                break;
            }
            last_id = id;
            items.push(render::project(row, &fields));
        }
        let next_token = more.then(|| {
            self.next_token += 1;
            let token = format!("{:016x}", self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            self.tokens.insert(token.clone(), Paging { entity, body: body.clone(), last_id });
            token
        });
        Ok(QueryPage { items, max_records, next_token })
    }

    /// The rendered rows a query may match, in id order: narrowed by a top-level `id` or
    /// `contractServiceID` condition so that large data sets stay quick.
    fn candidates(&self, entity: Entity, filters: &[Filter], after: i64) -> Vec<(i64, Value)> {
        let ids = |field: &str| -> Option<BTreeSet<i64>> {
            filters.iter().find_map(|f| match f {
                Filter::Condition { op: filter::Op::Eq, field: name, value }
                    if name.eq_ignore_ascii_case(field) =>
                {
                    value.as_i64().map(|id| BTreeSet::from([id]))
                }
                Filter::Condition { op: filter::Op::In, field: name, value }
                    if name.eq_ignore_ascii_case(field) =>
                {
                    value.as_array().map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                }
                _ => None,
            })
        };
        let wanted = ids("id");
        let keep = |id: &i64| *id > after && wanted.as_ref().is_none_or(|w| w.contains(id));
        match entity {
            Entity::Companies => render_all(&self.companies, keep, render::company),
            Entity::Services => render_all(&self.services, keep, render::service),
            Entity::Contracts => render_all(&self.contracts, keep, render::contract),
            Entity::ContractServices => {
                render_all(&self.contract_services, keep, render::contract_service)
            }
            Entity::ContractServiceUnits => match ids("contractServiceID") {
                Some(services) => {
                    let mut rows: Vec<(i64, Value)> = services
                        .iter()
                        .flat_map(|cs| {
                            self.units_by_service.range((*cs, i64::MIN)..=(*cs, i64::MAX))
                        })
                        .filter(|(_, id)| keep(id))
                        .filter_map(|(_, id)| {
                            self.units.get(id).map(|u| (*id, render::unit_row(u)))
                        })
                        .collect();
                    rows.sort_by_key(|(id, _)| *id);
                    rows
                }
                None => render_all(&self.units, keep, render::unit_row),
            },
            Entity::ContractServiceAdjustments => Vec::new(),
        }
    }

    /// One record by id, rendered (`GET {entity}/{id}`).
    pub fn get(&self, entity: Entity, id: i64) -> Option<Value> {
        match entity {
            Entity::Companies => self.companies.get(&id).map(render::company),
            Entity::Services => self.services.get(&id).map(render::service),
            Entity::Contracts => self.contracts.get(&id).map(render::contract),
            Entity::ContractServices => {
                self.contract_services.get(&id).map(render::contract_service)
            }
            Entity::ContractServiceUnits => self.units.get(&id).map(render::unit_row),
            Entity::ContractServiceAdjustments => None,
        }
    }

    /// Applies an adjustment of `unit_change` units from `effective` on: the unit row covering
    /// that date is split there (or changed whole when it starts on it), and every later row
    /// moves by the same delta. Returns the adjustment's id.
    pub fn adjust(
        &mut self,
        contract_id: i64,
        service_id: i64,
        contract_service_id: Option<i64>,
        unit_change: i64,
        effective: Date,
        now: OffsetDateTime,
    ) -> Result<i64, Refusal> {
        if !self.contracts.contains_key(&contract_id) {
            return Err(Refusal::new(400, format!("Contract {contract_id} does not exist.")));
        }
        let service = self.contract_services.values().find(|s| {
            s.contract_id == contract_id
                && s.service_id == service_id
                && contract_service_id.is_none_or(|id| id == s.id)
        });
        let Some(service) = service.cloned() else {
            return Err(Refusal::new(
                400,
                format!("Service {service_id} is not on contract {contract_id}."),
            ));
        };
        let rows = self.unit_rows_of(service.id);
        let Some(covering) = rows.iter().filter(|r| r.covers(effective)).max_by_key(|r| r.start)
        else {
            return Err(Refusal::new(
                400,
                format!(
                    "The effective date {effective} is outside every period of contract service {}.",
                    service.id
                ),
            ));
        };
        let covering = covering.clone();
        let moved: Vec<&UnitRow> = rows.iter().filter(|r| r.start > effective).collect();
        if covering.units + unit_change < 0 || moved.iter().any(|r| r.units + unit_change < 0) {
            return Err(Refusal::new(
                400,
                format!(
                    "The adjustment would leave contract service {} below 0 units.",
                    service.id
                ),
            ));
        }

        let moved: Vec<i64> = moved.iter().map(|r| r.id).collect();
        if covering.start < effective {
            let mut before = covering.clone();
            before.end = effective.previous_day().unwrap_or(effective);
            let after = UnitRow {
                id: self.next_unit_id(),
                start: effective,
                units: covering.units + unit_change,
                ..covering
            };
            self.put_unit_row(before);
            self.put_unit_row(after);
        } else {
            let changed = UnitRow { units: covering.units + unit_change, ..covering };
            self.put_unit_row(changed);
        }
        for id in moved {
            if let Some(row) = self.units.get_mut(&id) {
                row.units += unit_change;
            }
        }

        let id = self.adjustments.iter().map(|a| a.id).max().unwrap_or(29_690_000) + 1;
        self.adjustments.push(Adjustment {
            id,
            contract_id,
            service_id,
            contract_service_id: service.id,
            unit_change,
            effective_date: effective,
            created_at: now,
        });
        self.writes.adjustments += 1;
        Ok(id)
    }

    fn next_unit_id(&self) -> i64 {
        self.units.keys().next_back().copied().unwrap_or(0) + 1
    }
}

fn render_all<T>(
    records: &BTreeMap<i64, T>,
    keep: impl Fn(&i64) -> bool,
    render: impl Fn(&T) -> Value,
) -> Vec<(i64, Value)> {
    records.iter().filter(|(id, _)| keep(id)).map(|(id, r)| (*id, render(r))).collect()
}
