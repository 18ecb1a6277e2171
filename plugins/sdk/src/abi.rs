//! The C boundary between the tally host and a plugin library.
//!
//! Only C-stable types cross it: a `u32`, a table of two function pointers and byte buffers.
//! Everything else travels as JSON inside those buffers (see `messages`). A buffer is always
//! freed by the side that allocated it: the host hands its input as a borrowed pointer and
//! length, and gives every buffer the plugin returns back to the plugin's `free`.
//!
//! A host loads a library in this order, and touches nothing further when a step fails:
//! 1. `tally_plugin_abi_version() -> u32` must equal the host's [`ABI_VERSION`];
//! 2. `tally_plugin_v1() -> *const PluginApi` gives the function table;
//! 3. `invoke({"call":"handshake"})` describes the plugin.
//!
//! A library may also export [`INVOKE_BODY_SYMBOL`], which takes the body of an HTTP response
//! beside the JSON of the `step` call that hands the response over, instead of escaped inside
//! it. A page of a thousand rows is then neither escaped by the host nor unescaped by the
//! plugin. The host uses it for every response when the symbol is there, and `invoke` with the
//! body inside the call otherwise; a plugin in another language may leave it out.

/// The version of this boundary. A host refuses a library that reports another one.
pub const ABI_VERSION: u32 = 1;

/// Symbol of `extern "C" fn() -> u32`, read before any other symbol.
pub const ABI_VERSION_SYMBOL: &[u8] = b"tally_plugin_abi_version\0";

/// Symbol of `extern "C" fn() -> *const PluginApi`, versioned with the ABI.
pub const ENTRY_SYMBOL: &[u8] = b"tally_plugin_v1\0";

/// Symbol of the optional [`InvokeBody`], read once after [`ENTRY_SYMBOL`].
pub const INVOKE_BODY_SYMBOL: &[u8] = b"tally_plugin_v1_invoke_body\0";

/// `invoke` for a `step` call with a `response` input whose `body` is the empty string in the
/// JSON and is given instead as `body_len` bytes of UTF-8 at `body` (borrowed for the duration
/// of the call). The reply is the same `Reply` `invoke` would give, in a buffer for
/// [`PluginApi::free`]. Any other call, a body that is not UTF-8, or a body given both ways is
/// answered with a `failed` reply.
pub type InvokeBody =
    unsafe extern "C" fn(input: *const u8, len: usize, body: *const u8, body_len: usize) -> Buffer;

/// Bytes allocated by the plugin and returned to the host. The host reads `len` bytes from
/// `ptr` and then passes the buffer, unchanged, to [`PluginApi::free`].
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    /// Hands a vector's allocation over to the other side of the boundary.
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }

    /// Takes back an allocation made by [`Buffer::from_vec`] in this same library.
    ///
    /// # Safety
    /// `self` must come from `Buffer::from_vec` in this library and not have been freed.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }
}

/// The function table a plugin exports through [`ENTRY_SYMBOL`].
#[repr(C)]
pub struct PluginApi {
    /// Must equal the value of `tally_plugin_abi_version`.
    pub abi_version: u32,
    /// Takes one JSON `Call` (borrowed for the duration of the call) and returns one JSON
    /// `Reply` in a buffer the plugin allocated. Never unwinds.
    pub invoke: unsafe extern "C" fn(input: *const u8, len: usize) -> Buffer,
    /// Frees a buffer returned by `invoke`.
    pub free: unsafe extern "C" fn(buffer: Buffer),
}

/// The `free` of every plugin built with this SDK.
///
/// # Safety
/// `buffer` must have been returned by this library's `invoke` and not freed before.
pub unsafe extern "C" fn free_buffer(buffer: Buffer) {
    if !buffer.ptr.is_null() {
        drop(unsafe { buffer.into_vec() });
    }
}
