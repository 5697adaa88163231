//! Fuzzes the WebSocket frame reader: the header codec on its own, and a
//! whole connection (client or server role) reading arbitrary bytes split
//! into arbitrary reads, into receive buffers of arbitrary sizes. Nothing
//! may panic, hang, or deliver more bytes than asked for.
#![no_main]

use std::collections::VecDeque;

use embermq_ws::{Buffers, ClientRole, Config, Error, FrameHeader, ServerRole, WsConnection};
use libfuzzer_sys::fuzz_target;

/// Serves the fuzz input as reads of the given sizes, then EOF; swallows
/// writes.
struct Input {
    reads: VecDeque<Vec<u8>>,
}

impl embedded_io_async::ErrorType for Input {
    type Error = embedded_io::ErrorKind;
}
impl embedded_io_async::Read for Input {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(mut chunk) = self.reads.pop_front() else {
            return Ok(0);
        };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        if n < chunk.len() {
            self.reads.push_front(chunk.split_off(n));
        }
        Ok(n)
    }
}
impl embedded_io_async::Write for Input {
    async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
        Ok(b.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A counter, not a CSPRNG: fuzzing needs determinism, not secrecy.
struct Counter(u32);
impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(747796405).wrapping_add(2891336453);
        self.0
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u32() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Counter {}

fn drive<M: embermq_ws::Role>(conn: &mut WsConnection<'_, Input, M>, buf_sizes: &[u8]) {
    let mut buf = [0u8; 300];
    for i in 0..10_000usize {
        let size = usize::from(buf_sizes.get(i % buf_sizes.len().max(1)).copied().unwrap_or(64));
        let want = size.min(buf.len());
        match embassy_futures::block_on(conn.recv_msg(&mut buf[..want])) {
            Ok(info) => assert!(info.len <= want),
            Err(Error::NotConnected) => return,
            // An empty buffer while payload waits is the caller's mistake,
            // not the connection's: it stays usable (and is asked again
            // with another size).
            Err(Error::EmptyReceiveBuffer { remaining }) => {
                assert!(want == 0 && remaining > 0);
            }
            Err(_) => {
                // After any failure the connection reports NotConnected.
                assert!(matches!(
                    embassy_futures::block_on(conn.recv_msg(&mut buf)),
                    Err(Error::NotConnected)
                ));
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Header codec: a decoded header re-encodes to one that decodes equal.
    if let Ok(Some((h, n))) = FrameHeader::decode(data) {
        assert!((2..=14).contains(&n));
        let mut out = [0u8; 14];
        let m = h.encode(&mut out).expect("decoded header re-encodes");
        assert_eq!(FrameHeader::decode(&out[..m]), Ok(Some((h, m))));
    }
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(control & 0x0F) + 1;
    let (sizes, stream) = rest.split_at(split.min(rest.len()));
    let read_len = usize::from(control >> 4) * 7 + 1;
    let reads = stream.chunks(read_len).map(<[u8]>::to_vec).collect();
    let cfg = Config {
        max_message_len: 1000,
        mqtt: control & 1 == 1,
    };
    let (mut rx, mut tx) = ([0u8; 256], [0u8; embermq_ws::MIN_TX_BUF]);
    let bufs = Buffers {
        rx: &mut rx,
        tx: &mut tx,
    };
    let io = Input { reads };
    if control & 2 == 0 {
        let mut c = WsConnection::from_upgraded(io, ClientRole(Counter(7)), bufs, 0, cfg).unwrap();
        drive(&mut c, sizes);
    } else {
        let mut c = WsConnection::from_upgraded(io, ServerRole, bufs, 0, cfg).unwrap();
        drive(&mut c, sizes);
    }
});
