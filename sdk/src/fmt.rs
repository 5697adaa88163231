//! The crate's internal log lines: `trace!`, `debug!`, `info!`, `warn!`,
//! `error!`.
//!
//! One shim so the rest of the crate never names a logging backend:
//!
//! - feature `defmt`: the lines go to [`defmt`](https://docs.rs/defmt)
//!   (devices; deferred formatting, tiny strings in flash);
//! - feature `log`: the lines go to the [`log`](https://docs.rs/log) facade
//!   (hosts);
//! - neither: the lines compile to nothing, yet their arguments are still
//!   type-checked (and never evaluated), so a line that is wrong fails the
//!   build in every configuration. When both features are on, `defmt` wins.
//!
//! Write format strings in the subset both backends accept: `{}` and `{:?}`.
//! Arguments must then implement `Display`/`Debug` (and `defmt::Format` under
//! `defmt`).
//!
//! **Never log credentials or payloads.** No password, token, key, client
//! certificate, WebSocket key, authentication data or MQTT application
//! payload (nor a slice of one) goes into a log line. Topics, packet ids,
//! lengths, reason codes, states, addresses and error values may.
//!
//! This module does not pick a global logger: the application or board does
//! (defmt-rtt, esp-println, env_logger, ...).
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! log_line {
    ($level:ident, $($arg:tt)+) => {
        ::defmt::$level!($($arg)+)
    };
}

#[cfg(all(feature = "log", not(feature = "defmt")))]
macro_rules! log_line {
    ($level:ident, $($arg:tt)+) => {
        ::log::$level!($($arg)+)
    };
}

#[cfg(not(any(feature = "defmt", feature = "log")))]
macro_rules! log_line {
    ($level:ident, $($arg:tt)+) => {{
        // Type-check the format string and arguments, never run them.
        if false {
            let _ = ::core::format_args!($($arg)+);
        }
    }};
}

/// Logs at trace level (see the module doc).
macro_rules! trace {
    ($($arg:tt)+) => { log_line!(trace, $($arg)+) };
}

/// Logs at debug level (see the module doc).
macro_rules! debug {
    ($($arg:tt)+) => { log_line!(debug, $($arg)+) };
}

/// Logs at info level (see the module doc).
macro_rules! info {
    ($($arg:tt)+) => { log_line!(info, $($arg)+) };
}

/// Logs at warn level (see the module doc).
macro_rules! warn {
    ($($arg:tt)+) => { log_line!(warn, $($arg)+) };
}

/// Logs at error level (see the module doc).
macro_rules! error {
    ($($arg:tt)+) => { log_line!(error, $($arg)+) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_level_accepts_the_shared_format_subset() {
        let evaluated = core::cell::Cell::new(false);
        let touch = || {
            evaluated.set(true);
            7_u16
        };
        trace!("packet id {}", 7_u16);
        debug!("state {:?}", Some(3_u8));
        info!("connected to {}:{}", "broker.example", 1883_u16);
        warn!("retry {} of {}", 1_u32, 5_u32);
        error!("closing: {}", touch());
        // With no backend the arguments are type-checked but never run.
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        assert!(!evaluated.get(), "arguments ran with logging off");
        let _ = &evaluated;
    }
}
