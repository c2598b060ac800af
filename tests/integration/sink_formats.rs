//! What the file-sink writes: the `json` format (every field, binary and multi-line values),
//! `value_format`, the single-file sink, compression and retention of rotated files.

use std::time::Duration;

use base64::Engine;

use crate::support::daemon::Daemon;
use crate::support::kafka::{self, TestRecord};
use crate::support::{self};

const WAIT: Duration = Duration::from_secs(90);

/// Decodes a field written as text or base64 according to its `*_encoding` companion.
fn decode(v: &serde_json::Value, encoding: &serde_json::Value) -> Option<Vec<u8>> {
    match (v, encoding.as_str()) {
        (serde_json::Value::Null, None) => None,
        (serde_json::Value::String(s), Some("utf8")) => Some(s.as_bytes().to_vec()),
        (serde_json::Value::String(s), Some("base64")) => {
            Some(base64::engine::general_purpose::STANDARD.decode(s).expect("valid base64"))
        }
        other => panic!("unexpected value/encoding pair {other:?}"),
    }
}

#[test]
fn json_format_writes_every_field_of_every_record_on_one_line() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("json-sink");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut records = vec![
        TestRecord {
            key: Some(b"user-1".to_vec()),
            headers: vec![("trace".into(), Some(b"abc".to_vec())), ("trace".into(), Some(b"def".to_vec()))],
            value: Some(b"plain text".to_vec()),
        },
        TestRecord {
            key: None,
            headers: vec![],
            value: Some(b"first line\nsecond line\r\n\ttab \"q\"".to_vec()),
        },
        TestRecord {
            key: Some(vec![0xff, 0xfe, 0x00]),
            headers: vec![("bin".into(), Some(vec![0x80, 0x81])), ("empty".into(), None)],
            value: Some(vec![0x00, 0x9f, 0x92, 0x96, b'\n']),
        },
        TestRecord { key: Some("clé ✓".as_bytes().to_vec()), headers: vec![], value: Some(Vec::new()) },
        // A tombstone: in `json` it is written, with a null value.
        TestRecord { key: Some(b"gone".to_vec()), headers: vec![], value: None },
    ];
    records.extend((0..200).map(|i| TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        headers: vec![("i".into(), Some(i.to_string().into_bytes()))],
        value: Some(format!("value {i}\nwith a second line").into_bytes()),
    }));
    let timestamps = kafka::produce_records(&bootstrap, &topic, 0, &records);

    let mut d = Daemon::new(&bootstrap, "json-host");
    d.sink(&support::unique("json-archive"), &[&topic], "format = \"json\"");
    d.start();
    d.wait_archived(&topic, records.len(), WAIT);
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.stop().success());
    let lines = d.archived(&topic);
    assert_eq!(lines.len(), records.len(), "one line per record");
    for (i, (line, expected)) in lines.iter().zip(&records).enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {line}"));
        assert_eq!(v["topic"], topic.as_str(), "line {i}");
        assert_eq!(v["partition"], 0, "line {i}");
        assert_eq!(v["offset"], i as i64, "line {i}");
        assert_eq!(v["timestamp"], timestamps[i], "line {i}");
        assert_eq!(decode(&v["key"], &v["key_encoding"]), expected.key, "key of line {i}");
        assert_eq!(decode(&v["value"], &v["value_encoding"]), expected.value, "value of line {i}");
        let headers: Vec<(String, Option<Vec<u8>>)> = v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("headers of line {i} are a list: {line}"))
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().expect("header name").to_string(),
                    decode(&h["value"], &h["value_encoding"]),
                )
            })
            .collect();
        assert_eq!(headers, expected.headers, "headers of line {i}");
    }
    // Binary values really were base64 (not lossily converted).
    let binary: serde_json::Value = serde_json::from_str(&lines[2]).expect("json");
    assert_eq!(binary["value_encoding"], "base64");
    assert_eq!(binary["key_encoding"], "base64");

    // jq reads the file as JSON lines (one value per line).
    let file = d.archive.join(&topic).join(format!("{topic}-0.log"));
    match std::process::Command::new("jq").arg("-c").arg(".").arg(&file).output() {
        Ok(out) => {
            assert!(out.status.success(), "jq failed: {}", support::text(&out.stderr));
            assert_eq!(support::text(&out.stdout).lines().count(), records.len());
        }
        Err(e) => eprintln!("jq is not installed ({e}): skipping the jq check"),
    }
}

