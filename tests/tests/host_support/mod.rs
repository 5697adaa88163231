//! Plumbing shared by the host-layer tests (`host_layer`, `host_mqtt5`):
//! the overall time limit, options that reconnect fast, and the wait for
//! the next `Connected`. Each binary uses a part of it, hence `dead_code`
//! is allowed here.
#![allow(dead_code)]

use core::future::Future;
use core::time::Duration;

use embermq::codec::ProtocolVersion;
use embermq::host::{Event, Events, Options};

/// Runs `f` with an overall limit so no test hangs.
pub(crate) async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time limit")
}

/// Options for `url` that reconnect within 50-200 ms, for ever.
pub(crate) fn fast(url: &str) -> Options {
    Options::new(url)
        .unwrap()
        .backoff(embermq::client::Backoff {
            base: embermq::time::Duration::from_millis(50),
            cap: embermq::time::Duration::from_millis(200),
            max_attempts: None,
        })
}

/// Waits for the next `Connected`, skipping other events: whether the
/// broker resumed the session, and the protocol version.
pub(crate) async fn connected(events: &mut Events) -> (bool, ProtocolVersion) {
    loop {
        match events.recv().await.expect("client ended") {
            Event::Connected {
                session_present,
                version,
            } => return (session_present, version),
            Event::Stopped { error } => panic!("client stopped: {error:?}"),
            _ => {}
        }
    }
}
