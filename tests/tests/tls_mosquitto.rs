//! `mqtts://` and `wss://` against a real mosquitto (OpenSSL) with
//! certificates made by rcgen in each test (`embermq_tests::tls`): the
//! embermq client over `RustlsConnector` (TLS over TCP),
//! `WsConnector<RustlsConnector>` (WebSocket over TLS) and
//! `EmbeddedTlsConnector` (the device TLS 1.3 stack, over tokio TCP here),
//! `RustlsLentConnector` (rustls' unbuffered client in lent buffers, the
//! simulator's fleet link);
//! and each verification failure with the reason it must name, including
//! the chains that only a verifier checking CA constraints rejects
//! (issue 17: an end certificate that signs one for the broker's name).

extern crate alloc;

mod support;
use support::*;

use embedded_io_async::{Read, Write};
use embermq::client::Connection;
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS, ReasonCode};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::embedded_tls::{CertificateError, EmbeddedTlsBuffers, EmbeddedTlsError};
use embermq::transport::tls_rustls::AlertDescription;
use embermq::transport::{
    Connector, EmbeddedTlsConnectError, EmbeddedTlsConnector, RustlsBuffers, RustlsConnectError,
    RustlsConnector, RustlsError, RustlsLentConnector, RustlsOptions, TLS_RECORD_BUFFER_LEN,
    TokioTcpConnector,
};
use embermq::transport::{WsConnectError as ConnectError, WsConnector};
use embermq_tests::tls::{ClientAuth, OTHER_NAME, ServerCert, TestPki, TlsMosquitto};
use embermq_ws::Buffers;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

fn config(id: &str) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(leak_str(format!("{id}-{}", std::process::id())));
    c.protocol = ProtocolChoice::V5;
    c.max_incoming_packet_size = 4096;
    c
}

/// The client driver future over `$connector`, its events sent to `$tx`.
macro_rules! driver {
    ($state:expr, $connector:expr, $tx:expr) => {{
        let state: &'static State = $state;
        Connection::new(
            state,
            $connector,
            TokioClock::new(),
            StdRng::seed_from_u64(7),
            leak(4096),
            leak(4096),
            fast_reconnect(),
        )
        .run(forward($tx))
    }};
}

/// Spawns the client driver over `$connector`; events go to the returned
/// channel.
macro_rules! spawn_driver {
    ($state:expr, $connector:expr) => {{
        let (tx, rx) = unbounded_channel();
        (tokio::spawn(driver!($state, $connector, tx)), rx)
    }};
}

/// Connects, subscribes to `tls/#`, publishes at QoS 0, 1 and 2 to itself
/// and receives each message back; then stops the client.
async fn round_trip(state: &'static State, events: &mut UnboundedReceiver<Seen>) {
    assert_eq!(connected(events).await.1, ProtocolVersion::V5);
    let client = state.client();
    let results = client
        .subscribe(&[sub("tls/#", QoS::ExactlyOnce)])
        .await
        .unwrap();
    assert_eq!(results.codes(), &[ReasonCode(2)]);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("tls/{i}");
        let payload = format!("over tls {i}");
        let token = client
            .publish(&OutgoingMessage::new(&topic, payload.as_bytes(), qos))
            .await
            .unwrap();
        client.completion(token).await.unwrap();
        let (got_topic, got_payload, _, _) = message(events).await;
        assert_eq!((got_topic, got_payload), (topic, payload.into_bytes()));
    }
    client.stop();
}

/// [`round_trip`] under a 20 s limit with the driver over `$connector`
/// spawned on the runtime; the driver must end with `Ok`.
macro_rules! spawned_round_trip {
    ($state:expr, $connector:expr) => {{
        let state: &'static State = $state;
        let connector = $connector;
        within(20, async {
            let (driver, mut events) = spawn_driver!(state, connector);
            round_trip(state, &mut events).await;
            driver.await.unwrap().unwrap();
        })
        .await;
    }};
}

/// [`round_trip`] under a 20 s limit with the driver over `$connector`
/// run in this task beside it (for stacks whose futures are not `Send`);
/// the driver must end with `Ok`.
macro_rules! joined_round_trip {
    ($state:expr, $connector:expr) => {{
        let state: &'static State = $state;
        let connector = $connector;
        within(20, async {
            let (tx, mut events) = unbounded_channel();
            let (ended, ()) = tokio::join!(
                driver!(state, connector, tx),
                round_trip(state, &mut events)
            );
            ended.unwrap();
        })
        .await;
    }};
}

