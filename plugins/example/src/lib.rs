//! A minimal PSA plugin: the one the README's "Writing a PSA plugin" guide walks through.
//!
//! It speaks to an API that serves `GET {base_url}/companies?page=N` as a JSON array of
//! `{"id": 1, "name": "Contoso", "active": true}` (an empty array after the last page), with a
//! bearer token. It offers one stream, `companies`, and the probe. Like every plugin it does no
//! I/O: it turns questions into requests and responses into records; the host sends the
//! requests, with its timeouts, retries and limits.

use serde::Deserialize;
use serde_json::{Value, json};
use tally_plugin_sdk::{
    Checkpoint, Company, ErrorKind, Handshake, HttpRequest, HttpResponse, Limits, Machine,
    OpResult, Operation, Plugin, PluginError, PluginKind, QuantityWrites, Record, RecordKind, Step,
    StepInput, StreamInfo, abi, build_info,
};

/// A session: the settings, checked.
pub struct Example {
    base_url: String,
    token: String,
}

impl Plugin for Example {
    fn handshake() -> Handshake {
        Handshake {
            abi_version: abi::ABI_VERSION,
            name: "example".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: PluginKind::Psa,
            streams: vec![StreamInfo {
                name: "companies".to_string(),
                record: RecordKind::Company,
                incremental: false,
                parent: None,
            }],
            capabilities: vec![],
            quantity_writes: QuantityWrites::Absolute,
            // The host checks settings against this before `open`; errors name the setting.
            settings_schema: json!({
                "type": "object",
                "properties": {
                    "base_url": { "type": "string", "pattern": "^https?://[^/@]+" },
                    "token": { "type": "string", "minLength": 1 }
                },
                "required": ["base_url", "token"],
                "additionalProperties": false
            }),
            // Never logged by the host.
            secret_settings: vec!["token".to_string()],
            limits: Limits {
                max_concurrency: 2,
                per_endpoint_concurrency: None,
                requests_per_minute: None,
                requests_per_hour: None,
                max_page_size: None,
            },
            build: build_info(),
        }
    }

    fn open(settings: &Value) -> Result<Self, PluginError> {
        let text = |key: &str| settings[key].as_str().unwrap_or_default().to_string();
        Ok(Example {
            base_url: text("base_url").trim_end_matches('/').to_string(),
            token: text("token"),
        })
    }

    /// `host[:port]` of `base_url`: the only place the host will send this session's requests.
    fn hosts(&self) -> Vec<String> {
        let authority = self.base_url.split_once("://").map_or("", |(_, rest)| rest);
        vec![authority.split('/').next().unwrap_or_default().to_string()]
    }

    fn start(&self, operation: Operation) -> Result<Box<dyn Machine>, PluginError> {
        let page = match operation {
            Operation::Probe => None,
            Operation::List { stream, checkpoint, .. } if stream == "companies" => {
                let token = checkpoint.and_then(|c| c.page_token);
                Some(token.and_then(|t| t.parse().ok()).unwrap_or(1))
            }
            other => {
                return Err(PluginError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the example plugin offers only the probe and `companies`, not {other:?}"
                    ),
                ));
            }
        };
        Ok(Box::new(Companies {
            base_url: self.base_url.clone(),
            token: self.token.clone(),
            page: page.unwrap_or(1),
            probe: page.is_none(),
            done: false,
        }))
    }
}

/// Reads `companies` page by page; as a probe, reads page 1 only.
struct Companies {
    base_url: String,
    token: String,
    page: u32,
    probe: bool,
    done: bool,
}

/// One company as the API writes it.
#[derive(Deserialize)]
struct Row {
    id: u64,
    name: String,
    active: Option<bool>,
}

impl Machine for Companies {
    fn step(&mut self, input: StepInput) -> Step {
        match input {
            StepInput::Start => self.request(),
            StepInput::Response { response } => self.read(&response),
            StepInput::Continue if self.done => Step::Done { result: OpResult::Listed },
            StepInput::Continue => self.request(),
        }
    }
}

impl Companies {
    fn request(&self) -> Step {
        let url = format!("{}/companies?page={}", self.base_url, self.page);
        let request = HttpRequest::new("GET", url, "companies")
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json");
        Step::Send { request }
    }

