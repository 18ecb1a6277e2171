//! The exported C ABI, called through the rlib as a host would call the cdylib: the version
//! symbol, the function table, a handshake and a session over JSON, and a malformed call that
//! comes back as an error reply instead of a panic.

use serde_json::{Value, json};
use tally_plugin_sdk::abi::{ABI_VERSION, PluginApi};

fn api() -> &'static PluginApi {
    let table = tally_connectwise::tally_plugin_v1();
    assert!(!table.is_null());
    // SAFETY: the table is a static of the plugin library, valid for the program's life.
    unsafe { &*table }
}

/// Sends one call through `invoke` and gives the reply back to the plugin's `free`.
fn invoke(bytes: &[u8]) -> Value {
    let api = api();
    // SAFETY: `bytes` is readable for its length during the call; the buffer returned is read
    // once and then handed back to the library that allocated it.
    let reply = unsafe {
        let buffer = (api.invoke)(bytes.as_ptr(), bytes.len());
        let text = std::slice::from_raw_parts(buffer.ptr, buffer.len).to_vec();
        (api.free)(buffer);
        text
    };
    match serde_json::from_slice(&reply) {
        Ok(value) => value,
        Err(error) => {
            panic!("the reply is not JSON ({error}): {}", String::from_utf8_lossy(&reply))
        }
    }
}

#[test]
fn the_version_symbol_and_the_table_agree() {
    assert_eq!(tally_connectwise::tally_plugin_abi_version(), ABI_VERSION);
    assert_eq!(api().abi_version, ABI_VERSION);
}

#[test]
fn a_handshake_call_describes_the_plugin() {
    let reply = invoke(br#"{"call":"handshake"}"#);
    assert_eq!(reply["reply"], "handshake");
    let handshake = &reply["handshake"];
    assert_eq!(handshake["name"], "connectwise");
    assert_eq!(handshake["kind"], "psa");
    assert_eq!(handshake["quantity_writes"], "absolute");
    assert_eq!(handshake["abi_version"], json!(ABI_VERSION));
    assert_eq!(handshake["streams"].as_array().map(Vec::len), Some(4));
}

#[test]
fn a_malformed_call_is_an_error_reply_not_a_panic() {
    for call in [&b"{not json"[..], b"", b"{\"call\":\"dance\"}", &[0xff, 0xfe, 0x00][..]] {
        let reply = invoke(call);
        assert_eq!(reply["reply"], "failed", "{reply}");
        assert!(reply["error"]["message"].is_string());
    }
}

#[test]
fn a_session_opens_and_starts_an_operation_over_json() {
    let settings = json!({
        "site": "https://api-na.myconnectwise.net",
        "company_id": "acme",
        "public_key": "pubkey",
        "private_key": "privkey",
        "client_id": "client-1",
        "codebase": "v4_6_release/"
    });
    let call = json!({"call": "open", "settings": settings}).to_string();
    let reply = invoke(call.as_bytes());
    assert_eq!(reply["reply"], "opened", "{reply}");
    assert_eq!(reply["hosts"], json!(["api-na.myconnectwise.net"]));
    let session = reply["session"].clone();

    let call = json!({"call": "start", "session": session, "operation": {"op": "probe"}});
    let reply = invoke(call.to_string().as_bytes());
    assert_eq!(reply["reply"], "started", "{reply}");
    assert_eq!(reply["step"]["step"], "send");
    assert_eq!(
        reply["step"]["request"]["url"],
        "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=1&fields=id"
    );

    let bad = json!({"call": "open", "settings": {"site": "http://example.com"}});
    let reply = invoke(bad.to_string().as_bytes());
    assert_eq!(reply["reply"], "failed");
    assert_eq!(reply["error"]["kind"], "config");
    assert_eq!(reply["error"]["field"], "site");

    let close = json!({"call": "close", "session": session});
    assert_eq!(invoke(close.to_string().as_bytes())["reply"], "done");
}

#[test]
fn the_body_beside_entry_answers_as_invoke_does() {
    let call = br#"{"call":"step","operation":424242,"input":{"input":"response","response":{"status":200,"headers":[],"body":""}}}"#;
    let body = b"[]";
    // SAFETY: both inputs are readable for their lengths during the call; the buffer returned
    // is read once and then handed back to the library that allocated it.
    let reply = unsafe {
        let buffer = tally_connectwise::tally_plugin_v1_invoke_body(
            call.as_ptr(),
            call.len(),
            body.as_ptr(),
            body.len(),
        );
        let text = std::slice::from_raw_parts(buffer.ptr, buffer.len).to_vec();
        (api().free)(buffer);
        text
    };
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["reply"], "failed", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("no running operation 424242"));
}
