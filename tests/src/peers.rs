//! Real peers started on free loopback ports for the integration tests:
//! mosquitto with a TCP and a websockets listener, and a strict Python
//! `websockets` server. Each peer gets its own temporary directory for its
//! config, is awaited until it accepts connections, and is killed (and its
//! directory removed) when the handle drops.
//!
//! Also aedes (Node, `tests/peers`), which reports its own ports.
//!
//! Elsewhere in this crate: rumqttd, embedded in the test process
//! ([`crate::rumqttd`]), and mosquitto with TLS listeners ([`crate::tls`]).

use core::net::SocketAddr;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The Python with Debian's `python3-websockets` (10.4); the pyenv `python3`
/// first on PATH does not have it.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh, empty temporary directory for one peer.
fn temp_dir(tag: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("embermq-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Finds `name` on PATH, else at `fallback`.
fn find_binary(name: &str, fallback: &str) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let fallback = Path::new(fallback);
    if fallback.is_file() {
        return Ok(fallback.to_path_buf());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{name} not found on PATH nor at {}", fallback.display()),
    ))
}

/// Waits until every port accepts a TCP connection, or the child exits, or
/// `limit` passes.
fn wait_accepting(child: &mut Child, ports: &[u16], limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    for &port in ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!("peer exited early: {status}")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                break;
            }
            if start.elapsed() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer not accepting on port {port}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// A fresh temporary directory mosquitto can write to: started as root,
/// it drops to its own user.
fn mosquitto_dir(tag: &str) -> io::Result<PathBuf> {
    let dir = temp_dir(tag)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(dir)
}

/// mosquitto `binary` run on `config`, its output discarded (it logs to
/// the file its configuration names).
pub(crate) fn spawn_mosquitto(binary: &Path, config: &Path) -> io::Result<Child> {
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Waits until mosquitto's `log` says it runs: it writes that line only
/// once every listener is open. An exit before it is
/// [`io::ErrorKind::AddrInUse`] when the log says a listener could not be
/// opened (a port taken since it was picked), else an error with the log.
fn wait_running(child: &mut Child, log: &Path, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(" running") {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let kind = if text.contains("Unable to create") || text.contains("in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("mosquitto exited at start ({status}): {}", text.trim()),
            ));
        }
        if start.elapsed() > limit {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("mosquitto did not report running: {}", text.trim()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running peer process; killed and cleaned up on drop.
#[derive(Debug)]
struct PeerProcess {
    child: Child,
    dir: PathBuf,
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A mosquitto broker with an MQTT/TCP and an MQTT/WebSocket listener.
#[derive(Debug)]
pub struct Mosquitto {
    /// The plain MQTT port.
    pub tcp_port: u16,
    /// The MQTT-over-WebSocket port.
    pub ws_port: u16,
    process: PeerProcess,
}

impl Mosquitto {
    /// Starts mosquitto (from PATH or `/usr/sbin/mosquitto`) with anonymous
    /// access on two free loopback ports.
    pub fn start() -> io::Result<Self> {
        Self::start_with("")
    }

    /// Starts mosquitto as [`start`](Self::start) does, with `extra` lines
    /// of global configuration (e.g. `max_inflight_messages 20\n`).
    pub fn start_with(extra: &str) -> io::Result<Self> {
        let binary = find_binary("mosquitto", "/usr/sbin/mosquitto")?;
        // A port picked free can be taken by another test's peer before
        // mosquitto binds it: mosquitto then exits, and the other peer
        // would answer on that port. Such a start is retried on new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&binary, extra) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 5 => continue,
                other => return other,
            }
        }
    }

    fn start_once(binary: &Path, extra: &str) -> io::Result<Self> {
        let dir = mosquitto_dir("mosquitto")?;
        let (tcp_port, ws_port) = (free_port()?, free_port()?);
        let config = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 log_dest file {}\n{extra}\
                 listener {tcp_port} 127.0.0.1\nprotocol mqtt\n\
                 listener {ws_port} 127.0.0.1\nprotocol websockets\n",
                log.display()
            ),
        )?;
        let child = spawn_mosquitto(binary, &config)?;
        let mut process = PeerProcess { child, dir };
        wait_running(&mut process.child, &log, Duration::from_secs(10))?;
        wait_accepting(
            &mut process.child,
            &[tcp_port, ws_port],
            Duration::from_secs(10),
        )?;
        Ok(Self {
            tcp_port,
            ws_port,
            process,
        })
    }

    /// The broker's process id (for diagnostics).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// The strict Python `websockets` server. It requires masked, well-formed
/// client frames (websockets fails anything else with a close code), pings
/// the client first and waits for a matching pong, echoes every message,
/// and closes with 4002 when it receives the text `close-me`.
const PYTHON_WS_SERVER: &str = r#"
import asyncio, sys
import websockets

async def handler(ws):
    pong = await ws.ping(b"harness-ping")
    await asyncio.wait_for(pong, 5)
    async for msg in ws:
        if msg == "close-me":
            await ws.close(4002, "asked")
            return
        await ws.send(msg)

async def main():
    # Port 0: the kernel picks a free port and we report it, so no other
    # process can take it between choosing and binding.
    async with websockets.serve(handler, "127.0.0.1", 0,
                                subprotocols=["mqtt"], max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// A strict Python `websockets` 10.4 echo server (see the script above).
#[derive(Debug)]
pub struct PythonWsServer {
    /// The WebSocket port.
    pub port: u16,
    _process: PeerProcess,
}

impl PythonWsServer {
    /// Starts the server under [`SYSTEM_PYTHON`] on a free loopback port.
    pub fn start() -> io::Result<Self> {
        let dir = temp_dir("pyws")?;
        let script = dir.join("ws_echo.py");
        std::fs::write(&script, PYTHON_WS_SERVER)?;
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take();
        let mut process = PeerProcess { child, dir };
        // The server binds port 0 and prints the port it got: a port chosen
        // here and bound later could be taken by another test's peer in
        // between (then the upgrade would reach, say, a mosquitto).
        let (sent, reported) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = std::io::BufReader::new(out).read_line(&mut line);
            }
            let _ = sent.send(line);
        });
        let line = reported
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "python server reported no port")
            })?;
        let port: u16 = line.trim().parse().map_err(|_| {
            io::Error::other(format!(
                "python server did not start (said {:?})",
                line.trim()
            ))
        })?;
        wait_accepting(&mut process.child, &[port], Duration::from_secs(15))?;
        Ok(Self {
            port,
            _process: process,
        })
    }
}

