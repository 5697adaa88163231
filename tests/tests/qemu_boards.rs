//! The board firmware on emulated microcontrollers: `boards/qemu-mps2`
//! booted in `qemu-system-arm` on `mps2-an386` (Cortex-M4F) and
//! `mps2-an505` (Cortex-M33), each with its LAN9118 on QEMU's user network,
//! talking MQTT 5.0 over WebSocket to a real mosquitto on the host
//! (10.0.2.2 from the guest). The firmware runs embermq, embassy-net and
//! the executor on an emulated Thumb core; this test only watches it, from
//! the host, with the embermq client (MQTT 5.0 over TCP to the same
//! broker) and the firmware's UART log, and drives it through its serial
//! console (`reset`, `exit`).
//!
//! Per machine, in one boot sequence: DHCP, WebSocket upgrade and CONNECT;
//! telemetry JSON with contiguous sequence numbers; commands answered on
//! their MQTT 5.0 Response Topic with the Correlation Data; the broker
//! killed (SIGKILL) and restarted: the device reconnects and its QoS 1
//! readings of the outage all arrive; the broker killed again and the
//! device reset (SYSRESETREQ) with readings in its outbox: after the
//! reboot they arrive, from the outbox kept in the NVRAM window; at the
//! end the stack's high-water mark within its budget (exit code 0).
//! Besides: the cable pulled and put back (QEMU's `set_link`), bad
//! start-up arguments, and the instructions per reading under `-icount`.
//!
//! Needs the firmwares built (`scripts/build-boards` builds both) and
//! `qemu-system-arm`; `scripts/test` runs it after the board builds:
//! `cargo test -p embermq-tests --test qemu_boards -- --ignored`.
//! Every wait is bounded: a hung guest fails the test and QEMU is killed.

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet};
use core::time::Duration;
use std::path::PathBuf;
use std::process::Stdio;

use embermq::client::{
    Backoff, Client, ClientConfig, ClientState, Connection, Event, NoopRawMutex,
};
use embermq::clock::TokioClock;
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, SessionConfig};
use embermq::store::NoStore;
use embermq::transport::TokioTcpConnector;
use embermq_tests::peers::RestartableMosquitto;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::timeout;

/// The longest wait for any one log line or message.
const STEP: Duration = Duration::from_secs(30);
/// The whole test of one machine.
const WHOLE: Duration = Duration::from_secs(150);

/// One QEMU machine and the firmware built for it.
struct Machine {
    qemu_name: &'static str,
    cpu: &'static str,
    target: &'static str,
    cpu_mhz: u32,
}

const AN386: Machine = Machine {
    qemu_name: "mps2-an386",
    cpu: "cortex-m4",
    target: "thumbv7em-none-eabihf",
    cpu_mhz: 25,
};

const AN505: Machine = Machine {
    qemu_name: "mps2-an505",
    cpu: "cortex-m33",
    target: "thumbv8m.main-none-eabihf",
    cpu_mhz: 20,
};

impl Machine {
    fn elf(&self) -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../boards/qemu-mps2/target")
            .join(self.target)
            .join("release/embermq-qemu-mps2");
        assert!(
            path.is_file(),
            "{} missing: build it with scripts/build-boards (or in boards/qemu-mps2: \
             cargo build --release --features {} --target {})",
            path.display(),
            &self.qemu_name[5..],
            self.target
        );
        path
    }
}

/// The emulated device: QEMU, its UART log (line by line) and console.
struct Device {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    transcript: Vec<String>,
}

impl Device {
    /// Boots the firmware with the broker at 10.0.2.2:`ws_port`, with
    /// `extra` QEMU options.
    fn boot(machine: &Machine, ws_port: u16, device_id: &str, extra: &[&str]) -> Self {
        Self::boot_with(machine, ws_port, device_id, extra, "")
    }

    /// [`Device::boot`] with `more_args` (`,arg=key=value...`) after the
    /// firmware's usual semihosting arguments.
    fn boot_with(
        machine: &Machine,
        ws_port: u16,
        device_id: &str,
        extra: &[&str],
        more_args: &str,
    ) -> Self {
        Self::boot_elf(machine, machine.elf(), ws_port, device_id, extra, more_args)
    }

