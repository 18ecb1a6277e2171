//! halopsa adapter.
