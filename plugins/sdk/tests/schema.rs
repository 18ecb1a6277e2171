//! `schemas/plugin-messages.schema.json` against the Rust message types, in both directions.
//!
//! Every variant of every message type is serialized with serde_json and validated against
//! its `$defs` entry; the members the schema lists must be exactly the members serde writes,
//! its `required` lists exactly what serde cannot do without, and its enum words and tags
//! exactly the ones serde uses. Malformed messages are refused by both. Exhaustive matches
//! make a new Rust variant fail to compile here until it has a sample, and the sample then
//! fails until the schema describes it.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tally_plugin_sdk::*;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/plugin-messages.schema.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A validator for one `$defs` entry, with format checks on (`date`, `uri`).
fn validator(def: &str) -> jsonschema::Validator {
    let mut schema = document();
    let root = schema.as_object_mut().unwrap();
    root.remove("oneOf");
    root.insert("$ref".into(), Value::String(format!("#/$defs/{def}")));
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
}

fn def(name: &str) -> Value {
    document()["$defs"][name].clone()
}

fn assert_valid(def: &str, instance: &Value) {
    let errors: Vec<String> = validator(def)
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{def} refuses {instance:#}:\n{}", errors.join("\n"));
}

fn assert_refused(def: &str, instance: &Value) {
    assert!(!validator(def).is_valid(instance), "{def} accepts a malformed message: {instance:#}");
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Follows a local `$ref`, merging the `required` written next to it.
fn resolve(schema: &Value) -> Value {
    let Some(target) = schema.get("$ref").and_then(Value::as_str) else {
        return schema.clone();
    };
    let name = target.strip_prefix("#/$defs/").expect("only local references");
    let mut resolved = def(name);
    let mut required = strings(&resolved["required"]);
    required.extend(strings(&schema["required"]));
    resolved["required"] = json!(required);
    resolved
}

/// The object schema of the variant of `enum_def` whose `tag` is `value`.
fn variant_schema(enum_def: &str, tag: &str, value: &str) -> Value {
    def(enum_def)["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{enum_def} has no oneOf"))
        .iter()
        .map(resolve)
        .find(|v| v["properties"][tag]["const"] == value)
        .unwrap_or_else(|| panic!("{enum_def} has no variant {tag} = {value:?}"))
}

/// One serialized object against its object schema: the members match exactly, the required
/// ones are what serde needs, and nothing else is.
fn check_members<T: DeserializeOwned>(
    what: &str,
    schema: &Value,
    value: &Value,
    tag: Option<&str>,
) {
    let mut listed = keys(&schema["properties"]);
    let written = keys(value);
    if tag.is_none() && schema["properties"]["kind"].get("const").is_some() {
        // A record's `kind` is listed for its life inside a page; alone, serde omits it.
        listed.remove("kind");
    }
    assert_eq!(listed, written, "{what}: the schema's members differ from serde's");
    assert_eq!(
        schema["additionalProperties"],
        json!(false),
        "{what}: unknown members must be refused"
    );

    let required = strings(&schema["required"]);
    let minimal: Map<String, Value> = value
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| required.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let minimal = Value::Object(minimal);
    if let Err(e) = serde_json::from_str::<T>(&minimal.to_string()) {
        panic!("{what}: serde needs more than the schema requires ({e}): {minimal}");
    }
    for member in &required {
        if Some(member.as_str()) == tag {
            continue;
        }
        let mut without = value.clone();
        without.as_object_mut().unwrap().remove(member);
        assert!(
            serde_json::from_str::<T>(&without.to_string()).is_err(),
            "{what}: `{member}` is required by the schema, but serde does without it"
        );
    }
}

/// A struct sample: valid, with exactly the schema's members.
fn check_struct<T: Serialize + DeserializeOwned>(def_name: &str, sample: &T) {
    let value = serde_json::to_value(sample).unwrap();
    assert_valid(def_name, &value);
    check_members::<T>(def_name, &def(def_name), &value, None);
}

/// Samples of an internally tagged enum: each valid, and the tags serde writes are exactly the
/// variants the schema lists.
fn check_tagged<T: Serialize + DeserializeOwned>(def_name: &str, tag: &str, samples: &[T]) {
    let mut seen = BTreeSet::new();
    for sample in samples {
        let value = serde_json::to_value(sample).unwrap();
        assert_valid(def_name, &value);
        let word = value[tag].as_str().unwrap_or_else(|| panic!("no `{tag}` in {value}"));
        seen.insert(word.to_string());
        let schema = variant_schema(def_name, tag, word);
        check_members::<T>(&format!("{def_name} {word}"), &schema, &value, Some(tag));
    }
    let listed: BTreeSet<String> = def(def_name)["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(resolve)
        .filter_map(|v| v["properties"][tag]["const"].as_str().map(str::to_string))
        .collect();
    assert_eq!(seen, listed, "{def_name}: the samples and the schema's variants differ");
}

/// Every word of a unit enum: the schema's `enum` is exactly what serde writes.
fn check_words<T: Serialize>(def_name: &str, all: &[T]) {
    let written: BTreeSet<String> = all
        .iter()
        .map(|w| serde_json::to_value(w).unwrap().as_str().unwrap().to_string())
        .collect();
    assert_eq!(written, strings(&def(def_name)["enum"]), "{def_name}: words differ");
}

fn q(text: &str) -> Quantity {
    Quantity(text.parse::<Decimal>().unwrap())
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        cursor: Some("2024-05-20T10:00:00Z".into()),
        tie_id: Some("250".into()),
        page_token: Some("3".into()),
    }
}

fn line() -> BillingLine {
    BillingLine {
        id: "2".into(),
        agreement_id: "5001".into(),
        company_id: "250".into(),
        product_id: "101".into(),
        quantity: q("42"),
        included_quantity: Some(q("5")),
        unit_price: Some(q("2.75")),
        effective_date: Some("2024-01-01".into()),
        cancelled_date: None,
        updated_at: Some("2024-05-20T10:00:00Z".into()),
        raw: Some(RawJson::from_value(&json!({"id": 2, "quantity": 42}))),
        raw_at: None,
    }
}

fn request() -> HttpRequest {
    HttpRequest::new(
        "GET",
        "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?page=1",
        "company/companies",
    )
    .header("Authorization", "Basic xyz")
    .json_body(&json!({"op": "replace"}))
}

fn response() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![Header { name: "Content-Type".into(), value: "application/json".into() }],
        body: "[]".into(),
    }
}

