//! Plain TCP to a broker from a device, on an embassy-net stack (feature
//! `embassy-net`).
//!
//! [`EmbassyTcpConnector`] waits until the stack's link is up and it has an
//! IPv4 configuration, resolves the broker's name through the stack's DNS client (an IPv4
//! literal skips the query), and connects a [`TcpSocket`] that borrows the
//! receive and transmit buffers the caller lent to the connector once. Every
//! reconnect reuses the same buffers; nothing is allocated. The socket gets a
//! TCP keep-alive and an inactivity timeout (which also bounds the SYN
//! retries of a connect), both configurable.
//!
//!
//! The connection it hands out, [`EmbassyTcpStream`], also watches the
//! stack's link: when the link goes down (a cable pulled, Wi-Fi or LTE
//! lost), a pending read fails at once with `ConnectionReset` and the
//! socket is aborted, so the client ends the MQTT link and reconnects
//! when the network is back, instead of noticing only when the MQTT
//! keepalive runs out (a TCP connection whose peer is unreachable sends
//! into its buffer without an error for as long as the buffer has room).
//! A connect likewise waits for the link before it dials, and a dial that
//! is under way when the link goes down fails at once
//! ([`EmbassyTcpError::LinkDown`]): a SYN sent into a pulled cable would
//! only be answered by the socket's timeout, after the link was long back.
//!
//! It deliberately does no TLS (a TLS connector wraps this one) and no IPv6
//! look-up (only A records are asked for). Bringing the network up (link,
//! DHCP, Wi-Fi join, LTE attach) is the board's job, not this module's.

use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_net::dns::{self, DnsQueryType};
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};

use super::Connector;
use crate::time::Duration;

/// Opens a TCP connection to `host:port` over an embassy-net stack for every
/// (re)connect, with socket buffers lent once by the caller.
pub struct EmbassyTcpConnector<'d> {
    stack: Stack<'d>,
    host: &'d str,
    port: u16,
    rx_buffer: &'d mut [u8],
    tx_buffer: &'d mut [u8],
    timeout: Option<Duration>,
    keep_alive: Option<Duration>,
}

impl<'d> EmbassyTcpConnector<'d> {
    /// Inactivity timeout set on each socket unless changed: unacknowledged
    /// data (or an unanswered SYN) for this long aborts the connection.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
    /// TCP keep-alive interval set on each socket unless changed.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

    /// A connector to `host` (a DNS name or an IPv4 literal) on `port`,
    /// using `rx_buffer` and `tx_buffer` as the socket's buffers. Their sizes
    /// are the TCP receive window and send buffer (1 KiB each is a workable
    /// minimum for MQTT; a full Ethernet segment is 1460 bytes).
    pub fn new(
        stack: Stack<'d>,
        host: &'d str,
        port: u16,
        rx_buffer: &'d mut [u8],
        tx_buffer: &'d mut [u8],
    ) -> Self {
        EmbassyTcpConnector {
            stack,
            host,
            port,
            rx_buffer,
            tx_buffer,
            timeout: Some(Self::DEFAULT_TIMEOUT),
            keep_alive: Some(Self::DEFAULT_KEEP_ALIVE),
        }
    }

    /// Sets the inactivity timeout (`None`: never time out; a connect to a
    /// silent host then waits until the caller gives up).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the TCP keep-alive interval (`None`: no keep-alive probes).
    pub fn with_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The host name or address this connector dials.
    pub fn host(&self) -> &str {
        self.host
    }

    /// The TCP port this connector dials.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The network stack this connector opens sockets on.
    pub fn stack(&self) -> Stack<'d> {
        self.stack
    }
}

fn to_embassy(d: Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_millis(d.as_millis())
}

