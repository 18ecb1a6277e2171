//! Loading one plugin library, and the only code that calls into one.
//!
//! A library is opened in the order the ABI prescribes (`tally_plugin_sdk::abi`): the ABI
//! version symbol first, and nothing else is touched when it differs; then the entry symbol;
//! then the handshake. Every call afterwards is one JSON `Call` in and one JSON `Reply` out:
//! the reply buffer is copied, handed back to the plugin's own `free`, and only then parsed,
//! so a malformed reply is a typed error and never a panic. A response body goes beside the
//! JSON of its `step` call when the library exports `abi::INVOKE_BODY_SYMBOL`, and inside it
//! otherwise. A library is never unloaded (case C24: unloading runs thread-local destructors
//! whose code is gone): the process-global registry keeps it for the life of the process, and
//! loading a path again returns the entry already there. A plugin upgrade therefore needs a
//! restart, or a new file name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libloading::Library;
use tally_plugin_sdk::abi::{self, PluginApi};
use tally_plugin_sdk::{Call, Handshake, Reply, StepInput};

use super::error::{HostError, LoadError};
use super::permissions;

/// The largest reply the host reads from a plugin; a larger length is taken as garbage.
const MAX_REPLY_BYTES: usize = 1 << 30;

/// A loaded plugin: its description and its function table. Lives as long as the process.
pub struct LoadedPlugin {
    path: PathBuf,
    handshake: Handshake,
    api: &'static PluginApi,
    /// The entry that takes a response body beside the call, when the library has one.
    invoke_body: Option<abi::InvokeBody>,
    settings: jsonschema::Validator,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.handshake.name)
            .field("version", &self.handshake.version)
            .field("path", &self.path)
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Loads the plugin at `path`, or returns the one already loaded from it.
///
/// Permissions are checked first, every time: a file or directory others can write is refused
/// before the library's code can run.
pub fn load(path: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
    let path = path.canonicalize().map_err(|e| LoadError::Unreadable(e.to_string()))?;
    permissions::check(&path)?;

    let mut registry = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(plugin) = registry.get(&path) {
        return Ok(plugin.clone());
    }
    let plugin = Arc::new(open(&path)?);
    tracing::debug!(
        plugin = %plugin.handshake.name,
        version = %plugin.handshake.version,
        path = %path.display(),
        "plugin loaded"
    );
    registry.insert(path, plugin.clone());
    Ok(plugin)
}

fn open(path: &Path) -> Result<LoadedPlugin, LoadError> {
    // SAFETY: loading runs the library's initialisers. The file passed the permission check,
    // which is as far as a host can vouch for code it is asked to run.
    let library =
        unsafe { Library::new(path) }.map_err(|e| LoadError::NotALibrary(e.to_string()))?;
    // Never unloaded, whatever happens next (case C24).
    let library: &'static Library = Box::leak(Box::new(library));

    // SAFETY: the ABI defines this symbol as `extern "C" fn() -> u32`.
    let version = unsafe { library.get::<extern "C" fn() -> u32>(abi::ABI_VERSION_SYMBOL) }
        .map_err(|_| LoadError::MissingSymbol { symbol: "tally_plugin_abi_version" })?;
    let version = version();
    if version != abi::ABI_VERSION {
        return Err(LoadError::AbiMismatch { plugin: version, host: abi::ABI_VERSION });
    }

    // SAFETY: for ABI 1 this symbol is `extern "C" fn() -> *const PluginApi`.
    let entry = unsafe { library.get::<extern "C" fn() -> *const PluginApi>(abi::ENTRY_SYMBOL) }
        .map_err(|_| LoadError::MissingSymbol { symbol: "tally_plugin_v1" })?;
    let api = entry();
    if api.is_null() {
        return Err(LoadError::MalformedHandshake("`tally_plugin_v1` returned null".to_string()));
    }
    // SAFETY: non-null, and the ABI requires it to point to a table that lives as long as the
    // library, which is never unloaded.
    let api: &'static PluginApi = unsafe { &*api };
    if api.abi_version != abi::ABI_VERSION {
        return Err(LoadError::AbiMismatch { plugin: api.abi_version, host: abi::ABI_VERSION });
    }

    // SAFETY: the ABI defines this optional symbol as `abi::InvokeBody`; the library is never
    // unloaded, so the function outlives every call.
    let invoke_body =
        unsafe { library.get::<abi::InvokeBody>(abi::INVOKE_BODY_SYMBOL) }.ok().map(|f| *f);

    let reply = invoke(api, &Call::Handshake).map_err(LoadError::MalformedHandshake)?;
    let handshake = match reply {
        Reply::Handshake { handshake } => handshake,
        Reply::Failed { error } => {
            return Err(LoadError::MalformedHandshake(format!("the plugin failed it: {error}")));
        }
        other => {
            return Err(LoadError::MalformedHandshake(format!(
                "expected a handshake reply, got `{}`",
                reply_name(&other)
            )));
        }
    };
    let settings = check_handshake(&handshake)?;
    Ok(LoadedPlugin { path: path.to_path_buf(), handshake, api, invoke_body, settings })
}

