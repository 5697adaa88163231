//! Frame + mask throughput and frame parsing: embermq-ws against tungstenite,
//! measured in the same run, for 64 B, 1 KiB and 64 KiB payloads.
//!
//! - `ws_mask_codec`: encode a masked client frame header and mask the
//!   payload into an output buffer (embermq-ws: `FrameHeader::encode` +
//!   `mask_copy` into a lent buffer; tungstenite: `Frame::format` into a
//!   reused `Vec`, its public codec).
//! - `ws_send`: the whole client send path into a null sink, fresh random
//!   mask per frame (embermq-ws: `send_msg` on a `WsConnection` driven by
//!   `embassy_futures::block_on`; tungstenite: `WebSocket::send`).
//! - `ws_parse`: the server receive path reading masked frames from memory:
//!   parse the header, unmask, deliver the payload (embermq-ws: `recv_msg`;
//!   tungstenite: `WebSocket::read`).
//!
//! After the criterion runs, a table of bytes/s and ratios is printed from
//! criterion's own estimates (run with `CARGO_TARGET_DIR` set, or from the
//! workspace's default target directory).

#![allow(missing_docs)]

use core::hint::black_box;
use core::time::Duration;
use std::io;

use criterion::{BenchmarkId, Criterion, Throughput};
use embermq_ws::frame::mask_copy;
use embermq_ws::{Buffers, ClientRole, Config, FrameHeader, Opcode, ServerRole, WsConnection};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader as TFrameHeader};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Bytes, Message};

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Discards writes; never has anything to read. Serves both libraries.
struct NullIo;

impl io::Read for NullIo {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}
impl io::Write for NullIo {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(black_box(b).len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl embedded_io_async::ErrorType for NullIo {
    type Error = embedded_io::ErrorKind;
}
impl embedded_io_async::Read for NullIo {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}
impl embedded_io_async::Write for NullIo {
    async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
        Ok(black_box(b).len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Reads the same bytes over and over (one masked frame, repeated).
struct CycleIo {
    data: Vec<u8>,
    pos: usize,
}

impl CycleIo {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let chunk = (self.data.len() - self.pos).min(buf.len() - n);
            buf[n..n + chunk].copy_from_slice(&self.data[self.pos..self.pos + chunk]);
            n += chunk;
            self.pos = (self.pos + chunk) % self.data.len();
        }
        n
    }
}
impl io::Read for CycleIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}
impl io::Write for CycleIo {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl embedded_io_async::ErrorType for CycleIo {
    type Error = embedded_io::ErrorKind;
}
impl embedded_io_async::Read for CycleIo {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(self.fill(buf))
    }
}
impl embedded_io_async::Write for CycleIo {
    async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
        Ok(b.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn payload(len: usize) -> &'static [u8] {
    Box::leak(
        (0..len)
            .map(|i| i as u8)
            .collect::<Vec<u8>>()
            .into_boxed_slice(),
    )
}

fn tungstenite_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

fn mask_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_mask_codec");
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = vec![0u8; size + 14];
        g.bench_with_input(BenchmarkId::new("embermq-ws", size), &data, |b, data| {
            b.iter(|| {
                let h = FrameHeader {
                    fin: true,
                    opcode: Opcode::Binary,
                    mask: Some(KEY),
                    payload_len: data.len() as u64,
                };
                let n = h.encode(&mut out).unwrap_or(0);
                let m = mask_copy(data, &mut out[n..], KEY, 0);
                black_box(&out[..n + m]);
            })
        });
        let mut vec = Vec::with_capacity(size + 14);
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &data, |b, data| {
            b.iter(|| {
                vec.clear();
                let header = TFrameHeader {
                    opcode: OpCode::Data(Data::Binary),
                    mask: Some(KEY),
                    ..TFrameHeader::default()
                };
                Frame::from_payload(header, Bytes::from_static(data))
                    .format(&mut vec)
                    .unwrap();
                black_box(&vec);
            })
        });
    }
    g.finish();
}

