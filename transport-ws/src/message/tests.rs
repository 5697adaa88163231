//! These tests script the server with hand-built frames: an in-memory
//! fault injector for byte sequences no real server library will send.
use super::*;
use crate::frame::{FrameHeader, apply_mask};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use rand::SeedableRng;

/// Takes the next scripted chunk (or as much of it as fits `buf`; the
/// rest stays first in line) into `buf`: 0 once the script is over.
pub(super) fn read_chunk(reads: &mut VecDeque<Vec<u8>>, buf: &mut [u8]) -> usize {
    let Some(mut chunk) = reads.pop_front() else {
        return 0;
    };
    let n = chunk.len().min(buf.len());
    buf[..n].copy_from_slice(&chunk[..n]);
    if n < chunk.len() {
        reads.push_front(chunk.split_off(n));
    }
    n
}

/// Reads come from scripted chunks (one chunk per read, EOF after);
/// writes are recorded.
struct Script {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}
impl embedded_io_async::ErrorType for Script {
    type Error = embedded_io::ErrorKind;
}
impl Read for Script {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(read_chunk(&mut self.reads, buf))
    }
}
impl Write for Script {
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
}

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin,
        opcode: Opcode::from_bits(op).unwrap_or(Opcode::Binary),
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut out = alloc::vec![0u8; 14];
    let n = h.encode(&mut out).unwrap();
    out.truncate(n);
    out[0] = (out[0] & 0xF0) | op;
    out.extend_from_slice(payload);
    out
}

/// Splits what the client wrote into (opcode, fin, unmasked payload),
/// checking every frame is masked (§5.3).
fn sent_frames(mut bytes: &[u8]) -> Vec<(Opcode, bool, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().unwrap();
        let len = h.payload_len as usize;
        let mut p = bytes[n..n + len].to_vec();
        apply_mask(&mut p, h.mask.expect("client frames are masked"), 0);
        out.push((h.opcode, h.fin, p));
        bytes = &bytes[n + len..];
    }
    out
}

struct Fixture {
    rx: [u8; 256],
    tx: [u8; MIN_TX_BUF],
}

fn client<'b>(
    fx: &'b mut Fixture,
    reads: Vec<Vec<u8>>,
    cfg: Config,
) -> WsConnection<'b, Script, ClientRole<rand::rngs::StdRng>> {
    let io = Script {
        reads: reads.into(),
        written: Vec::new(),
    };
    let bufs = Buffers {
        rx: &mut fx.rx,
        tx: &mut fx.tx,
    };
    WsConnection::from_upgraded(
        io,
        ClientRole(rand::rngs::StdRng::seed_from_u64(1)),
        bufs,
        0,
        cfg,
    )
    .unwrap()
}

fn fx() -> Fixture {
    Fixture {
        rx: [0; 256],
        tx: [0; MIN_TX_BUF],
    }
}

/// A server over `reads` (masked client frames).
fn server<'b>(
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    reads: Vec<Vec<u8>>,
) -> Result<WsConnection<'b, Script, ServerRole>, Error<embedded_io::ErrorKind>> {
    let io = Script {
        reads: reads.into(),
        written: Vec::new(),
    };
    WsConnection::from_upgraded(io, ServerRole, Buffers { rx, tx }, 0, Config::default())
}

fn run<F: Future>(f: F) -> F::Output {
    embassy_futures::block_on(f)
}

/// Receives until an error, returning the data and the error.
fn drain(
    c: &mut WsConnection<'_, Script, ClientRole<rand::rngs::StdRng>>,
) -> (Vec<u8>, Error<embedded_io::ErrorKind>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match run(c.recv_msg(&mut buf)) {
            Ok(info) if info.opcode == Opcode::Close => return (data, Error::NotConnected),
            Ok(info) => data.extend_from_slice(&buf[..info.len]),
            Err(e) => return (data, e),
        }
    }
}

