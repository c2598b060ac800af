//! macklake: moves lines between local files and Apache Kafka, Kafka Connect style.
//!
//! The binary (`src/main.rs`) is only the command line; everything it does lives here so that
//! tests and benchmarks use the same code. See ARCHITECTURE.md for the map.

pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod failpoints;
pub mod fsutil;
pub mod http;
pub mod kafka;
pub mod latency;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod status;
pub mod stop;