fn error() -> PluginError {
    let mut error = PluginError::new(ErrorKind::RateLimited, "429 from the PSA").with_field("site");
    error.retry_after_seconds = Some(30);
    error
}

fn handshake() -> Handshake {
    Handshake {
        abi_version: abi::ABI_VERSION,
        name: "example-psa".into(),
        version: "1.2.3".into(),
        kind: PluginKind::Psa,
        streams: vec![
            StreamInfo {
                name: "companies".into(),
                record: RecordKind::Company,
                incremental: true,
                parent: None,
            },
            StreamInfo {
                name: "billing_lines".into(),
                record: RecordKind::BillingLine,
                incremental: false,
                parent: Some("agreements".into()),
            },
        ],
        capabilities: vec![Capability::ReadLine, Capability::SetQuantity],
        quantity_writes: QuantityWrites::Absolute,
        settings_schema: json!({"type": "object", "required": ["site"]}),
        secret_settings: vec!["private_key".into()],
        limits: Limits {
            max_concurrency: 4,
            per_endpoint_concurrency: Some(1),
            requests_per_minute: Some(60),
            requests_per_hour: None,
            max_page_size: Some(1000),
        },
        build: build_info(),
    }
}

fn records() -> Vec<Record> {
    let all = vec![
        Record::Company(Company {
            id: "250".into(),
            name: "Contoso Ltd".into(),
            identifier: Some("Contoso".into()),
            active: true,
            deleted: false,
            billable: true,
            updated_at: Some("2024-05-20T10:00:00Z".into()),
            raw: None,
            raw_at: Some(Span { start: 1, end: 412 }),
        }),
        Record::Product(Product {
            id: "101".into(),
            identifier: Some("SAFEDNS-SEAT".into()),
            description: "SafeDNS seat".into(),
            active: true,
            unit_price: Some(q("1.50")),
            updated_at: None,
            raw: Some(RawJson::from_value(&json!({"id": 101}))),
            raw_at: None,
        }),
        Record::Agreement(Agreement {
            id: "5001".into(),
            company_id: "250".into(),
            name: "Managed services".into(),
            active: true,
            recurring: true,
            updated_at: Some("2024-05-20T10:00:00Z".into()),
            raw: None,
            raw_at: None,
        }),
        Record::BillingLine(line()),
        Record::Account(Account {
            id: "acct-1".into(),
            name: "Contoso".into(),
            description: "".into(),
        }),
        Record::Service(Service { id: "safedns-pro".into(), name: "SafeDNS Pro".into() }),
        Record::Usage(Usage {
            account_id: "acct-1".into(),
            service_id: "safedns-pro".into(),
            quantity: q("45"),
        }),
    ];
    for record in &all {
        // A new record kind must get a sample above.
        match record {
            Record::Company(_)
            | Record::Product(_)
            | Record::Agreement(_)
            | Record::BillingLine(_)
            | Record::Account(_)
            | Record::Service(_)
            | Record::Usage(_) => {}
        }
    }
    all
}

