//! `embermq sim --html FILE` and `embermq sim merge --html FILE`: the
//! report as one self-contained HTML page (no script, font or style from
//! the network; it opens offline). Charts are inline SVG drawn by
//! `plotters` (its SVG backend):
//! - throughput over time (published, acknowledged, received per second);
//! - latency percentiles over time (p50, p99, max per bucket) and the
//!   latency histogram (from the run's HDR histogram);
//! - connected devices and connects per second;
//! - errors by kind over time;
//!
//! and, as tables, the run's settings, the verdict with its reasons, the
//! totals, the errors with their first message and the worst devices. The
//! series are embedded as JSON too (`<script type="application/json"
//! id="embermq-series">`), for anyone who wants to chart them again.
//!
//! Not here: interactivity (no JavaScript), the figures themselves
//! (`super::report`, `super::series`).

use core::fmt::Write as _;

use plotters::prelude::*;

use super::report::Report;
use super::series::Series;

/// Chart size, pixels.
const SIZE: (u32, u32) = (900, 300);

/// Colours of the lines, in order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// `text` with HTML's special characters escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a chart: its name and a value per bucket.
struct Line<'a> {
    name: &'a str,
    values: Vec<f64>,
}

/// A line chart of `lines` over the buckets of `series`, as SVG.
fn line_chart(
    series: &Series,
    title: &str,
    y_label: &str,
    lines: &[Line<'_>],
) -> Result<String, String> {
    let width = f64::from(series.bucket_secs);
    let buckets = series.len().max(1);
    let x_end = buckets as f64 * width;
    let y_max = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0f64, f64::max);
    let y_end = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_end, 0.0..y_end)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, line) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points = line
                .values
                .iter()
                .enumerate()
                .map(|(b, v)| ((b as f64 + 0.5) * width, *v));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Counts per bucket as per-second rates.
fn per_second(series: &Series, values: &[u64]) -> Vec<f64> {
    let width = f64::from(series.bucket_secs);
    values.iter().map(|v| *v as f64 / width).collect()
}

