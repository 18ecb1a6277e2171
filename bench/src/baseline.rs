//! The baseline: the same full read done the way most hand-written sync scripts do it. One
//! request at a time, no `pageSize` (so ConnectWise's default of 25 rows), the next page until
//! one comes back short, then every agreement's additions, each body parsed whole.
//!
//! It exists only to put a ratio next to each of tally's figures. It must stay simple on
//! purpose: no concurrency, no larger pages, no checkpoints, no storage.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tally_tests::connectwise::Credentials;

/// What one baseline read cost.
#[derive(Debug, Clone, Copy)]
pub struct BaselineRun {
    pub wall: Duration,
    pub requests: u64,
    pub rows: u64,
}

/// Reads companies, products, agreements and every agreement's additions from `api_url`
/// (`http://host:port/{codebase}apis/3.0`).
pub fn read_all(api_url: &str, credentials: &Credentials) -> anyhow::Result<BaselineRun> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the baseline's runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .build()
            .context("cannot build the baseline's HTTP client")?;
        let mut reader = Reader {
            client,
            api_url: api_url.trim_end_matches('/').to_string(),
            authorization: credentials.authorization(),
            client_id: credentials.client_id.clone(),
            requests: 0,
            rows: 0,
        };
        let started = Instant::now();
        reader.all("company/companies").await?;
        reader.all("procurement/catalog").await?;
        let agreements = reader.all("finance/agreements").await?;
        for agreement in &agreements {
            let Some(id) = agreement.get("id").and_then(Value::as_i64) else {
                bail!("an agreement without a numeric id: {agreement}");
            };
            reader.all(&format!("finance/agreements/{id}/additions")).await?;
        }
        Ok(BaselineRun { wall: started.elapsed(), requests: reader.requests, rows: reader.rows })
    })
}

struct Reader {
    client: reqwest::Client,
    api_url: String,
    authorization: String,
    client_id: String,
    requests: u64,
    rows: u64,
}

/// ConnectWise's page size when a request names none.
const DEFAULT_PAGE_SIZE: usize = 25;

impl Reader {
    /// Every row of one listing, page after page until a short one.
    async fn all(&mut self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut rows = Vec::new();
        for page in 1.. {
            let url = format!("{}/{path}?page={page}", self.api_url);
            let response = self
                .client
                .get(&url)
                .header("Authorization", &self.authorization)
                .header("clientId", &self.client_id)
                .header("Accept", "application/json")
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            self.requests += 1;
            let status = response.status();
            let body = response.text().await.with_context(|| format!("GET {url}: body"))?;
            if !status.is_success() {
                bail!("GET {url}: {status}: {body}");
            }
            let page_rows: Vec<Value> = serde_json::from_str(&body)
                .with_context(|| format!("GET {url}: the body is not a JSON array"))?;
            let short = page_rows.len() < DEFAULT_PAGE_SIZE;
            self.rows += page_rows.len() as u64;
            rows.extend(page_rows);
            if short {
                break;
            }
        }
        Ok(rows)
    }
}