/// A poison record (issue 13 finding 3): a header name that is not UTF-8 made the sink panic,
/// restart, seek back and panic again for ever. Both formats archive it and everything after it;
/// `json` writes the name in base64 with a `name_encoding`.
#[test]
fn a_header_name_that_is_not_utf8_is_archived_not_a_crash_loop() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("poison-header");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    kafka::produce_all(&bootstrap, &topic, 0, &["before".to_string()]);
    kafka::produce_with_raw_header_name(&bootstrap, &topic, &[0xff, 0xfe, b'h'], b"v", b"poison");
    kafka::produce_all(&bootstrap, &topic, 0, &["after".to_string()]);
    let mut d = Daemon::new(&bootstrap, "poison-host");
    d.sink(&support::unique("poison-lines"), &[&topic], "");
    let json_dir = d.root.path().join("json");
    d.connector(
        "json.toml",
        &format!(
            "name = \"{}\"\nkind = \"file-sink\"\ntopics = [\"{topic}\"]\ndir = \"{}\"\nformat = \"json\"\n",
            support::unique("poison-json"),
            json_dir.display()
        ),
    );
    d.start();
    let lines = d.wait_archived(&topic, 3, WAIT);
    assert_eq!(lines, vec!["before", "poison", "after"]);
    let json = support::wait_for("3 json lines", WAIT, || {
        let l = crate::support::daemon::archived_lines(&json_dir.join(&topic));
        (l.len() >= 3).then_some(l)
    });
    let poison: serde_json::Value = serde_json::from_str(&json[1]).expect("a json line");
    assert_eq!(poison["value"], "poison");
    let header = &poison["headers"][0];
    assert_eq!(
        (header["name_encoding"].as_str(), header["value"].as_str()),
        (Some("base64"), Some("v")),
        "{poison}"
    );
    assert_eq!(decode(&header["name"], &header["name_encoding"]), Some(vec![0xff, 0xfe, b'h']));
    assert!(!d.log().contains("panicked"), "no panic:\n{}", d.log());
    assert!(d.stop().success());
}

fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read(path).map(|b| support::text(&b).lines().map(str::to_string).collect()).unwrap_or_default()
}

