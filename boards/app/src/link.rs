//! [`Link`]: the embermq client every board runs, wired the same way on
//! each: MQTT over WebSocket (`embermq::transport::WsConnector`, subprotocol `mqtt`)
//! over TCP on the board's embassy-net stack (`EmbassyTcpConnector`, which
//! also resolves the broker's name), with TLS 1.3 (embedded-tls) between
//! the two in a `wss` build, and the outbox kept in flash ([`FlashStore`]).
//!
//! The memory all of it borrows is one [`LinkMemory`], which the board
//! places in a static (`static_cell::ConstStaticCell`, zeroed at boot, no
//! copy through the stack) and lends for ever; the one hardware RNG is
//! shared by the client (reconnect jitter), the WebSocket connector (keys,
//! masks) and TLS through [`SharedRng`]. [`Link::open`] builds the
//! connectors, the client state and the driver; [`Link::run`] runs the
//! application ([`crate::run`]) on them.
//!
//! Only with the `embassy` feature (the host tests build the same client
//! over tokio themselves). Deliberately not here: bringing the network up
//! (Wi-Fi, LTE, Ethernet), the flash driver and the range it may use, the
//! broker's CA certificate (the board's build script reads it) and the log
//! (a board prints what [`Link::open`] and [`Link::run`] return).

use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::mem::MaybeUninit;
use core::ops::Range;

use embassy_net::Stack;
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use embermq::client::{ClientError, ClientState, Connection, NoopRawMutex};
use embermq::clock::EmbassyClock;
use embermq::transport::WsConnector;
use embermq::transport::{Connector, EmbassyTcpConnector};
use embermq_ws::Buffers;
use rand_core::{CryptoRng, RngCore};

use crate::board::Board;
use crate::flash_store::{FlashStore, FlashStoreError};
use crate::rng::SharedRng;
use crate::settings::Settings;
use crate::{port_from_env, str_from_env};

/// TCP socket buffers (receive window, send buffer).
const TCP_BUF: usize = 2048;
/// WebSocket frame buffers (the handshake response must fit in `rx`).
const WS_BUF: usize = 1024;
/// The largest MQTT packet received.
const MQTT_RX: usize = 2048;
/// The largest MQTT packet sent.
const MQTT_TX: usize = 1024;
/// Queued and unacknowledged publishes.
const OUTBOX: usize = 4096;
/// The durable outbox's buffer ([`FlashStore::new`]): the largest record
/// (a PUBLISH no larger than the transmit buffer), and sequential-storage's
/// work copy of it with its 4-byte key, padded to the flash word (4 bytes
/// on nRF NVMC and esp-storage).
const STORE_BUF_LEN: usize = 2 * MQTT_TX + 4 + 4;
/// TLS record buffers (`wss`): a whole TLS 1.3 record (2^14 + 256 bytes)
/// to decrypt in place, the same again to collect it, and outgoing records.
#[cfg(feature = "wss")]
const TLS_RECORD: usize = 16_640;
#[cfg(feature = "wss")]
const TLS_WRITE: usize = 4096;
/// Publishes in flight.
const INFLIGHT: usize = 8;
/// Subscriptions kept for resubscribing.
const SUBS: usize = 2;

/// The client state: 8 publishes in flight, 2 subscriptions, the outbox
/// kept in flash `F`.
type DeviceState<F> =
    ClientState<'static, NoopRawMutex, INFLIGHT, SUBS, 128, 0, FlashStore<'static, F>>;

/// The connector the client dials: MQTT over WebSocket over TCP.
#[cfg(not(feature = "wss"))]
type Transport<R> = WsConnector<'static, EmbassyTcpConnector<'static>, SharedRng<'static, R>>;
/// The connector the client dials: MQTT over WebSocket over TLS over TCP.
#[cfg(feature = "wss")]
type Transport<R> = WsConnector<
    'static,
    embermq::transport::EmbeddedTlsConnector<
        'static,
        EmbassyTcpConnector<'static>,
        SharedRng<'static, R>,
    >,
    SharedRng<'static, R>,
>;

/// The client's driver on a board.
type DeviceConnection<F, R> = Connection<
    'static,
    'static,
    NoopRawMutex,
    Transport<R>,
    EmbassyClock,
    SharedRng<'static, R>,
    INFLIGHT,
    SUBS,
    128,
    0,
    FlashStore<'static, F>,
>;

/// Why [`Link::run`] returned: the client's error over this transport and
/// flash.
pub type LinkError<F, R> = ClientError<
    <Transport<R> as Connector>::Error,
    FlashStoreError<<F as embedded_storage_async::nor_flash::ErrorType>::Error>,
>;

