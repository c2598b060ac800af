//! Everything that talks to Kafka through librdkafka: client settings, admin, producer, consumer.
//! Only this module and the connectors' run loops name rdkafka types.

pub mod admin;
pub mod client;
pub mod headers;