impl Connector for EmbassyTcpConnector<'_> {
    type Transport<'a>
        = EmbassyTcpStream<'a>
    where
        Self: 'a;
    type Error = EmbassyTcpError;

    async fn connect(&mut self) -> Result<EmbassyTcpStream<'_>, EmbassyTcpError> {
        // Bounded by the client's connect timeout, like the rest.
        self.stack.wait_link_up().await;
        self.stack.wait_config_up().await;
        let addresses = self
            .stack
            .dns_query(self.host, DnsQueryType::A)
            .await
            .map_err(EmbassyTcpError::Dns)?;
        debug!("{} resolved to {} address(es)", self.host, addresses.len());

        let mut socket = TcpSocket::new(self.stack, self.rx_buffer, self.tx_buffer);
        socket.set_timeout(self.timeout.map(to_embassy));
        socket.set_keep_alive(self.keep_alive.map(to_embassy));

        let mut last_failure = None;
        for address in addresses {
            let remote = IpEndpoint::new(address, self.port);
            let dialled = match select(socket.connect(remote), self.stack.wait_link_down()).await {
                Either::First(result) => result,
                Either::Second(()) => {
                    debug!("network link down while dialling {}", remote);
                    socket.abort();
                    return Err(EmbassyTcpError::LinkDown);
                }
            };
            match dialled {
                Ok(()) => {
                    debug!("tcp connected to {}", remote);
                    return Ok(EmbassyTcpStream {
                        socket,
                        stack: self.stack,
                    });
                }
                Err(error) => {
                    debug!("tcp connect to {} failed: {:?}", remote, error);
                    // A refused or timed-out socket is closed again and can
                    // dial the next address.
                    socket.abort();
                    last_failure = Some(EmbassyTcpError::Connect { remote, error });
                }
            }
        }
        Err(last_failure.unwrap_or(EmbassyTcpError::NoAddress))
    }
}

/// Why an [`EmbassyTcpConnector`] could not open a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbassyTcpError {
    /// The DNS look-up failed (bad name, or no answer from the server).
    Dns(dns::Error),
    /// The DNS answer held no IPv4 address.
    NoAddress,
    /// The stack's link went down while the connection was being opened.
    LinkDown,
    /// The TCP connect failed; `remote` is the last address tried.
    Connect {
        /// The broker's address and port.
        remote: IpEndpoint,
        /// Refused (RST), timed out, no route, or the socket was busy.
        error: ConnectError,
    },
}

impl fmt::Display for EmbassyTcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbassyTcpError::Dns(dns::Error::InvalidName) => {
                f.write_str("DNS look-up failed: invalid host name")
            }
            EmbassyTcpError::Dns(dns::Error::NameTooLong) => {
                f.write_str("DNS look-up failed: host name too long")
            }
            EmbassyTcpError::Dns(dns::Error::Failed) => {
                f.write_str("DNS look-up failed: no answer from the DNS server")
            }
            EmbassyTcpError::NoAddress => f.write_str("DNS answer held no IPv4 address"),
            EmbassyTcpError::LinkDown => f.write_str("the network link went down while connecting"),
            EmbassyTcpError::Connect { remote, error } => match error {
                ConnectError::ConnectionReset => write!(f, "connection refused by {remote}"),
                ConnectError::TimedOut => write!(f, "connection to {remote} timed out"),
                ConnectError::NoRoute => write!(f, "no route to {remote}"),
                ConnectError::InvalidState => {
                    write!(f, "cannot connect to {remote}: socket busy")
                }
            },
        }
    }
}

impl core::error::Error for EmbassyTcpError {}

#[cfg(feature = "defmt")]
impl defmt::Format for EmbassyTcpError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            EmbassyTcpError::Dns(e) => defmt::write!(f, "DNS look-up failed: {}", e),
            EmbassyTcpError::NoAddress => defmt::write!(f, "DNS answer held no IPv4 address"),
            EmbassyTcpError::LinkDown => {
                defmt::write!(f, "the network link went down while connecting")
            }
            EmbassyTcpError::Connect { remote, error } => {
                defmt::write!(f, "cannot connect to {}: {}", remote, error)
            }
        }
    }
}

/// A TCP connection of an [`EmbassyTcpConnector`]: the socket, and the
/// stack whose link it watches (see the module documentation).
pub struct EmbassyTcpStream<'a> {
    socket: TcpSocket<'a>,
    stack: Stack<'a>,
}

impl<'a> EmbassyTcpStream<'a> {
    /// The socket (its state, addresses, or settings).
    pub fn socket(&mut self) -> &mut TcpSocket<'a> {
        &mut self.socket
    }
}

impl embedded_io_async::ErrorType for EmbassyTcpStream<'_> {
    type Error = embassy_net::tcp::Error;
}

/// Cancel-safe, as the socket's read and the link wait both are.
impl embedded_io_async::Read for EmbassyTcpStream<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match select(self.socket.read(buf), self.stack.wait_link_down()).await {
            Either::First(result) => result,
            Either::Second(()) => {
                debug!("network link down: tcp connection aborted");
                self.socket.abort();
                Err(embassy_net::tcp::Error::ConnectionReset)
            }
        }
    }
}

