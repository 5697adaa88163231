//! What the throughput bench sees on the wire, to explain its figures:
//! one extra run per client and case (never a measured one: tracing costs
//! CPU) records, from the MQTT packets each client writes and reads, how
//! full the windows were and how long a message took.
//!
//! By Little's law, throughput = messages in a window / time each spends
//! in it. So a client slower than another either keeps fewer publishes in
//! flight (it holds the window back: the driver's batching) or keeps them
//! in flight longer (each round trip through the broker takes longer).
//! [`Trace`] measures both sides of that, for two windows:
//!
//! - the in-flight window (QoS 1: PUBLISH written to PUBACK read): its mean
//!   occupancy over time and the mean time in flight;
//! - the application window (a PUBLISH written to the same message read
//!   back from the broker, any QoS): mean occupancy and round-trip time.
//!
//! Beside those:
//!
//! - held back: free in-flight slots while the application had handed the
//!   client messages it had not written yet (time-weighted mean). This is
//!   what a client's batching would cost: a slot free, a message waiting,
//!   and no write. It also counts the time the application task itself
//!   spends publishing (the bench runs it on the client's thread);
//! - stalls: gaps of 1 ms or more between acks or messages read (count,
//!   total, longest), and msg/s with that time taken out. On a shared
//!   machine a process that loses its core for a time slice (the broker's
//!   or the client's) stops the whole round trip for a few ms; mosquitto's
//!   websockets listener adds stalls of 100 ms (its main loop's timeout,
//!   when it does not wake for a frame). Both hit every client at random
//!   and are not the client's doing;
//! - writes and reads per message: embermq's are transport `write` /
//!   `read` calls under the driver (`WsStream`: a frame per write, a
//!   frame's payload per read, so one per packet on mosquitto, which sends
//!   each packet in its own frame), counted by a [`Traced`] connector around
//!   its `WsConnector`, so the driver is measured unchanged; the floor
//!   calls the same methods inline (socket writes and reads); rumqttc's
//!   come from its event loop's `Outgoing::Publish` and `Incoming::PubAck`
//!   / `Publish` events (it writes a packet when it reports it), so its
//!   write and read counts are not known.
//!
//! Not here: anything inside the driver (its wake-ups are visible only as
//! the reads and writes around them; a device build carries nothing of
//! this), and any effect on the measured runs.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::RefCell;
use core::time::Duration;
use std::collections::HashMap;
use std::time::Instant;

use embermq::transport::{Connector, Transport};

/// A time-weighted mean of a count (messages in a window).
#[derive(Default)]
struct Occupancy {
    now: u64,
    since: Option<Instant>,
    area: f64,
    span: f64,
}

impl Occupancy {
    fn set(&mut self, at: Instant, count: u64) {
        if let Some(since) = self.since {
            let dt = at.duration_since(since).as_secs_f64();
            self.area += self.now as f64 * dt;
            self.span += dt;
        }
        self.since = Some(at);
        self.now = count;
    }
    fn mean(&self) -> f64 {
        if self.span > 0.0 {
            self.area / self.span
        } else {
            0.0
        }
    }
}

/// Durations in microseconds, for a mean and percentiles.
#[derive(Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().map(|&v| f64::from(v)).sum::<f64>() / self.0.len() as f64
    }
    fn percentile(&mut self, p: f64) -> u32 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i]
    }
}

/// One traced run's records (see the module documentation).
#[derive(Default)]
pub(crate) struct Trace {
    start: Option<Instant>,
    end: Option<Instant>,
    /// QoS 1 publishes written and not yet acknowledged, by packet id.
    in_flight: HashMap<u16, Instant>,
    in_flight_occupancy: Occupancy,
    /// The in-flight window (`None`: QoS 0, no window).
    window: Option<u64>,
    /// Messages the application handed to the client and the client has
    /// not written yet.
    queued: u64,
    /// Free window slots while messages were queued for them: what the
    /// client held back.
    held_back: Occupancy,
    in_flight_time: Latencies,
    /// Publishes written, oldest first, not yet read back.
    not_back: VecDeque<Instant>,
    not_back_occupancy: Occupancy,
    round_trip: Latencies,
    /// Writes, and those that carried at least one PUBLISH.
    writes: u64,
    writes_with_publish: u64,
    publishes_written: u64,
    /// Reads that returned bytes, and reads since the last write.
    reads: u64,
    reads_since_write: u64,
    reads_between_writes: u64,
    /// The last ack or message read, and the gaps of 1 ms or more between
    /// them (stalls: nothing came back for that long).
    last_in: Option<Instant>,
    stalls: u64,
    stalled: Duration,
    longest_stall: Duration,
    /// Unparsed bytes of each direction.
    out_bytes: Vec<u8>,
    in_bytes: Vec<u8>,
}

