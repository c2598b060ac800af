//! Integration tests: the real `macklake` binary against the real Kafka cluster that
//! `scripts/test` starts (found through MACKLAKE_BOOTSTRAP and MACKLAKE_CLUSTER_DIR).
//! One test binary, one harness (`support`), one module per feature.

mod support;

mod bad_input;
mod cluster;
mod connect;
mod connectors;
mod exactly_once;
#[cfg(feature = "failpoints")]
mod faults;
mod hostile;
mod rotation;
mod secured;
mod security;
mod service;
mod sink_formats;
mod sink_layout;
mod sink_positions;
mod source_events;
#[cfg(feature = "failpoints")]
mod source_faults;
mod source_identity;
mod source_positions;