    /// [`Device::boot_with`] with another firmware ELF for `machine`.
    fn boot_elf(
        machine: &Machine,
        elf: PathBuf,
        ws_port: u16,
        device_id: &str,
        extra: &[&str],
        more_args: &str,
    ) -> Self {
        let seed: u64 = rand::random();
        let mut child = tokio::process::Command::new("qemu-system-arm")
            .args(["-M", machine.qemu_name, "-cpu", machine.cpu])
            .args(if extra.contains(&"-monitor") {
                &[][..]
            } else {
                &["-monitor", "none"][..]
            })
            .args(extra)
            .args(["-display", "none", "-serial", "stdio"])
            .args(["-nic", "user,model=lan9118,id=net0"])
            .arg("-semihosting-config")
            .arg(format!(
                "enable=on,target=native,arg=firmware,arg=broker_port={ws_port},\
                 arg=device_id={device_id},arg=telemetry_secs=1,arg=seed={seed}{more_args}"
            ))
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("qemu-system-arm started (Debian package qemu-system-arm)");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            transcript: Vec::new(),
        }
    }

    /// The next log line containing `wanted`; fails the test after
    /// [`STEP`] or if QEMU ends first.
    async fn expect(&mut self, wanted: &str) -> String {
        loop {
            let line = match timeout(STEP, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => self.fail(&format!("QEMU ended before {wanted:?}")),
                Ok(Err(e)) => self.fail(&format!("reading QEMU's output: {e}")),
                Err(_) => self.fail(&format!("no {wanted:?} within {STEP:?}")),
            };
            println!("    | {line}");
            self.transcript.push(line.clone());
            if line.contains(wanted) {
                return line;
            }
        }
    }

    /// Waits for `n` readings queued; the last one's sequence number.
    async fn readings_queued(&mut self, n: usize) -> u64 {
        let mut last = 0;
        for _ in 0..n {
            last = seq_of(&self.expect("event: reading ").await);
        }
        last
    }

    /// One line to the firmware's serial console.
    async fn console(&mut self, command: &str) {
        println!("    > {command}");
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("console written");
        self.stdin.flush().await.expect("console flushed");
    }

    /// QEMU's exit code (the firmware's semihosting exit).
    async fn exit_code(&mut self) -> i32 {
        // Drain the log so QEMU never blocks on a full pipe.
        while let Ok(Ok(Some(line))) = timeout(STEP, self.lines.next_line()).await {
            println!("    | {line}");
            self.transcript.push(line);
        }
        match timeout(STEP, self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => self.fail("QEMU did not exit"),
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}; the device's log so far:\n{}",
            self.transcript.join("\n")
        )
    }
}

/// `(instructions, cycles)` of a `cpu: busy B of C cycles (under -icount
/// shift=0: I instructions)` line.
fn cpu_of(line: &str) -> (f64, f64) {
    let number_after = |key: &str| -> f64 {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split([' ', ')']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
    };
    (number_after("shift=0: "), number_after(" of "))
}

/// `N` of a `... reading N queued` line.
fn seq_of(line: &str) -> u64 {
    line.split("reading ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {line:?}"))
}

/// A message the host's observer received.
struct Seen {
    topic: String,
    json: serde_json::Value,
    correlation: Option<Vec<u8>>,
}