    fn read(&mut self, response: &HttpResponse) -> Step {
        if let Some(error) = classify(response) {
            return Step::Failed { error };
        }
        let rows: Vec<Row> = match serde_json::from_str(&response.body) {
            Ok(rows) => rows,
            Err(e) => {
                let message = format!("page {} is not a list of companies: {e}", self.page);
                return Step::Failed {
                    error: PluginError::new(ErrorKind::MalformedResponse, message),
                };
            }
        };
        if self.probe {
            let detail =
                format!("{} answered with {} companies on page 1", self.base_url, rows.len());
            return Step::Done { result: OpResult::Probed { detail } };
        }

        self.done = rows.is_empty();
        self.page += 1;
        let records = rows.into_iter().map(company).collect();
        // The checkpoint says where the next listing resumes: the page after this one.
        let page_token = (!self.done).then(|| self.page.to_string());
        Step::Page {
            records,
            checkpoint: Checkpoint { page_token, ..Checkpoint::default() },
            last: self.done,
        }
    }
}

/// A typed error for any status but 200, saying whether trying again can help.
fn classify(response: &HttpResponse) -> Option<PluginError> {
    let (kind, message) = match response.status {
        200 => return None,
        401 | 403 => (ErrorKind::Auth, "the API refused the token"),
        429 => (ErrorKind::RateLimited, "the API is throttling requests"),
        500..=599 => (ErrorKind::Server, "the API failed"),
        _ => (ErrorKind::InvalidRequest, "the API refused the request"),
    };
    let mut error = PluginError::new(kind, format!("{message} (HTTP {})", response.status));
    if kind == ErrorKind::Auth {
        error = error.with_field("token");
    }
    error.retry_after_seconds = response.header("retry-after").and_then(|v| v.parse().ok());
    Some(error)
}

fn company(row: Row) -> Record {
    Record::Company(Company {
        id: row.id.to_string(),
        name: row.name,
        identifier: None,
        active: row.active.unwrap_or(true),
        deleted: false,
        billable: true,
        updated_at: None,
        raw: None,
        raw_at: None,
    })
}

tally_plugin_sdk::export_plugin!(Example);

#[cfg(test)]
mod tests {
    use super::*;
    use tally_plugin_sdk::Header;

    fn open() -> Example {
        Example::open(&json!({ "base_url": "http://127.0.0.1:8080/", "token": "t" })).unwrap()
    }

    fn ok(body: &str) -> StepInput {
        StepInput::Response {
            response: HttpResponse { status: 200, headers: vec![], body: body.to_string() },
        }
    }

    #[test]
    fn lists_pages_until_an_empty_one() {
        let session = open();
        assert_eq!(session.hosts(), vec!["127.0.0.1:8080".to_string()]);
        let list = Operation::List {
            stream: "companies".to_string(),
            mode: tally_plugin_sdk::ListMode::Full,
            checkpoint: None,
            parent_id: None,
            lookback_seconds: 0,
        };
        let mut machine = session.start(list).unwrap();
        let Step::Send { request } = machine.step(StepInput::Start) else { panic!() };
        assert_eq!(request.url, "http://127.0.0.1:8080/companies?page=1");
        assert!(request.headers.contains(&Header {
            name: "Authorization".to_string(),
            value: "Bearer t".to_string()
        }));

        let Step::Page { records, checkpoint, last } =
            machine.step(ok(r#"[{"id":7,"name":"Contoso"}]"#))
        else {
            panic!()
        };
        assert_eq!((records.len(), checkpoint.page_token.as_deref(), last), (1, Some("2"), false));
        let Step::Send { request } = machine.step(StepInput::Continue) else { panic!() };
        assert!(request.url.ends_with("page=2"));
        let Step::Page { records, last, .. } = machine.step(ok("[]")) else { panic!() };
        assert!(records.is_empty() && last);
        assert_eq!(machine.step(StepInput::Continue), Step::Done { result: OpResult::Listed });
    }

    #[test]
    fn errors_say_whether_a_retry_helps() {
        let mut machine = open().start(Operation::Probe).unwrap();
        machine.step(StepInput::Start);
        let response = HttpResponse { status: 401, headers: vec![], body: String::new() };
        let Step::Failed { error } = machine.step(StepInput::Response { response }) else {
            panic!()
        };
        assert_eq!(
            (error.kind, error.retryable, error.field.as_deref()),
            (ErrorKind::Auth, false, Some("token"))
        );
        let Step::Failed { error } = machine.step(ok("{")) else { panic!() };
        assert_eq!(error.kind, ErrorKind::MalformedResponse);
    }
}
