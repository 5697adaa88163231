//! The demo's dashboard: an HTTP server on 127.0.0.1 (hyper) that serves
//! one page (`cli/assets/dashboard/index.html`) and MQTT.js's browser
//! bundle, both built into the binary, so the page works without network
//! beyond the demo's broker. The page itself is the MQTT client: it
//! connects to the broker's WebSocket listener from the browser (see the
//! page's comment for what it shows and sends).
//!
//! Routes: `/` (the page, with this run's broker URL, protocol, device ids
//! and QoS filled in), `/mqtt.min.js`, `/mqtt.js-LICENSE.md`; anything
//! else is 404, any method but GET and HEAD 405.
//!
//! Not here: TLS, authentication (it listens on loopback only), the broker
//! credentials of `--broker` (the page connects without them).

use alloc::sync::Arc;
use core::convert::Infallible;
use core::net::SocketAddr;
use std::net::TcpListener;

use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};

use crate::failure::{Exit, Failure};

/// The page, with the configuration between its markers.
const PAGE: &str = include_str!("../../assets/dashboard/index.html");
/// MQTT.js's browser bundle (npm `mqtt`, see the assets' README).
const MQTT_JS: &str = include_str!("../../assets/dashboard/mqtt.min.js");
/// Its licence.
const MQTT_JS_LICENSE: &str = include_str!("../../assets/dashboard/mqtt.js-LICENSE.md");

/// What the page needs to know about this run.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PageConfig {
    /// The broker's WebSocket URL as the browser dials it.
    pub(crate) url: String,
    /// MQTT.js `protocolVersion`: 4 (3.1.1) or 5.
    #[serde(rename = "protocolVersion")]
    pub(crate) protocol_version: u8,
    /// The devices' ids.
    pub(crate) devices: Vec<String>,
    /// The QoS of the page's subscriptions.
    pub(crate) qos: u8,
}

/// The page with `config` filled in (as JSON, `<` escaped so no text of
/// it can close the script element).
pub(crate) fn page(config: &PageConfig) -> Result<String, Failure> {
    let json = serde_json::to_string(config)
        .map_err(|e| Failure::new(Exit::Failure, format!("dashboard config: {e}")))?
        .replace('<', "\\u003c");
    let (start, end) = ("/*EMBERMQ_CONFIG*/", "/*END*/");
    let (Some(a), Some(b)) = (PAGE.find(start), PAGE.find(end)) else {
        return Err(Failure::new(
            Exit::Failure,
            "dashboard page has no configuration markers",
        ));
    };
    Ok(format!("{}{json}{}", &PAGE[..a], &PAGE[b + end.len()..]))
}

fn respond(req: &Request<Body>, page: &str) -> Response<Body> {
    let ok = |kind: &'static str, body: String| {
        let mut r = Response::new(if req.method() == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body)
        });
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(kind),
        );
        r.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        r
    };
    let status = |code: StatusCode| {
        let mut r = Response::new(Body::from(code.canonical_reason().unwrap_or("").to_owned()));
        *r.status_mut() = code;
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    match req.uri().path() {
        "/" | "/index.html" => ok("text/html; charset=utf-8", page.to_owned()),
        "/mqtt.min.js" => ok("text/javascript; charset=utf-8", MQTT_JS.to_owned()),
        "/mqtt.js-LICENSE.md" => ok("text/plain; charset=utf-8", MQTT_JS_LICENSE.to_owned()),
        _ => status(StatusCode::NOT_FOUND),
    }
}

/// Serves the dashboard for `config` on 127.0.0.1:`port` (0, or a port
/// already taken: any free port) on the current tokio runtime; returns
/// the address it listens on.
pub(crate) fn serve(port: u16, config: &PageConfig) -> Result<SocketAddr, Failure> {
    let page = Arc::new(page(config)?);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))
        .map_err(|e| Failure::new(Exit::Failure, format!("dashboard: cannot listen: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::new(Exit::Failure, format!("dashboard: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new(Exit::Failure, format!("dashboard: {e}")))?;
    let server = Server::from_tcp(listener)
        .map_err(|e| Failure::new(Exit::Failure, format!("dashboard: {e}")))?
        .serve(make_service_fn(move |_| {
            let page = page.clone();
            async move {
                Ok::<_, Infallible>(service_fn(move |req| {
                    let page = page.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &page)) }
                }))
            }
        }));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("embermq demo: the dashboard stopped: {e}");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_runs_config_and_nothing_can_close_its_script() {
        let p = page(&PageConfig {
            url: "ws://127.0.0.1:1/mqtt</script><script>alert(1)".into(),
            protocol_version: 4,
            devices: vec!["demo-00ff-01".into()],
            qos: 1,
        })
        .unwrap();
        assert!(p.contains("\"devices\":[\"demo-00ff-01\"]"));
        assert!(!p.contains("alert(1)</script>") && !p.contains("</script><script>alert"));
        assert!(p.contains("\\u003c/script>"));
        assert!(!p.contains("/*EMBERMQ_CONFIG*/"));
    }
}
