//! The stack in use: client, session, WebSocket (feature `stack`; without
//! it, feature `mqtt`, the client runs straight on the dummy transport),
//! reconnect, outbox.

use core::future::poll_fn;
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Poll;

use cortex_m::singleton;
use embermq::client::{ClientConfig, ClientState, Connection, NoopRawMutex};
use embermq::clock::Clock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, OverflowPolicy, ProtocolChoice, SessionConfig};
use embermq::time::Instant;
use embermq::transport::Connector;
#[cfg(feature = "ws")]
use embermq::transport::WsConnector;
#[cfg(feature = "ws")]
use embermq_ws::Buffers;

use crate::{DummyIo, Lent, block_on, halt};

/// Connects to the dummy transport.
struct DummyConnector;

impl Connector for DummyConnector {
    type Transport<'a> = DummyIo;
    type Error = core::convert::Infallible;

    async fn connect(&mut self) -> Result<DummyIo, Self::Error> {
        Ok(DummyIo)
    }
}

/// A millisecond counter standing in for a timer.
struct ProbeClock;

static TICKS: AtomicU32 = AtomicU32::new(0);

impl Clock for ProbeClock {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::from(TICKS.fetch_add(1, Ordering::Relaxed)))
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> {
        poll_fn(move |_| {
            if self.now() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// xorshift32 standing in for a hardware TRNG. Marked `CryptoRng` only so
/// that it type-checks where a TRNG goes; the probe is never run.
struct ProbeRng(u32);

impl rand_core::RngCore for ProbeRng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for ProbeRng {}

#[cfg(not(feature = "durable"))]
type State = ClientState<'static, NoopRawMutex, 8, 2>;
#[cfg(feature = "durable")]
type State = ClientState<
    'static,
    NoopRawMutex,
    8,
    2,
    128,
    0,
    embermq_board_app::FlashStore<'static, durable::DummyFlash>,
>;

#[cfg(feature = "durable")]
mod durable {
    use core::hint::black_box;

    use embedded_storage_async::nor_flash::{
        ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
    };

    /// NOR flash standing in for the NVMC: reads bytes the optimiser
    /// cannot predict, writes and erases into a black box.
    pub(crate) struct DummyFlash;

    impl ErrorType for DummyFlash {
        type Error = NorFlashErrorKind;
    }

    impl ReadNorFlash for DummyFlash {
        const READ_SIZE: usize = 4;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            black_box(offset);
            for byte in bytes.iter_mut() {
                *byte = black_box(0xFF);
            }
            Ok(())
        }

        fn capacity(&self) -> usize {
            1024 * 1024
        }
    }

    impl NorFlash for DummyFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 4096;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            black_box((from, to));
            Ok(())
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            black_box((offset, bytes));
            Ok(())
        }
    }

    impl MultiwriteNorFlash for DummyFlash {}
}

pub(crate) fn run(lent: Lent) -> ! {
    let Lent {
        rx,
        tx,
        outbox,
        ws_rx,
        ws_tx,
    } = lent;
    let mut config = SessionConfig::new("probe");
    // Chosen at run time: both protocol versions stay in the image.
    #[cfg(feature = "v5")]
    {
        config.protocol = if black_box(true) {
            ProtocolChoice::V5WithFallback
        } else {
            ProtocolChoice::V311
        };
    }
    #[cfg(not(feature = "v5"))]
    {
        config.protocol = ProtocolChoice::V311;
    }
    config.resume_on_reconnect = true;
    config.session_expiry_secs = Some(3600);
    #[cfg(not(feature = "durable"))]
    let Some(state) = singleton!(: State = ClientState::new(config, outbox)) else {
        halt()
    };
    #[cfg(feature = "durable")]
    let Some(state) = singleton!(: State = {
        let Some(buf) = singleton!(: [u8; 1028] = [0; 1028]) else { halt() };
        let Ok(store) = embermq_board_app::FlashStore::new(durable::DummyFlash, 0xF_8000..0x10_0000, buf) else {
            halt()
        };
        ClientState::with_store(config, outbox, store)
    }) else {
        halt()
    };
    let state: &'static State = state;
    #[cfg(feature = "ws")]
    let connector = WsConnector::new(
        DummyConnector,
        "broker.example",
        Some(8080),
        "/mqtt",
        Buffers {
            rx: ws_rx,
            tx: ws_tx,
        },
        ProbeRng(black_box(7)),
    );
    #[cfg(not(feature = "ws"))]
    let connector = {
        // The WebSocket buffers stay lent, unused: the same RAM as the
        // baseline.
        black_box((ws_rx, ws_tx));
        DummyConnector
    };
    let connection = Connection::new(
        state,
        connector,
        ProbeClock,
        ProbeRng(black_box(11)),
        rx,
        tx,
        ClientConfig::DEFAULT,
    );
    let client = state.client();
    let app = async {
        let filters = [Subscription {
            filter: "probe/commands",
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        black_box(client.subscribe(&filters).await.is_ok());
        loop {
            let qos = match black_box(1u8) {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            let reading = OutgoingMessage::new("probe/telemetry", black_box(b"21.5"), qos);
            if let Ok(token) = client.publish(&reading).await {
                black_box(client.completion(token).await.is_ok());
            }
            let note = OutgoingMessage::new("probe/notes", black_box(b"x"), QoS::AtMostOnce);
            black_box(
                client
                    .try_publish(&note, OverflowPolicy::DropOldestQos0)
                    .is_ok(),
            );
        }
    };
    let handler = |event: embermq::client::Event<'_>| {
        black_box(event);
    };
    block_on(async {
        let _ = embassy_futures::select::select(connection.run(handler), app).await;
    });
    halt()
}