/// Kafka Connect's FileStreamSink layout: every partition into one file. SIGKILLed twice while
/// records stream in; the file ends up with every record exactly once.
#[test]
fn a_single_file_sink_survives_sigkill_with_every_record_once() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("single-file");
    kafka::create_topic(&bootstrap, &topic, 3, 3);
    let mut d = Daemon::new(&bootstrap, "single-host");
    let file = d.archive.join("all.txt");
    d.connector(
        "single.toml",
        &format!(
            "name = \"{}\"\nkind = \"file-sink\"\ntopics = [\"{topic}\"]\nfile = \"{}\"\ncommit_interval = \"300ms\"\n\
             [kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
            support::unique("single"),
            file.display()
        ),
    );
    d.start();
    let (b, t) = (bootstrap.clone(), topic.clone());
    let producer = std::thread::spawn(move || {
        let mut all = Vec::new();
        for batch in 0..40 {
            for p in 0..3 {
                let values: Vec<String> = (0..50).map(|i| format!("p{p} b{batch:03} r{i:02}")).collect();
                kafka::produce_all(&b, &t, p, &values);
                all.extend(values);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        all
    });
    for round in 1..=2 {
        support::wait_for("records in the single file", WAIT, || {
            (file_lines(&file).len() >= round * 1000).then_some(())
        });
        d.kill();
        d.start();
    }
    let expected = producer.join().expect("producer");
    support::wait_for("every record in the single file", WAIT, || {
        (file_lines(&file).len() >= expected.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.stop().success());
    let archived = file_lines(&file);
    let result = std::panic::catch_unwind(|| support::daemon::assert_exactly_once(&archived, &expected));
    if let Err(panic) = result {
        eprintln!("--- daemon log ---\n{}", support::daemon::tail(&d.log(), 80));
        std::panic::resume_unwind(panic);
    }
    // Per partition, records are in offset order in the file.
    for p in 0..3 {
        let prefix = format!("p{p} ");
        let mine: Vec<&String> = archived.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "partition {p} out of order");
    }
    // Nothing was set aside: the file was continued each time.
    let extra: Vec<_> =
        std::fs::read_dir(&d.archive).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(extra.len(), 1, "only the file itself: {extra:?}");
    eprintln!(
        "reconciliations: {:?}",
        d.log()
            .lines()
            .filter(|l| l.contains("single file reconciled"))
            .map(|l| l.split("outcome=").nth(1).unwrap_or(l))
            .collect::<Vec<_>>()
    );
}

/// `value_format = "connect-json"`: JsonConverter envelopes become their payload; other values
/// are written raw, counted and logged once per partition.
#[test]
fn connect_json_values_are_unwrapped_and_others_written_raw_and_counted() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("connect-json");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let envelope = |text: &str| {
        serde_json::json!({"schema": {"type": "string", "optional": false}, "payload": text}).to_string()
    };
    let values = vec![
        envelope("first payload"),
        "not an envelope".to_string(),
        envelope("second \"payload\""),
        r#"{"schema":{"type":"struct"},"payload":{"a":1}}"#.to_string(),
        envelope("third"),
    ];
    kafka::produce_all(&bootstrap, &topic, 0, &values);
    let mut d = Daemon::new(&bootstrap, "connect-json-host");
    let name = support::unique("cj");
    d.sink(&name, &[&topic], "value_format = \"connect-json\"");
    d.start();
    d.wait_archived(&topic, values.len(), WAIT);
    let (status, metrics) = d.http_get("/metrics");
    assert_eq!(status, 200);
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("macklake_sink_records_not_unwrapped_total") && l.contains(&name))
        .unwrap_or_else(|| panic!("no not-unwrapped counter in:\n{metrics}"));
    assert!(counted.ends_with(" 2"), "{counted}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.stop().success());
    assert_eq!(
        d.archived(&topic),
        vec![
            "first payload",
            "not an envelope",
            "second \"payload\"",
            r#"{"schema":{"type":"struct"},"payload":{"a":1}}"#,
            "third"
        ]
    );
    assert_eq!(d.log().matches("is written raw").count(), 1, "logged once per partition");
}

/// A rotated file's partition and first offset, and the compression its name says.
fn rotated_file(topic: &str, name: &str) -> Option<(i32, i64, &'static str)> {
    macklake::sink::housekeeping::parse_rotated(topic, name).map(|(p, first, _)| {
        let kind = if name.ends_with(".gz") {
            "gzip"
        } else if name.ends_with(".zst") {
            "zstd"
        } else {
            "plain"
        };
        (p, first, kind)
    })
}

/// Every record archived for `topic` (one partition), rotated files (decompressed) in offset
/// order then the active file; with the kinds of the rotated files seen.
fn read_archive(dir: &std::path::Path, topic: &str) -> (Vec<String>, Vec<&'static str>) {
    use std::io::Read;
    let mut rotated = Vec::new();
    for e in std::fs::read_dir(dir.join(topic)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((_, first, kind)) = rotated_file(topic, &name) {
            rotated.push((first, kind, e.path()));
        }
    }
    rotated.sort_by_key(|(first, _, _)| *first);
    let mut text = String::new();
    let mut kinds = Vec::new();
    for (_, kind, path) in &rotated {
        let Ok(file) = std::fs::File::open(path) else { continue }; // deleted meanwhile
        let mut out = String::new();
        let read = match *kind {
            "gzip" => flate2::read::GzDecoder::new(file).read_to_string(&mut out),
            "zstd" => zstd::stream::read::Decoder::new(file).and_then(|mut d| d.read_to_string(&mut out)),
            _ => std::io::BufReader::new(file).read_to_string(&mut out),
        };
        if read.is_err() {
            continue; // being replaced by its compressed form: read again on the next poll
        }
        text.push_str(&out);
        kinds.push(*kind);
    }
    text.push_str(&support::text(
        &std::fs::read(dir.join(topic).join(format!("{topic}-0.log"))).unwrap_or_default(),
    ));
    (text.lines().map(str::to_string).collect(), kinds)
}

fn rotating_daemon(name: &str, extra: &str) -> (Daemon, String) {
    let bootstrap = support::bootstrap();
    let topic = support::unique(name);
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let d = Daemon::new(&bootstrap, &format!("{name}-host"));
    d.sink(
        &support::unique(name),
        &[&topic],
        &format!(
            "rotate_bytes = 400\ncommit_interval = \"200ms\"\n{extra}\n\
             [kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\""
        ),
    );
    (d, topic)
}

/// gzip: rotated files are compressed (the active file stays plain), and after a SIGKILL
/// mid-stream the decompressed archive holds every record once, in order.
#[test]
fn rotated_files_are_gzipped_and_decompress_to_exactly_the_records() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (mut d, topic) = rotating_daemon("gzip-archive", "compression = \"gzip\"");
    d.start();
    let expected: Vec<String> = (0..1200).map(|i| format!("gzip record {i:06}")).collect();
    for (n, chunk) in expected.chunks(100).enumerate() {
        kafka::produce_all(&bootstrap, &topic, 0, chunk);
        if n == 5 {
            support::wait_for("some records archived", WAIT, || {
                (read_archive(&d.archive, &topic).0.len() >= 300).then_some(())
            });
            d.kill();
            d.start();
        }
    }
    let (archived, kinds) = support::wait_for("every record archived and compressed", WAIT, || {
        let (lines, kinds) = read_archive(&d.archive, &topic);
        (lines.len() >= expected.len() && kinds.iter().all(|k| *k == "gzip")).then_some((lines, kinds))
    });
    assert!(d.stop().success());
    assert_eq!(archived, expected, "every record once, in order");
    assert!(kinds.len() >= 10, "rotations happened: {kinds:?}");
    // The active file is never compressed.
    let active = d.archive.join(&topic).join(format!("{topic}-0.log"));
    if let Ok(bytes) = std::fs::read(&active) {
        assert!(bytes.is_empty() || bytes.starts_with(b"gzip record"), "active file stays plain");
    }
    assert!(!d.log().contains("archive housekeeping failed"), "{}", d.log());
}

