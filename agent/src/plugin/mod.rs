//! The plugin host: finding plugin libraries, loading them safely, and running their
//! operations.
//!
//! `discovery` scans the plugin directory (every file loads or is refused with a reason),
//! `permissions` refuses files others could have replaced, `library` loads a library in the
//! order the ABI prescribes and owns every call across the C boundary, `session` opens
//! sessions and drives operations through the HTTP executor (`crate::http`), and `listing`
//! prints `tally plugins`. The host never unloads a library, never lets a plugin reach a host
//! it did not declare, and survives any reply a plugin returns, garbage included.

pub mod discovery;
pub mod error;
pub mod library;
pub mod listing;
pub mod permissions;
pub mod session;

pub use discovery::{Catalog, Refused, default_dir, discover, plugin_dir};
pub use error::{HostError, LoadError, PluginNotFound};
pub use library::{LoadedPlugin, load};
pub use session::{Page, PluginSession, RunOutcome, SessionOptions};
