//! Credentials renewed before every connect (issue 17, finding 5): a token
//! that expires while the client runs (an Azure IoT Hub SAS token, a
//! signed password) is minted again for each CONNECT through
//! `ClientState::set_credentials`. Against mosquitto with a password file
//! that accepts only the second token: the first CONNECT is refused, the
//! client refreshes, and the next one is accepted.

extern crate alloc;

mod support;
use support::*;

use alloc::sync::Arc;
use core::time::Duration;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use embermq::codec::ReasonCode;
use embermq::session::{Credentials, ProtocolChoice, SessionConfig};
use embermq::time::Instant;
use embermq_tests::peers::free_port;

/// mosquitto on a free loopback port with `password_file` (user `dev`,
/// password `token-2`) and no anonymous access.
struct AuthMosquitto {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl AuthMosquitto {
    fn start() -> Self {
        static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("embermq-cred-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwords = dir.join("passwords");
        let status = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwords)
            .args(["dev", "token-2"])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
        let port = free_port().unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 password_file {}\nlistener {port} 127.0.0.1\n",
                passwords.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < until, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child, dir }
    }
}

impl Drop for AuthMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token that changes on every refresh: `token-1`, `token-2`, ...
struct RotatingToken {
    refreshes: u32,
    password: String,
    seen: Arc<Mutex<Vec<Instant>>>,
}

impl Credentials for RotatingToken {
    fn refresh(&mut self, now: Instant) {
        self.refreshes += 1;
        self.password = format!("token-{}", self.refreshes);
        self.seen.lock().unwrap().push(now);
    }

    fn username(&self) -> Option<&str> {
        Some("dev")
    }

    fn password(&self) -> Option<&[u8]> {
        Some(self.password.as_bytes())
    }
}

async fn refreshed_on_every_connect(protocol: ProtocolChoice) {
    let broker = AuthMosquitto::start();
    let mut cfg = SessionConfig::new(leak_str(format!(
        "cred-{protocol:?}-{}",
        std::process::id()
    )));
    cfg.protocol = protocol;
    // The configuration's password would be refused for ever.
    cfg.username = Some("dev");
    cfg.password = Some(b"stale");
    let st = state(cfg, 4096);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let token: &'static mut RotatingToken = Box::leak(Box::new(RotatingToken {
        refreshes: 0,
        password: String::new(),
        seen: seen.clone(),
    }));
    st.set_credentials(token);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.port));
    within(20, async {
        // token-1 is refused (not authorized), token-2 is accepted.
        let refused = next_matching(&mut events, |s| match s {
            Seen::Refused { reason, .. } => Some(*reason),
            _ => None,
        })
        .await;
        assert!(
            refused == ReasonCode::NOT_AUTHORIZED
                || refused == ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{refused:?}"
        );
        connected(&mut events).await;
        assert_eq!(seen.lock().unwrap().len(), 2, "one refresh per connect");
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_5_password_refreshed_before_every_connect_v311() {
    refreshed_on_every_connect(ProtocolChoice::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_3_1_3_6_password_refreshed_before_every_connect_v5() {
    refreshed_on_every_connect(ProtocolChoice::V5).await;
}
