//! The client role: connect over an already open transport (the seed's
//! `websocket_connect`), RFC 6455 §4.1 and MQTT §6.
//!
//! Writes the upgrade request through the transmit buffer, reads and checks
//! the response in the receive buffer, and keeps the bytes that followed the
//! response header as the first frames. Deliberately not here: opening the
//! transport (see `WsConnector`) and TLS.

use core::future::Future;

use embassy_futures::select::{Either, select};
use embedded_io_async::{Read, Write};

use crate::error::Error;
use crate::frame::move_within;
use crate::handshake::{
    HandshakeHooks, Request, accept_for_key, generate_key, read_response, write_request,
};
use crate::message::{Buffers, ClientRole, Config, MIN_RX_BUF, MIN_TX_BUF, WsConnection};

/// A client connection.
pub type WsClient<'b, T, R> = WsConnection<'b, T, ClientRole<R>>;

impl<'b, T: Read + Write, R: rand_core::RngCore + rand_core::CryptoRng>
    WsConnection<'b, T, ClientRole<R>>
{
    /// Performs the opening handshake on `io` and returns the connection
    /// and the subprotocol the server selected (one of `req.protocols`).
    ///
    /// With `cfg.mqtt`, `mqtt` must be offered and selected
    /// [MQTT-6.0.0-4]. `hooks` add request headers and see the response
    /// (use `&mut ()` for none). Bound it with
    /// [`connect_with_timeout`](Self::connect_with_timeout).
    pub async fn connect<'r, H: HandshakeHooks>(
        mut io: T,
        req: &Request<'r>,
        buffers: Buffers<'b>,
        mut rng: R,
        cfg: Config,
        hooks: &mut H,
    ) -> Result<(Self, Option<&'r str>), Error<T::Error>> {
        if buffers.rx.len() < MIN_RX_BUF {
            return Err(Error::BufferTooSmall {
                required: MIN_RX_BUF,
            });
        }
        if buffers.tx.len() < MIN_TX_BUF {
            return Err(Error::BufferTooSmall {
                required: MIN_TX_BUF,
            });
        }
        let key = generate_key(&mut rng);
        write_request(&mut io, buffers.tx, req, &key, hooks).await?;
        let accept = accept_for_key(&key);
        let (accepted, filled) =
            read_response(&mut io, buffers.rx, &accept, req.protocols, cfg.mqtt, hooks).await?;
        hooks.on_connected(accepted.protocol);
        // Move the bytes after the header to the front: they are frames.
        move_within(buffers.rx, accepted.header_len..filled, 0);
        let leftover = filled - accepted.header_len;
        let conn = Self::from_upgraded(io, ClientRole(rng), buffers, leftover, cfg)?;
        Ok((conn, accepted.protocol))
    }

    /// [`connect`](Self::connect) bounded by `deadline`
    /// ([`Error::Timeout`]).
    pub async fn connect_with_timeout<'r, H: HandshakeHooks>(
        io: T,
        req: &Request<'r>,
        buffers: Buffers<'b>,
        rng: R,
        cfg: Config,
        hooks: &mut H,
        deadline: impl Future<Output = ()>,
    ) -> Result<(Self, Option<&'r str>), Error<T::Error>> {
        match select(Self::connect(io, req, buffers, rng, cfg, hooks), deadline).await {
            Either::First(r) => r,
            Either::Second(()) => Err(Error::Timeout),
        }
    }
}
