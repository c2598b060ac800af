//! How a record becomes one line of a sink file (`format`) and what of its value is written
//! (`value_format`). Pure functions: no I/O, unit-tested here.
//!
//! `format = "json"` writes one JSON object per record, on one line (JSON escapes newlines inside
//! strings), fields in this order:
//!
//! ```json
//! {"topic":"t","partition":0,"offset":42,"timestamp":1700000000000,
//!  "key":"k","key_encoding":"utf8",
//!  "headers":[{"name":"h","name_encoding":"utf8","value":"v","value_encoding":"utf8"}],
//!  "value":"text","value_encoding":"utf8"}
//! ```
//!
//! Bytes that are valid UTF-8 are written as text (`"utf8"`), others as standard base64 with
//! padding (`"base64"`). A null key, value or header value is `null` with a `null` encoding. The
//! encoding fields are always present so that every line has the same columns (DuckDB, pandas).
//! Header names are bytes too (any producer may send one that is not UTF-8): each carries a
//! `name_encoding` the same way (added in 0.2; before, such a record stopped the sink).

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// A record as the sink sees it (borrowed from the consumer's message).
#[derive(Debug, Clone, Default)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create or log-append time), if the record has one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// Names and values as bytes (read only when the format writes them).
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    pub value: Option<&'a [u8]>,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    name: Option<Cow<'a, str>>,
    name_encoding: Option<&'static str>,
    value: Option<Cow<'a, str>>,
    value_encoding: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Cow<'a, str>>,
    key_encoding: Option<&'static str>,
    headers: Vec<JsonHeader<'a>>,
    value: Option<Cow<'a, str>>,
    value_encoding: Option<&'static str>,
}

/// Text if the bytes are UTF-8, else base64; with the name of the encoding used.
fn text_or_base64(bytes: Option<&[u8]>) -> (Option<Cow<'_, str>>, Option<&'static str>) {
    match bytes {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(Cow::Borrowed(s)), Some("utf8")),
            Err(_) => (Some(Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b))), Some("base64")),
        },
    }
}

/// One JSON object, without a newline; it never contains one.
pub fn json_line(r: &Record<'_>) -> Vec<u8> {
    let (key, key_encoding) = text_or_base64(r.key);
    let (value, value_encoding) = text_or_base64(r.value);
    let headers = r
        .headers
        .iter()
        .map(|(name, v)| {
            let (name, name_encoding) = text_or_base64(Some(name));
            let (value, value_encoding) = text_or_base64(*v);
            JsonHeader { name, name_encoding, value, value_encoding }
        })
        .collect();
    let line = JsonLine {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key,
        key_encoding,
        headers,
        value,
        value_encoding,
    };
    // Serializing strings, integers and options into a Vec cannot fail.
    serde_json::to_vec(&line).unwrap_or_default()
}

/// Kafka Connect's JsonConverter envelope (`schemas.enable=true`): exactly `schema` and `payload`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[allow(dead_code)]
    schema: serde::de::IgnoredAny,
    payload: String,
}

/// The payload string of a JsonConverter envelope, or `None` if `value` is not such an envelope
/// with a string payload (the caller then writes it raw, and counts it).
pub fn unwrap_connect_json(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<Envelope>(value).ok().map(|e| e.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_every_field_and_never_a_newline() {
        let r = Record {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: Some(1_700_000_000_123),
            key: Some(b"k\n1"),
            headers: vec![
                (b"h", Some(b"a")),
                (b"h", Some(&[0xff, 0x00])),
                (b"n", None),
                (&[0xc3, 0x28], Some(b"x")),
            ],
            value: Some(b"line one\nline two \"quoted\""),
        };
        let line = json_line(&r);
        assert!(!line.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(v["topic"], "t");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["timestamp"], 1_700_000_000_123i64);
        assert_eq!(v["key"], "k\n1");
        assert_eq!(v["key_encoding"], "utf8");
        assert_eq!(v["value"], "line one\nline two \"quoted\"");
        assert_eq!(v["value_encoding"], "utf8");
        assert_eq!(v["headers"][0]["name"], "h");
        assert_eq!(v["headers"][0]["value"], "a");
        assert_eq!(v["headers"][1]["name"], "h");
        assert_eq!(v["headers"][1]["value"], "/wA=");
        assert_eq!(v["headers"][1]["value_encoding"], "base64");
        assert!(v["headers"][2]["value"].is_null() && v["headers"][2]["value_encoding"].is_null());
        assert_eq!(v["headers"][0]["name_encoding"], "utf8");
        assert_eq!(
            (v["headers"][3]["name"].as_str(), v["headers"][3]["name_encoding"].as_str()),
            (Some("wyg="), Some("base64"))
        );
    }

    #[test]
    fn binary_is_base64_and_nulls_stay_null() {
        let r = Record { topic: "t", value: Some(&[0xc3, 0x28]), ..Record::default() };
        let v: serde_json::Value = serde_json::from_slice(&json_line(&r)).expect("valid JSON");
        assert_eq!(v["value"], "wyg=");
        assert_eq!(v["value_encoding"], "base64");
        assert!(v["key"].is_null() && v["key_encoding"].is_null() && v["timestamp"].is_null());
        assert_eq!(v["headers"], serde_json::json!([]));
        let r = Record { topic: "t", value: None, ..Record::default() };
        let v: serde_json::Value = serde_json::from_slice(&json_line(&r)).expect("valid JSON");
        assert!(v["value"].is_null() && v["value_encoding"].is_null());
    }

    #[test]
    fn connect_json_envelopes_are_unwrapped_and_anything_else_is_not() {
        let env = br#"{"schema":{"type":"string","optional":false},"payload":"hello\nworld"}"#;
        assert_eq!(unwrap_connect_json(env).as_deref(), Some("hello\nworld"));
        assert_eq!(unwrap_connect_json(br#"{"payload":"x","schema":null}"#).as_deref(), Some("x"));
        // Not an envelope, or a payload that is not a string: written raw by the caller.
        assert_eq!(unwrap_connect_json(b"plain text"), None);
        assert_eq!(unwrap_connect_json(br#"{"payload":"x"}"#), None);
        assert_eq!(unwrap_connect_json(br#"{"schema":{},"payload":{"a":1}}"#), None);
        assert_eq!(unwrap_connect_json(br#"{"schema":{},"payload":null}"#), None);
        assert_eq!(unwrap_connect_json(br#"{"schema":{},"payload":"x","extra":1}"#), None);
        assert_eq!(unwrap_connect_json(b""), None);
    }
}