/// zstd with keep_files: only the newest rotated files stay, and what stays is the tail of the
/// stream (oldest deleted first), decompressing to exactly those records.
#[test]
fn retention_keeps_the_configured_number_of_zstd_files() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (mut d, topic) = rotating_daemon("zstd-keep", "compression = \"zstd\"\nkeep_files = 3");
    d.start();
    let expected: Vec<String> = (0..600).map(|i| format!("zstd record {i:06}")).collect();
    kafka::produce_all(&bootstrap, &topic, 0, &expected);
    let (kept, kinds) = support::wait_for("three zstd files holding the end of the stream", WAIT, || {
        let (lines, kinds) = read_archive(&d.archive, &topic);
        (lines.last() == expected.last() && kinds == ["zstd"; 3]).then_some((lines, kinds))
    });
    std::thread::sleep(Duration::from_secs(2)); // a few more passes change nothing
    assert_eq!(read_archive(&d.archive, &topic), (kept.clone(), kinds));
    assert!(d.stop().success());
    assert!(kept.len() < expected.len(), "older files were deleted");
    assert_eq!(kept, expected[expected.len() - kept.len()..], "the newest records, contiguous");
}

/// keep_bytes: the rotated files of the topic directory never add up to more than the budget.
#[test]
fn retention_keeps_rotated_files_within_keep_bytes() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (mut d, topic) = rotating_daemon("bytes-keep", "keep_bytes = 1000");
    d.start();
    let expected: Vec<String> = (0..600).map(|i| format!("bytes record {i:06}")).collect();
    kafka::produce_all(&bootstrap, &topic, 0, &expected);
    support::wait_for("the end of the stream archived", WAIT, || {
        (read_archive(&d.archive, &topic).0.last() == expected.last()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3)); // housekeeping passes every second
    let sizes: Vec<u64> = std::fs::read_dir(d.archive.join(&topic))
        .expect("list")
        .flatten()
        .filter(|e| rotated_file(&topic, &e.file_name().to_string_lossy()).is_some())
        .map(|e| e.metadata().expect("stat").len())
        .collect();
    assert!(d.stop().success());
    let total: u64 = sizes.iter().sum();
    assert!(total <= 1000 && sizes.len() >= 2, "rotated sizes {sizes:?}");
    let (kept, _) = read_archive(&d.archive, &topic);
    assert_eq!(kept, expected[expected.len() - kept.len()..], "the newest records, contiguous");
}