/// A shared [`Trace`].
pub(crate) type Shared = Rc<RefCell<Trace>>;

impl Trace {
    /// Starts the clock (after SUBACK: the measured part of a run).
    /// `window`: the in-flight window (`None` at QoS 0).
    pub(crate) fn begin(&mut self, window: Option<usize>) {
        let now = Instant::now();
        *self = Trace {
            start: Some(now),
            window: window.map(|w| w as u64),
            ..Trace::default()
        };
        self.held_back.set(now, 0);
        self.in_flight_occupancy.set(now, 0);
        self.not_back_occupancy.set(now, 0);
    }

    fn running(&self) -> bool {
        self.start.is_some() && self.end.is_none()
    }

    /// Ends the record.
    pub(crate) fn finish(&mut self) {
        let now = Instant::now();
        let (a, b) = (self.in_flight.len() as u64, self.not_back.len() as u64);
        self.in_flight_occupancy.set(now, a);
        self.not_back_occupancy.set(now, b);
        self.held_back.set(now, 0);
        self.end = Some(now);
    }

    /// Updates [`Self::held_back`] after a change.
    fn held(&mut self, now: Instant) {
        let free = match self.window {
            Some(w) => w.saturating_sub(self.in_flight.len() as u64),
            None => u64::MAX,
        };
        self.held_back.set(now, free.min(self.queued));
    }

    /// The application handed the client a message to publish.
    pub(crate) fn app_publish(&mut self) {
        if !self.running() {
            return;
        }
        self.queued += 1;
        self.held(Instant::now());
    }

    /// A PUBLISH went out (`id`: its packet identifier at QoS 1/2).
    pub(crate) fn publish_out(&mut self, id: Option<u16>) {
        if !self.running() {
            return;
        }
        let now = Instant::now();
        self.publishes_written += 1;
        if let Some(id) = id {
            self.in_flight.insert(id, now);
            self.in_flight_occupancy
                .set(now, self.in_flight.len() as u64);
        }
        self.not_back.push_back(now);
        self.not_back_occupancy.set(now, self.not_back.len() as u64);
        self.queued = self.queued.saturating_sub(1);
        self.held(now);
    }

    /// Something came back: the time, a stall counted if it came late.
    fn arrived(&mut self) -> Instant {
        let now = Instant::now();
        if let Some(last) = self.last_in.replace(now)
            && now - last >= Duration::from_millis(1)
        {
            self.stalls += 1;
            self.stalled += now - last;
            self.longest_stall = self.longest_stall.max(now - last);
        }
        now
    }

    /// A PUBACK (or PUBCOMP) for `id` came in.
    pub(crate) fn ack_in(&mut self, id: u16) {
        if !self.running() {
            return;
        }
        let now = self.arrived();
        if let Some(at) = self.in_flight.remove(&id) {
            self.in_flight_time.push(now - at);
            self.in_flight_occupancy
                .set(now, self.in_flight.len() as u64);
            self.held(now);
        }
    }

    /// One of our messages came back from the broker.
    pub(crate) fn publish_in(&mut self) {
        if !self.running() {
            return;
        }
        let now = self.arrived();
        if let Some(at) = self.not_back.pop_front() {
            self.round_trip.push(now - at);
            self.not_back_occupancy.set(now, self.not_back.len() as u64);
        }
    }

    /// A write call, `publishes` of them in it.
    pub(crate) fn write(&mut self, publishes: u64) {
        if !self.running() {
            return;
        }
        self.writes += 1;
        if publishes > 0 {
            self.writes_with_publish += 1;
        }
        self.reads_between_writes += self.reads_since_write;
        self.reads_since_write = 0;
    }

    /// A read call that returned bytes.
    pub(crate) fn read(&mut self) {
        if !self.running() {
            return;
        }
        self.reads += 1;
        self.reads_since_write += 1;
    }

    /// Parses the MQTT bytes a client wrote: PUBLISHes and their ids.
    fn wrote(&mut self, bytes: &[u8]) {
        self.out_bytes.extend_from_slice(bytes);
        let mut publishes = 0;
        let mut taken = 0;
        while let Some((first, body, len)) = packet(&self.out_bytes[taken..]) {
            if first >> 4 == 3 {
                publishes += 1;
                let id = publish_id(first, body);
                taken += len;
                self.publish_out(id);
            } else {
                taken += len;
            }
        }
        self.out_bytes.drain(..taken);
        self.write(publishes);
    }

    /// Parses the MQTT bytes a client read: acks and messages.
    fn was_read(&mut self, bytes: &[u8]) {
        self.read();
        self.in_bytes.extend_from_slice(bytes);
        let mut taken = 0;
        while let Some((first, body, len)) = packet(&self.in_bytes[taken..]) {
            match first >> 4 {
                3 => self.publish_in(),
                4 | 7 if body.len() >= 2 => {
                    let id = u16::from_be_bytes([body[0], body[1]]);
                    self.ack_in(id);
                }
                _ => {}
            }
            taken += len;
        }
        self.in_bytes.drain(..taken);
    }

