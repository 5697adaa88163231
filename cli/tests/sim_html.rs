//! `embermq sim --html FILE` and `embermq sim merge --html FILE`: a short
//! run against a real mosquitto writes one self-contained HTML page; each
//! chart is there as inline SVG with the run's numbers (the throughput
//! series adds up to the published, acknowledged and received counts of
//! the JSON report, the latency series and histogram to the checker's
//! sample count, the connects series to the connects), the verdict and the
//! settings are shown, nothing is loaded from the network; two shard
//! reports merge into one page whose series add up to both runs.

mod sim_run;

use embermq_tests::peers::Mosquitto;
use serde_json::Value;
use sim_run::{n, temp_path};

/// The number shown in `<span data-series="name">N</span>`.
fn shown(page: &str, name: &str) -> u64 {
    let marker = format!("data-series=\"{name}\">");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} figure"))
        + marker.len();
    page[at..]
        .split('<')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number for {name}"))
}

/// The `<figure id="id">` element's text.
fn figure<'p>(page: &'p str, id: &str) -> &'p str {
    let start = page
        .find(&format!("<figure id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no {id} chart"));
    let end = page[start..].find("</figure>").expect("figure closed") + start;
    &page[start..end]
}

/// The series embedded as JSON.
fn series(page: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"embermq-series\">";
    let start = page.find(open).expect("series embedded") + open.len();
    let end = page[start..].find("</script>").expect("script closed") + start;
    serde_json::from_str(&page[start..end]).expect("series JSON")
}

fn sum(v: &Value, key: &str) -> u64 {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} series"))
        .iter()
        .filter_map(Value::as_u64)
        .sum()
}

/// Runs a shard of a 40-device fleet with `--html`; returns the report and
/// the page.
fn run(tag: &str, url: &str, shard: &str) -> (Value, String) {
    let html = temp_path(tag, "html");
    let args = [
        "--devices",
        "40",
        "--shard",
        shard,
        "--broker",
        url,
        "--interval",
        "0.25",
        "--duration",
        "3",
        "--qos",
        "0:20,1:60,2:20",
        "--herd",
        "--html",
        html.to_str().expect("utf-8 temp path"),
    ];
    let (out, t, r) = sim_run::sim(tag, &args);
    assert!(out.status.success(), "{t}");
    let page = std::fs::read_to_string(&html).expect("the HTML report was written");
    let _ = std::fs::remove_file(&html);
    (r, page)
}

fn assert_page_matches(page: &str, r: &Value) {
    let published = n(r, "/published/qos0") + n(r, "/published/qos1") + n(r, "/published/qos2");
    let acknowledged =
        n(r, "/acknowledged/qos0") + n(r, "/acknowledged/qos1") + n(r, "/acknowledged/qos2");
    assert!(published > 0);
    for id in [
        "throughput",
        "latency",
        "latency-histogram",
        "connections",
        "errors",
    ] {
        let f = figure(page, id);
        assert!(f.contains("<svg"), "{id} has no inline SVG");
        assert!(
            f.contains("<polyline") || f.contains("<rect"),
            "{id} draws nothing"
        );
    }
    assert_eq!(shown(page, "published"), published);
    assert_eq!(shown(page, "acknowledged"), acknowledged);
    assert_eq!(shown(page, "received"), n(r, "/checker/received"));
    assert_eq!(
        shown(page, "latency-count"),
        n(r, "/checker/latency_us/count")
    );
    assert_eq!(
        shown(page, "histogram-count"),
        n(r, "/checker/latency_us/count")
    );
    assert_eq!(shown(page, "connects"), n(r, "/connects"));
    assert_eq!(shown(page, "errors"), 0);
    let s = series(page);
    assert_eq!(sum(&s, "published"), published);
    assert_eq!(sum(&s, "received"), n(r, "/checker/received"));
    assert!(s["published"].as_array().expect("array").len() <= 240);
    assert!(page.contains("Verdict: clean"));
    assert!(page.contains("<th>QoS mix</th><td>0:20,1:60,2:20</td>"));
    // Self-contained: nothing fetched from anywhere.
    for outside in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!page.contains(outside), "the page loads {outside}");
    }
}

#[test]
fn html_report_has_every_chart_with_the_runs_numbers_and_merge_adds_the_shards() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let (r0, page0) = run("html-0", &url, "0/2");
    assert_page_matches(&page0, &r0);
    let (r1, page1) = run("html-1", &url, "1/2");
    assert_page_matches(&page1, &r1);
    // sim merge --html from the two shard reports.
    let (a, b) = (temp_path("html-a", "json"), temp_path("html-b", "json"));
    std::fs::write(&a, r0.to_string()).expect("write");
    std::fs::write(&b, r1.to_string()).expect("write");
    let merged_html = temp_path("html-merged", "html");
    let merged_json = temp_path("html-merged", "json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args(["sim", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("--output")
        .arg(&merged_json)
        .arg("--html")
        .arg(&merged_html)
        .output()
        .expect("embermq runs");
    let t = sim_run::text(&out);
    assert!(out.status.success(), "{t}");
    let page = std::fs::read_to_string(&merged_html).expect("merged page");
    let merged = sim_run::read_report(&merged_json);
    for p in [&a, &b, &merged_html, &merged_json] {
        let _ = std::fs::remove_file(p);
    }
    assert_page_matches(&page, &merged);
    assert_eq!(
        shown(&page, "published"),
        shown(&page0, "published") + shown(&page1, "published")
    );
    assert!(page.contains("0/2, 1/2"), "both shards listed");
}