fn operations() -> Vec<Operation> {
    let line_ref = LineRef { id: "2".into(), agreement_id: "5001".into() };
    let all = vec![
        Operation::Probe,
        Operation::List {
            stream: "billing_lines".into(),
            mode: ListMode::Incremental,
            checkpoint: Some(checkpoint()),
            parent_id: Some("5001".into()),
            lookback_seconds: 600,
        },
        Operation::ReadLine { line: line_ref.clone() },
        Operation::SetQuantity {
            line: line_ref,
            quantity: q("45"),
            effective_date: "2024-05-20".into(),
        },
        Operation::CreateLine {
            company_id: "250".into(),
            agreement_id: "5001".into(),
            product_id: "101".into(),
            quantity: q("3.5"),
            effective_date: "2024-05-20".into(),
        },
    ];
    for operation in &all {
        match operation {
            Operation::Probe
            | Operation::List { .. }
            | Operation::ReadLine { .. }
            | Operation::SetQuantity { .. }
            | Operation::CreateLine { .. } => {}
        }
    }
    all
}

fn inputs() -> Vec<StepInput> {
    let all =
        vec![StepInput::Start, StepInput::Response { response: response() }, StepInput::Continue];
    for input in &all {
        match input {
            StepInput::Start | StepInput::Response { .. } | StepInput::Continue => {}
        }
    }
    all
}

fn results() -> Vec<OpResult> {
    let all = vec![
        OpResult::Probed { detail: "acme on api-na.myconnectwise.net".into() },
        OpResult::Line { line: line() },
        OpResult::Listed,
    ];
    for result in &all {
        match result {
            OpResult::Probed { .. } | OpResult::Line { .. } | OpResult::Listed => {}
        }
    }
    all
}

fn steps() -> Vec<Step> {
    let all = vec![
        Step::Send { request: request() },
        Step::Page { records: records(), checkpoint: checkpoint(), last: true },
        Step::Done { result: OpResult::Listed },
        Step::Failed { error: error() },
    ];
    for step in &all {
        match step {
            Step::Send { .. } | Step::Page { .. } | Step::Done { .. } | Step::Failed { .. } => {}
        }
    }
    all
}

fn calls() -> Vec<Call> {
    let all = vec![
        Call::Handshake,
        Call::Open { settings: json!({"site": "https://api-na.myconnectwise.net"}) },
        Call::Close { session: 1 },
        Call::Start { session: 1, operation: Operation::Probe },
        Call::Step { operation: 2, input: StepInput::Continue },
        Call::Finish { operation: 2 },
    ];
    for call in &all {
        match call {
            Call::Handshake
            | Call::Open { .. }
            | Call::Close { .. }
            | Call::Start { .. }
            | Call::Step { .. }
            | Call::Finish { .. } => {}
        }
    }
    all
}

fn replies() -> Vec<Reply> {
    let all = vec![
        Reply::Handshake { handshake: handshake() },
        Reply::Opened { session: 1, hosts: vec!["api-na.myconnectwise.net".into()] },
        Reply::Started { operation: 2, step: Step::Send { request: request() } },
        Reply::Stepped { step: Step::Done { result: OpResult::Line { line: line() } } },
        Reply::Done,
        Reply::Failed { error: error() },
    ];
    for reply in &all {
        match reply {
            Reply::Handshake { .. }
            | Reply::Opened { .. }
            | Reply::Started { .. }
            | Reply::Stepped { .. }
            | Reply::Done
            | Reply::Failed { .. } => {}
        }
    }
    all
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = document();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("not a valid JSON Schema: {e} at {}", e.instance_path());
    }
    for (name, def) in schema["$defs"].as_object().unwrap() {
        assert!(def["description"].is_string(), "$defs/{name} has no description");
    }
}