/// The latency histogram: bars over log-spaced buckets (doubling from
/// 100 µs), as SVG; `None` without samples.
fn latency_histogram(report: &Report) -> Result<Option<String>, String> {
    let Some(k) = &report.checker else {
        return Ok(None);
    };
    let h = k.latency_us.histogram().map_err(|e| e.to_string())?;
    if h.is_empty() {
        return Ok(None);
    }
    let mut bars: Vec<(String, u64)> = Vec::new();
    for v in h.iter_log(100, 2.0) {
        bars.push((
            format_ms(v.value_iterated_to() as f64 / 1e3),
            v.count_since_last_iteration(),
        ));
    }
    let n = bars.len() as u32;
    let y_end = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency histogram", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((0u32..n).into_segmented(), 0.0..y_end)
            .map_err(|e| e.to_string())?;
        let label = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                .get(*i as usize)
                .map(|b| format!("≤{}", b.0))
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .x_desc("end-to-end latency, ms")
            .y_desc("readings")
            .x_labels(bars.len())
            .x_label_formatter(&label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(COLOURS[0].filled())
                    .margin(2)
                    .data(bars.iter().enumerate().map(|(i, b)| (i as u32, b.1 as f64))),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

/// Milliseconds, short.
fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// One `<figure>`: an id, the SVG and a caption.
fn figure(out: &mut String, id: &str, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure id=\"{id}\">{svg}<figcaption>{caption}</figcaption></figure>"
    );
}

/// A two-column table.
fn table(out: &mut String, rows: &[(String, String)]) {
    out.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>\n");
}

/// The whole page.
pub(crate) fn render(r: &Report) -> Result<String, String> {
    let series = r.series.clone().unwrap_or_default();
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>embermq sim report</title><style>\
         body{font-family:sans-serif;max-width:960px;margin:1em auto;color:#222}\
         table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;\
         padding:.2em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}\
         .clean{color:#1a7f37}.unclean{color:#c62828}figure{margin:1em 0}\
         figcaption{font-size:.9em;color:#555}.facts{display:flex;gap:1.5em;\
         flex-wrap:wrap;align-items:flex-start}.facts>div{flex:1 1 360px}\
         </style></head><body>\n",
    );
    let shards: Vec<String> = r
        .shards
        .iter()
        .map(|s| format!("{}/{}", s.index, s.count))
        .collect();
    let _ = writeln!(
        out,
        "<h1>embermq sim: {} devices on {}</h1>",
        r.devices,
        esc(&r.broker)
    );
    if r.clean {
        out.push_str("<h2 id=\"verdict\" class=\"clean\">Verdict: clean</h2>\n");
    } else {
        out.push_str("<h2 id=\"verdict\" class=\"unclean\">Verdict: NOT clean</h2>\n<ul>");
        for reason in &r.reasons {
            let _ = write!(out, "<li>{}</li>", esc(reason));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<div class=\"facts\"><div><h2>Settings</h2>\n");
    let mut settings = vec![
        ("broker".to_owned(), r.broker.clone()),
        ("MQTT".to_owned(), r.protocol.clone()),
        ("devices".to_owned(), r.devices.to_string()),
        ("shards".to_owned(), shards.join(", ")),
        ("publishing".to_owned(), format!("{:.0} s", r.duration_secs)),
        ("wall time".to_owned(), format!("{:.1} s", r.wall_secs)),
    ];
    settings.extend(r.settings.iter().cloned());
    table(&mut out, &settings);
    out.push_str("</div><div><h2>Totals</h2>\n");
    let q = |p: &super::report::PerQos| format!("{} / {} / {}", p.qos0, p.qos1, p.qos2);
    let mut totals = vec![
        ("published (QoS 0/1/2)".to_owned(), q(&r.published)),
        ("acknowledged (QoS 0/1/2)".to_owned(), q(&r.acknowledged)),
        (
            "links".to_owned(),
            format!(
                "{} connects, {} reconnects, peak {} connected, {} cut on purpose",
                r.connects, r.reconnects, r.connected_peak, r.cuts
            ),
        ),
        (
            "connect time ms (p50 / p90 / p99 / max)".to_owned(),
            ms4(&r.connect_us),
        ),
    ];
    if let Some(k) = &r.checker {
        totals.extend([
            ("received".to_owned(), k.received.to_string()),
            ("unique (QoS 0/1/2)".to_owned(), q(&k.unique)),
            ("lost (QoS 0/1/2)".to_owned(), q(&k.lost)),
            (
                "lost: never acknowledged / acknowledged, never delivered".to_owned(),
                format!("{} / {}", k.lost_never_acknowledged, k.lost_acknowledged),
            ),
            ("duplicates (QoS 0/1/2)".to_owned(), q(&k.duplicates)),
            ("reordered".to_owned(), k.reordered.to_string()),
            (
                "latency ms (p50 / p90 / p99 / max)".to_owned(),
                ms4(&k.latency_us),
            ),
        ]);
    }
    table(&mut out, &totals);
    out.push_str("</div></div>\n<h2>Over time</h2>\n");
    let rate = |v: &[u64]| per_second(&series, v);
    let svg = line_chart(
        &series,
        "Throughput",
        "readings per second",
        &[
            Line {
                name: "published",
                values: rate(&series.published),
            },
            Line {
                name: "acknowledged",
                values: rate(&series.acknowledged),
            },
            Line {
                name: "received",
                values: rate(&series.received),
            },
        ],
    )?;
    figure(
        &mut out,
        "throughput",
        &svg,
        &format!(
            "Readings per second, {} s buckets. In all: <span data-series=\"published\">{}</span> \
             published, <span data-series=\"acknowledged\">{}</span> acknowledged, \
             <span data-series=\"received\">{}</span> received.",
            series.bucket_secs,
            sum(&series.published),
            sum(&series.acknowledged),
            sum(&series.received)
        ),
    );
    let lat = |f: fn(&super::series::BucketLatency) -> u64| -> Vec<f64> {
        series.latency.iter().map(|l| f(l) as f64 / 1e3).collect()
    };
    let svg = line_chart(
        &series,
        "Latency over time",
        "ms",
        &[
            Line {
                name: "p50",
                values: lat(|l| l.p50),
            },
            Line {
                name: "p99",
                values: lat(|l| l.p99),
            },
            Line {
                name: "max",
                values: lat(|l| l.max),
            },
        ],
    )?;
    let latency_count: u64 = series.latency.iter().map(|l| l.count).sum();
    let overall = r
        .checker
        .as_ref()
        .map(|k| ms4(&k.latency_us))
        .unwrap_or_default();
    figure(
        &mut out,
        "latency",
        &svg,
        &format!(
            "End-to-end latency of the readings first seen in each bucket \
             (<span data-series=\"latency-count\">{latency_count}</span> readings). \
             Whole run, p50 / p90 / p99 / max: {overall} ms."
        ),
    );
    if let Some(svg) = latency_histogram(r)? {
        let count = r.checker.as_ref().map_or(0, |k| k.latency_us.count);
        figure(
            &mut out,
            "latency-histogram",
            &svg,
            &format!(
                "Readings by end-to-end latency (<span data-series=\"histogram-count\">{count}</span> readings)."
            ),
        );
    }
    let svg = line_chart(
        &series,
        "Connections",
        "devices; connects per second",
        &[
            Line {
                name: "connected",
                values: series.connected.iter().map(|v| *v as f64).collect(),
            },
            Line {
                name: "connects/s",
                values: rate(&series.connects),
            },
        ],
    )?;
    figure(
        &mut out,
        "connections",
        &svg,
        &format!(
            "Devices connected and connects per second. In all: \
             <span data-series=\"connects\">{}</span> connects, peak {} connected.",
            sum(&series.connects),
            r.connected_peak
        ),
    );
    let error_lines: Vec<Line<'_>> = series
        .errors
        .iter()
        .map(|(kind, v)| Line {
            name: kind,
            values: v.iter().map(|c| *c as f64).collect(),
        })
        .collect();
    let svg = line_chart(&series, "Errors by kind", "errors per bucket", &error_lines)?;
    let error_total: u64 = series.errors.values().map(|v| sum(v)).sum();
    figure(
        &mut out,
        "errors",
        &svg,
        &format!(
            "Errors per {} s bucket, by kind (<span data-series=\"errors\">{error_total}</span> in all).",
            series.bucket_secs
        ),
    );
    out.push_str("<h2>Errors</h2>\n");
    if r.errors.is_empty() {
        out.push_str("<p>none</p>\n");
    } else {
        out.push_str("<table><tr><th>kind</th><th>count</th><th>first</th></tr>");
        for (kind, count) in &r.errors {
            let first = r
                .error_first
                .get(kind)
                .cloned()
                .unwrap_or_else(|| super::verdict::kind_meaning(kind).to_owned());
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{count}</td><td>{}</td></tr>",
                esc(kind),
                esc(&first)
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(k) = &r.checker {
        out.push_str("<h2>Worst devices</h2>\n");
        if k.worst_devices.is_empty() {
            out.push_str("<p>No device lost or duplicated a reading.</p>\n");
        } else {
            let _ = write!(
                out,
                "<p>{} devices with loss, {} with duplicates; the first 20:</p>\
                 <table id=\"worst-devices\"><tr><th>device</th><th>published</th>\
                 <th>arrived</th><th>duplicates</th></tr>",
                k.devices_with_loss, k.devices_with_duplicates
            );
            for (id, published, unique, duplicates) in &k.worst_devices {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{published}</td><td>{unique}</td><td>{duplicates}</td></tr>",
                    esc(id)
                );
            }
            out.push_str("</table>\n");
        }
    }
    let json = serde_json::to_string(&series).map_err(|e| e.to_string())?;
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"embermq-series\">{}</script>\n</body></html>\n",
        json.replace("</", "<\\/")
    );
    Ok(out)
}

/// p50 / p90 / p99 / max of a distribution of microseconds, in ms.
fn ms4(d: &super::report::Distribution) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2}",
        d.p50 as f64 / 1e3,
        d.p90 as f64 / 1e3,
        d.p99 as f64 / 1e3,
        d.max as f64 / 1e3
    )
}

/// Writes the page for `r` to `path`.
pub(crate) fn save(r: &Report, path: &std::path::Path) -> Result<(), String> {
    let page = render(r)?;
    std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_what_a_broker_or_device_id_could_smuggle_in() {
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}
