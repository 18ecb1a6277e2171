//! A plugin that panics on purpose, in the entry point its `panic_in` setting names (`open`,
//! `hosts`, `start` or `step`), and in the handshake when built with the `handshake` feature.
//! The step panic is the one of case C26: an `unwrap()` on a key the response lacks.

use serde_json::{Value, json};
use tally_plugin_sdk::{
    HttpRequest, Limits, Machine, OpResult, Operation, Plugin, PluginError, PluginKind,
    QuantityWrites, Step, StepInput, abi, build_info,
};

pub struct Panicky {
    base: String,
    panic_in: String,
}

impl Plugin for Panicky {
    fn handshake() -> tally_plugin_sdk::Handshake {
        if cfg!(feature = "handshake") {
            panic!("handshake exploded");
        }
        tally_plugin_sdk::Handshake {
            abi_version: abi::ABI_VERSION,
            name: "panicky".to_string(),
            version: "0.0.0".to_string(),
            kind: PluginKind::Vendor,
            streams: vec![],
            capabilities: vec![],
            quantity_writes: QuantityWrites::Absolute,
            settings_schema: json!({ "type": "object" }),
            secret_settings: vec![],
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

    fn open(settings: &Value) -> Result<Self, PluginError> {
        let panic_in = settings["panic_in"].as_str().unwrap_or_default().to_string();
        if panic_in == "open" {
            panic!("open exploded");
        }
        Ok(Panicky { base: settings["base"].as_str().unwrap_or_default().to_string(), panic_in })
    }

    fn hosts(&self) -> Vec<String> {
        if self.panic_in == "hosts" {
            panic!("hosts exploded");
        }
        vec![self.base.trim_start_matches("http://").to_string()]
    }

    fn start(&self, _operation: Operation) -> Result<Box<dyn Machine>, PluginError> {
        if self.panic_in == "start" {
            panic!("start exploded");
        }
        Ok(Box::new(Usage { url: format!("{}/usage", self.base) }))
    }
}

struct Usage {
    url: String,
}

impl Machine for Usage {
    fn step(&mut self, input: StepInput) -> Step {
        match input {
            StepInput::Start => {
                Step::Send { request: HttpRequest::new("GET", self.url.clone(), "usage") }
            }
            StepInput::Response { response } => {
                let v: Value = serde_json::from_str(&response.body).unwrap();
                let services = v["services"].as_array().unwrap();
                let detail = format!("{} services", services.len());
                Step::Done { result: OpResult::Probed { detail } }
            }
            StepInput::Continue => Step::Done { result: OpResult::Listed },
        }
    }
}

tally_plugin_sdk::export_plugin!(Panicky);
