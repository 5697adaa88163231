//! A transport written by the user: [`Counting<C>`] wraps any
//! [`Connector`] and counts every byte its transports read and write, so
//! the same client run tells what MQTT costs on the wire, and what the
//! WebSocket framing adds on top (`--broker ws://...` vs `mqtt://...`).
//!
//! ```text
//! cargo run -p embermq-examples --bin counting-transport -- --broker mqtt://127.0.0.1:1883
//! cargo run -p embermq-examples --bin counting-transport -- --broker ws://127.0.0.1:9001/mqtt
//! ```
//!
//! Publishes `--count` messages of `--size` bytes at QoS 1 to itself and
//! prints bytes written and read, and bytes per message. Over WebSocket
//! the counter sits *below* the WebSocket layer (`WsConnector` over
//! `Counting<TokioTcpConnector>`), so it sees the HTTP upgrade and the
//! frame headers and masks as well.
//!
//! A connector is two small things: `connect()` that opens a fresh
//! transport for each (re)connect, and a transport that implements
//! `embedded_io_async::{Read, Write}`. The one contract to keep: `read`
//! must be cancel-safe (the client drops a pending read when it has
//! something to send); delegating to a cancel-safe inner `read` and
//! counting only what it returned keeps that.

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use std::process::ExitCode;

use clap::Parser;
use embedded_io_async::{ErrorType, Read, Write};
use embermq::client::{ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::WsConnector;
use embermq::transport::{Connector, TokioTcpConnector};
use embermq_examples::{DEFAULT_BROKER, parse_broker};
use embermq_ws::Buffers;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Byte totals shared by a [`Counting`] connector and its transports.
#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Bytes handed to the inner transport's `write`.
    pub written: AtomicU64,
    /// Bytes the inner transport's `read` returned.
    pub read: AtomicU64,
    /// Transports opened (1 + reconnects).
    pub connects: AtomicU64,
}

/// A [`Connector`] that counts the bytes of every transport `C` opens.
pub struct Counting<C> {
    inner: C,
    counts: Arc<ByteCounts>,
}

impl<C: Connector> Counting<C> {
    /// Wraps `inner`; the totals go to `counts`.
    pub fn new(inner: C, counts: Arc<ByteCounts>) -> Self {
        Self { inner, counts }
    }
}

impl<C: Connector> Connector for Counting<C> {
    type Transport<'a>
        = CountingStream<C::Transport<'a>>
    where
        Self: 'a;
    // Nothing new can fail here: the inner connector's errors pass through.
    type Error = C::Error;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, C::Error> {
        let io = self.inner.connect().await?;
        self.counts.connects.fetch_add(1, Ordering::Relaxed);
        Ok(CountingStream {
            io,
            counts: self.counts.clone(),
        })
    }
}

/// The transport of [`Counting`]: the inner one, counted.
pub struct CountingStream<T> {
    io: T,
    counts: Arc<ByteCounts>,
}

impl<T: ErrorType> ErrorType for CountingStream<T> {
    type Error = T::Error;
}

impl<T: Read> Read for CountingStream<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, T::Error> {
        // Counted only once the inner read completed: cancel-safe.
        let n = self.io.read(buf).await?;
        self.counts.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<T: embermq::transport::Transport> embermq::transport::Transport for CountingStream<T> {
    async fn close(&mut self) {
        self.io.close().await;
    }
}

impl<T: Write> Write for CountingStream<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, T::Error> {
        let n = self.io.write(buf).await?;
        self.counts.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), T::Error> {
        self.io.flush().await
    }
}

/// Count the bytes of a QoS 1 publish/subscribe round.
#[derive(Parser, Debug)]
struct Args {
    /// Broker URL (mqtt:// or ws://).
    #[arg(long, default_value = DEFAULT_BROKER)]
    broker: String,
    /// Messages to publish (and receive back).
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let counts = Arc::new(ByteCounts::default());
    let outcome = match parse_broker(&args.broker) {
        Err(e) => Err(e),
        Ok(broker) if broker.scheme.is_tls() => Err(format!(
            "{broker}: this example counts plain bytes; use mqtt:// or ws://"
        )),
        Ok(broker) => {
            let tcp = Counting::new(
                TokioTcpConnector::new(broker.host.clone(), broker.port),
                counts.clone(),
            );
            match broker.scheme.is_websocket().then_some(&broker.path) {
                None => round_trip(&args, tcp).await,
                Some(path) => {
                    let (mut rx, mut tx) = (vec![0u8; 8192], vec![0u8; 8192]);
                    let ws = WsConnector::new(
                        tcp,
                        &broker.host_header,
                        Some(broker.port),
                        path,
                        Buffers {
                            rx: &mut rx,
                            tx: &mut tx,
                        },
                        StdRng::from_entropy(),
                    );
                    round_trip(&args, ws).await
                }
            }
            .map_err(|e| format!("{broker}: {e}"))
        }
    };
    if let Err(e) = outcome {
        eprintln!("counting-transport: {e}");
        return ExitCode::FAILURE;
    }
    let written = counts.written.load(Ordering::Relaxed);
    let read = counts.read.load(Ordering::Relaxed);
    let per_message = (written + read) as f64 / f64::from(args.count.max(1));
    println!(
        "{} messages of {} bytes at QoS 1 via {}: wrote {written} bytes, read {read} bytes, \
         {per_message:.1} bytes on the wire per message ({} connect(s))",
        args.count,
        args.size,
        args.broker,
        counts.connects.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

/// Subscribes to its own topic, publishes `count` messages at QoS 1 and
/// waits until every one came back; any connector will do.
async fn round_trip<C: Connector>(args: &Args, connector: C) -> Result<(), String> {
    let client_id = format!("counting-{}", std::process::id());
    let mut config = SessionConfig::new(&client_id);
    config.protocol = ProtocolChoice::V5WithFallback;
    let mut outbox = vec![0u8; (args.size + 128) * 16];
    let state: ClientState<'_, NoopRawMutex, 8, 2> = ClientState::new(config, &mut outbox);
    let client = state.client();
    let (mut rx, mut tx) = (vec![0u8; args.size + 1024], vec![0u8; args.size + 1024]);
    let topic = format!("counting/{client_id}");
    let mut received = 0u32;
    let mut client_config = ClientConfig::DEFAULT;
    client_config.backoff.max_attempts = Some(2);
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        client_config,
    )
    .run(|event: Event<'_>| {
        if let Event::Message(_) = event {
            received += 1;
            if received == args.count {
                client.stop();
            }
        }
    });
    let payload = vec![b'x'; args.size];
    let filters = [Subscription {
        filter: &topic,
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }];
    let work = async {
        client
            .subscribe(&filters)
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..args.count {
            client
                .publish(&OutgoingMessage::new(&topic, &payload, QoS::AtLeastOnce))
                .await
                .map_err(|e| e.to_string())?;
        }
        // The handler stops the client once every message came back.
        core::future::pending::<Result<(), String>>().await
    };
    tokio::select! {
        ended = driver => ended.map_err(|e| e.to_string()),
        failed = work => failed,
    }
}