/// The handshake error of a direct `connect`, which must fail.
async fn tls_failure(connector: &mut RustlsConnector<TokioTcpConnector>) -> RustlsError {
    let err = match within(10, connector.connect()).await {
        Ok(_) => panic!("the handshake succeeded"),
        Err(RustlsConnectError::Tls(e)) => e,
        Err(e) => panic!("not a TLS failure: {e}"),
    };
    // The line a user sees (`--nocapture`).
    eprintln!("{err}");
    err
}

fn wss(
    port: u16,
    options: &RustlsOptions,
) -> WsConnector<'static, RustlsConnector<TokioTcpConnector>, StdRng> {
    WsConnector::new(
        RustlsConnector::tcp("127.0.0.1", port, options).unwrap(),
        "127.0.0.1",
        Some(port),
        "/mqtt",
        Buffers {
            rx: leak(4096),
            tx: leak(4096),
        },
        StdRng::seed_from_u64(3),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_publish_subscribe_round_trip_verifying_localhost() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("mqtts"), 4096);
    let connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    spawned_round_trip!(state, connector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_publish_subscribe_round_trip_websocket_inside_tls() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("wss"), 4096);
    let connector = wss(broker.wss_port, &pki.trusting_ca());
    spawned_round_trip!(state, connector);
}

#[tokio::test]
async fn wrong_ca_fails_naming_an_unknown_issuer() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_other_ca()).unwrap();
    let err = tls_failure(&mut connector).await;
    assert!(matches!(err, RustlsError::UnknownIssuer), "{err:?}");
    assert!(err.to_string().contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn wrong_ca_over_wss_fails_naming_an_unknown_issuer_through_the_ws_connector() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let mut connector = wss(broker.wss_port, &pki.trusting_other_ca());
    let err = match within(10, connector.connect()).await {
        Ok(_) => panic!("the handshake succeeded"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            ConnectError::Inner(RustlsConnectError::Tls(RustlsError::UnknownIssuer))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn expired_server_certificate_fails_naming_expiry() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Expired, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    let err = tls_failure(&mut connector).await;
    assert!(matches!(err, RustlsError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn certificate_for_another_host_fails_naming_the_mismatch() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::WrongName, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    let err = tls_failure(&mut connector).await;
    assert!(matches!(err, RustlsError::NameMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("name mismatch"), "{text}");
    assert!(
        text.contains("localhost") && text.contains(OTHER_NAME),
        "{text}"
    );
}

#[tokio::test]
async fn rfc6066_3_server_name_override_is_what_gets_verified() {
    // The wrong-name certificate is accepted once the connector verifies
    // (and sends as SNI) the name it carries, while dialling 127.0.0.1.
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::WrongName, ClientAuth::None).unwrap();
    let mut connector = RustlsConnector::tcp("127.0.0.1", broker.mqtts_port, &pki.trusting_ca())
        .unwrap()
        .with_server_name(OTHER_NAME)
        .unwrap();
    within(10, connector.connect()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_and_client_certificate_given_round_trip() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::Required).unwrap();
    let state = state(config("mtls"), 4096);
    let connector = RustlsConnector::tcp(
        "localhost",
        broker.mqtts_port,
        &pki.trusting_ca_with_client_cert(),
    )
    .unwrap();
    spawned_round_trip!(state, connector);
}

#[tokio::test]
async fn mtls_required_and_client_certificate_missing_fails_naming_certificate_required() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::Required).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    // TLS 1.3 (RFC 8446 §4.4.2.4): the server checks the client's
    // certificate after the client has finished its handshake, so the
    // alert arrives on the first read rather than during `connect`.
    let err = within(10, async {
        let mut stream = match connector.connect().await {
            Ok(stream) => stream,
            Err(RustlsConnectError::Tls(e)) => return e,
            Err(e) => panic!("not a TLS failure: {e}"),
        };
        // A v3.1.1 CONNECT, so the broker has something to answer.
        let connect = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03abc";
        let _ = stream.write_all(connect).await;
        let _ = stream.flush().await;
        let mut buf = [0u8; 16];
        match stream.read(&mut buf).await {
            Ok(n) => panic!("read {n} bytes without a client certificate"),
            Err(e) => e,
        }
    })
    .await;
    assert!(
        matches!(
            err,
            RustlsError::Alert(AlertDescription::CertificateRequired)
        ),
        "{err:?}"
    );
    eprintln!("{err}");
    assert!(
        err.to_string().contains("requires a client certificate"),
        "{err}"
    );
    assert_eq!(
        embedded_io_async::Error::kind(&err),
        embedded_io_async::ErrorKind::PermissionDenied
    );
}

/// embedded-tls buffers: full-size records (16 640 bytes) in and staged,
/// 4 KiB out.
fn embedded_buffers() -> EmbeddedTlsBuffers<'static> {
    EmbeddedTlsBuffers {
        read: leak(16_640),
        write: leak(4096),
        staging: leak(16_640),
    }
}

/// The device TLS stack over TCP to `port` on loopback, verifying the name
/// `localhost` against the pinned CA certificate `ca_der`.
fn embedded_tls(
    port: u16,
    ca_der: &[u8],
) -> EmbeddedTlsConnector<'static, TokioTcpConnector, StdRng> {
    EmbeddedTlsConnector::new(
        TokioTcpConnector::new("127.0.0.1", port),
        "localhost",
        Box::leak(ca_der.to_vec().into_boxed_slice()),
        embedded_buffers(),
        StdRng::seed_from_u64(5),
    )
}

