//! Header injection through `embermq pub -H` (issue 17, RFC 7230 §3.2): a
//! value with CR LF must not add a line to the WebSocket upgrade request.
//!
//! The peer is a recording TCP listener (a fault injector: it only has to
//! show which bytes arrived, and no broker reports the raw request it was
//! sent). It records every connection's bytes and answers a complete
//! request with 401, so a command that did send one ends at once.
//!
//! Every command runs with `-W` (overall timeout) so no test can hang.

use core::time::Duration;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;

fn embermq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_embermq"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts the recording listener: its port, and a channel that yields the
/// bytes of each connection once the connection ended or sent a whole
/// request header.
fn recording_listener() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let _ =
                        conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
                    break;
                }
            }
            if sent.send(seen).is_err() {
                return;
            }
        }
    });
    (port, received)
}

fn publish_with_header(port: u16, header: &str) -> Output {
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    embermq()
        .args(["pub", &url, "-t", "t", "-m", "x", "-H", header, "-W", "20"])
        .output()
        .expect("embermq runs")
}

#[test]
fn rfc7230_3_2_header_value_with_crlf_is_refused_and_nothing_is_sent() {
    let (port, received) = recording_listener();
    let out = publish_with_header(port, "A: b\r\nHost: x");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("value of header `A`"), "{err}");
    assert!(err.contains("0x0d (CR)"), "{err}");
    assert!(err.contains("RFC 7230"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The TCP connection was opened, then closed without a byte: the
    // request is checked whole before any of it is written.
    let bytes = received
        .recv_timeout(Duration::from_secs(15))
        .expect("the client connected");
    assert!(
        !String::from_utf8_lossy(&bytes).contains("Host: x"),
        "injected header arrived: {bytes:?}"
    );
    assert!(bytes.is_empty(), "request bytes were sent: {bytes:?}");
}

/// The control: a valid `-H` reaches the same listener as one header line,
/// so the test above would see an injected line if one were sent.
#[test]
fn rfc7230_3_2_valid_header_reaches_the_peer_as_one_line() {
    let (port, received) = recording_listener();
    let out = publish_with_header(port, "A: b");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let bytes = received
        .recv_timeout(Duration::from_secs(15))
        .expect("the client connected");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("GET /mqtt HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("\r\nA: b\r\n"), "{text}");
    assert_eq!(text.matches("\r\nHost: ").count(), 1, "{text}");
}
