//! The tally plugin contract, and what a Rust author needs to implement it.
//!
//! A plugin is a shared library that turns questions ("the next page of companies after this
//! checkpoint", "set this line to 12") into HTTP requests, and HTTP responses into records or
//! results. It never performs I/O itself: the host sends every request. That keeps plugins
//! small, deterministic and testable without a network.
//!
//! A Rust plugin implements [`Plugin`] (open a session from settings, start an operation) and
//! [`Machine`] (step an operation), then calls [`export_plugin!`] once. The macro exports the
//! C entry points of [`abi`], keeps sessions and operations, and catches every panic so that
//! none crosses the C boundary.
//!
//! ```ignore
//! struct MyPsa { base: String }
//! impl tally_plugin_sdk::Plugin for MyPsa { /* handshake, open, hosts, start */ }
//! tally_plugin_sdk::export_plugin!(MyPsa);
//! ```

pub mod abi;
pub mod decimal;
pub mod messages;
pub mod runtime;
pub mod settings;
mod tagged;

pub use messages::*;

/// The version of this crate, reported in every handshake built with [`build_info`].
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A plugin: its description, and sessions opened from settings.
pub trait Plugin: Sized + Send + 'static {
    /// Describes the plugin. Called once per load; must not fail.
    fn handshake() -> Handshake;

    /// Opens a session. An error names the bad setting in `PluginError::field`.
    fn open(settings: &serde_json::Value) -> Result<Self, PluginError>;

    /// The hosts (`host` or `host:port`) this session may send requests to.
    fn hosts(&self) -> Vec<String>;

    /// Starts an operation. Unsupported operations return an `unsupported` error.
    fn start(&self, operation: Operation) -> Result<Box<dyn Machine>, PluginError>;
}

/// One running operation: fed inputs, it answers steps until `Page { last: true }`,
/// `Done` or a final `Failed`.
pub trait Machine: Send {
    fn step(&mut self, input: StepInput) -> Step;
}

/// Build information for a handshake.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        sdk_version: SDK_VERSION.to_string(),
        compiler: option_env!("TALLY_RUSTC_VERSION").unwrap_or("rustc").to_string(),
    }
}

/// Exports a [`Plugin`] implementation as a tally plugin library.
///
/// Use it once, at the root of a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        static __TALLY_RUNTIME: $crate::runtime::Runtime<$plugin> = $crate::runtime::Runtime::new();

        unsafe extern "C" fn __tally_invoke(input: *const u8, len: usize) -> $crate::abi::Buffer {
            // SAFETY: the host passes a pointer to `len` readable bytes for this call.
            let input = unsafe { $crate::runtime::borrowed(input, len) };
            $crate::abi::Buffer::from_vec(__TALLY_RUNTIME.invoke(input))
        }

        static __TALLY_API: $crate::abi::PluginApi = $crate::abi::PluginApi {
            abi_version: $crate::abi::ABI_VERSION,
            invoke: __tally_invoke,
            free: $crate::abi::free_buffer,
        };

        #[unsafe(no_mangle)]
        pub extern "C" fn tally_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn tally_plugin_v1() -> *const $crate::abi::PluginApi {
            &__TALLY_API
        }

        /// The response body beside the call (`tally_plugin_sdk::abi::InvokeBody`).
        ///
        /// # Safety
        /// `input` and `body` must point to `len` and `body_len` readable bytes.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn tally_plugin_v1_invoke_body(
            input: *const u8,
            len: usize,
            body: *const u8,
            body_len: usize,
        ) -> $crate::abi::Buffer {
            // SAFETY: the host passes pointers to `len` and `body_len` readable bytes for this
            // call.
            let (input, body) = unsafe {
                ($crate::runtime::borrowed(input, len), $crate::runtime::borrowed(body, body_len))
            };
            $crate::abi::Buffer::from_vec(__TALLY_RUNTIME.invoke_with_body(input, body))
        }
    };
}