/// A mosquitto broker with persistence on that a test can kill (SIGKILL)
/// and start again on the same ports with the same database, for
/// reconnect tests. Persistence saves after every change
/// (`autosave_on_changes`), so queued QoS 1/2 messages survive a kill -9.
#[derive(Debug)]
pub struct RestartableMosquitto {
    /// The plain MQTT port (the same after a restart).
    pub tcp_port: u16,
    /// The MQTT-over-WebSocket port (the same after a restart).
    pub ws_port: u16,
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl RestartableMosquitto {
    /// Starts mosquitto with persistence in its own temporary directory.
    pub fn start() -> io::Result<Self> {
        Self::start_with(true)
    }

    /// Starts mosquitto with persistence on or off (off: a restart forgets
    /// every session and subscription).
    pub fn start_with(persistence: bool) -> io::Result<Self> {
        let binary = find_binary("mosquitto", "/usr/sbin/mosquitto")?;
        // Started as root, mosquitto drops to user `mosquitto`: it must be
        // able to write its database here.
        let dir = mosquitto_dir("mosquitto-persist")?;
        let (tcp_port, ws_port) = (free_port()?, free_port()?);
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\nallow_anonymous true\n\
                 persistence {persistence}\npersistence_location {}/\n\
                 autosave_on_changes true\nautosave_interval 1\n\
                 max_queued_messages 0\n\
                 log_dest stderr\n\
                 listener {tcp_port} 127.0.0.1\nprotocol mqtt\n\
                 listener {ws_port} 127.0.0.1\nprotocol websockets\n",
                dir.display()
            ),
        )?;
        let mut broker = Self {
            tcp_port,
            ws_port,
            binary,
            config,
            dir,
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Stops the broker with SIGTERM, the way a service manager does:
    /// mosquitto closes its connections and saves its database before it
    /// exits. Waits for the exit.
    pub fn terminate(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()?;
            if !status.success() {
                return Err(io::Error::other(format!("kill -TERM failed: {status}")));
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Kills the broker with SIGKILL (no chance to save) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the broker again (killing it first if it runs) on the same
    /// ports and database, and waits until it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        let start = Instant::now();
        loop {
            let mut child = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            match wait_accepting(
                &mut child,
                &[self.tcp_port, self.ws_port],
                Duration::from_secs(10),
            ) {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The old listener's port may linger a moment: try again.
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for RestartableMosquitto {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An aedes broker (Node, MQTT 3.1.1 only) with an MQTT/TCP and an
/// MQTT/WebSocket listener, run from `tests/peers/aedes-broker.js`. The
/// script picks free ports itself and reports them on stdout; it exits when
/// its stdin closes, so it dies with the test process even on a crash.
#[derive(Debug)]
pub struct Aedes {
    /// The plain MQTT port.
    pub tcp_port: u16,
    /// The MQTT-over-WebSocket port (any path).
    pub ws_port: u16,
    child: Child,
}

impl Aedes {
    /// Starts `node tests/peers/aedes-broker.js` (node from PATH or
    /// `/usr/bin/node`) and waits until both listeners accept. Fails with
    /// a clear message when `tests/peers/node_modules` is missing.
    pub fn start() -> io::Result<Self> {
        use std::io::BufRead;
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
        if !peers.join("node_modules").join("aedes").is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "aedes is not installed: run `npm ci` in {}",
                    peers.display()
                ),
            ));
        }
        let node = find_binary("node", "/usr/bin/node")?;
        let mut child = Command::new(node)
            .arg(peers.join("aedes-broker.js"))
            .current_dir(&peers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("aedes: no stdout pipe"));
        };
        // Read the ports line on a thread so a silent script cannot hang
        // the test; the thread ends when the pipe closes.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(
                std::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .map(|_| line),
            );
        });
        let ports = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(line)) => parse_aedes_ports(&line),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "aedes did not report its ports",
            )),
        };
        let (tcp_port, ws_port) = match ports {
            Ok(ports) => ports,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut broker = Self {
            tcp_port,
            ws_port,
            child,
        };
        wait_accepting(
            &mut broker.child,
            &[tcp_port, ws_port],
            Duration::from_secs(10),
        )?;
        Ok(broker)
    }

    /// The broker's process id (for diagnostics).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Parses the script's `{"tcp":N,"ws":M}` line.
