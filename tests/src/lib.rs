//! Shared harness for the workspace integration tests: starts real peers
//! (mosquitto, Python `websockets`, later aedes and rumqttd) on free loopback
//! ports and stops them when the test ends.

pub mod peers;
