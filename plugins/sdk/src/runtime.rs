//! The plugin-side dispatcher behind [`export_plugin!`](crate::export_plugin): it decodes a
//! `Call` (with the response body inside it, or beside it: see `abi::InvokeBody`), keeps the
//! sessions and operations of one library, and encodes the `Reply`.
//!
//! Every call runs inside `catch_unwind`: a panic anywhere in plugin code becomes an
//! `internal` error reply, never an unwind into the host. A lock poisoned by such a panic is
//! recovered, so the plugin keeps answering later calls.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use crate::{Call, ErrorKind, Machine, Plugin, PluginError, Reply, Step, StepInput};

struct State<P> {
    next_id: u64,
    sessions: BTreeMap<u64, P>,
    operations: BTreeMap<u64, (u64, Box<dyn Machine>)>,
}

/// Sessions and operations of one plugin library.
pub struct Runtime<P> {
    state: Mutex<State<P>>,
}

impl<P: Plugin> Default for Runtime<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> Runtime<P> {
    pub const fn new() -> Self {
        Runtime {
            state: Mutex::new(State {
                next_id: 1,
                sessions: BTreeMap::new(),
                operations: BTreeMap::new(),
            }),
        }
    }

    /// Answers one JSON call with one JSON reply. Never panics.
    pub fn invoke(&self, input: &[u8]) -> Vec<u8> {
        self.answer(input, None)
    }

    /// Answers a `step` call whose response body is `body` instead of the empty `body` in the
    /// JSON. Never panics.
    pub fn invoke_with_body(&self, input: &[u8], body: &[u8]) -> Vec<u8> {
        self.answer(input, Some(body))
    }

    fn answer(&self, input: &[u8], body: Option<&[u8]>) -> Vec<u8> {
        let reply = match catch_unwind(AssertUnwindSafe(|| self.dispatch(input, body))) {
            Ok(reply) => reply,
            Err(panic) => Reply::Failed { error: panic_error(panic) },
        };
        serde_json::to_vec(&reply).unwrap_or_else(|_| {
            br#"{"reply":"failed","error":{"kind":"internal","message":"reply could not be encoded","retryable":false,"retry_after_seconds":null,"field":null}}"#.to_vec()
        })
    }

    fn dispatch(&self, input: &[u8], body: Option<&[u8]>) -> Reply {
        let mut call: Call = match serde_json::from_slice(input) {
            Ok(call) => call,
            Err(error) => {
                return failed(
                    ErrorKind::Internal,
                    format!("the host sent a malformed call: {error}"),
                );
            }
        };
        if let Some(body) = body
            && let Err(message) = put_body(&mut call, body)
        {
            return failed(ErrorKind::Internal, message);
        }
        match call {
            Call::Handshake => Reply::Handshake { handshake: P::handshake() },
            Call::Open { settings } => match P::open(&settings) {
                Ok(plugin) => {
                    let hosts = plugin.hosts();
                    let mut state = self.lock();
                    let session = state.next_id;
                    state.next_id += 1;
                    state.sessions.insert(session, plugin);
                    Reply::Opened { session, hosts }
                }
                Err(error) => Reply::Failed { error },
            },
            Call::Close { session } => {
                let mut state = self.lock();
                state.sessions.remove(&session);
                state.operations.retain(|_, (owner, _)| *owner != session);
                Reply::Done
            }
            Call::Start { session, operation } => {
                let machine = {
                    let state = self.lock();
                    let Some(plugin) = state.sessions.get(&session) else {
                        return failed(ErrorKind::Internal, format!("no open session {session}"));
                    };
                    plugin.start(operation)
                };
                let mut machine = match machine {
                    Ok(machine) => machine,
                    Err(error) => return Reply::Failed { error },
                };
                let step = machine.step(crate::StepInput::Start);
                let mut state = self.lock();
                let operation = state.next_id;
                state.next_id += 1;
                state.operations.insert(operation, (session, machine));
                Reply::Started { operation, step }
            }
            Call::Step { operation, input } => {
                let taken = self.lock().operations.remove(&operation);
                let Some((session, mut machine)) = taken else {
                    return failed(
                        ErrorKind::Internal,
                        format!("no running operation {operation}"),
                    );
                };
                let step = machine.step(input);
                if !matches!(step, Step::Done { .. }) {
                    self.lock().operations.insert(operation, (session, machine));
                }
                Reply::Stepped { step }
            }
            Call::Finish { operation } => {
                self.lock().operations.remove(&operation);
                Reply::Done
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Puts a body given beside the call into the response the call hands over.
fn put_body(call: &mut Call, body: &[u8]) -> Result<(), String> {
    let Call::Step { input: StepInput::Response { response }, .. } = call else {
        return Err(
            "the host sent a response body beside a call that hands over no response".to_string()
        );
    };
    if !response.body.is_empty() {
        return Err("the host sent the response body both inside and beside the call".to_string());
    }
    let text = std::str::from_utf8(body).map_err(|error| {
        format!("the host sent a response body beside the call that is not UTF-8: {error}")
    })?;
    response.body = text.to_owned();
    Ok(())
}

/// The bytes at `ptr`, or none for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point to `len` bytes readable for `'a`.
pub unsafe fn borrowed<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(ptr, len) } }
}

fn failed(kind: ErrorKind, message: String) -> Reply {
    Reply::Failed { error: PluginError::new(kind, message).retryable(false) }
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> PluginError {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    PluginError::new(ErrorKind::Internal, format!("the plugin panicked: {detail}")).retryable(false)
}