/// The reason a direct `connect` over the device TLS stack failed, which
/// it must, as a certificate rejection.
async fn embedded_tls_rejection(
    mut connector: EmbeddedTlsConnector<'static, TokioTcpConnector, StdRng>,
) -> CertificateError {
    let err = match within(10, connector.connect()).await {
        Ok(_) => panic!("the handshake succeeded"),
        Err(EmbeddedTlsConnectError::Tls(e)) => e,
        Err(e) => panic!("not a TLS failure: {e}"),
    };
    // The line a user sees (`--nocapture`).
    eprintln!("{err}");
    match err {
        EmbeddedTlsError::CertificateRejected(reason) => reason,
        other => panic!("not a certificate rejection: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tls_1_3_publish_subscribe_round_trip_over_mqtts() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("etls"), 4096);
    let connector = embedded_tls(broker.mqtts_port, &pki.ca.cert_der);
    // embedded-tls keeps a raw pointer across an `.await`, so its stream's
    // futures are not `Send`: the driver runs in this task, beside the
    // test (as in an embassy task) rather than spawned.
    joined_round_trip!(state, connector);
}

#[tokio::test]
async fn embedded_tls_rejects_a_server_the_pinned_ca_did_not_sign() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let connector = embedded_tls(broker.mqtts_port, &pki.other_ca.cert_der);
    let reason = embedded_tls_rejection(connector).await;
    assert_eq!(reason, CertificateError::UnknownIssuer);
    assert!(reason.to_string().contains("pinned CA"), "{reason}");
}

#[tokio::test]
async fn embedded_tls_rejects_a_certificate_for_another_name() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::WrongName, ClientAuth::None).unwrap();
    let connector = embedded_tls(broker.mqtts_port, &pki.ca.cert_der);
    let reason = embedded_tls_rejection(connector).await;
    assert_eq!(reason, CertificateError::NameMismatch);
}

// Chains that only a verifier that checks CA constraints and names
// rejects; mosquitto (OpenSSL) presents each one as it is configured.

#[tokio::test]
async fn rfc5280_4_2_1_9_end_entity_signing_a_broker_certificate_is_rejected_by_rustls() {
    // Anyone with the key of any ordinary certificate under the CA (here
    // the server's own) mints one for the broker's name.
    let pki = TestPki::generate().unwrap();
    let broker =
        TlsMosquitto::start(&pki, ServerCert::ForgedByEndEntity, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    let err = tls_failure(&mut connector).await;
    // webpki: an end-entity certificate used as a CA.
    assert!(matches!(err, RustlsError::Certificate(_)), "{err:?}");
    assert!(format!("{err:?}").contains("EndEntityUsedAsCa"), "{err:?}");
}

#[tokio::test]
async fn rfc5280_4_2_1_9_end_entity_signing_a_broker_certificate_is_rejected_by_embedded_tls() {
    let pki = TestPki::generate().unwrap();
    let broker =
        TlsMosquitto::start(&pki, ServerCert::ForgedByEndEntity, ClientAuth::None).unwrap();
    let connector = embedded_tls(broker.mqtts_port, &pki.ca.cert_der);
    let reason = embedded_tls_rejection(connector).await;
    assert_eq!(reason, CertificateError::IssuerNotCa);
    assert!(
        reason.to_string().contains("without being a CA"),
        "{reason}"
    );
}

#[tokio::test]
async fn rfc6125_6_4_4_common_name_only_certificate_is_rejected_by_both_connectors() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::CnOnly, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    let err = tls_failure(&mut connector).await;
    assert!(matches!(err, RustlsError::NameMismatch { .. }), "{err:?}");
    let connector = embedded_tls(broker.mqtts_port, &pki.ca.cert_der);
    assert_eq!(
        embedded_tls_rejection(connector).await,
        CertificateError::NoDnsName
    );
}

