//! Settings and the handshake: what is accepted, what is refused and which setting the refusal
//! names, the hosts a session may reach, and the description the host reads at load time.

mod common;

use common::{open, open_error, settings, settings_with};
use serde_json::json;
use tally_connectwise::ConnectWise;
use tally_connectwise::settings::Settings;
use tally_plugin_sdk::{Capability, ErrorKind, Plugin, PluginKind, QuantityWrites, RecordKind};

#[test]
fn valid_settings_open_a_session_limited_to_the_site_host() {
    let plugin = open(settings());
    assert_eq!(plugin.hosts(), vec!["api-na.myconnectwise.net".to_string()]);

    let plugin = open(settings_with(json!({"site": "https://cw.example.com:8443/"})));
    assert_eq!(plugin.hosts(), vec!["cw.example.com:8443".to_string()]);
}

#[test]
fn http_is_accepted_for_loopback_hosts_only() {
    for (site, host) in [
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://127.10.0.3", "127.10.0.3"),
        ("http://localhost:9000", "localhost:9000"),
        ("http://[::1]:8080", "[::1]:8080"),
    ] {
        let plugin = open(settings_with(json!({ "site": site })));
        assert_eq!(plugin.hosts(), vec![host.to_string()], "{site}");
    }

    for site in ["http://api-na.myconnectwise.net", "http://10.0.0.5", "http://128.0.0.1"] {
        let error = open_error(settings_with(json!({ "site": site })));
        assert_eq!(error.kind, ErrorKind::Config, "{site}");
        assert_eq!(error.field.as_deref(), Some("site"), "{site}");
        assert!(error.message.contains("loopback"), "{}", error.message);
        assert!(!error.retryable);
    }
}

#[test]
fn a_bad_site_is_refused_naming_site() {
    for site in [
        json!("api-na.myconnectwise.net"),
        json!("ftp://api-na.myconnectwise.net"),
        json!("https://api-na.myconnectwise.net/v4_6_release/apis/3.0/"),
        json!("https://user:pw@api-na.myconnectwise.net"),
        json!("https://api-na.myconnectwise.net/?x=1"),
        json!(""),
        json!(42),
    ] {
        let error = open_error(settings_with(json!({ "site": site })));
        assert_eq!(error.kind, ErrorKind::Config, "{site}");
        assert_eq!(error.field.as_deref(), Some("site"), "{site}");
    }
}

#[test]
fn each_bad_setting_is_named() {
    let cases = [
        (json!({"company_id": null}), "company_id"),
        (json!({"company_id": "ac me"}), "company_id"),
        (json!({"public_key": ""}), "public_key"),
        (json!({"public_key": "a:b"}), "public_key"),
        (json!({"private_key": 7}), "private_key"),
        (json!({"client_id": "   "}), "client_id"),
        (json!({"codebase": "../../evil/"}), "codebase"),
        (json!({"codebase": "v4_6_release/apis"}), "codebase"),
        (json!({"page_size": 0}), "page_size"),
        (json!({"page_size": 1001}), "page_size"),
        (json!({"page_size": 10.5}), "page_size"),
        (json!({"page_size": "1000"}), "page_size"),
        (json!({"include_prospects": "yes"}), "include_prospects"),
        (json!({"include_non_recurring": 1}), "include_non_recurring"),
        (json!({"pagesize": 10}), "pagesize"),
    ];
    for (change, field) in cases {
        let error = open_error(settings_with(change.clone()));
        assert_eq!(error.kind, ErrorKind::Config, "{change}");
        assert_eq!(error.field.as_deref(), Some(field), "{change}: {}", error.message);
        assert!(!error.retryable);
    }

    let error = open_error(json!(["not", "an", "object"]));
    assert_eq!(error.kind, ErrorKind::Config);
}

#[test]
fn optional_settings_take_their_defaults() {
    let parsed = match Settings::parse(&settings_with(json!({"codebase": null}))) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(parsed.page_size, 1000);
    assert_eq!(parsed.codebase, None);
    assert!(!parsed.include_prospects);
    assert!(!parsed.include_non_recurring);

    let parsed =
        match Settings::parse(&settings_with(json!({"codebase": "v2017_3", "page_size": 250}))) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}"),
        };
    assert_eq!(parsed.codebase.as_deref(), Some("v2017_3/"));
    assert_eq!(parsed.page_size, 250);
}

#[test]
fn settings_debug_never_shows_secrets() {
    let parsed = match Settings::parse(&settings()) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{error}"),
    };
    let shown = format!("{parsed:?}");
    for secret in ["pubkey", "privkey", "client-1"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("acme"));
}

#[test]
fn handshake_describes_streams_capabilities_and_limits() {
    let handshake = ConnectWise::handshake();
    assert_eq!(handshake.name, "connectwise");
    assert_eq!(handshake.kind, PluginKind::Psa);
    assert_eq!(handshake.abi_version, tally_plugin_sdk::abi::ABI_VERSION);
    assert_eq!(handshake.quantity_writes, QuantityWrites::Absolute);
    assert_eq!(
        handshake.capabilities,
        vec![Capability::ReadLine, Capability::SetQuantity, Capability::CreateLine]
    );
    assert_eq!(handshake.secret_settings, vec!["public_key", "private_key", "client_id"]);
    assert_eq!(handshake.limits.max_concurrency, 8);
    assert_eq!(handshake.limits.max_page_size, Some(1000));

    let streams: Vec<(&str, RecordKind, bool, Option<&str>)> = handshake
        .streams
        .iter()
        .map(|s| (s.name.as_str(), s.record, s.incremental, s.parent.as_deref()))
        .collect();
    assert_eq!(
        streams,
        vec![
            ("companies", RecordKind::Company, true, None),
            ("products", RecordKind::Product, true, None),
            ("agreements", RecordKind::Agreement, true, None),
            ("billing_lines", RecordKind::BillingLine, true, Some("agreements")),
        ]
    );

    let schema = &handshake.settings_schema;
    assert_eq!(
        schema["required"],
        json!(["site", "company_id", "public_key", "private_key", "client_id"])
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    for name in ["codebase", "page_size", "include_prospects", "include_non_recurring"] {
        assert!(schema["properties"][name].is_object(), "{name}");
    }
    assert_eq!(schema["properties"]["page_size"]["maximum"], json!(1000));
}
