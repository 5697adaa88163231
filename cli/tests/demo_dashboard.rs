//! `embermq demo`'s dashboard in a real browser: the demo runs with its
//! embedded broker, and a headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven by Selenium (`tests/browser/dashboard.py`)
//! opens the page it prints, waits until the page, itself an MQTT.js
//! client over the broker's WebSocket listener, shows readings from every
//! device and draws their chart, clicks "ping" and "LED on" for a device
//! and sees its replies. The screenshot lands in the test's output folder
//! (`target/tmp/demo-dashboard.png`).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use core::time::Duration;

use serde_json::Value;

/// Waits for `child` up to `limit`; kills it past that.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dashboard_in_chromium_shows_every_device_and_a_command_reply() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args([
            "demo",
            "--port",
            "0",
            "--dashboard-port",
            "0",
            "--devices",
            "4",
            "--interval-ms",
            "250",
            "--duration",
            "90",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("embermq demo starts");
    // The page's address, from the lines the demo prints at start.
    let stdout = demo.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let page = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                if let Some(url) = line.trim().strip_prefix("dashboard: ") {
                    break url.to_owned();
                }
                printed.push(line);
            }
            Err(_) => {
                let _ = demo.kill();
                let _ = demo.wait();
                panic!("the demo printed no dashboard address: {printed:?}");
            }
        }
    };
    assert!(page.starts_with("http://127.0.0.1:"), "{page}");
    // The device ids (demo-<run tag>-01 .. -04), from the page's own
    // configuration.
    let html = {
        let addr = page
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut s = std::net::TcpStream::connect(&addr).expect("the dashboard accepts");
        use std::io::{Read as _, Write as _};
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        text
    };
    let ids: Vec<String> = {
        let start = html.find("\"devices\":[").expect("config in the page") + 11;
        let end = html[start..].find(']').expect("devices closed") + start;
        serde_json::from_str(&format!("[{}]", &html[start..end])).expect("ids")
    };
    assert_eq!(ids.len(), 4, "{ids:?}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut browser = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&page)
        .arg(&shot)
        .args(&ids)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (Debian's, with python3-selenium)");
    let status = wait_bounded(&mut browser, Duration::from_secs(120));
    let out = browser.wait_with_output().expect("browser output");
    let _ = demo.kill();
    let _ = demo.wait();
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser run failed ({status:?}); screenshot {}: {text}",
        shot.display()
    );
    let seen: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .expect("the script's JSON line"),
    )
    .expect("JSON");
    assert_eq!(seen["status"], "connected", "{text}");
    for id in &ids {
        assert!(
            seen["readings"][id].as_u64().is_some_and(|n| n >= 3),
            "{id}: {text}"
        );
    }
    assert_eq!(seen["devices_reporting"], "4", "{text}");
    assert!(seen["rate"].as_f64().is_some_and(|r| r > 0.0), "{text}");
    let ping = seen["replies"]["ping"].as_str().unwrap_or_default();
    assert!(
        ping.contains("\"ok\":true") && ping.contains("\"uptime_ms\":"),
        "{ping}"
    );
    let led = seen["replies"]["led"].as_str().unwrap_or_default();
    assert!(
        led.contains("\"cmd\":\"led\"") && led.contains("\"ok\":true"),
        "{led}"
    );
    let png = std::fs::read(&shot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("screenshot: {}", shot.display());
}
