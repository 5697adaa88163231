//! Hands the broker's CA certificate (`BROKER_CA_DER`) to a `wss` build.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // The broker's CA certificate for `wss` builds: BROKER_CA_DER names a
    // DER file; unset, the firmware gets an empty one (see main.rs).
    println!("cargo:rerun-if-env-changed=BROKER_CA_DER");
    let ca = match env::var_os("BROKER_CA_DER") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            fs::read(&path).expect("BROKER_CA_DER names a readable DER file")
        }
        None => Vec::new(),
    };
    fs::write(out.join("broker-ca.der"), ca).expect("CA certificate written to OUT_DIR");
}