/// Reconnects within half a second, so a restarted broker is found fast.
const FAST: ClientConfig = ClientConfig {
    backoff: Backoff {
        base: embermq::time::Duration::from_millis(100),
        cap: embermq::time::Duration::from_millis(500),
        max_attempts: None,
    },
    connect_timeout: embermq::time::Duration::from_secs(5),
    close_timeout: embermq::time::Duration::from_secs(1),
};

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// The host's observer: an embermq client (MQTT 5.0, TCP) whose session
/// outlives a broker restart (persistence on, expiry 10 min), so what the
/// device publishes before the observer is back is kept for it.
///
/// Clean Start 0 from the first connect (the broker is new, so there is
/// nothing stale to resume): mosquitto writes to its database only the
/// sessions of clients that connected with Clean Start 0. Begun clean, the
/// session and its subscriptions were lost with the first SIGKILL, and
/// when the device reconnected before the observer had resubscribed, the
/// outage readings it sent went to no one (see
/// `mqtt_3_1_2_23_mosquitto_loses_on_sigkill_a_session_begun_with_clean_start`
/// in tests/tests/client_store.rs).
fn observer(
    name: &'static str,
    tcp_port: u16,
) -> (
    Client<'static, 'static, NoopRawMutex, 8, 4>,
    UnboundedReceiver<Seen>,
    impl core::future::Future<Output = Result<(), impl core::fmt::Debug>>,
) {
    let config = SessionConfig {
        clean_start: false,
        resume_on_reconnect: true,
        session_expiry_secs: Some(600),
        ..SessionConfig::new(name)
    };
    let state: &'static ClientState<'static, NoopRawMutex, 8, 4, 128, 0, NoStore> = Box::leak(
        Box::new(ClientState::with_store(config, leak(8192), NoStore)),
    );
    let (tx, rx): (UnboundedSender<Seen>, _) = unbounded_channel();
    let driver = Connection::new(
        state,
        TokioTcpConnector::new("127.0.0.1", tcp_port),
        TokioClock::new(),
        StdRng::seed_from_u64(7),
        leak(4096),
        leak(4096),
        FAST,
    )
    .run(forward_to(tx));
    (state.client(), rx, driver)
}

/// The observer's event handler: messages to `tx`.
fn forward_to(tx: UnboundedSender<Seen>) -> impl FnMut(Event<'_>) {
    move |event| {
        if let Event::Message(m) = event {
            let _ = tx.send(Seen {
                topic: m.topic.to_owned(),
                json: serde_json::from_slice(m.payload).expect("JSON payload"),
                correlation: m.properties.correlation_data().map(<[u8]>::to_vec),
            });
        }
    }
}

