//! ConnectWise PSA adapter.