fn check_handshake(handshake: &Handshake) -> Result<jsonschema::Validator, LoadError> {
    let malformed = |m: String| LoadError::MalformedHandshake(m);
    if handshake.abi_version != abi::ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            plugin: handshake.abi_version,
            host: abi::ABI_VERSION,
        });
    }
    let name = &handshake.name;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(malformed(format!(
            "the name {name:?} is not 1 to 64 letters, digits, `-` or `_`"
        )));
    }
    if handshake.limits.max_concurrency == 0 {
        return Err(malformed("limits.max_concurrency is 0".to_string()));
    }
    jsonschema::validator_for(&handshake.settings_schema)
        .map_err(|e| malformed(format!("settings_schema is not a valid JSON Schema: {e}")))
}

/// One call: JSON in, the plugin's buffer copied and freed, JSON out.
fn invoke(api: &PluginApi, call: &Call) -> Result<Reply, String> {
    let input = serde_json::to_vec(call).map_err(|e| format!("cannot encode the call: {e}"))?;
    // SAFETY: `input` is readable for the duration of the call; the ABI forbids unwinding.
    let buffer = unsafe { (api.invoke)(input.as_ptr(), input.len()) };
    read_reply(api, buffer)
}

/// One call, a response body beside the JSON: the body is taken out of `call` for the call
/// and put back afterwards. A call without a response goes to `invoke`.
fn invoke_beside(
    api: &PluginApi,
    invoke_body: abi::InvokeBody,
    call: &mut Call,
) -> Result<Reply, String> {
    let Some(body) = response_body(call).map(std::mem::take) else {
        return invoke(api, call);
    };
    let reply = serde_json::to_vec(call)
        .map_err(|e| format!("cannot encode the call: {e}"))
        .and_then(|input| {
            // SAFETY: `input` and `body` are readable for the duration of the call; the ABI
            // forbids unwinding.
            let buffer =
                unsafe { invoke_body(input.as_ptr(), input.len(), body.as_ptr(), body.len()) };
            read_reply(api, buffer)
        });
    if let Some(emptied) = response_body(call) {
        *emptied = body;
    }
    reply
}

fn response_body(call: &mut Call) -> Option<&mut String> {
    match call {
        Call::Step { input: StepInput::Response { response }, .. } => Some(&mut response.body),
        _ => None,
    }
}

