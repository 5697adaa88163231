//! Cancel-safety of the reader while it answers pings and echoes a Close
//! (RFC 6455 §5.5.1, §5.5.2), with every receive future dropped at every
//! await point.
//!
//! The transport here is a fault injector: writes stall (return `Pending`
//! once) and then take one byte, reads stall once before each scripted
//! chunk. No real peer can make a socket stall at a chosen poll; the
//! tungstenite test in `tests/tungstenite_peer.rs` does the same over real
//! TCP with a full send buffer.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use rand::SeedableRng;

use super::*;
use crate::frame::{FrameHeader, apply_mask};

/// Scripted reads and recorded writes that stall: each read and each write
/// is `Pending` on its first poll; a write then takes one byte.
struct Stalling {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl embedded_io_async::ErrorType for Stalling {
    type Error = embedded_io::ErrorKind;
}

/// `Pending` once (waking itself), then ready.
async fn stall() {
    let mut stalled = false;
    core::future::poll_fn(|cx| {
        if stalled {
            Poll::Ready(())
        } else {
            stalled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

impl Read for Stalling {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        stall().await;
        Ok(super::tests::read_chunk(&mut self.reads, buf))
    }
}

impl Write for Stalling {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        stall().await;
        let n = buf.len().min(1);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        stall().await;
        Ok(())
    }
}

/// An unmasked server frame.
fn frame(op: Opcode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin: true,
        opcode: op,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut out = alloc::vec![0u8; 14];
    let n = h.encode(&mut out).unwrap();
    out.truncate(n);
    out.extend_from_slice(payload);
    out
}

/// Decodes everything the client wrote as whole masked frames; panics on a
/// partial or unmasked frame.
fn whole_frames(mut bytes: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes)
            .expect("a valid frame header")
            .unwrap_or_else(|| panic!("partial frame header at the end: {bytes:?}"));
        let len = h.payload_len as usize;
        assert!(
            bytes.len() >= n + len,
            "partial frame at the end: {bytes:?}"
        );
        let mut p = bytes[n..n + len].to_vec();
        apply_mask(&mut p, h.mask.expect("client frames are masked"), 0);
        assert!(h.fin);
        out.push((h.opcode, p));
        bytes = &bytes[n + len..];
    }
    out
}

/// Polls `fut` at most `polls` times with a no-op waker; `None` if it did
/// not finish (the future is then dropped).
fn poll_at_most<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Poll budgets for futures dropped part-way: `polls`, then a single
/// poll (usually a stalled read), by turns, up to a bound.
fn alternating(polls: usize) -> impl Iterator<Item = usize> {
    (0..100_000).map(move |attempt| if attempt % 2 == 0 { polls } else { 1 })
}

type Conn<'b> = WsConnection<'b, Stalling, ClientRole<rand::rngs::StdRng>>;

fn conn<'b>(rx: &'b mut [u8], tx: &'b mut [u8], reads: Vec<Vec<u8>>) -> Conn<'b> {
    let io = Stalling {
        reads: reads.into(),
        written: Vec::new(),
    };
    WsConnection::from_upgraded(
        io,
        ClientRole(rand::rngs::StdRng::seed_from_u64(9)),
        Buffers { rx, tx },
        0,
        Config::default(),
    )
    .unwrap()
}

/// The peer's script: data, pings (two back to back), more data, a last
/// ping, a last data frame. Returns the reads, the data and the pings.
fn ping_script() -> (Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>) {
    let pings: Vec<Vec<u8>> = alloc::vec![
        b"first".to_vec(),
        alloc::vec![0xAB; 125],
        b"".to_vec(),
        b"last ping".to_vec(),
    ];
    let reads = alloc::vec![
        frame(Opcode::Binary, b"abc"),
        frame(Opcode::Ping, &pings[0]),
        [
            frame(Opcode::Ping, &pings[1]),
            frame(Opcode::Ping, &pings[2])
        ]
        .concat(),
        frame(Opcode::Binary, b"defgh"),
        [frame(Opcode::Ping, &pings[3]), frame(Opcode::Binary, b"ij")].concat(),
    ];
    (reads, b"abcdefghij".to_vec(), pings)
}

/// Receives with every future polled at most `polls` times and dropped,
/// until the transport ends; after each drop, a data write (`writes`)
/// goes out whole. Returns the data received and how the reading ended.
fn receive_dropping(
    c: &mut Conn<'_>,
    polls: usize,
    writes: bool,
) -> (Vec<u8>, Error<embedded_io::ErrorKind>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 3];
    let mut written = 0u8;
    for attempt in 0usize.. {
        assert!(attempt < 100_000, "no progress with {polls} polls per read");
        // Each round: a future dropped before its first poll, one after a
        // single poll (usually the stalled read), one after `polls`.
        let budget = [0, 1, polls][attempt % 3];
        match poll_at_most(c.recv_msg(&mut buf), budget) {
            Some(Ok(info)) if info.opcode == Opcode::Close => return (data, Error::NotConnected),
            Some(Ok(info)) => data.extend_from_slice(&buf[..info.len]),
            Some(Err(e)) => return (data, e),
            None if writes && written < 3 && budget == polls => {
                written += 1;
                embassy_futures::block_on(c.send_msg(&[written; 2], Opcode::Binary, true)).unwrap();
            }
            None => {}
        }
    }
    unreachable!()
}