impl embedded_io_async::Write for EmbassyTcpStream<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.socket.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.socket.flush().await
    }
}

/// A graceful TCP close: FIN once the data written so far is out (the
/// driver bounds the wait).
impl super::Transport for EmbassyTcpStream<'_> {
    async fn close(&mut self) {
        self.socket.close();
        let _ = self.socket.flush().await;
    }
}

#[cfg(test)]
mod tests {
    //! Two real embassy-net (smoltcp) stacks joined by an in-memory Ethernet
    //! wire: the connector under test on one, a listening `TcpSocket` on the
    //! other. The wire only carries frames; every TCP, ARP and RST comes from
    //! smoltcp itself.
    extern crate alloc;

    use super::*;
    use alloc::collections::VecDeque;
    use alloc::rc::Rc;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::task::{Context, Waker};
    use embassy_net::driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};
    use embassy_net::{Config, Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
    use embedded_io_async::{Read, Write};

    #[derive(Default)]
    struct Wire {
        frames: [VecDeque<Vec<u8>>; 2],
        wakers: [Option<Waker>; 2],
        /// The link of each end is down (the cable pulled there).
        unplugged: [bool; 2],
        link_wakers: [Option<Waker>; 2],
    }

    impl Wire {
        /// Pulls (or puts back) the cable at `end`.
        fn set_unplugged(&mut self, end: usize, unplugged: bool) {
            self.unplugged[end] = unplugged;
            if let Some(waker) = self.link_wakers[end].take() {
                waker.wake();
            }
        }
    }

    /// One end of the wire: receives `frames[end]`, sends to the other end.
    struct WireEnd {
        wire: Rc<RefCell<Wire>>,
        end: usize,
    }

    struct Frame(Vec<u8>);

    struct Send {
        wire: Rc<RefCell<Wire>>,
        to: usize,
    }

    impl RxToken for Frame {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
            f(&mut self.0)
        }
    }

    impl TxToken for Send {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0; len];
            let result = f(&mut frame);
            let mut wire = self.wire.borrow_mut();
            wire.frames[self.to].push_back(frame);
            if let Some(waker) = wire.wakers[self.to].take() {
                waker.wake();
            }
            result
        }
    }

    impl Driver for WireEnd {
        type RxToken<'a> = Frame;
        type TxToken<'a> = Send;

        fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Frame, Send)> {
            let mut wire = self.wire.borrow_mut();
            match wire.frames[self.end].pop_front() {
                Some(frame) => Some((Frame(frame), self.sender())),
                None => {
                    wire.wakers[self.end] = Some(cx.waker().clone());
                    None
                }
            }
        }

        fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<Send> {
            Some(self.sender())
        }

        fn link_state(&mut self, cx: &mut Context<'_>) -> LinkState {
            let mut wire = self.wire.borrow_mut();
            wire.link_wakers[self.end] = Some(cx.waker().clone());
            if wire.unplugged[self.end] {
                LinkState::Down
            } else {
                LinkState::Up
            }
        }

        fn capabilities(&self) -> Capabilities {
            let mut capabilities = Capabilities::default();
            capabilities.max_transmission_unit = 1514;
            capabilities
        }

        fn hardware_address(&self) -> HardwareAddress {
            HardwareAddress::Ethernet([0x02, 0, 0, 0, 0, self.end as u8 + 1])
        }
    }

    impl WireEnd {
        fn sender(&self) -> Send {
            Send {
                wire: self.wire.clone(),
                to: 1 - self.end,
            }
        }
    }

    fn config(last_octet: u8) -> Config {
        Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last_octet), 24),
            gateway: None,
            dns_servers: Default::default(),
        })
    }

    type StackAndRunner<'r> = (Stack<'r>, embassy_net::Runner<'r, WireEnd>);

    /// The client's stack (10.0.0.1, end 0) and the server's (10.0.0.2,
    /// end 1) on `wire`.
    fn stacks<'r>(
        wire: &Rc<RefCell<Wire>>,
        client: &'r mut StackResources<3>,
        server: &'r mut StackResources<3>,
    ) -> (StackAndRunner<'r>, StackAndRunner<'r>) {
        let end = |end| WireEnd {
            wire: wire.clone(),
            end,
        };
        (
            embassy_net::new(end(0), config(1), client, 1),
            embassy_net::new(end(1), config(2), server, 2),
        )
    }

    /// A fresh wire with the client's and the server's stacks on it (see
    /// [`stacks`]); their resources live in the caller's frame.
    macro_rules! wired {
        ($wire:ident, $client:ident, $client_runner:ident, $server:ident, $server_runner:ident) => {
            let $wire = Rc::new(RefCell::new(Wire::default()));
            let mut client_resources = StackResources::<3>::new();
            let mut server_resources = StackResources::<3>::new();
            #[allow(unused_mut)]
            let (($client, mut $client_runner), ($server, mut $server_runner)) =
                stacks(&$wire, &mut client_resources, &mut server_resources);
        };
    }

    /// Accepts one connection on port 1883 and says nothing on it, for ever.
    async fn silent_server(stack: Stack<'_>) {
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.accept(1883).await.unwrap();
        core::future::pending::<()>().await;
    }

    /// Pulls the client's cable after `ms` milliseconds, then waits for ever.
    async fn unplug_after(wire: &RefCell<Wire>, ms: u64) {
        tokio::time::sleep(core::time::Duration::from_millis(ms)).await;
        wire.borrow_mut().set_unplugged(0, true);
        core::future::pending::<()>().await
    }

    /// Runs both stacks and the server until `client` is done: false when
    /// that takes over 10 s.
    async fn until_the_client_is_done(
        (client_runner, server_runner): (
            &mut embassy_net::Runner<'_, WireEnd>,
            &mut embassy_net::Runner<'_, WireEnd>,
        ),
        server: impl Future<Output = ()>,
        client: impl Future<Output = ()>,
    ) -> bool {
        let run = async {
            tokio::select! {
                _ = client_runner.run() => unreachable!(),
                _ = server_runner.run() => unreachable!(),
                _ = server => unreachable!(),
                () = client => {}
            }
        };
        tokio::time::timeout(core::time::Duration::from_secs(10), run)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn connects_carries_bytes_both_ways_reconnects_and_reports_refusal_and_bad_names() {
        wired! { wire, client_stack, client_runner, server_stack, server_runner }

        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut connector =
            EmbassyTcpConnector::new(client_stack, "10.0.0.2", 1883, &mut rx, &mut tx);

        let server = async {
            let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
            for reply in [b"pong", b"gnop"] {
                let mut socket = TcpSocket::new(server_stack, &mut rx, &mut tx);
                socket.accept(1883).await.unwrap();
                let mut got = [0u8; 4];
                socket.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"ping");
                socket.write_all(reply).await.unwrap();
                socket.flush().await.unwrap();
                // Wait for the client's close before dropping the buffers.
                while socket.read(&mut got).await.unwrap_or(0) != 0 {}
            }
        };

        let client = async {
            // An IPv4 literal needs no DNS server (none is configured).
            for expected in [b"pong", b"gnop"] {
                let mut transport = connector.connect().await.unwrap();
                transport.write_all(b"ping").await.unwrap();
                transport.flush().await.unwrap();
                let mut reply = [0u8; 4];
                transport.read_exact(&mut reply).await.unwrap();
                assert_eq!(&reply, expected);
                crate::transport::Transport::close(&mut transport).await;
            }

            // Nobody listens on 1884: the server's smoltcp answers RST.
            let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
            let mut refused =
                EmbassyTcpConnector::new(client_stack, "10.0.0.2", 1884, &mut rx, &mut tx);
            let err = refused.connect().await.err().unwrap();
            assert!(matches!(
                err,
                EmbassyTcpError::Connect {
                    error: ConnectError::ConnectionReset,
                    ..
                }
            ));
            assert_eq!(err.to_string(), "connection refused by 10.0.0.2:1884");

            // An empty label is rejected before any query leaves.
            let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
            let mut bad =
                EmbassyTcpConnector::new(client_stack, "broker..example", 1883, &mut rx, &mut tx);
            let err = bad.connect().await.err().unwrap();
            assert_eq!(err, EmbassyTcpError::Dns(dns::Error::InvalidName));
            assert_eq!(err.to_string(), "DNS look-up failed: invalid host name");
        };

        let both = async { tokio::join!(server, client) };
        let finished = tokio::time::timeout(core::time::Duration::from_secs(20), async {
            tokio::select! {
                _ = client_runner.run() => unreachable!(),
                _ = server_runner.run() => unreachable!(),
                _ = both => {}
            }
        })
        .await;
        assert!(finished.is_ok(), "the exchange did not finish within 20 s");
    }

    #[tokio::test]
    async fn a_read_fails_with_connection_reset_as_soon_as_the_link_goes_down() {
        wired! { wire, client_stack, client_runner, server_stack, server_runner }
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut connector =
            EmbassyTcpConnector::new(client_stack, "10.0.0.2", 1883, &mut rx, &mut tx);
        let server = silent_server(server_stack);
        let client = async {
            let mut transport = connector.connect().await.unwrap();
            let mut buf = [0u8; 16];
            let read = transport.read(&mut buf);
            let unplug = unplug_after(&wire, 50);
            let result = tokio::select! {
                r = read => r,
                () = unplug => unreachable!(),
            };
            assert_eq!(result, Err(embassy_net::tcp::Error::ConnectionReset));
            // A peer that is unreachable otherwise shows only when the
            // keepalive runs out; here the next connect waits for the link.
            wire.borrow_mut().set_unplugged(0, false);
        };
        let finished =
            until_the_client_is_done((&mut client_runner, &mut server_runner), server, client)
                .await;
        assert!(finished, "the read did not fail within 10 s of the unplug");
    }

    #[tokio::test]
    async fn a_connect_waits_for_the_link_and_a_dial_ends_as_soon_as_the_link_goes_down() {
        wired! { wire, client_stack, client_runner, server_stack, server_runner }
        let server = silent_server(server_stack);
        // The cable is out before the stacks start (tokio's select! polls
        // its branches in a random order: pulled inside the client, the
        // runner could have seen the link up first): nothing is dialled
        // until it is back, then the connect goes through at once.
        wire.borrow_mut().set_unplugged(0, true);
        let client = async {
            let millis = core::time::Duration::from_millis;
            let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
            let mut connector =
                EmbassyTcpConnector::new(client_stack, "10.0.0.2", 1883, &mut rx, &mut tx);
            {
                let connect = connector.connect();
                let mut connect = core::pin::pin!(connect);
                assert!(
                    tokio::time::timeout(millis(300), connect.as_mut())
                        .await
                        .is_err(),
                    "a connect with the link down must wait for it"
                );
                assert!(
                    wire.borrow().frames[1].is_empty(),
                    "nothing was sent while the link was down"
                );
                wire.borrow_mut().set_unplugged(0, false);
                let connected = tokio::time::timeout(millis(2_000), connect).await;
                assert!(
                    matches!(connected, Ok(Ok(_))),
                    "connected once the link was up"
                );
            }
            // A dial to a host that never answers (no ARP reply from
            // 10.0.0.3) is under way when the cable is pulled: it fails
            // then, not at the socket's 20 s timeout.
            let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
            let mut silent =
                EmbassyTcpConnector::new(client_stack, "10.0.0.3", 1883, &mut rx, &mut tx);
            let dial = silent.connect();
            let unplug = unplug_after(&wire, 200);
            let result = tokio::select! {
                r = dial => r.map(|_| ()),
                () = unplug => unreachable!(),
            };
            assert_eq!(result, Err(EmbassyTcpError::LinkDown));
        };
        let finished =
            until_the_client_is_done((&mut client_runner, &mut server_runner), server, client)
                .await;
        assert!(finished, "the connects did not finish within 10 s");
    }

    #[test]
    fn display_names_each_failure() {
        let remote = IpEndpoint::new(Ipv4Address::new(192, 0, 2, 7).into(), 1883);
        let cases = [
            (
                EmbassyTcpError::Dns(dns::Error::Failed),
                "DNS look-up failed: no answer from the DNS server",
            ),
            (
                EmbassyTcpError::NoAddress,
                "DNS answer held no IPv4 address",
            ),
            (
                EmbassyTcpError::LinkDown,
                "the network link went down while connecting",
            ),
            (
                EmbassyTcpError::Connect {
                    remote,
                    error: ConnectError::TimedOut,
                },
                "connection to 192.0.2.7:1883 timed out",
            ),
            (
                EmbassyTcpError::Connect {
                    remote,
                    error: ConnectError::NoRoute,
                },
                "no route to 192.0.2.7:1883",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