/// The broker's host, read at build time: a build without `BROKER_HOST`
/// stops here rather than talking plain `ws://` to some public test
/// broker whose every user could send this device commands.
#[allow(clippy::panic)] // const evaluation: a panic is a build error
const BROKER_HOST: &str = match option_env!("BROKER_HOST") {
    Some(host) if !host.is_empty() => host,
    _ => panic!(
        "BROKER_HOST is not set: name the broker the firmware connects to at build time \
         (e.g. BROKER_HOST=192.168.1.10 cargo build --release; see the board's README)"
    ),
};

/// A `wss` build must be given the broker's CA certificate (the board's
/// build script reads the file `BROKER_CA_DER` names); only the separately
/// named feature `insecure-no-tls-verification` builds one without.
#[cfg(all(feature = "wss", not(feature = "insecure-no-tls-verification")))]
const _: () = assert!(
    matches!(option_env!("BROKER_CA_DER"), Some(path) if !path.is_empty()),
    "a wss build needs BROKER_CA_DER (path of the broker's CA certificate, DER) to verify the \
     server; for a lab bench without any verification build with the feature \
     insecure-no-tls-verification instead (WSS_INSECURE is not read)"
);

/// Where the broker is: `ws://host:port/path`, or `wss://` with the
/// broker's CA certificate in a `wss` build.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    /// Host name or IPv4 address (also the TLS server name).
    pub host: &'static str,
    /// TCP port.
    pub port: u16,
    /// The WebSocket path.
    pub path: &'static str,
    /// The CA certificate (DER) the server's chain must end in (`wss`);
    /// empty only with the feature `insecure-no-tls-verification` (no
    /// verification, a lab bench only).
    ca_der: &'static [u8],
}

impl Broker {
    /// The broker named at build time: `BROKER_HOST` (required: the build
    /// stops without it), `BROKER_PORT` (default 8080) and `BROKER_PATH`
    /// (`/mqtt`); a port that is not a number stops the build. A `wss`
    /// build verifies it against `ca_der` (the board's build-time
    /// `BROKER_CA_DER`); an empty one stops the build, unless the feature
    /// `insecure-no-tls-verification` is on (then nothing is verified).
    /// Without `wss` the certificate is not used (pass `&[]`).
    ///
    /// Call it in a `const` item, so that these checks run at build time.
    #[allow(clippy::panic)] // const evaluation: a panic is a build error
    pub const fn from_env(ca_der: &'static [u8]) -> Self {
        assert!(
            !cfg!(feature = "wss")
                || cfg!(feature = "insecure-no-tls-verification")
                || !ca_der.is_empty(),
            "a wss build needs BROKER_CA_DER (path of the broker's CA certificate, DER); this one \
             is empty"
        );
        Self {
            host: BROKER_HOST,
            port: port_from_env(option_env!("BROKER_PORT"), 8080),
            path: str_from_env(option_env!("BROKER_PATH"), "/mqtt"),
            ca_der,
        }
    }

    /// The URL scheme: `wss` in a `wss` build, else `ws`.
    pub const fn scheme(&self) -> &'static str {
        if cfg!(feature = "wss") { "wss" } else { "ws" }
    }

    /// Whether a `wss` build leaves the server's certificate unchecked:
    /// only with the feature `insecure-no-tls-verification` and no CA;
    /// never without `wss` (there is no TLS to check).
    pub const fn is_insecure(&self) -> bool {
        cfg!(feature = "insecure-no-tls-verification") && self.ca_der.is_empty()
    }
}

/// All the memory a [`Link`] borrows, for a board with flash `F` and RNG
/// `R`: socket, WebSocket and MQTT buffers (2 × 2048, 2 × 1024, 2048 +
/// 1024), the outbox (4096), the flash store's buffer (2056), TLS
/// records in a `wss` build (2 × 16 640 + 4096), the client state and the
/// shared RNG. Put it in a `ConstStaticCell` and lend it to
/// [`Link::open`].
pub struct LinkMemory<F: MultiwriteNorFlash + 'static, R: 'static> {
    tcp_rx: [u8; TCP_BUF],
    tcp_tx: [u8; TCP_BUF],
    ws_rx: [u8; WS_BUF],
    ws_tx: [u8; WS_BUF],
    mqtt_rx: [u8; MQTT_RX],
    mqtt_tx: [u8; MQTT_TX],
    outbox: [u8; OUTBOX],
    store_buf: [u8; STORE_BUF_LEN],
    #[cfg(feature = "wss")]
    tls_read: [u8; TLS_RECORD],
    #[cfg(feature = "wss")]
    tls_staging: [u8; TLS_RECORD],
    #[cfg(feature = "wss")]
    tls_write: [u8; TLS_WRITE],
    state: MaybeUninit<DeviceState<F>>,
    rng: MaybeUninit<RefCell<R>>,
}

