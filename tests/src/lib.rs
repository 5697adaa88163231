//! Shared harness for the workspace integration tests: starts real peers
//! (mosquitto plain and with TLS, aedes, rumqttd embedded, Python
//! `websockets`) on free loopback ports and stops them when the test ends.

pub mod peers;
pub mod rumqttd;
pub mod tls;