#[tokio::test]
async fn rfc5280_4_2_1_9_pinned_certificate_without_ca_flag_is_rejected_by_embedded_tls() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::UnderNotACa, ClientAuth::None).unwrap();
    let connector = embedded_tls(broker.mqtts_port, &pki.not_a_ca.cert_der);
    assert_eq!(
        embedded_tls_rejection(connector).await,
        CertificateError::PinnedCaNotCa
    );
}

#[tokio::test]
async fn rfc5280_6_1_valid_intermediate_chain_is_accepted_by_both_connectors() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::ViaIntermediate, ClientAuth::None).unwrap();
    let mut connector =
        RustlsConnector::tcp("localhost", broker.mqtts_port, &pki.trusting_ca()).unwrap();
    within(10, connector.connect()).await.unwrap();
    let mut connector = embedded_tls(broker.mqtts_port, &pki.ca.cert_der);
    if let Err(e) = within(10, connector.connect()).await {
        panic!("embedded-tls rejected a valid chain: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tls_wss_round_trip_websocket_inside_device_tls() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("etls-wss"), 4096);
    let tls = embedded_tls(broker.wss_port, &pki.ca.cert_der);
    let connector = WsConnector::new(
        tls,
        "localhost",
        Some(broker.wss_port),
        "/mqtt",
        Buffers {
            rx: leak(4096),
            tx: leak(4096),
        },
        StdRng::seed_from_u64(3),
    );
    joined_round_trip!(state, connector);
}

/// rustls' unbuffered client to `port` on loopback in lent buffers (a full
/// record in, 2 KiB out), verifying `localhost` against the test CA.
fn lent_tls(port: u16, options: &RustlsOptions) -> RustlsLentConnector<'static, TokioTcpConnector> {
    RustlsLentConnector::new(
        TokioTcpConnector::new("127.0.0.1", port),
        "localhost".try_into().unwrap(),
        options.client_config().unwrap(),
        RustlsBuffers {
            rx: leak(TLS_RECORD_BUFFER_LEN),
            tx: leak(2048),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lent_buffer_rustls_mqtts_round_trip() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("lent-mqtts"), 4096);
    spawned_round_trip!(state, lent_tls(broker.mqtts_port, &pki.trusting_ca()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lent_buffer_rustls_wss_round_trip_websocket_inside_tls() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let state = state(config("lent-wss"), 4096);
    let connector = WsConnector::new(
        lent_tls(broker.wss_port, &pki.trusting_ca()),
        "localhost",
        Some(broker.wss_port),
        "/mqtt",
        Buffers {
            rx: leak(256),
            tx: leak(256),
        },
        StdRng::seed_from_u64(3),
    );
    spawned_round_trip!(state, connector);
}

#[tokio::test]
async fn lent_buffer_rustls_wrong_ca_fails_naming_an_unknown_issuer() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let mut connector = lent_tls(broker.mqtts_port, &pki.trusting_other_ca());
    let err = match within(10, connector.connect()).await {
        Ok(_) => panic!("the handshake succeeded"),
        Err(RustlsConnectError::Tls(e)) => e,
        Err(e) => panic!("not a TLS failure: {e}"),
    };
    assert!(matches!(err, RustlsError::UnknownIssuer), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lent_buffer_rustls_mtls_required_and_client_certificate_given_round_trip() {
    // The client's certificate chain goes out in its second flight, from
    // the same 2 KiB transmit buffer.
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::Required).unwrap();
    let state = state(config("lent-mtls"), 4096);
    spawned_round_trip!(
        state,
        lent_tls(broker.mqtts_port, &pki.trusting_ca_with_client_cert())
    );
}
