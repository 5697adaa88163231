//! The completion table against mosquitto (issue 11, item 8): a token
//! someone awaits is never pushed out by other tasks' publishes, a full
//! table makes `publish` wait and `try_publish` say so, and QoS 0
//! publishes nobody awaits take no slot from anyone.

mod support;
use support::*;

use core::time::Duration;

use embermq::client::ClientError;
use embermq::codec::QoS;
use embermq::session::{OutgoingMessage, OverflowPolicy, ProtocolChoice, SessionConfig};
use embermq_tests::peers::Mosquitto;

fn config(id: &str) -> SessionConfig<'static> {
    let mut cfg = SessionConfig::new(leak_str(format!("{id}-{}", std::process::id())));
    cfg.protocol = ProtocolChoice::V5;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tasks_publishes_never_push_out_an_awaited_token() {
    let broker = Mosquitto::start().unwrap();
    let st = state(config("tokens-shared"), 64 * 1024);
    let client = st.client();
    within(30, async {
        // Task A: one QoS 1 publish, awaited from the start. The link is
        // not up yet, so it stays unfinished while task B publishes.
        let a = tokio::spawn(async move {
            let token = client
                .publish(&OutgoingMessage::new("a", b"mine", QoS::AtLeastOnce))
                .await
                .unwrap();
            client.completion(token).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Task B: 100 QoS 0 and 40 QoS 1 publishes, never awaited.
        let b = tokio::spawn(async move {
            for i in 0..100u32 {
                let payload = i.to_be_bytes();
                client
                    .publish(&OutgoingMessage::new("b0", &payload, QoS::AtMostOnce))
                    .await
                    .unwrap();
            }
            for i in 0..40u32 {
                let payload = i.to_be_bytes();
                client
                    .publish(&OutgoingMessage::new("b1", &payload, QoS::AtLeastOnce))
                    .await
                    .unwrap();
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!a.is_finished(), "A's token was pushed out: {:?}", a.await);
        let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
        connected(&mut events).await;
        b.await.unwrap();
        // Task A's token answers with its PUBACK.
        a.await.unwrap().unwrap();
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_makes_publish_wait_and_try_publish_say_so() {
    let broker = Mosquitto::start().unwrap();
    let st = state(config("tokens-full"), 64 * 1024);
    let client = st.client();
    // No driver yet: 16 QoS 1 publishes stay unfinished and fill the
    // table; a task awaits each.
    let mut awaiting = Vec::new();
    for i in 0..16u8 {
        let token = client
            .publish(&OutgoingMessage::new("q", &[i], QoS::AtLeastOnce))
            .await
            .unwrap();
        awaiting.push(tokio::spawn(async move { client.completion(token).await }));
    }
    // Let every awaiting task register before the table is probed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let one_more = OutgoingMessage::new("q", b"17", QoS::AtLeastOnce);
    assert_eq!(
        client.try_publish(&one_more, OverflowPolicy::RejectNew),
        Err(ClientError::CompletionTableFull)
    );
    // QoS 0 still goes out (it takes no slot it cannot get).
    client
        .try_publish(
            &OutgoingMessage::new("q0", b"x", QoS::AtMostOnce),
            OverflowPolicy::RejectNew,
        )
        .unwrap();
    // `publish` waits for a slot instead of evicting an unfinished token.
    let waiting = tokio::spawn(async move {
        let msg = OutgoingMessage::new("q", b"17", QoS::AtLeastOnce);
        let token = client.publish(&msg).await.unwrap();
        client.completion(token).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "publish waits while the table is full"
    );
    assert_eq!(
        client.outbox_len(),
        17,
        "16 QoS 1 + 1 QoS 0 queued, no 17th"
    );

    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
    within(30, async {
        connected(&mut events).await;
        // Every awaited token is answered (none was evicted), and the
        // waiting publish got its slot and its PUBACK.
        for task in awaiting {
            task.await.unwrap().unwrap();
        }
        waiting.await.unwrap().unwrap();
        stop(client, driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_publishes_nobody_awaits_never_wait_for_a_slot_and_can_be_awaited_later() {
    // An offline device queues more QoS 1 messages than the table has
    // slots: publish must not wait for a completion table nobody uses.
    let broker = Mosquitto::start().unwrap();
    let st = state(config("tokens-offline"), 64 * 1024);
    let client = st.client();
    let mut tokens = Vec::new();
    within(5, async {
        for i in 0..40u8 {
            tokens.push(
                client
                    .publish(&OutgoingMessage::new("offline", &[i], QoS::AtLeastOnce))
                    .await
                    .unwrap(),
            );
        }
    })
    .await;
    assert_eq!(client.outbox_len(), 40);
    // Old ones (their slots went to newer tokens while nobody awaited
    // them) are tracked again when awaited while still in the outbox; with
    // the newest ones that makes 16 awaited tokens, the table's size.
    let waiters: Vec<_> = tokens[..8]
        .iter()
        .chain(&tokens[32..])
        .copied()
        .map(|t| tokio::spawn(async move { client.completion(t).await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
    within(30, async {
        connected(&mut events).await;
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        stop(client, driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_backlog_queued_offline_drains_without_other_traffic() {
    // 100 QoS 0 messages queued while the link is down: their completions
    // wait in the outbox while the session's event queue is full, so the
    // driver must transmit again after handing the events over, not wait
    // for input that never comes (the keepalive is 60 s away).
    let broker = Mosquitto::start().unwrap();
    let st = state(config("tokens-backlog"), 64 * 1024);
    let client = st.client();
    let mut last = None;
    for i in 0..100u32 {
        let payload = i.to_be_bytes();
        last = Some(
            client
                .publish(&OutgoingMessage::new("backlog", &payload, QoS::AtMostOnce))
                .await
                .unwrap(),
        );
    }
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
    within(10, async {
        connected(&mut events).await;
        client.completion(last.unwrap()).await.unwrap();
        assert_eq!(client.outbox_len(), 0);
        stop(client, driver).await;
    })
    .await;
}

/// Fault injector (no broker can make our own write fail on demand): a
/// transport that reads one CONNACK, then nothing, and whose writes after
/// the CONNECT fail.
struct BrokenAfterConnect {
    connack_sent: bool,
    writes: u32,
}

impl embedded_io_async::ErrorType for BrokenAfterConnect {
    type Error = embedded_io_async::ErrorKind;
}

impl embedded_io_async::Read for BrokenAfterConnect {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if !self.connack_sent {
            self.connack_sent = true;
            buf[..4].copy_from_slice(&[0x20, 2, 0, 0]);
            return Ok(4);
        }
        core::future::pending().await
    }
}

impl embedded_io_async::Write for BrokenAfterConnect {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.writes += 1;
        if self.writes > 1 {
            return Err(embedded_io_async::ErrorKind::BrokenPipe);
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embermq::transport::Transport for BrokenAfterConnect {}

struct BrokenConnector;

impl embermq::transport::Connector for BrokenConnector {
    type Transport<'a> = BrokenAfterConnect;
    type Error = core::convert::Infallible;

    async fn connect(&mut self) -> Result<BrokenAfterConnect, Self::Error> {
        Ok(BrokenAfterConnect {
            connack_sent: false,
            writes: 0,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_publish_whose_write_fails_does_not_complete_as_sent() {
    let mut cfg = config("tokens-broken");
    cfg.protocol = ProtocolChoice::V311;
    let st = state(cfg, 4096);
    let (driver, mut events) = spawn_driver!(st, BrokenConnector);
    within(10, async {
        connected(&mut events).await;
        let token = st
            .client()
            .publish(&OutgoingMessage::new("q0", b"lost", QoS::AtMostOnce))
            .await
            .unwrap();
        // The write of the PUBLISH fails: the token must say so.
        assert_eq!(
            st.client().completion(token).await,
            Err(ClientError::Publish(
                embermq::session::PublishFailure::LinkLost
            ))
        );
        st.client().stop();
        driver.abort();
    })
    .await;
}