    /// The table row: in-flight and round-trip windows, writes and reads
    /// per message.
    pub(crate) fn row(&mut self) -> String {
        let n = self.publishes_written.max(1) as f64;
        let wall = match (self.start, self.end) {
            (Some(s), Some(e)) => (e - s).as_secs_f64(),
            _ => 0.0,
        };
        let per = |v: u64| {
            if self.writes == 0 && self.reads == 0 {
                "-".to_owned()
            } else {
                format!("{:.3}", v as f64 / n)
            }
        };
        let per_write = if self.writes_with_publish == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", n / self.writes_with_publish as f64)
        };
        let reads_per_write = if self.writes == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.2}",
                self.reads_between_writes as f64 / self.writes as f64
            )
        };
        let in_flight = if self.in_flight_time.0.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1} | {:.0} / {} / {}",
                self.in_flight_occupancy.mean(),
                self.in_flight_time.mean(),
                self.in_flight_time.percentile(0.5),
                self.in_flight_time.percentile(0.99)
            )
        };
        let in_flight = if in_flight == "-" {
            "- | -".to_owned()
        } else {
            in_flight
        };
        format!(
            "{:.0} | {:.0} | {in_flight} | {:.2} | {} / {:.1} / {:.1} | {:.1} | {:.0} / {} | {} | {} | {per_write} | {} | {reads_per_write}",
            n / wall.max(1e-9),
            n / (wall - self.stalled.as_secs_f64()).max(1e-9),
            self.held_back.mean(),
            self.stalls,
            self.stalled.as_secs_f64() * 1e3,
            self.longest_stall.as_secs_f64() * 1e3,
            self.not_back_occupancy.mean(),
            self.round_trip.mean(),
            self.round_trip.percentile(0.99),
            per(self.writes),
            per(self.writes_with_publish),
            per(self.reads),
        )
    }
}

/// The table header matching [`Trace::row`].
pub(crate) const HEADER: &str = "| case | client | msg/s | msg/s without stalls | in flight (mean) | time in flight µs mean / p50 / p99 \
     | held back (mean) | stalls ≥ 1 ms (count / ms / longest ms) | not yet back (mean) | round trip µs mean / p99 | writes / msg | writes with a PUBLISH / msg \
     | PUBLISHes per such write | reads / msg | reads between writes |\n\
     |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// The first complete MQTT packet of `bytes`: its first byte, its body and
/// its whole length.
fn packet(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let first = *bytes.first()?;
    let (mut len, mut shift, mut i) = (0usize, 0u32, 1usize);
    loop {
        let b = *bytes.get(i)?;
        len |= usize::from(b & 0x7F) << shift;
        shift += 7;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = bytes.get(i..i + len)?;
    Some((first, body, i + len))
}

/// A PUBLISH's packet identifier (3.1.1: after the topic at QoS 1/2).
fn publish_id(first: u8, body: &[u8]) -> Option<u16> {
    if first & 0x06 == 0 {
        return None;
    }
    let topic = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let at = 2 + topic;
    Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// A connector whose transports report what passes through them to a
/// [`Trace`].
/// Without a trace it only passes the calls on.
pub(crate) struct Traced<C> {
    pub(crate) inner: C,
    pub(crate) trace: Option<Shared>,
}

/// The transport of [`Traced`].
pub(crate) struct TracedStream<T> {
    inner: T,
    trace: Option<Shared>,
}

impl<C: Connector> Connector for Traced<C> {
    type Transport<'a>
        = TracedStream<C::Transport<'a>>
    where
        Self: 'a;
    type Error = C::Error;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let inner = self.inner.connect().await?;
        Ok(TracedStream {
            inner,
            trace: self.trace.clone(),
        })
    }
}

impl<T: embedded_io_async::ErrorType> embedded_io_async::ErrorType for TracedStream<T> {
    type Error = T::Error;
}

impl<T: embedded_io_async::Read> embedded_io_async::Read for TracedStream<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.inner.read(buf).await?;
        if let Some(trace) = &self.trace {
            trace.borrow_mut().was_read(&buf[..n]);
        }
        Ok(n)
    }
}

impl<T: embedded_io_async::Write> embedded_io_async::Write for TracedStream<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = self.inner.write(buf).await?;
        if let Some(trace) = &self.trace {
            trace.borrow_mut().wrote(&buf[..n]);
        }
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

impl<T: Transport> Transport for TracedStream<T> {
    async fn close(&mut self) {
        self.inner.close().await;
    }
}
