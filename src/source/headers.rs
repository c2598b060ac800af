//! The headers on a source's records: `macklake.path` and `macklake.offset` always, and
//! `macklake.host` (the daemon id) when the connector sets `host_header = true`, so that lines of
//! two hosts' files with the same path can be told apart downstream.

use rdkafka::message::{Header, OwnedHeaders};

use super::{HEADER_OFFSET, HEADER_PATH};

/// The daemon id of the host that read the line (only with `host_header = true`).
pub const HEADER_HOST: &str = "macklake.host";

/// A line's headers: where it was read from, and the host when `host` is given.
pub fn line(path: &[u8], offset: &[u8], host: Option<&[u8]>) -> OwnedHeaders {
    // Sized exactly: librdkafka allocates per header list, and this runs per line.
    let headers = OwnedHeaders::new_with_capacity(2 + usize::from(host.is_some()))
        .insert(Header { key: HEADER_PATH, value: Some(path) })
        .insert(Header { key: HEADER_OFFSET, value: Some(offset) });
    with_host(headers, host)
}

/// `headers` plus `macklake.host` when `host` is given (dead letters carry it too).
pub fn with_host(headers: OwnedHeaders, host: Option<&[u8]>) -> OwnedHeaders {
    match host {
        Some(host) => headers.insert(Header { key: HEADER_HOST, value: Some(host) }),
        None => headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn names(h: &OwnedHeaders) -> Vec<String> {
        h.iter().map(|h| h.key.to_string()).collect()
    }

    #[test]
    fn the_host_header_is_added_only_when_asked_for() {
        assert_eq!(names(&line(b"/var/log/a.log", b"0", None)), ["macklake.path", "macklake.offset"]);
        let with = line(b"/var/log/a.log", b"0", Some(b"web-1"));
        assert_eq!(names(&with), ["macklake.path", "macklake.offset", "macklake.host"]);
        assert_eq!(with.get(2).value, Some(&b"web-1"[..]));
    }
}