fn assert_failed_with(reads: Vec<Vec<u8>>, cfg: Config, expect: ProtocolError, close_code: u16) {
    let mut f = fx();
    let mut c = client(&mut f, reads, cfg);
    let (_, e) = drain(&mut c);
    assert!(matches!(e, Error::Protocol(p) if p == expect), "{e:?}");
    let sent = sent_frames(&c.inner_mut().written);
    let last = sent.last().unwrap();
    assert_eq!(last.0, Opcode::Close);
    assert_eq!(&last.2[..], &close_code.to_be_bytes());
    assert!(matches!(
        run(c.recv_msg(&mut [0; 4])),
        Err(Error::NotConnected)
    ));
}

#[test]
fn rfc6455_5_1_masked_server_frame_rejected() {
    let masked = alloc::vec![0x82, 0x81, 1, 2, 3, 4, 0x55];
    assert_failed_with(
        alloc::vec![masked],
        Config::default(),
        ProtocolError::MaskedFrameFromServer,
        1002,
    );
}

#[test]
fn rfc6455_5_4_continuation_without_start_rejected() {
    assert_failed_with(
        alloc::vec![frame(true, 0, b"x")],
        Config::default(),
        ProtocolError::ContinuationWithoutStart,
        1002,
    );
}

#[test]
fn rfc6455_5_4_data_frame_inside_fragmented_message_rejected() {
    let reads = alloc::vec![frame(false, 2, b"a"), frame(true, 2, b"b")];
    assert_failed_with(
        reads,
        Config::default(),
        ProtocolError::DataFrameInsideFragmentedMessage,
        1002,
    );
}