#[test]
fn every_call_and_every_reply_matches_the_schema() {
    check_tagged("Call", "call", &calls());
    check_tagged("Reply", "reply", &replies());
    // The document as a whole takes either.
    let whole = jsonschema::validator_for(&document()).unwrap();
    for value in calls().iter().map(|c| serde_json::to_value(c).unwrap()) {
        assert!(whole.is_valid(&value), "{value}");
    }
    for value in replies().iter().map(|r| serde_json::to_value(r).unwrap()) {
        assert!(whole.is_valid(&value), "{value}");
    }
}

#[test]
fn every_operation_input_step_and_result_matches_the_schema() {
    check_tagged("Operation", "op", &operations());
    check_tagged("StepInput", "input", &inputs());
    check_tagged("Step", "step", &steps());
    check_tagged("OpResult", "result", &results());
}

#[test]
fn every_record_kind_matches_the_schema() {
    check_tagged("Record", "kind", &records());
    for record in records() {
        let value = serde_json::to_value(&record).unwrap();
        match record {
            Record::Company(r) => check_struct("Company", &r),
            Record::Product(r) => check_struct("Product", &r),
            Record::Agreement(r) => check_struct("Agreement", &r),
            Record::BillingLine(r) => check_struct("BillingLine", &r),
            Record::Account(r) => check_struct("Account", &r),
            Record::Service(r) => check_struct("Service", &r),
            Record::Usage(r) => check_struct("Usage", &r),
        }
        // A record also validates as the generic Record with its nulls left out.
        let mut sparse = value.clone();
        sparse.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        assert_valid("Record", &sparse);
        let back: Record = serde_json::from_str(&sparse.to_string()).unwrap();
        assert_eq!(back.kind(), serde_json::from_str::<Record>(&value.to_string()).unwrap().kind());
    }
}

