//! autotask adapter.