#[test]
fn rfc6455_5_5_2_ping_answered_with_same_payload_when_read_is_dropped() {
    for polls in 2..60 {
        for writes in [false, true] {
            let (reads, expect_data, pings) = ping_script();
            let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
            let mut c = conn(&mut rx, &mut tx, reads);
            let (data, end) = receive_dropping(&mut c, polls, writes);
            assert_eq!(data, expect_data, "polls {polls}: data lost");
            assert!(
                matches!(end, Error::UnexpectedEof),
                "polls {polls}: {end:?}"
            );
            let sent = whole_frames(&c.inner_mut().written);
            let pongs: Vec<Vec<u8>> = sent
                .iter()
                .filter(|(op, _)| *op == Opcode::Pong)
                .map(|(_, p)| p.clone())
                .collect();
            assert_eq!(pongs, pings, "polls {polls}, writes {writes}");
            let data_out: Vec<Vec<u8>> = sent
                .iter()
                .filter(|(op, _)| *op == Opcode::Binary)
                .map(|(_, p)| p.clone())
                .collect();
            let expect_out: Vec<Vec<u8>> = if writes {
                (1..=3u8).map(|i| alloc::vec![i; 2]).collect()
            } else {
                Vec::new()
            };
            assert_eq!(data_out.len(), expect_out.len().min(data_out.len()));
            assert_eq!(data_out[..], expect_out[..data_out.len()], "polls {polls}");
        }
    }
}

/// The client wrote the pong for `p` and the echo of a Close 1001, whole.
fn assert_pong_then_echo_1001(c: &mut Conn<'_>, polls: usize) {
    let sent = whole_frames(&c.inner_mut().written);
    assert_eq!(
        sent,
        alloc::vec![
            (Opcode::Pong, b"p".to_vec()),
            (Opcode::Close, 1001u16.to_be_bytes().to_vec())
        ],
        "polls {polls}"
    );
}

#[test]
fn rfc6455_5_5_1_close_echoed_whole_when_read_is_dropped() {
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"going away");
    for polls in 2..60 {
        let reads = alloc::vec![
            frame(Opcode::Binary, b"abcd"),
            [frame(Opcode::Ping, b"p"), frame(Opcode::Close, &close)].concat(),
        ];
        let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
        let mut c = conn(&mut rx, &mut tx, reads);
        let (data, end) = receive_dropping(&mut c, polls, false);
        assert_eq!(data, b"abcd", "polls {polls}");
        assert!(matches!(end, Error::NotConnected), "polls {polls}: {end:?}");
        assert!(c.is_closed(), "polls {polls}");
        assert_pong_then_echo_1001(&mut c, polls);
    }
}