impl<F: MultiwriteNorFlash + 'static, R: 'static> LinkMemory<F, R> {
    /// Zeroed buffers; the state and RNG are written by [`Link::open`].
    #[allow(clippy::new_without_default)] // const, for a static
    pub const fn new() -> Self {
        Self {
            tcp_rx: [0; TCP_BUF],
            tcp_tx: [0; TCP_BUF],
            ws_rx: [0; WS_BUF],
            ws_tx: [0; WS_BUF],
            mqtt_rx: [0; MQTT_RX],
            mqtt_tx: [0; MQTT_TX],
            outbox: [0; OUTBOX],
            store_buf: [0; STORE_BUF_LEN],
            #[cfg(feature = "wss")]
            tls_read: [0; TLS_RECORD],
            #[cfg(feature = "wss")]
            tls_staging: [0; TLS_RECORD],
            #[cfg(feature = "wss")]
            tls_write: [0; TLS_WRITE],
            state: MaybeUninit::uninit(),
            rng: MaybeUninit::uninit(),
        }
    }
}

impl<F: MultiwriteNorFlash + 'static, R: 'static> fmt::Debug for LinkMemory<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkMemory").finish_non_exhaustive()
    }
}

/// The client of a board, ready to [`run`](Self::run): its state and its
/// driver on the board's network, flash and RNG.
pub struct Link<F: MultiwriteNorFlash + 'static, R: RngCore + CryptoRng + 'static> {
    state: &'static DeviceState<F>,
    connection: DeviceConnection<F, R>,
}

impl<F: MultiwriteNorFlash + 'static, R: RngCore + CryptoRng + 'static> Link<F, R> {
    /// Builds the client for `settings` in `memory`: TCP on `stack` to
    /// `broker` (TLS over it in a `wss` build), the WebSocket over that,
    /// `rng` shared by all of them, and the outbox kept in `outbox_flash`
    /// of `flash` (records left there by an earlier run are replayed).
    /// Nothing is sent until [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// The flash range is not whole pages, or fewer than two
    /// ([`FlashStoreError::Range`]).
    pub fn open(
        stack: Stack<'static>,
        broker: Broker,
        memory: &'static mut LinkMemory<F, R>,
        flash: F,
        outbox_flash: Range<u32>,
        rng: R,
        settings: &Settings<'static>,
    ) -> Result<Self, FlashStoreError<F::Error>> {
        let LinkMemory {
            tcp_rx,
            tcp_tx,
            ws_rx,
            ws_tx,
            mqtt_rx,
            mqtt_tx,
            outbox,
            store_buf,
            #[cfg(feature = "wss")]
            tls_read,
            #[cfg(feature = "wss")]
            tls_staging,
            #[cfg(feature = "wss")]
            tls_write,
            state,
            rng: rng_cell,
        } = memory;
        let rng = SharedRng::new(rng_cell.write(RefCell::new(rng)));

        let tcp = EmbassyTcpConnector::new(stack, broker.host, broker.port, tcp_rx, tcp_tx);
        #[cfg(feature = "wss")]
        let tcp = {
            use embermq::transport::{EmbeddedTlsBuffers, EmbeddedTlsConnector};
            let buffers = EmbeddedTlsBuffers {
                read: tls_read,
                write: tls_write,
                staging: tls_staging,
            };
            #[cfg(feature = "insecure-no-tls-verification")]
            if broker.is_insecure() {
                EmbeddedTlsConnector::insecure_without_verification(tcp, broker.host, buffers, rng)
            } else {
                EmbeddedTlsConnector::new(tcp, broker.host, broker.ca_der, buffers, rng)
            }
            // Without the insecure feature there is no unverified path: an
            // empty CA (possible only outside a const item) verifies nothing
            // and so fails every handshake.
            #[cfg(not(feature = "insecure-no-tls-verification"))]
            EmbeddedTlsConnector::new(tcp, broker.host, broker.ca_der, buffers, rng)
        };
        let ws = WsConnector::new(
            tcp,
            broker.host,
            Some(broker.port),
            broker.path,
            Buffers {
                rx: ws_rx,
                tx: ws_tx,
            },
            rng,
        );

        let store = FlashStore::new(flash, outbox_flash, store_buf)?;
        let state: &'static DeviceState<F> = state.write(ClientState::with_store(
            settings.session_config(MQTT_RX),
            outbox,
            store,
        ));
        let connection = Connection::new(
            state,
            ws,
            EmbassyClock::new(),
            rng,
            mqtt_rx,
            mqtt_tx,
            settings.client,
        );
        Ok(Self { state, connection })
    }

    /// Runs the application ([`crate::run`]) with `board` until the client
    /// stops: in practice never, as it reconnects for ever. Resolves to the
    /// client's error if its driver gives up.
    ///
    /// A plain function handing back [`crate::run`]'s future, so that the
    /// caller's future holds the driver once, not also a copy in a wrapper.
    pub fn run<'a, B: Board + 'a>(
        self,
        board: B,
        settings: &'a Settings<'_>,
    ) -> impl Future<Output = Result<(), LinkError<F, R>>> + 'a {
        crate::run(
            self.state,
            self.connection,
            EmbassyClock::new(),
            board,
            settings,
        )
    }
}
