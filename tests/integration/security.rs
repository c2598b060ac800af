//! Attacks on the daemon, tried for real: on its HTTP listener (DNS rebinding, oversized heads
//! and bodies, clients that never finish), each refused or bounded with a log line, while the
//! connectors carry on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

/// Sends `head` (and `body_len` bytes of body, if any) and returns the response's status code
/// (0 if the connection closed without one) and how long it took.
fn raw(addr: std::net::SocketAddr, head: &str, body_len: usize) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(40))).expect("timeout");
    stream.set_write_timeout(Some(Duration::from_secs(40))).expect("timeout");
    let _ = stream.write_all(head.as_bytes());
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < body_len {
        // The server may answer and close before the body is sent: that is the point.
        if stream.write_all(&chunk[..chunk.len().min(body_len - sent)]).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, started.elapsed())
}

#[test]
fn the_http_listener_refuses_rebinding_oversized_requests_and_slow_clients_while_connectors_run() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("http-attack");
    let mut d = Daemon::new(&bootstrap, "http-attack-host");
    d.source("steady", &topic, 1);
    d.start();
    let addr = d.http_addr();

    // Slow clients: open connections that never finish their request head.
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").expect("write");
            s
        })
        .collect();

    // DNS rebinding: a foreign Host is refused.
    let (code, _) =
        raw(addr, "GET /connectors HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 0);
    assert_eq!(code, 421, "foreign Host refused");
    d.wait_log("HTTP request refused: its Host is not this listener", Duration::from_secs(5));
    let (code, _) =
        raw(addr, &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"), 0);
    assert_eq!(code, 200, "the listener's own address is fine, even with slow clients connected");

    // An oversized head: 64 KiB of header.
    let big = "a".repeat(64 * 1024);
    let (code, _) = raw(addr, &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n"), 0);
    assert!(code == 431 || code == 400 || code == 0, "oversized head refused, got {code}");

    // A 100 MB body is never read: the answer comes before the body could have been sent.
    let body = 100 * 1024 * 1024;
    let (code, took) = raw(
        addr,
        &format!(
            "POST /connectors HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body}\r\n\r\n"
        ),
        body,
    );
    assert_eq!(code, 405, "creating connectors is refused without reading the body");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // The slow clients are cut off by the head timeout (10 s).
    std::thread::sleep(Duration::from_secs(11));
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "a slow client is closed, got {answer:?}");
    }

    // No CORS headers, ever.
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /connectors HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    assert!(!response.to_ascii_lowercase().contains("access-control-"), "{response}");

    // And the connector carried on.
    let lines: Vec<String> = (0..10).map(|i| format!("still here {i}")).collect();
    append(&d.logs.join("s.log"), &lines);
    support::wait_for("the lines in Kafka", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic) == lines).then_some(())
    });
    assert!(d.stop().success());
}