#[test]
fn dropped_data_write_mid_frame_fails_the_connection_without_a_pong_inside() {
    let reads = alloc::vec![frame(Opcode::Ping, b"p")];
    let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
    let mut c = conn(&mut rx, &mut tx, reads);
    // Dropped before a byte went out: nothing is torn.
    assert!(poll_at_most(c.send_msg(b"abcdef", Opcode::Binary, true), 1).is_none());
    assert!(c.inner_mut().written.is_empty());
    // Dropped after 5 of its 12 bytes (each write stalls once, then
    // takes one byte).
    assert!(poll_at_most(c.send_msg(b"abcdef", Opcode::Binary, true), 6).is_none());
    assert_eq!(c.inner_mut().written.len(), 5);
    let e = embassy_futures::block_on(c.recv_msg(&mut [0u8; 4])).unwrap_err();
    assert!(matches!(e, Error::NotConnected), "{e:?}");
    assert!(!c.is_open());
    assert_eq!(
        c.inner_mut().written.len(),
        5,
        "no pong inside the torn frame"
    );
}

#[test]
fn rfc6455_7_1_1_close_dropped_at_every_await_sends_one_whole_close() {
    let mut echo = 1000u16.to_be_bytes().to_vec();
    echo.extend_from_slice(b"ok");
    for polls in 2..40 {
        let reads = alloc::vec![
            frame(Opcode::Binary, b"late"),
            [frame(Opcode::Ping, b"p"), frame(Opcode::Close, &echo)].concat(),
        ];
        let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
        let mut c = conn(&mut rx, &mut tx, reads);
        let mut done = None;
        for budget in alternating(polls) {
            let close = c.close(1000, "bye", core::future::pending());
            if let Some(r) = poll_at_most(close, budget) {
                done = Some(r);
                break;
            }
        }
        done.expect("close finished").unwrap();
        assert!(c.is_closed(), "polls {polls}");
        let sent = whole_frames(&c.inner_mut().written);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        assert_eq!(
            sent,
            alloc::vec![(Opcode::Close, close)],
            "polls {polls}: one Close, no pong after it"
        );
    }
}

#[test]
fn rfc6455_5_5_2_pong_replaces_a_data_frame_dropped_before_its_first_byte() {
    let reads = alloc::vec![frame(Opcode::Ping, &[0x5A; 125])];
    let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
    let mut c = conn(&mut rx, &mut tx, reads);
    // Staged in the transmit buffer, dropped at the stalled first write.
    assert!(poll_at_most(c.send_msg(&[1; 100], Opcode::Binary, true), 1).is_none());
    assert!(c.inner_mut().written.is_empty());
    // The pong is built where the data frame was; the data never goes out.
    let e = embassy_futures::block_on(c.recv_msg(&mut [0u8; 4])).unwrap_err();
    assert!(matches!(e, Error::UnexpectedEof), "{e:?}");
    let sent = whole_frames(&c.inner_mut().written);
    assert_eq!(sent, alloc::vec![(Opcode::Pong, alloc::vec![0x5A; 125])]);
}

#[test]
fn rfc6455_7_1_6_close_code_and_reason_reported_whole_after_dropped_reads() {
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"going away, for a while");
    for polls in 2..40 {
        let reads = alloc::vec![[frame(Opcode::Ping, b"p"), frame(Opcode::Close, &close)].concat()];
        let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF]);
        let mut c = conn(&mut rx, &mut tx, reads);
        let mut buf = [0u8; 64];
        let mut reported = None;
        for budget in alternating(polls) {
            if let Some(r) = poll_at_most(c.recv_msg(&mut buf), budget) {
                reported = Some(r.unwrap());
                break;
            }
        }
        let info = reported.expect("the Close was reported");
        assert_eq!(info.opcode, Opcode::Close, "polls {polls}");
        assert_eq!(&buf[..info.len], &close[..], "polls {polls}");
        let e = embassy_futures::block_on(c.recv_msg(&mut buf)).unwrap_err();
        assert!(matches!(e, Error::NotConnected), "polls {polls}: {e:?}");
        assert_pong_then_echo_1001(&mut c, polls);
    }
}
