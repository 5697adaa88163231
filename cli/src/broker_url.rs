//! Broker URLs on the command line: the parser is the sdk's
//! (`embermq::host::BrokerUrl`: `mqtt://`, `mqtts://`, `ws://`, `wss://`,
//! `user:password@`, IPv6 literals, the query kept verbatim for presigned
//! URLs); this module adds clap's value parser, whose error message shows
//! the URL through [`masked`] (clap's own would repeat the password and the
//! query).

pub(crate) use embermq::host::{BrokerUrl, masked};

/// clap's parser for a broker URL argument. Its error names the value
/// through [`masked`], where clap's default message would repeat the
/// password and the query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlValueParser;

impl clap::builder::TypedValueParser for UrlValueParser {
    type Value = BrokerUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<BrokerUrl, clap::Error> {
        let name = arg.map_or_else(|| "URL".to_owned(), ToString::to_string);
        let fail = |message: String| {
            let mut cmd = cmd.clone();
            cmd.error(clap::error::ErrorKind::ValueValidation, message)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail(format!("the value for '{name}' is not UTF-8")))?;
        text.parse().map_err(|e| {
            fail(format!(
                "invalid value '{}' for '{name}': {e}",
                masked(text)
            ))
        })
    }
}