fn send_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_send");
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 16 * 1024]);
        let mut conn = WsConnection::from_upgraded(
            NullIo,
            ClientRole(StdRng::seed_from_u64(1)),
            Buffers {
                rx: &mut rx,
                tx: &mut tx,
            },
            0,
            Config::default(),
        )
        .unwrap();
        g.bench_with_input(BenchmarkId::new("embermq-ws", size), &data, |b, data| {
            b.iter(|| {
                embassy_futures::block_on(conn.send_msg(data, Opcode::Binary, true)).unwrap();
            })
        });
        let mut ws = WebSocket::from_raw_socket(NullIo, Role::Client, Some(tungstenite_config()));
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &data, |b, data| {
            b.iter(|| {
                ws.send(Message::Binary(Bytes::from_static(data))).unwrap();
            })
        });
    }
    g.finish();
}

fn parse_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_parse");
    for size in SIZES {
        let data = payload(size);
        let header = FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: Some(KEY),
            payload_len: size as u64,
        };
        let mut frame = vec![0u8; size + 14];
        let n = header.encode(&mut frame).unwrap();
        let m = mask_copy(data, &mut frame[n..], KEY, 0);
        frame.truncate(n + m);
        g.throughput(Throughput::Bytes(size as u64));

        let (mut rx, mut tx) = (vec![0u8; 16 * 1024], vec![0u8; 1024]);
        let mut conn = WsConnection::from_upgraded(
            CycleIo {
                data: frame.clone(),
                pos: 0,
            },
            ServerRole,
            Buffers {
                rx: &mut rx,
                tx: &mut tx,
            },
            0,
            Config::default(),
        )
        .unwrap();
        let mut buf = vec![0u8; size];
        g.bench_function(BenchmarkId::new("embermq-ws", size), |b| {
            b.iter(|| {
                let mut got = 0;
                loop {
                    let info = embassy_futures::block_on(conn.recv_msg(&mut buf[got..])).unwrap();
                    got += info.len;
                    if info.is_message_end() {
                        break;
                    }
                }
                black_box(&buf[..got]);
            })
        });
        let mut ws = WebSocket::from_raw_socket(
            CycleIo {
                data: frame.clone(),
                pos: 0,
            },
            Role::Server,
            Some(tungstenite_config()),
        );
        g.bench_function(BenchmarkId::new("tungstenite", size), |b| {
            b.iter(|| {
                black_box(ws.read().unwrap());
            })
        });
    }
    g.finish();
}

/// Mean time per iteration in ns from criterion's estimates, if present.
fn mean_ns(group: &str, lib: &str, size: usize) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("../target"));
    let path = target
        .join("criterion")
        .join(group)
        .join(lib)
        .join(size.to_string())
        .join("new/estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let mean = json.get(json.find("\"mean\"")?..)?;
    let at = mean.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let rest = mean.get(at..)?;
    let end = rest.find([',', '}'])?;
    rest.get(..end)?.trim().parse().ok()
}

fn print_table() {
    println!();
    println!(
        "| benchmark | payload | embermq-ws | tungstenite | throughput ratio embermq-ws : tungstenite |"
    );
    println!("|---|---:|---:|---:|---:|");
    for group in ["ws_mask_codec", "ws_send", "ws_parse"] {
        for size in SIZES {
            let (Some(ours), Some(theirs)) = (
                mean_ns(group, "embermq-ws", size),
                mean_ns(group, "tungstenite", size),
            ) else {
                println!("| {group} | {size} | (no estimate) | (no estimate) | |");
                continue;
            };
            let rate = |ns: f64| size as f64 / (ns * 1e-9) / (1024.0 * 1024.0 * 1024.0);
            println!(
                "| {group} | {size} B | {:.2} GiB/s | {:.2} GiB/s | {:.2}x |",
                rate(ours),
                rate(theirs),
                theirs / ours
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    mask_codec(&mut c);
    send_path(&mut c);
    parse_path(&mut c);
    c.final_summary();
    print_table();
}
