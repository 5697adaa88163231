//! The footprint probe: how much flash and static RAM the embermq stack
//! adds to a Cortex-M4F firmware, beyond the buffers the application lends.
//!
//! Built twice by `scripts/footprint` (opt-level "z", fat LTO, panic abort,
//! one codegen unit):
//!
//! - baseline (no features): lends the same buffers (MQTT receive and
//!   transmit, the outbox, the WebSocket frame buffers) to a dummy
//!   transport that reads into them and writes from them;
//! - `--features stack`: the whole stack in use on the same buffers and
//!   the same dummy transport: the embermq client (MQTT 5.0 with the 3.1.1
//!   fall-back chosen at run time, QoS 0/1/2, subscribe, reconnect with
//!   backoff, the outbox) over `embermq::transport::WsConnector`;
//! - `--features stack-v311`: the same without MQTT 5.0 (the sdk built
//!   without its `v5` feature: 3.1.1 only);
//! - `--features mqtt,v5`: the client alone, straight over the dummy
//!   transport (no WebSocket; informational, closest to coreMQTT's figure);
//! - `--features durable`: the same with the outbox also kept in flash
//!   (`embermq_board_app::FlashStore`, sequential-storage) on a stand-in
//!   NOR flash; its item buffer (1028 bytes) counts as lent.
//!
//! The difference of the two is what the stack costs: its code and
//! read-only data (flash) and its own state, the session tables and the
//! client state (static RAM). Stack usage at run time is not measured here.
//! The probe is never flashed; its transport, clock and RNG are stand-ins
//! whose values the optimiser cannot see (`core::hint::black_box`).
#![no_std]
#![no_main]
// `deny`, not `forbid`: cortex-m's `singleton!` allows its own unsafe block.
#![deny(unsafe_code)]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m::singleton;
use embedded_io_async::{ErrorType, Read, Write};

/// MQTT receive buffer (the largest packet accepted).
const MQTT_RX: usize = 2048;
/// MQTT transmit buffer (the largest packet sent).
const MQTT_TX: usize = 1024;
/// The outbox: queued and unacknowledged publishes.
const OUTBOX: usize = 4096;
/// WebSocket frame buffers, each.
const WS_BUF: usize = 1024;

/// The buffers an application lends, the same in both builds.
struct Lent {
    rx: &'static mut [u8],
    tx: &'static mut [u8],
    outbox: &'static mut [u8],
    ws_rx: &'static mut [u8],
    ws_tx: &'static mut [u8],
}

fn lend() -> Option<Lent> {
    Some(Lent {
        rx: singleton!(: [u8; MQTT_RX] = [0; MQTT_RX])?,
        tx: singleton!(: [u8; MQTT_TX] = [0; MQTT_TX])?,
        outbox: singleton!(: [u8; OUTBOX] = [0; OUTBOX])?,
        ws_rx: singleton!(: [u8; WS_BUF] = [0; WS_BUF])?,
        ws_tx: singleton!(: [u8; WS_BUF] = [0; WS_BUF])?,
    })
}

/// A byte stream standing in for TCP: reads bytes the optimiser cannot
/// predict, writes into a black box.
struct DummyIo;

impl ErrorType for DummyIo {
    type Error = core::convert::Infallible;
}

impl Read for DummyIo {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = black_box(buf.len());
        for byte in buf.iter_mut().take(n) {
            *byte = black_box(0);
        }
        Ok(n)
    }
}

#[cfg(feature = "mqtt")]
impl embermq::transport::Transport for DummyIo {}

impl Write for DummyIo {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        black_box(buf);
        Ok(black_box(buf.len()))
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Polls `future` to completion, sleeping between polls (no executor).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        cortex_m::asm::wfe();
    }
}

#[cfg(not(feature = "mqtt"))]
fn run(lent: Lent) -> ! {
    let Lent {
        rx,
        tx,
        outbox,
        ws_rx,
        ws_tx,
    } = lent;
    block_on(async {
        let mut io = DummyIo;
        loop {
            let _ = io.read(black_box(&mut *rx)).await;
            let _ = io.write_all(black_box(&*tx)).await;
            black_box(&mut *outbox);
            black_box(&mut *ws_rx);
            black_box(&mut *ws_tx);
        }
    })
}

#[cfg(feature = "mqtt")]
mod stack;
#[cfg(feature = "mqtt")]
use stack::run;

#[cortex_m_rt::entry]
fn main() -> ! {
    match lend() {
        Some(lent) => run(lent),
        None => halt(),
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfe();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt()
}
