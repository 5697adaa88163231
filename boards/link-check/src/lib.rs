//! The firmware logic every board runs, kept out of the board projects so a
//! host test runs it too.
//!
//! [`run`] keeps a connection to the broker coming back: it opens a transport
//! through any [`Connector`] (the boards use the embassy-net TCP connector,
//! the host test the tokio one), holds it while the peer keeps it open (or
//! until `hold` has passed), and after a failure or a close waits
//! `retry_delay` and starts again. Every step is reported to the board as a
//! [`LinkEvent`], which the board logs (defmt, esp-println) and shows on its
//! LED.
//!
//! It deliberately speaks no MQTT yet: the bytes a broker may send are read
//! and counted, nothing is written. The MQTT client replaces this loop when it
//! exists; the reporting shape stays.
#![no_std]
#![forbid(unsafe_code)]

use embassy_futures::select::{Either, select};
use embedded_io_async::Read;
use embermq::clock::Clock;
use embermq::time::Duration;
use embermq::transport::Connector;

/// The broker's TCP port from a build-time variable (`option_env!`), or
/// `default` when unset. Evaluated in a `const`, so a value that is not a
/// port number stops the build instead of the device.
pub const fn port_from_env(value: Option<&str>, default: u16) -> u16 {
    let Some(text) = value else {
        return default;
    };
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "BROKER_PORT is empty");
    let mut port: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "BROKER_PORT is not a number");
        port = port * 10 + (digit - b'0') as u32;
        assert!(port <= u16::MAX as u32, "BROKER_PORT is above 65535");
        i += 1;
    }
    port as u16
}

/// How long to hold a connection and how long to wait before the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCheck {
    /// The time a connection is kept open before it is closed on purpose.
    pub hold: Duration,
    /// The wait after a failed connect or a closed connection.
    pub retry_delay: Duration,
}

impl Default for LinkCheck {
    fn default() -> Self {
        LinkCheck {
            hold: Duration::from_secs(30),
            retry_delay: Duration::from_secs(5),
        }
    }
}

/// One step of the link check, as reported to the board.
#[derive(Debug)]
pub enum LinkEvent<'e, E> {
    /// A connect attempt is starting (1 for the first).
    Connecting {
        /// The attempt number since start-up.
        attempt: u32,
    },
    /// The transport is open.
    Connected {
        /// The attempt number that succeeded.
        attempt: u32,
    },
    /// The connect failed.
    ConnectFailed(&'e E),
    /// The connection ended.
    Closed {
        /// How long it was open.
        after: Duration,
        /// Bytes the peer sent meanwhile.
        received: usize,
        /// Why it ended.
        reason: CloseReason,
    },
    /// Waiting before the next attempt.
    Waiting {
        /// How long.
        delay: Duration,
    },
}

/// Why a held connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `hold` passed; the connection was closed on purpose.
    HoldOver,
    /// The peer closed it (end of stream).
    PeerClosed,
    /// A read failed (reset, timeout).
    ReadFailed,
}

/// What one attempt came to (a bounded step of [`run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The connect failed.
    ConnectFailed,
    /// A connection was opened and has ended.
    Closed(CloseReason),
}