#[test]
fn rfc6455_8_1_invalid_utf8_across_fragments_closes_1007() {
    // "κ" is CE BA; split it across fragments and break the second byte.
    let reads = alloc::vec![frame(false, 1, b"ok\xCE"), frame(true, 0, b"\x41")];
    assert_failed_with(reads, Config::default(), ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rfc6455_8_1_truncated_utf8_at_message_end_closes_1007() {
    let reads = alloc::vec![frame(false, 1, b"ok"), frame(true, 0, b"\xCE")];
    assert_failed_with(reads, Config::default(), ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rfc6455_7_4_1_message_over_maximum_closes_1009() {
    let cfg = Config {
        max_message_len: 10,
        mqtt: false,
    };
    let reads = alloc::vec![frame(false, 2, b"123456"), frame(true, 0, b"789012")];
    assert_failed_with(reads, cfg, ProtocolError::MessageTooBig, 1009);
}

#[test]
fn mqtt_6_0_0_1_text_frame_closes_1003() {
    let cfg = Config {
        mqtt: true,
        ..Config::default()
    };
    assert_failed_with(
        alloc::vec![frame(true, 1, b"hi")],
        cfg,
        ProtocolError::TextFrameInMqtt,
        1003,
    );
}

#[test]
fn rfc6455_5_2_reserved_opcode_and_rsv_bits_close_1002() {
    assert_failed_with(
        alloc::vec![alloc::vec![0x83, 0]],
        Config::default(),
        ProtocolError::ReservedOpcode(3),
        1002,
    );
    assert_failed_with(
        alloc::vec![alloc::vec![0xC2, 0]],
        Config::default(),
        ProtocolError::ReservedBits,
        1002,
    );
}

#[test]
fn rfc6455_5_5_126_byte_ping_closes_1002() {
    let mut ping = alloc::vec![0x89, 126, 0, 126];
    ping.extend_from_slice(&[0u8; 126]);
    assert_failed_with(
        alloc::vec![ping],
        Config::default(),
        ProtocolError::ControlFrameTooLong,
        1002,
    );
}

#[test]
fn rfc6455_5_5_1_close_with_one_byte_payload_rejected() {
    assert_failed_with(
        alloc::vec![frame(true, 8, b"\x03")],
        Config::default(),
        ProtocolError::InvalidClosePayload,
        1002,
    );
    assert_failed_with(
        alloc::vec![frame(true, 8, &1005u16.to_be_bytes())],
        Config::default(),
        ProtocolError::InvalidClosePayload,
        1002,
    );
}

#[test]
fn rfc6455_5_5_2_ping_between_fragments_answered_with_same_payload() {
    let reads = alloc::vec![
        frame(false, 2, b"abc"),
        frame(true, 9, b"are you there"),
        frame(true, 10, b"unsolicited pong"),
        frame(true, 0, b"def"),
    ];
    let mut f = fx();
    let mut c = client(&mut f, reads, Config::default());
    let mut buf = [0u8; 16];
    let a = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!(
        (&buf[..a.len], a.fin, a.opcode),
        (&b"abc"[..], false, Opcode::Binary)
    );
    let b = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!(
        (&buf[..b.len], b.fin, b.opcode),
        (&b"def"[..], true, Opcode::Binary)
    );
    assert!(b.is_message_end());
    let sent = sent_frames(&c.inner_mut().written);
    assert_eq!(
        sent,
        alloc::vec![(Opcode::Pong, true, b"are you there".to_vec())]
    );
}

#[test]
fn recv_into_empty_buffer_is_an_error_not_a_spin() {
    let reads = alloc::vec![frame(true, 2, b"0123456789"), frame(true, 2, b"")];
    let mut f = fx();
    let mut c = client(&mut f, reads, Config::default());
    let e = run(c.recv_msg(&mut [])).unwrap_err();
    assert!(
        matches!(e, Error::EmptyReceiveBuffer { remaining: 10 }),
        "{e:?}"
    );
    assert_eq!(
        alloc::format!("{e}"),
        "recv_msg given an empty buffer while 10 payload bytes wait"
    );
    // Nothing was lost and the connection is still usable.
    let mut buf = [0u8; 16];
    let i = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!(&buf[..i.len], b"0123456789");
    // An empty frame needs no room.
    let i = run(c.recv_msg(&mut [])).unwrap();
    assert_eq!((i.len, i.remaining, i.fin), (0, 0, true));
}

#[test]
fn recv_into_small_buffer_reports_remaining() {
    let reads = alloc::vec![frame(true, 2, b"0123456789")];
    let mut f = fx();
    let mut c = client(&mut f, reads, Config::default());
    let mut buf = [0u8; 4];
    let i = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!((i.len, i.remaining, i.fin), (4, 6, true));
    assert!(!i.is_message_end());
    let i = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!((i.len, i.remaining), (4, 6 - 4));
    let i = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!((&buf[..i.len], i.remaining), (&b"89"[..], 0));
}

#[test]
fn frames_split_one_byte_per_read_reassemble() {
    let mut bytes = frame(false, 1, "κόσ".as_bytes());
    bytes.extend(frame(true, 9, b"p"));
    bytes.extend(frame(true, 0, "με".as_bytes()));
    let reads = bytes.iter().map(|b| alloc::vec![*b]).collect();
    let mut f = fx();
    let mut c = client(&mut f, reads, Config::default());
    let (data, e) = drain(&mut c);
    assert_eq!(core::str::from_utf8(&data).unwrap(), "κόσμε");
    assert!(matches!(e, Error::UnexpectedEof), "{e:?}");
}

#[test]
fn rfc6455_5_5_1_close_echoed_then_not_connected() {
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"going away");
    let mut f = fx();
    let mut c = client(
        &mut f,
        alloc::vec![frame(true, 8, &payload)],
        Config::default(),
    );
    let mut buf = [0u8; 32];
    let i = run(c.recv_msg(&mut buf)).unwrap();
    assert_eq!(i.opcode, Opcode::Close);
    assert_eq!(&buf[..i.len], &payload[..]);
    assert!(matches!(
        run(c.recv_msg(&mut buf)),
        Err(Error::NotConnected)
    ));
    assert!(matches!(
        run(c.send_msg(b"x", Opcode::Binary, true)),
        Err(Error::NotConnected)
    ));
    let sent = sent_frames(&c.inner_mut().written);
    assert_eq!(
        sent,
        alloc::vec![(Opcode::Close, true, 1001u16.to_be_bytes().to_vec())]
    );
}

#[test]
fn rfc6455_7_1_2_close_waits_for_peer_close() {
    let reads = alloc::vec![
        frame(true, 2, b"late data"),
        frame(true, 8, &1000u16.to_be_bytes())
    ];
    let mut f = fx();
    let mut c = client(&mut f, reads, Config::default());
    run(c.close(1000, "bye", core::future::pending())).unwrap();
    assert!(c.is_closed());
    let sent = sent_frames(&c.inner_mut().written);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].2[..2], &1000u16.to_be_bytes());
    assert_eq!(&sent[0].2[2..], b"bye");
}

#[test]
fn rfc6455_7_4_1_reserved_close_codes_never_sent() {
    for code in [1005u16, 1006, 1015, 999, 1004, 2000, 5000] {
        let mut f = fx();
        let mut c = client(&mut f, alloc::vec![], Config::default());
        assert!(matches!(
            run(c.close(code, "", core::future::pending())),
            Err(Error::InvalidCloseCode(_))
        ));
        assert!(c.inner_mut().written.is_empty());
    }
}

#[test]
fn close_times_out_when_peer_never_answers() {
    struct Silent;
    impl embedded_io_async::ErrorType for Silent {
        type Error = embedded_io::ErrorKind;
    }
    impl Read for Silent {
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            core::future::pending().await
        }
    }
    impl Write for Silent {
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
        async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
            Ok(b.len())
        }
    }
    let (mut rx, mut tx) = ([0u8; 256], [0u8; MIN_TX_BUF]);
    let mut c = WsConnection::from_upgraded(
        Silent,
        ClientRole(rand::rngs::StdRng::seed_from_u64(2)),
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        0,
        Config::default(),
    )
    .unwrap();
    let r = run(c.recv_msg_with_timeout(&mut [0; 8], core::future::ready(())));
    assert!(matches!(r, Err(Error::Timeout)));
    assert!(
        c.is_open(),
        "a timed-out receive leaves the connection usable"
    );
    let r = run(c.close(1000, "", core::future::ready(())));
    assert!(matches!(r, Err(Error::Timeout)));
}

