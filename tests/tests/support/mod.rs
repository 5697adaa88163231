//! Plumbing shared by the client integration tests (`client_mosquitto`,
//! `client_aedes`, `client_faults`): the client state type, leaked buffers
//! with the `'static` lifetime the driver wants, connectors, and the overall
//! time limit every test runs under. Each test binary uses a different part
//! of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

use core::future::Future;
use core::time::Duration;

use embermq::client::{Backoff, Client, ClientConfig, ClientState, CriticalSectionRawMutex};
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::SessionConfig;
use embermq::transport::TokioTcpConnector;
use embermq_ws::{Buffers, WsConnector};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The client state every test uses: 16 in flight, 8 subscriptions.
pub(crate) type State = ClientState<'static, CriticalSectionRawMutex, 16, 8>;
/// A handle to [`State`].
pub(crate) type Handle = Client<'static, 'static, CriticalSectionRawMutex, 16, 8>;

/// A zeroed buffer that lives for the rest of the test process.
pub(crate) fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// A string that lives for the rest of the test process.
pub(crate) fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Client state over `config` with an outbox of `outbox` bytes.
pub(crate) fn state(config: SessionConfig<'static>, outbox: usize) -> &'static State {
    Box::leak(Box::new(ClientState::new(config, leak(outbox))))
}

/// Reconnects quickly (50 ms base, 400 ms cap) and never gives up.
pub(crate) fn fast_reconnect() -> ClientConfig {
    ClientConfig {
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(50),
            cap: embermq::time::Duration::from_millis(400),
            max_attempts: None,
        },
        connect_timeout: embermq::time::Duration::from_secs(5),
    }
}

/// Plain TCP to a broker on loopback.
pub(crate) fn tcp(port: u16) -> TokioTcpConnector {
    TokioTcpConnector::new("127.0.0.1", port)
}

/// WebSocket (path `/mqtt`, subprotocol `mqtt`) over TCP on loopback, with
/// WebSocket buffers of `buf` bytes each.
pub(crate) fn ws(port: u16, buf: usize) -> WsConnector<'static, TokioTcpConnector, StdRng> {
    WsConnector::new(
        tcp(port),
        "127.0.0.1",
        Some(port),
        "/mqtt",
        Buffers {
            rx: leak(buf),
            tx: leak(buf),
        },
        StdRng::seed_from_u64(11),
    )
}

/// Runs `f` with an overall limit so no test hangs.
pub(crate) async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time limit")
}

/// A subscription to `filter` at `qos` with default options.
pub(crate) fn sub(filter: &str, qos: QoS) -> Subscription<'_> {
    Subscription {
        filter,
        options: SubscriptionOptions::qos(qos),
    }
}