/// One attempt: connect, hold, report. Returns when the connection is gone.
pub async fn attempt<C, K, F>(
    connector: &mut C,
    clock: &K,
    config: &LinkCheck,
    attempt: u32,
    on_event: &mut F,
) -> AttemptOutcome
where
    C: Connector,
    K: Clock,
    F: FnMut(LinkEvent<'_, C::Error>),
{
    on_event(LinkEvent::Connecting { attempt });
    let mut transport = match connector.connect().await {
        Ok(transport) => transport,
        Err(error) => {
            on_event(LinkEvent::ConnectFailed(&error));
            return AttemptOutcome::ConnectFailed;
        }
    };
    on_event(LinkEvent::Connected { attempt });

    let opened = clock.now();
    let until = opened + config.hold;
    let mut received = 0usize;
    let mut buf = [0u8; 64];
    let reason = loop {
        match select(transport.read(&mut buf), clock.sleep_until(until)).await {
            Either::First(Ok(0)) => break CloseReason::PeerClosed,
            Either::First(Ok(n)) => received = received.saturating_add(n),
            Either::First(Err(_)) => break CloseReason::ReadFailed,
            Either::Second(()) => break CloseReason::HoldOver,
        }
    };
    drop(transport);
    on_event(LinkEvent::Closed {
        after: clock.now() - opened,
        received,
        reason,
    });
    AttemptOutcome::Closed(reason)
}

/// Runs the link check for ever: attempt, report, wait, again.
pub async fn run<C, K, F>(connector: &mut C, clock: &K, config: LinkCheck, mut on_event: F) -> !
where
    C: Connector,
    K: Clock,
    F: FnMut(LinkEvent<'_, C::Error>),
{
    let mut number: u32 = 0;
    loop {
        number = number.saturating_add(1);
        attempt(connector, clock, &config, number, &mut on_event).await;
        on_event(LinkEvent::Waiting {
            delay: config.retry_delay,
        });
        clock.sleep_until(clock.now() + config.retry_delay).await;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use embermq::clock::TokioClock;
    use embermq::transport::TokioTcpConnector;
    use std::string::String;
    use std::vec::Vec;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn record(
        log: &mut Vec<String>,
    ) -> impl FnMut(LinkEvent<'_, embermq::transport::TokioTcpError>) + '_ {
        move |event| {
            log.push(match event {
                LinkEvent::Connecting { attempt } => std::format!("connecting {attempt}"),
                LinkEvent::Connected { attempt } => std::format!("connected {attempt}"),
                LinkEvent::ConnectFailed(e) => std::format!("failed: {e}"),
                LinkEvent::Closed {
                    received, reason, ..
                } => {
                    std::format!("closed {reason:?} after {received} bytes")
                }
                LinkEvent::Waiting { delay } => std::format!("waiting {delay}"),
            })
        }
    }

    #[test]
    fn port_from_env_parses_or_falls_back() {
        const SET: u16 = port_from_env(Some("8883"), 1883);
        assert_eq!(SET, 8883);
        assert_eq!(port_from_env(None, 1883), 1883);
        assert_eq!(port_from_env(Some("65535"), 1), 65535);
        assert!(std::panic::catch_unwind(|| port_from_env(Some("65536"), 1)).is_err());
        assert!(std::panic::catch_unwind(|| port_from_env(Some("80a"), 1)).is_err());
    }

    #[tokio::test]
    async fn a_peer_close_is_reported_with_the_bytes_it_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"hello").await.unwrap();
        });
        let mut connector = TokioTcpConnector::new("127.0.0.1", port);
        let clock = TokioClock::new();
        let config = LinkCheck {
            hold: Duration::from_secs(10),
            retry_delay: Duration::from_millis(1),
        };
        let mut log = Vec::new();
        let outcome = attempt(&mut connector, &clock, &config, 1, &mut record(&mut log)).await;
        assert_eq!(outcome, AttemptOutcome::Closed(CloseReason::PeerClosed));
        assert_eq!(
            log,
            [
                "connecting 1",
                "connected 1",
                "closed PeerClosed after 5 bytes"
            ]
        );
    }

    #[tokio::test]
    async fn a_quiet_connection_is_closed_when_the_hold_is_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(core::time::Duration::from_secs(5)).await;
            drop(socket);
        });
        let mut connector = TokioTcpConnector::new("127.0.0.1", port);
        let clock = TokioClock::new();
        let config = LinkCheck {
            hold: Duration::from_millis(50),
            retry_delay: Duration::from_millis(1),
        };
        let mut log = Vec::new();
        let outcome = attempt(&mut connector, &clock, &config, 1, &mut record(&mut log)).await;
        assert_eq!(outcome, AttemptOutcome::Closed(CloseReason::HoldOver));
        assert!(clock.now() >= embermq::time::Instant::ZERO + Duration::from_millis(50));
        peer.abort();
    }

    #[tokio::test]
    async fn a_refused_connect_is_reported_then_retried_after_the_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut connector = TokioTcpConnector::new("127.0.0.1", port);
        let clock = TokioClock::new();
        let config = LinkCheck {
            hold: Duration::from_millis(50),
            retry_delay: Duration::from_millis(20),
        };
        let mut log = Vec::new();
        let ran = tokio::time::timeout(
            core::time::Duration::from_millis(500),
            run(&mut connector, &clock, config, record(&mut log)),
        )
        .await;
        assert!(ran.is_err(), "run never returns");
        let refused = std::format!("failed: connection refused by 127.0.0.1:{port}");
        assert_eq!(log.first().map(String::as_str), Some("connecting 1"));
        assert_eq!(log.get(1), Some(&refused));
        assert_eq!(log.get(2).map(String::as_str), Some("waiting 20ms"));
        assert!(log.iter().any(|l| l == "connecting 2"), "{log:?}");
        assert!(
            log.len() < 200,
            "retries were not spaced by the delay: {}",
            log.len()
        );
    }
}