fn parse_aedes_ports(line: &str) -> io::Result<(u16, u16)> {
    let bad = || io::Error::other(format!("aedes: unexpected ports line {line:?}"));
    let field = |name: &str| -> io::Result<u16> {
        let key = format!("\"{name}\":");
        let start = line.find(&key).ok_or_else(bad)? + key.len();
        let digits: String = line
            .get(start..)
            .ok_or_else(bad)?
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().map_err(|_| bad())
    };
    Ok((field("tcp")?, field("ws")?))
}

impl Drop for Aedes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port picked free and taken by another peer before mosquitto binds
    /// it: the start is reported as `AddrInUse` (which `start_with`
    /// retries on new ports), not handed out while the other peer answers
    /// on that port.
    #[test]
    fn mosquitto_on_a_taken_port_is_addr_in_use() {
        let Ok(binary) = find_binary("mosquitto", "/usr/sbin/mosquitto") else {
            panic!("mosquitto is needed (scripts/test installs it)");
        };
        let taken = TcpListener::bind("127.0.0.1:0").expect("a listener");
        let port = taken.local_addr().expect("its address").port();
        let dir = mosquitto_dir("mosquitto-taken").expect("a temp dir");
        let (config, log) = (dir.join("mosquitto.conf"), dir.join("mosquitto.log"));
        let tcp_port = free_port().expect("a free port");
        std::fs::write(
            &config,
            format!(
                "allow_anonymous true\nlog_dest file {}\n\
                 listener {tcp_port} 127.0.0.1\nlistener {port} 127.0.0.1\nprotocol websockets\n",
                log.display()
            ),
        )
        .expect("config");
        let child = spawn_mosquitto(&binary, &config).expect("mosquitto spawns");
        let mut process = PeerProcess { child, dir };
        let err = wait_running(&mut process.child, &log, Duration::from_secs(10))
            .expect_err("the taken port stops mosquitto");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        // And a normal start still works.
        let broker = Mosquitto::start().expect("mosquitto starts");
        assert_ne!(broker.tcp_port, 0);
    }
}
