//! Running `embermq sim` from the tests of the verdicts, the metrics and
//! the HTML report: the binary with `--quiet` and a report file, its
//! output, and the parsed JSON report.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// A fresh path in the temp dir for one run's file.
pub(crate) fn temp_path(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("embermq-sim-{tag}-{}.{ext}", std::process::id()))
}

/// `embermq sim` with `args`, `--quiet` and `--report FILE`.
pub(crate) fn command(args: &[&str], report: &PathBuf) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embermq"));
    cmd.arg("sim")
        .args(args)
        .arg("--quiet")
        .arg("--report")
        .arg(report);
    cmd
}

/// Runs `embermq sim` with `args`; returns the output, its stdout and
/// stderr as text, and the parsed report (which must have been written).
pub(crate) fn sim(tag: &str, args: &[&str]) -> (Output, String, Value) {
    let report = temp_path(tag, "json");
    let out = command(args, &report).output().expect("embermq runs");
    let text = text(&out);
    let json = read_report(&report);
    let _ = std::fs::remove_file(&report);
    assert!(json.is_object(), "{tag}: no report; {text}");
    (out, text, json)
}

/// Starts `embermq sim` with `args` in the background, output captured.
pub(crate) fn spawn(args: &[&str], report: &PathBuf) -> Child {
    command(args, report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("embermq starts")
}

/// The report at `path`, or `Value::Null`.
pub(crate) fn read_report(path: &PathBuf) -> Value {
    std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or(Value::Null)
}

/// stdout and stderr of a run, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The number at JSON pointer `path` of `v`.
pub(crate) fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}
