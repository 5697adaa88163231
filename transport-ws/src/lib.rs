//! embermq-ws: a strict RFC 6455 WebSocket client and server role over any
//! `embedded_io_async` transport, `#![no_std]` and allocation-free.
//!
//! - [`frame`]: the header codec and masking (pure functions).
//! - [`handshake`]: the client's upgrade request and response check.
//! - [`WsConnection`]: the message API (`send_msg`, `recv_msg`, `close`)
//!   for either role; [`WsClient`] is the client, [`server`] the server
//!   role (the seed's `websocket_register` / `unregister`). Every operation
//!   is one small loop with one await per kind of I/O around synchronous
//!   steps that parse and build frames over the lent buffers (quinn's
//!   shape): few await points, little code per caller on a device.
//! - [`WsStream`]: `embedded_io_async::{Read, Write}` over the connection,
//!   the MQTT transport (MQTT §6).
//! - The embermq client's connector over this crate is
//!   `embermq::transport::WsConnector` (embermq feature `ws`): the
//!   dependency runs from embermq to this crate, never back.
//!
//! # Buffers, randomness, time
//!
//! The caller lends a receive and a transmit buffer ([`Buffers`]) and a
//! `rand_core::CryptoRng` for keys and masks; the connection keeps no
//! frame buffer of its own (pongs and Close frames are built in the
//! transmit buffer, which is why it holds at least [`MIN_TX_BUF`] = 131
//! bytes, a whole masked control frame). Timeouts take a deadline
//! future (`embassy_time::Timer::after(..)` on devices,
//! `tokio::time::sleep(..)` on hosts); nothing here reads a clock.
//!
//! # Example (host, tokio)
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use core::time::Duration;
//! use embedded_io_adapters::tokio_1::FromTokio;
//! use embermq_ws::{Buffers, Config, Opcode, Request, WsClient};
//! use rand::SeedableRng;
//!
//! let tcp = tokio::net::TcpStream::connect("broker.example:80").await?;
//! let (mut rx, mut tx) = ([0u8; 2048], [0u8; 1024]);
//! let req = Request::mqtt("broker.example", None, "/mqtt");
//! let cfg = Config { mqtt: true, ..Config::default() };
//! let rng = rand::rngs::StdRng::from_entropy();
//! let buffers = Buffers { rx: &mut rx, tx: &mut tx };
//! let (mut ws, _protocol) = WsClient::connect_with_timeout(
//!     FromTokio::new(tcp), &req, buffers, rng, cfg, &mut (),
//!     tokio::time::sleep(Duration::from_secs(10)),
//! )
//! .await?;
//! ws.send_msg(&[0xC0, 0x00], Opcode::Binary, true).await?; // PINGREQ
//! let mut buf = [0u8; 256];
//! let info = ws
//!     .recv_msg_with_timeout(&mut buf, tokio::time::sleep(Duration::from_secs(5)))
//!     .await?;
//! assert_eq!(&buf[..info.len], &[0xD0, 0x00]); // PINGRESP
//! ws.close(1000, "", tokio::time::sleep(Duration::from_secs(2))).await?;
//! let _tcp = ws.into_inner();
//! # Ok(()) }
//! ```
//!
//! # Pings for a write-only user
//!
//! Control frames are serviced whenever the connection reads: every
//! `recv_msg`, every `WsStream::read`. An MQTT client always reads (acks and
//! PINGRESP arrive), so it answers pings without doing anything. A user who
//! only writes calls [`WsConnection::service`] now and then with a short
//! deadline: it answers pings and echoes a Close without consuming data.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

#[cfg(test)]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod client;
mod error;
pub mod frame;
pub mod handshake;
mod message;
pub mod server;
mod stream;
mod utf8;

pub use client::WsClient;
pub use error::{
    Error, FieldFault, HEADER_LABEL_CAPACITY, HandshakeError, HeaderLabel, InvalidRequestField,
    ProtocolError, REASON_CAPACITY, ReasonPhrase, RequestField,
};
pub use frame::{FrameHeader, Opcode};
pub use handshake::{HandshakeHooks, HeaderWriter, Request, check_header_field, check_target};
pub use message::{
    Buffers, ClientRole, Config, MIN_RX_BUF, MIN_TX_BUF, RecvInfo, Role, ServerRole, WsConnection,
    is_sendable_close_code,
};
pub use stream::WsStream;
