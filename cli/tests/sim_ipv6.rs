//! `embermq sim` against a broker at an IPv6 literal: the WebSocket
//! upgrade request's `Host` must carry the literal in brackets
//! (RFC 7230 §5.4 with RFC 3986 §3.2.2's `IP-literal`), or a server
//! cannot tell the address from the port. A plain TCP listener on `[::1]`
//! stands in for the broker: it records the request the simulator sends.

use core::time::Duration;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn rfc7230_5_4_sim_sends_the_ipv6_host_in_brackets() {
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(l) => l,
        // The one environment this test cannot run in: no IPv6 loopback.
        Err(e) => panic!("cannot listen on [::1] (no IPv6 loopback?): {e}"),
    };
    let port = listener.local_addr().unwrap().port();
    let url = format!("ws://[::1]:{port}/mqtt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args([
            "sim",
            "--devices",
            "1",
            "--broker",
            &url,
            "--duration",
            "5",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("embermq runs");
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().expect("the simulator connects");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let request = String::from_utf8_lossy(&request);
    assert!(request.starts_with("GET /mqtt HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains(&format!("\r\nHost: [::1]:{port}\r\n")),
        "{request}"
    );
}
