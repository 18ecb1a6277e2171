//! A response body handed beside the `step` call (`abi::InvokeBody`) reaches the machine exactly
//! as a body inside the call does, and a body beside any other call, beside a call that also
//! carries one, or not in UTF-8 is refused with a reply that says so.

use serde_json::{Value, json};
use tally_plugin_sdk::runtime::Runtime;
use tally_plugin_sdk::*;

/// Answers each response with its body, so that a test sees what the machine was given.
struct Echo;

struct EchoMachine;

impl Machine for EchoMachine {
    fn step(&mut self, input: StepInput) -> Step {
        match input {
            StepInput::Start => {
                Step::Send { request: HttpRequest::new("GET", "http://127.0.0.1/x", "GET x") }
            }
            StepInput::Response { response } => Step::Done {
                result: OpResult::Probed {
                    detail: format!("{}: {}", response.status, response.body),
                },
            },
            StepInput::Continue => Step::Done { result: OpResult::Listed },
        }
    }
}

impl Plugin for Echo {
    fn handshake() -> Handshake {
        Handshake {
            abi_version: abi::ABI_VERSION,
            name: "echo".to_string(),
            version: "0.0.1".to_string(),
            kind: PluginKind::Psa,
            streams: Vec::new(),
            capabilities: Vec::new(),
            quantity_writes: QuantityWrites::Absolute,
            settings_schema: json!({"type": "object"}),
            secret_settings: Vec::new(),
            limits: Limits {
                max_concurrency: 1,
                per_endpoint_concurrency: None,
                requests_per_minute: None,
                requests_per_hour: None,
                max_page_size: None,
            },
            build: build_info(),
        }
    }

    fn open(_: &Value) -> Result<Self, PluginError> {
        Ok(Echo)
    }

    fn hosts(&self) -> Vec<String> {
        vec!["127.0.0.1".to_string()]
    }

    fn start(&self, _: Operation) -> Result<Box<dyn Machine>, PluginError> {
        Ok(Box::new(EchoMachine))
    }
}

fn call(runtime: &Runtime<Echo>, input: Value, body: Option<&[u8]>) -> Value {
    let input = input.to_string();
    let reply = match body {
        Some(body) => runtime.invoke_with_body(input.as_bytes(), body),
        None => runtime.invoke(input.as_bytes()),
    };
    serde_json::from_slice(&reply).unwrap()
}

/// Opens a session and starts an operation; returns the operation's id.
fn started(runtime: &Runtime<Echo>) -> u64 {
    let opened = call(runtime, json!({"call": "open", "settings": {}}), None);
    let session = opened["session"].as_u64().unwrap();
    let started = call(
        runtime,
        json!({"call": "start", "session": session, "operation": {"op": "probe"}}),
        None,
    );
    assert_eq!(started["reply"], "started", "{started}");
    started["operation"].as_u64().unwrap()
}

fn response_step(operation: u64, body: &str) -> Value {
    json!({"call": "step", "operation": operation, "input": {"input": "response",
        "response": {"status": 200, "headers": [], "body": body}}})
}

fn failure(reply: &Value) -> String {
    assert_eq!(reply["reply"], "failed", "{reply}");
    reply["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn a_body_beside_the_call_reaches_the_machine_as_a_body_inside_it_does() {
    let body = r#"[{"id":1,"name":"Quote \"and\" back\\slash","note":"é ☃"}]"#;
    let runtime = Runtime::<Echo>::new();

    let inside = call(&runtime, response_step(started(&runtime), body), None);
    let beside = call(&runtime, response_step(started(&runtime), ""), Some(body.as_bytes()));

    assert_eq!(inside["step"]["result"]["detail"], format!("200: {body}"), "{inside}");
    assert_eq!(beside, inside);
}

#[test]
fn a_body_beside_a_call_that_hands_over_no_response_is_refused() {
    let runtime = Runtime::<Echo>::new();
    let operation = started(&runtime);
    let continued = json!({"call": "step", "operation": operation, "input": {"input": "continue"}});
    for refused in
        [continued, json!({"call": "handshake"}), json!({"call": "finish", "operation": operation})]
    {
        let reply = call(&runtime, refused, Some(b"[]"));
        assert!(failure(&reply).contains("beside a call that hands over no response"), "{reply}");
    }
    // The operation was left as it was: a response still finishes it.
    let reply = call(&runtime, response_step(operation, ""), Some(b"ok"));
    assert_eq!(reply["step"]["result"]["detail"], "200: ok", "{reply}");
}

#[test]
fn a_body_given_both_ways_or_not_in_utf8_is_refused() {
    let runtime = Runtime::<Echo>::new();
    let operation = started(&runtime);

    let twice = call(&runtime, response_step(operation, "[1]"), Some(b"[2]"));
    assert!(failure(&twice).contains("both inside and beside"), "{twice}");

    let latin1 = call(&runtime, response_step(operation, ""), Some(b"caf\xe9"));
    let message = failure(&latin1);
    assert!(message.contains("not UTF-8"), "{message}");

    let reply = call(&runtime, response_step(operation, ""), Some("café".as_bytes()));
    assert_eq!(reply["step"]["result"]["detail"], "200: café", "{reply}");
}

#[test]
fn a_malformed_call_beside_a_body_is_an_error_reply() {
    let runtime = Runtime::<Echo>::new();
    let reply: Value =
        serde_json::from_slice(&runtime.invoke_with_body(b"{not json", b"[]")).unwrap();
    assert!(failure(&reply).contains("malformed call"), "{reply}");
}