#[test]
fn rfc6455_5_4_fragmented_send_and_large_frame_in_pieces() {
    let mut f = fx();
    let mut c = client(&mut f, alloc::vec![], Config::default());
    let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    assert!(matches!(
        run(c.send_msg(b"x", Opcode::Continuation, true)),
        Err(Error::InvalidSendSequence)
    ));
    run(c.send_msg(b"he", Opcode::Text, false)).unwrap();
    assert!(matches!(
        run(c.send_msg(b"x", Opcode::Binary, true)),
        Err(Error::InvalidSendSequence)
    ));
    run(c.send_msg(b"p", Opcode::Ping, true)).unwrap();
    run(c.send_msg(b"llo", Opcode::Continuation, true)).unwrap();
    run(c.send_msg(&big, Opcode::Binary, true)).unwrap();
    let sent = sent_frames(&c.inner_mut().written);
    assert_eq!(
        sent,
        alloc::vec![
            (Opcode::Text, false, b"he".to_vec()),
            (Opcode::Ping, true, b"p".to_vec()),
            (Opcode::Continuation, true, b"llo".to_vec()),
            (Opcode::Binary, true, big),
        ]
    );
}

#[test]
fn rfc6455_5_3_fresh_mask_per_frame() {
    let mut f = fx();
    let mut c = client(&mut f, alloc::vec![], Config::default());
    run(c.send_msg(b"a", Opcode::Binary, true)).unwrap();
    run(c.send_msg(b"a", Opcode::Binary, true)).unwrap();
    let w = &c.inner_mut().written;
    let (h1, n) = FrameHeader::decode(w).unwrap().unwrap();
    let (h2, _) = FrameHeader::decode(&w[n + 1..]).unwrap().unwrap();
    assert_ne!(h1.mask, h2.mask);
}