/// The reply in a buffer `invoke` returned, copied and handed back to the plugin's `free`.
fn read_reply(api: &PluginApi, buffer: abi::Buffer) -> Result<Reply, String> {
    if buffer.ptr.is_null() {
        return Err("the plugin returned a null buffer".to_string());
    }
    let len = buffer.len;
    let bytes = if len <= MAX_REPLY_BYTES {
        // SAFETY: the plugin hands over `len` readable bytes at `ptr` until we free them.
        Some(unsafe { std::slice::from_raw_parts(buffer.ptr, len) }.to_vec())
    } else {
        None
    };
    // SAFETY: the buffer came from this plugin's `invoke` and is freed exactly once.
    unsafe { (api.free)(buffer) };
    let bytes = bytes.ok_or_else(|| format!("the reply claims {len} bytes"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("not a valid reply ({} bytes): {e}", bytes.len()))
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.handshake.name
    }

    /// The canonical path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The compiled `settings_schema`.
    pub fn settings_validator(&self) -> &jsonschema::Validator {
        &self.settings
    }

    /// Calls into the plugin on this thread, a response body inside the JSON. Plugins built
    /// with the SDK accept calls from any thread, concurrently.
    pub fn call(&self, call: &Call) -> Result<Reply, HostError> {
        invoke(self.api, call).map_err(|detail| self.malformed(call, detail))
    }

    /// [`call`](Self::call), with a response body beside the JSON when the plugin takes it
    /// so (`call` is left as it was given).
    fn call_owned(&self, call: &mut Call) -> Result<Reply, HostError> {
        let reply = match self.invoke_body {
            Some(invoke_body) => invoke_beside(self.api, invoke_body, call),
            None => invoke(self.api, call),
        };
        reply.map_err(|detail| self.malformed(call, detail))
    }

    fn malformed(&self, call: &Call, detail: String) -> HostError {
        HostError::Malformed { plugin: self.handshake.name.clone(), call: call_name(call), detail }
    }

    /// Whether the plugin takes response bodies beside the JSON of their calls.
    pub fn takes_body_beside(&self) -> bool {
        self.invoke_body.is_some()
    }

    /// Calls into the plugin without stalling the async runtime: a call that hands the plugin
    /// a large response to parse runs on a blocking thread; any other call (a small page, a
    /// `continue`, the start or end of an operation) runs here, since handing it to another
    /// thread and back cost more than the call itself.
    pub async fn call_blocking(self: &Arc<Self>, call: Call) -> Result<Reply, HostError> {
        self.call_back(call).await.0
    }

    /// [`call_blocking`](Self::call_blocking), handing the call back afterwards (the caller
    /// keeps the response body it passed).
    pub async fn call_back(self: &Arc<Self>, call: Call) -> (Result<Reply, HostError>, Call) {
        let mut call = call;
        if !heavy(&call) {
            let reply = self.call_owned(&mut call);
            return (reply, call);
        }
        let plugin = self.clone();
        let name = call_name(&call);
        let kept = match &call {
            Call::Step { operation, .. } => Call::Finish { operation: *operation },
            _ => Call::Handshake,
        };
        match tokio::task::spawn_blocking(move || {
            let reply = plugin.call_owned(&mut call);
            (reply, call)
        })
        .await
        {
            Ok(answered) => answered,
            Err(e) => {
                let error = HostError::Malformed {
                    plugin: self.handshake.name.clone(),
                    call: name,
                    detail: format!("the call did not complete: {e}"),
                };
                (Err(error), kept)
            }
        }
    }
}

/// A response body above this size is parsed on a blocking thread (a page of a thousand rows
/// is about a megabyte; a page of one agreement's lines a few kilobytes).
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Whether a call may take long enough to stall the async runtime.
fn heavy(call: &Call) -> bool {
    match call {
        Call::Step { input: StepInput::Response { response }, .. } => {
            response.body.len() > INLINE_BODY_BYTES
        }
        // Opening runs plugin code of unknown cost once per session.
        Call::Open { .. } => true,
        _ => false,
    }
}

pub(crate) fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Handshake => "handshake",
        Call::Open { .. } => "open",
        Call::Close { .. } => "close",
        Call::Start { .. } => "start",
        Call::Step { .. } => "step",
        Call::Finish { .. } => "finish",
    }
}

pub(crate) fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Handshake { .. } => "handshake",
        Reply::Opened { .. } => "opened",
        Reply::Started { .. } => "started",
        Reply::Stepped { .. } => "stepped",
        Reply::Done => "done",
        Reply::Failed { .. } => "failed",
    }
}
