//! A minimal PSA plugin.