#[test]
fn rfc6455_5_1_unmasked_client_frame_rejected_by_server() {
    let (mut rx, mut tx) = ([0u8; 256], [0u8; MIN_TX_BUF]);
    let mut s = server(&mut rx, &mut tx, alloc::vec![frame(true, 2, b"x")]).unwrap();
    let r = run(s.recv_msg(&mut [0; 8]));
    assert!(matches!(
        r,
        Err(Error::Protocol(ProtocolError::UnmaskedFrameFromClient))
    ));
    // The server's close is unmasked.
    assert_eq!(s.inner_mut().written, alloc::vec![0x88, 0x02, 0x03, 0xEA]);
}

#[test]
fn rfc6455_5_5_small_buffers_refused_transmit_must_hold_a_whole_masked_control_frame() {
    let (mut rx, mut tx) = ([0u8; MIN_RX_BUF - 1], [0u8; MIN_TX_BUF]);
    let r = server(&mut rx, &mut tx, Vec::new());
    assert!(matches!(
        r,
        Err(Error::BufferTooSmall {
            required: MIN_RX_BUF
        })
    ));
    let (mut rx, mut tx) = ([0u8; MIN_RX_BUF], [0u8; MIN_TX_BUF - 1]);
    let r = server(&mut rx, &mut tx, Vec::new());
    assert!(matches!(
        r,
        Err(Error::BufferTooSmall {
            required: MIN_TX_BUF
        })
    ));
    assert_eq!(MIN_TX_BUF, 2 + 4 + 125);
}

#[test]
fn connection_keeps_no_control_frame_buffer_of_its_own() {
    // Pongs and Close frames are built in the lent transmit buffer and a
    // received Close stays in the receive buffer: what is left is
    // bookkeeping, well under one control frame of 125 bytes on a 64-bit
    // host (it held two of them before).
    let size = core::mem::size_of::<WsConnection<'static, Script, ServerRole>>()
        - core::mem::size_of::<Script>();
    assert!(size < 2 * MAX_CONTROL_PAYLOAD, "{size} bytes");
}

#[test]
fn rfc6455_5_5_2_server_answers_masked_ping_with_unmasked_pong_of_same_payload() {
    let key = [9, 8, 7, 6];
    let masked = |op: u8, payload: &[u8]| {
        let mut f = alloc::vec![0x80 | op, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        let mut p = payload.to_vec();
        apply_mask(&mut p, key, 0);
        f.extend_from_slice(&p);
        f
    };
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    let reads = alloc::vec![
        [masked(9, b"hello?"), masked(2, b"data")].concat(),
        masked(8, &close)
    ];
    let (mut rx, mut tx) = ([0u8; 256], [0u8; MIN_TX_BUF]);
    let mut s = server(&mut rx, &mut tx, reads).unwrap();
    let mut buf = [0u8; 16];
    let i = run(s.recv_msg(&mut buf)).unwrap();
    assert_eq!(&buf[..i.len], b"data");
    let i = run(s.recv_msg(&mut buf)).unwrap();
    assert_eq!((i.opcode, &buf[..i.len]), (Opcode::Close, &close[..]));
    let mut expect = alloc::vec![0x8A, 6];
    expect.extend_from_slice(b"hello?");
    expect.extend_from_slice(&[0x88, 2, 0x03, 0xE8]);
    assert_eq!(s.inner_mut().written, expect);
}

#[test]
fn stream_read_passes_over_empty_frames_and_ends_at_close() {
    let reads = alloc::vec![
        frame(true, 2, b""),
        frame(false, 2, b""),
        frame(true, 0, b"xy"),
        frame(true, 8, &1000u16.to_be_bytes()),
    ];
    let mut f = fx();
    let c = client(&mut f, reads, Config::default());
    let mut s = crate::WsStream::new(c);
    let mut buf = [0u8; 8];
    assert_eq!(
        run(embedded_io_async::Read::read(&mut s, &mut buf)).unwrap(),
        2
    );
    assert_eq!(&buf[..2], b"xy");
    assert_eq!(
        run(embedded_io_async::Read::read(&mut s, &mut buf)).unwrap(),
        0
    );
    assert_eq!(
        run(embedded_io_async::Read::read(&mut s, &mut buf)).unwrap(),
        0
    );
}