#[test]
fn every_struct_and_every_word_matches_the_schema() {
    check_struct("Handshake", &handshake());
    check_struct("StreamInfo", &handshake().streams[1]);
    check_struct("Limits", &handshake().limits);
    check_struct("BuildInfo", &build_info());
    check_struct("Checkpoint", &checkpoint());
    check_struct("Checkpoint", &Checkpoint::default());
    check_struct("LineRef", &LineRef { id: "2".into(), agreement_id: "5001".into() });
    check_struct("Header", &Header { name: "Retry-After".into(), value: "30".into() });
    check_struct("HttpRequest", &request());
    check_struct("HttpRequest", &HttpRequest::new("GET", "http://127.0.0.1:8080/x", "x"));
    check_struct("HttpResponse", &response());
    check_struct("PluginError", &error());
    check_struct("PluginError", &PluginError::new(ErrorKind::Internal, "boom"));
    assert_valid("Quantity", &serde_json::to_value(q("-12.500")).unwrap());

    check_words("PluginKind", &[PluginKind::Psa, PluginKind::Vendor]);
    check_words("QuantityWrites", &[QuantityWrites::Absolute, QuantityWrites::Delta]);
    check_words(
        "Capability",
        &[Capability::ReadLine, Capability::SetQuantity, Capability::CreateLine],
    );
    check_words("RecordKind", &records().iter().map(Record::kind).collect::<Vec<_>>());
    check_words("ListMode", &[ListMode::Full, ListMode::Incremental]);
    let kinds = [
        ErrorKind::Auth,
        ErrorKind::Config,
        ErrorKind::RateLimited,
        ErrorKind::NotFound,
        ErrorKind::InvalidRequest,
        ErrorKind::Conflict,
        ErrorKind::Server,
        ErrorKind::MalformedResponse,
        ErrorKind::Incomplete,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];
    for kind in kinds {
        // A new error kind must be added to `kinds`.
        match kind {
            ErrorKind::Auth
            | ErrorKind::Config
            | ErrorKind::RateLimited
            | ErrorKind::NotFound
            | ErrorKind::InvalidRequest
            | ErrorKind::Conflict
            | ErrorKind::Server
            | ErrorKind::MalformedResponse
            | ErrorKind::Incomplete
            | ErrorKind::Unsupported
            | ErrorKind::Internal => {}
        }
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    check_words("ErrorKind", &kinds);
}

/// The replies the SDK's runtime builds itself: handshakes, refusals, unknown ids, bad JSON.
#[test]
fn the_runtimes_own_replies_match_the_schema() {
    struct Never;
    impl Plugin for Never {
        fn handshake() -> Handshake {
            handshake()
        }
        fn open(_: &Value) -> Result<Self, PluginError> {
            Err(PluginError::new(ErrorKind::Config, "no settings work").with_field("site"))
        }
        fn hosts(&self) -> Vec<String> {
            Vec::new()
        }
        fn start(&self, _: Operation) -> Result<Box<dyn Machine>, PluginError> {
            Err(PluginError::new(ErrorKind::Unsupported, "nothing"))
        }
    }
    let runtime = runtime::Runtime::<Never>::new();
    for call in [
        &br#"{"call":"handshake"}"#[..],
        br#"{"call":"open","settings":{}}"#,
        br#"{"call":"step","operation":9,"input":{"input":"start"}}"#,
        br#"{"call":"close","session":9}"#,
        b"{not json",
    ] {
        let reply: Value = serde_json::from_slice(&runtime.invoke(call)).unwrap();
        assert_valid("Reply", &reply);
    }
}

/// Messages both the schema and serde refuse.
#[test]
fn malformed_messages_are_refused_by_the_schema_and_by_serde() {
    let cases: Vec<(&str, Value)> = vec![
        ("Call", json!({"call": "dance"})),
        ("Call", json!({"session": 1})),
        ("Call", json!({"call": "close"})),
        ("Call", json!({"call": "close", "session": -1})),
        ("Call", json!({"call": "step", "operation": 2, "input": {"input": "resume"}})),
        (
            "Call",
            json!({"call": "start", "session": 1, "operation": {"op": "list", "stream": "x"}}),
        ),
        ("Reply", json!({"reply": "opened", "session": "1", "hosts": []})),
        (
            "Reply",
            json!({"reply": "failed", "error": {"kind": "teapot", "message": "x", "retryable": false}}),
        ),
        ("Reply", json!({"reply": "failed", "error": {"kind": "auth", "message": "x"}})),
        ("Step", json!({"step": "page", "records": [], "last": true})),
        (
            "Step",
            json!({"step": "send", "request": {"method": "GET", "url": "https://x", "endpoint": "x"}}),
        ),
        (
            "Record",
            json!({"kind": "usage", "account_id": "a", "service_id": "s", "quantity": 12.5}),
        ),
        (
            "Record",
            json!({"kind": "usage", "account_id": "a", "service_id": "s", "quantity": "twelve"}),
        ),
        ("Record", json!({"kind": "company", "id": 250, "name": "Contoso", "active": true})),
        ("Record", json!({"kind": "contract", "id": "1"})),
        ("HttpResponse", json!({"status": 70000, "headers": [], "body": ""})),
    ];
    for (def_name, value) in cases {
        assert_refused(def_name, &value);
        let serde_refuses = match def_name {
            "Call" => serde_json::from_str::<Call>(&value.to_string()).is_err(),
            "Reply" => serde_json::from_str::<Reply>(&value.to_string()).is_err(),
            "Step" => serde_json::from_str::<Step>(&value.to_string()).is_err(),
            "Record" => serde_json::from_str::<Record>(&value.to_string()).is_err(),
            "HttpResponse" => serde_json::from_str::<HttpResponse>(&value.to_string()).is_err(),
            other => unreachable!("{other}"),
        };
        assert!(serde_refuses, "serde accepts what the schema refuses: {value}");
    }
}

/// Messages serde would read but the host refuses later, or that lose a misspelt member:
/// the schema catches them before a plugin ships.
#[test]
fn the_schema_also_refuses_what_the_host_refuses_after_parsing() {
    let mut wrong_abi = serde_json::to_value(handshake()).unwrap();
    wrong_abi["abi_version"] = json!(2);
    assert_refused("Handshake", &wrong_abi);
    let mut bad_name = serde_json::to_value(handshake()).unwrap();
    bad_name["name"] = json!("my plugin");
    assert_refused("Handshake", &bad_name);
    let mut no_concurrency = serde_json::to_value(handshake()).unwrap();
    no_concurrency["limits"]["max_concurrency"] = json!(0);
    assert_refused("Handshake", &no_concurrency);
    let mut bad_settings_schema = serde_json::to_value(handshake()).unwrap();
    bad_settings_schema["settings_schema"] = json!("object");
    assert_refused("Handshake", &bad_settings_schema);

    assert_refused("Reply", &json!({"reply": "opened", "session": 1, "hosts": [], "hots": []}));
    let mut line = serde_json::to_value(line()).unwrap();
    line["effective_date"] = json!("20/05/2024");
    assert_refused("BillingLine", &line);
    assert_refused("Quantity", &json!("1e3"));
    assert_refused(
        "HttpRequest",
        &json!({"method": "GET", "url": "ftp://x/y", "headers": [], "endpoint": "x"}),
    );
}
