//! Puts the machine's `memory-<machine>.x` where the linker looks, as
//! `memory.x`, and links cortex-m-rt's script. Exactly one of the features
//! `an386` and `an505` must be on.
use std::{env, fs, path::PathBuf};

fn main() {
    let an386 = env::var_os("CARGO_FEATURE_AN386").is_some();
    let an505 = env::var_os("CARGO_FEATURE_AN505").is_some();
    let memory = match (an386, an505) {
        (true, false) => "memory-an386.x",
        (false, true) => "memory-an505.x",
        _ => panic!(
            "choose one machine: --features an386 --target thumbv7em-none-eabihf, or \
             --features an505 --target thumbv8m.main-none-eabihf"
        ),
    };
    if env::var_os("CARGO_FEATURE_BASELINE").is_some()
        && env::var_os("CARGO_FEATURE_PROBE").is_some()
    {
        panic!("`baseline` and `probe` are two different footprint builds: choose one");
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("memory.x copied");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-an386.x");
    println!("cargo:rerun-if-changed=memory-an505.x");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
