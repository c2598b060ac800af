//! Everything that talks to Kafka through librdkafka: client settings, admin, producer, consumer.

pub mod admin;
