//! Input that is not tidy text: binary bytes, invalid UTF-8, lines longer than allowed.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::{self, kafka};

fn daemon(name: &str, extra: &str) -> (Daemon, String) {
    let bootstrap = support::bootstrap();
    let topic = support::unique(name);
    let d = Daemon::new(&bootstrap, &format!("{name}-host"));
    d.connector(
        "source.toml",
        &format!(
            "name = \"{name}-source\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\n{extra}\n\
             [topic]\nname = \"{topic}\"\npartitions = 1\nreplication_factor = 3\n",
            d.logs.display()
        ),
    );
    d.sink(&support::unique(&format!("{name}-sink")), &[&topic], "");
    (d, topic)
}

#[test]
fn binary_and_invalid_utf8_pass_through_byte_exact() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("binary", "");
    let input: &[u8] = b"\xff\xfe\x00binary\x01\ncaf\xc3\xa9\nhalf \xe2\x82\nCR kept inside\r here\r\n";
    std::fs::write(d.logs.join("bytes.log"), input).expect("write");
    d.start();
    d.wait_archived(&topic, 4, Duration::from_secs(60));
    let archived = std::fs::read(d.archive.join(&topic).join(format!("{topic}-0.log"))).expect("read");
    // The terminator (\n, or \r\n) is the only thing removed; the sink writes \n.
    assert_eq!(archived, b"\xff\xfe\x00binary\x01\ncaf\xc3\xa9\nhalf \xe2\x82\nCR kept inside\r here\n");
    assert!(d.stop().success());
}

/// An over-long line is truncated in the topic, and its first max_line_bytes go to the
/// dead-letter topic with the reason, the path, the offset and the original length.
#[test]
fn over_long_lines_are_truncated_and_dead_lettered_with_their_story() {
    let _cluster = support::shared_cluster();
    let dlq = support::unique("dead-letters");
    let (mut d, topic) = daemon(
        "long-lines",
        &format!("max_line_bytes = 16\nlong_lines = \"truncate\"\ndead_letter_topic = \"{dlq}\""),
    );
    let log = d.logs.join("app.log");
    let long = "x".repeat(40);
    std::fs::write(&log, format!("short\n{long}\nok\n")).expect("write");
    d.start();
    let archived = d.wait_archived(&topic, 3, Duration::from_secs(60));
    assert_eq!(archived, vec!["short".to_string(), "x".repeat(16), "ok".to_string()]);
    // The dead letter goes to another topic: it may be acknowledged after the sink has written
    // the main topic's lines.
    let letters = support::wait_for("the dead letter", Duration::from_secs(30), || {
        let letters = kafka::read_with_headers(&support::bootstrap(), &dlq);
        (!letters.is_empty()).then_some(letters)
    });
    assert_eq!(letters.len(), 1, "one dead letter");
    let (payload, headers) = &letters[0];
    assert_eq!(payload, &b"x".repeat(16));
    assert!(headers["macklake.reason"].contains("max_line_bytes (16)"), "{headers:?}");
    assert_eq!(headers["macklake.path"], log.display().to_string());
    assert_eq!(headers["macklake.offset"], "6");
    assert_eq!(headers["macklake.original_length"], "40");
    assert!(d.stop().success());
}