/// The next message on `topic`.
async fn next_on(rx: &mut UnboundedReceiver<Seen>, topic: &str) -> Seen {
    timeout(STEP, async {
        loop {
            let seen = rx.recv().await.expect("observer running");
            if seen.topic == topic {
                return seen;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic} within {STEP:?}"))
}

/// The sequence numbers of the readings seen, by their status label
/// (`None`: no label): nothing received is dropped while a test waits for
/// some of them.
type ReadingsSeen = BTreeMap<Option<String>, BTreeSet<u64>>;

/// Records `reading` in `got`.
fn record(got: &mut ReadingsSeen, reading: &Seen) {
    let status = reading.json["status"].as_str().map(str::to_owned);
    let seq = reading.json["seq"].as_u64().expect("seq is a number");
    got.entry(status).or_default().insert(seq);
}

/// Collects readings into `got` until it holds every sequence number of
/// `wanted` with `status` (the label; `None`: no label). Fails after
/// [`STEP`] even while other readings keep coming.
async fn readings_until(
    rx: &mut UnboundedReceiver<Seen>,
    topic: &str,
    status: Option<&str>,
    wanted: core::ops::RangeInclusive<u64>,
    got: &mut ReadingsSeen,
) {
    let key = status.map(str::to_owned);
    let collect = async {
        while !wanted
            .clone()
            .all(|seq| got.get(&key).is_some_and(|seqs| seqs.contains(&seq)))
        {
            record(got, &next_on(rx, topic).await);
        }
    };
    if timeout(STEP, collect).await.is_err() {
        panic!("readings {wanted:?} with status {status:?} not all seen within {STEP:?}: {got:?}");
    }
}

/// Publishes `json` to the device's commands topic with a Response Topic
/// and Correlation Data, and checks the reply.
async fn command(
    observer: &Client<'static, 'static, NoopRawMutex, 8, 4>,
    seen: &mut UnboundedReceiver<Seen>,
    commands: &str,
    answers: &str,
    json: &str,
    correlation: &[u8],
    expected: serde_json::Value,
) {
    let fields = PropertyFields {
        response_topic: Some(answers),
        correlation_data: Some(correlation),
        ..PropertyFields::default()
    };
    let message = OutgoingMessage {
        properties: Properties::from_fields(&fields),
        ..OutgoingMessage::new(commands, json.as_bytes(), QoS::AtLeastOnce)
    };
    let token = observer.publish(&message).await.expect("command queued");
    observer
        .completion(token)
        .await
        .expect("command acknowledged");
    let reply = next_on(seen, answers).await;
    assert_eq!(reply.json, expected, "reply to {json}");
    assert_eq!(reply.correlation.as_deref(), Some(correlation));
}

/// The whole scenario on one machine.
async fn device_on(machine: &Machine) {
    let mut broker = RestartableMosquitto::start().expect("mosquitto started");
    let id: &'static str = Box::leak(
        format!("qemu-{}-{}", &machine.qemu_name[5..], std::process::id()).into_boxed_str(),
    );
    let telemetry = format!("devices/{id}/telemetry");
    let commands = format!("devices/{id}/commands");
    let answers = format!("test/answers/{id}");
    let observer_id: &'static str = Box::leak(format!("{id}-observer").into_boxed_str());
    let (observer, mut seen, driver) = observer(observer_id, broker.tcp_port);

    let body = async {
        let filters = [telemetry.as_str(), answers.as_str()].map(|filter| Subscription {
            filter,
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        });
        assert!(observer.subscribe(&filters).await.unwrap().all_succeeded());

        let mut device = Device::boot(machine, broker.ws_port, id, &[]);
        // DHCP from QEMU's user network, then WebSocket + MQTT 5.0 CONNECT.
        device.expect("dhcp: address 10.0.2.15").await;
        device.expect("event: mqtt connected (V5").await;
        device.expect("event: commands subscribed").await;

        // Telemetry: JSON, this device, contiguous sequence numbers.
        let mut boot_1 = ReadingsSeen::new();
        for expected in 0..3u64 {
            let reading = next_on(&mut seen, &telemetry).await;
            assert_eq!(reading.json["device"], id);
            assert_eq!(
                reading.json["seq"].as_u64(),
                Some(expected),
                "{}",
                reading.json
            );
            assert!(reading.json["uptime_ms"].as_u64().is_some());
            record(&mut boot_1, &reading);
        }

        // Commands: answered on the Response Topic with the Correlation Data.
        command(
            &observer,
            &mut seen,
            &commands,
            &answers,
            r#"{"cmd":"led","on":true}"#,
            b"corr-led",
            serde_json::json!({"cmd":"led","ok":true}),
        )
        .await;
        device.expect("led on").await;
        // From here on the readings of this boot carry the label.
        command(
            &observer,
            &mut seen,
            &commands,
            &answers,
            r#"{"cmd":"label","text":"boot-1"}"#,
            b"corr-label",
            serde_json::json!({"cmd":"label","ok":true}),
        )
        .await;

        // The broker killed: readings queue on the device; restarted: the
        // device reconnects with backoff and every one arrives.
        device.expect("event: command label done").await;
        let first_labelled = device.readings_queued(1).await;
        broker.kill().expect("broker killed");
        device.expect("event: mqtt link ended").await;
        device.expect("event: reconnecting in").await;
        let last_in_outage = device.readings_queued(3).await;
        broker.restart().expect("broker restarted");
        device.expect("event: mqtt connected (V5").await;
        // Every reading of the first boot so far: before the label, and
        // with it through the outage.
        readings_until(
            &mut seen,
            &telemetry,
            None,
            0..=first_labelled - 1,
            &mut boot_1,
        )
        .await;
        readings_until(
            &mut seen,
            &telemetry,
            Some("boot-1"),
            first_labelled..=last_in_outage,
            &mut boot_1,
        )
        .await;
        println!(
            "{}: outage readings {first_labelled}..={last_in_outage} all arrived",
            machine.qemu_name,
        );

        // The broker killed again, and the device reset with readings in
        // its outbox: after the reboot they arrive from the NVRAM window.
        broker.kill().expect("broker killed");
        // From here on unlabelled readings are the second boot's: the
        // first boot's labelled ones go on in their own map.
        let mut boot_2 = ReadingsSeen::new();
        if let Some(labelled) = boot_1.remove(&Some("boot-1".to_owned())) {
            boot_2.insert(Some("boot-1".to_owned()), labelled);
        }
        device.expect("event: mqtt link ended").await;
        let last_before_reset = device.readings_queued(2).await;
        device.console("reset").await;
        device.expect("console: warm reset").await;
        device
            .expect("boot 2 (outbox flash kept from before the reset)")
            .await;
        device.expect("dhcp: address 10.0.2.15").await;
        device.expect("event: reading 0 queued").await;
        broker.restart().expect("broker restarted");
        device.expect("event: mqtt connected (V5").await;
        // The first boot's labelled readings, the last ones from the
        // outbox kept across the reset; then the second boot's own,
        // unlabelled, from 0.
        readings_until(
            &mut seen,
            &telemetry,
            Some("boot-1"),
            first_labelled..=last_before_reset,
            &mut boot_2,
        )
        .await;
        readings_until(&mut seen, &telemetry, None, 0..=1, &mut boot_2).await;
        println!(
            "{}: readings up to {last_before_reset} queued before the reset arrived after it",
            machine.qemu_name
        );

        // The stack stayed within its budget: exit code 0.
        device.console("net").await;
        device.expect("lan9118: received").await;
        device.console("exit").await;
        let report = device.expect("stack: high-water").await;
        println!("{}: {report}", machine.qemu_name);
        let code = device.exit_code().await;
        assert_eq!(code, 0, "firmware exit code (2: stack over budget)");
    };
    timeout(WHOLE, async {
        tokio::select! {
            () = body => {}
            stopped = driver => panic!("observer stopped: {stopped:?}"),
        }
    })
    .await
    .expect("the machine's test exceeded its time limit");
}

/// Instructions the device executes per QoS 1 reading (JSON, PUBLISH,
/// WebSocket frame, TCP/IP, the LAN9118, the outbox in flash, and the
/// PUBACK back), under `-icount shift=0` (1 instruction = 1 ns of virtual
/// time): the firmware counts the cycles it spends polling tasks (console
/// `cpu`); over 10 readings at 1 s, less the idle rate measured with
/// readings paused (interval 1 h: the console's and timer's own polling).
/// Printed, not asserted (a figure for docs/footprint.md).
async fn instructions_per_message(machine: &Machine) {
    let broker = RestartableMosquitto::start().expect("mosquitto started");
    let id: &'static str = Box::leak(
        format!(
            "qemu-icount-{}-{}",
            &machine.qemu_name[5..],
            std::process::id()
        )
        .into_boxed_str(),
    );
    let commands = format!("devices/{id}/commands");
    let answers = format!("test/answers/{id}");
    let observer_id: &'static str = Box::leak(format!("{id}-observer").into_boxed_str());
    let (observer, mut seen, driver) = observer(observer_id, broker.tcp_port);
    let body = async {
        let filter = Subscription {
            filter: answers.as_str(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        };
        assert!(observer.subscribe(&[filter]).await.unwrap().all_succeeded());
        let mut device = Device::boot(machine, broker.ws_port, id, &["-icount", "shift=0"]);
        device.expect("event: commands subscribed").await;
        let interval = |secs: u32| format!(r#"{{"cmd":"interval","secs":{secs}}}"#);
        let ok = serde_json::json!({"cmd":"interval","ok":true});
        // Idle: readings paused.
        command(
            &observer,
            &mut seen,
            &commands,
            &answers,
            &interval(3600),
            b"idle",
            ok.clone(),
        )
        .await;
        device.console("cpu").await;
        let idle_start = cpu_of(&device.expect("cpu: busy").await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        device.console("cpu").await;
        let idle_end = cpu_of(&device.expect("cpu: busy").await);
        let idle_rate = (idle_end.0 - idle_start.0) / (idle_end.1 - idle_start.1);
        // Readings every second.
        command(
            &observer,
            &mut seen,
            &commands,
            &answers,
            &interval(1),
            b"busy",
            ok,
        )
        .await;
        device.readings_queued(1).await;
        device.console("cpu").await;
        let start = cpu_of(&device.expect("cpu: busy").await);
        const READINGS: u32 = 10;
        device.readings_queued(READINGS as usize).await;
        device.console("cpu").await;
        let end = cpu_of(&device.expect("cpu: busy").await);
        let busy = (end.0 - start.0) - idle_rate * (end.1 - start.1);
        let per_message = busy / f64::from(READINGS);
        println!(
            "{}: {per_message:.0} instructions per QoS 1 reading \
             (idle polling, {:.0} instructions per second, taken off)",
            machine.qemu_name,
            idle_rate * f64::from(machine.cpu_mhz) * 1e6
        );
        assert!(
            per_message > 0.0,
            "a reading costs something: {per_message}"
        );
        device.console("exit").await;
        assert_eq!(device.exit_code().await, 0);
    };
    timeout(WHOLE, async {
        tokio::select! {
            () = body => {}
            stopped = driver => panic!("observer stopped: {stopped:?}"),
        }
    })
    .await
    .expect("the measurement exceeded its time limit");
}

/// QEMU's monitor on a Unix socket: one command, run before this returns.
/// The command is written only once the monitor's first prompt is in, and
/// the socket is closed only once the command's echo and the next prompt
/// came back (QEMU runs a line when it reads its end); each wait is
/// bounded, and a monitor that never answers fails the test.
async fn monitor(socket: &std::path::Path, command: &str) {
    use tokio::io::AsyncReadExt;
    const PROMPT: &str = "(qemu) ";
    async fn read_until(
        stream: &mut tokio::net::UnixStream,
        seen: &mut Vec<u8>,
        done: impl Fn(&str) -> bool,
    ) {
        let mut buf = [0u8; 256];
        let waited = timeout(Duration::from_secs(10), async {
            while !done(&String::from_utf8_lossy(seen)) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        panic!("QEMU's monitor closed: {}", String::from_utf8_lossy(seen))
                    }
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "QEMU's monitor did not answer: {}",
            String::from_utf8_lossy(seen)
        );
    }
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("QEMU monitor socket");
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, |text| text.ends_with(PROMPT)).await;
    let banner = seen.len();
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .expect("monitor command written");
    read_until(&mut stream, &mut seen, |text| {
        text.get(banner..)
            .and_then(|after| after.find(command).map(|at| &after[at..]))
            .is_some_and(|rest| rest.contains(PROMPT))
    })
    .await;
}

/// The device must notice the cable pull at once, not when the MQTT
/// keepalive runs out: `EmbassyTcpStream` fails a pending read when the
/// stack's link goes down, and the driver reads the PHY's link status
/// every second besides its interrupt. A reconnect attempt made while the
/// cable is out waits for the link (`EmbassyTcpConnector::connect`) instead
/// of sending a SYN into it and hanging until the socket's timeout, so the
/// link is back within a second of the cable. (It failed one run in four
/// before both fixes: the monitor command written into a socket closed too
/// soon, and that SYN.)
#[tokio::test(flavor = "current_thread")]
#[ignore = "needs boards/qemu-mps2 built and qemu-system-arm; scripts/test runs it with --ignored"]
async fn lan9118_link_down_ends_the_mqtt_link_and_link_up_brings_it_back() {
    // The driver's PHY interrupt path: QEMU's `set_link` is the cable.
    let broker = RestartableMosquitto::start().expect("mosquitto started");
    let socket = std::env::temp_dir().join(format!("embermq-qemu-monitor-{}", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let monitor_arg = format!("unix:{},server,nowait", socket.display());
    let id = format!("qemu-link-{}", std::process::id());
    let mut device = Device::boot(&AN386, broker.ws_port, &id, &["-monitor", &monitor_arg]);
    let done = timeout(WHOLE, async {
        device.expect("event: mqtt connected (V5").await;
        device.readings_queued(1).await;
        monitor(&socket, "set_link net0 off").await;
        device.expect("event: mqtt link ended").await;
        // Readings go on queuing while the cable is out.
        device.readings_queued(2).await;
        monitor(&socket, "set_link net0 on").await;
        device.expect("event: mqtt connected (V5").await;
        device.console("exit").await;
        assert_eq!(device.exit_code().await, 0);
    })
    .await;
    if done.is_err() {
        device.fail(&format!("the link test exceeded {WHOLE:?}"));
    }
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs boards/qemu-mps2 built and qemu-system-arm; scripts/test runs it with --ignored"]
async fn a_bad_start_up_argument_stops_the_firmware_with_exit_code_6_naming_it() {
    for machine in [&AN386, &AN505] {
        let mut device = Device::boot_with(machine, 1, "bad-args", &[], ",arg=broker_port=99999");
        device.expect("bad argument \"broker_port=99999\"").await;
        assert_eq!(device.exit_code().await, 6, "exit code for bad settings");
        let mut device = Device::boot_with(machine, 1, "bad-args", &[], ",arg=colour=blue");
        device.expect("bad argument \"colour=blue\"").await;
        assert_eq!(device.exit_code().await, 6, "exit code for bad settings");
    }
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs boards/qemu-mps2 built and qemu-system-arm; scripts/test runs it with --ignored"]
async fn instructions_per_qos1_reading_on_both_emulated_cores_are_printed() {
    instructions_per_message(&AN386).await;
    instructions_per_message(&AN505).await;
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs boards/qemu-mps2 built and qemu-system-arm; scripts/test runs it with --ignored"]
async fn firmware_on_cortex_m4f_mps2_an386_talks_mqtt5_over_websocket_to_mosquitto() {
    device_on(&AN386).await;
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs boards/qemu-mps2 built and qemu-system-arm; scripts/test runs it with --ignored"]
async fn firmware_on_cortex_m33_mps2_an505_talks_mqtt5_over_websocket_to_mosquitto() {
    device_on(&AN505).await;
}

/// A footprint build of the an386 firmware (`scripts/footprint` builds
/// them, opt-level "z"): `probe` (the whole stack and a minimal
/// application in place of the board app) or `probe-v311` (the same with
/// the sdk built without its `v5` feature).
fn footprint_elf(variant: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../boards/qemu-mps2/target/footprint")
        .join(format!("embermq-qemu-mps2-{variant}"));
    assert!(
        path.is_file(),
        "{} missing: scripts/footprint builds it",
        path.display()
    );
    path
}

/// Boots a footprint probe against mosquitto's WebSocket listener: it
/// connects at protocol level `level`, subscribes to its echo topic,
/// publishes 5 messages at each of QoS 0, 1 and 2 there, and exits 0 once
/// every publish completed and every message came back.
async fn probe_round_trips(variant: &str, level: u8) {
    let broker = RestartableMosquitto::start().expect("mosquitto started");
    let id = format!("{variant}-{}", std::process::id());
    let mut device = Device::boot_elf(&AN386, footprint_elf(variant), broker.ws_port, &id, &[], "");
    let run = async {
        device
            .expect(&format!("probe: connected, MQTT level {level}"))
            .await;
        device.expect("probe: 15/15 completed, 15/15 echoed").await;
        println!("{}", device.expect("stack: ").await);
        device.exit_code().await
    };
    let code = timeout(WHOLE, run)
        .await
        .expect("the probe finished in time");
    assert_eq!(code, 0, "the probe's exit code");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs scripts/footprint's probe builds and qemu-system-arm; scripts/test runs it with --ignored"]
async fn mqtt_3_1_1_only_build_without_v5_round_trips_qos_0_1_2_over_websocket_on_the_emulated_board()
 {
    probe_round_trips("probe-v311", 4).await;
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs scripts/footprint's probe builds and qemu-system-arm; scripts/test runs it with --ignored"]
async fn footprint_probe_with_v5_round_trips_qos_0_1_2_over_websocket_on_the_emulated_board() {
    probe_round_trips("probe", 5).await;
}
