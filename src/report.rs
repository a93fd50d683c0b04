//! Self-contained HTML reports: what a fit did ([`fit_html`], from the
//! JSON of [`crate::Fit::report`]) and what `nudge bench` measured
//! ([`bench_html`]). One file each, charts as inline SVG drawn with
//! `plotters`, inline CSS, no scripts and nothing fetched: readable offline
//! and as a mail attachment. Charts use black, greys and marker shapes, so
//! they read in black and white too.
//!
//! The report is made from the fit's result, never by running anything
//! again, so `nudge report FIT.json` draws a saved fit exactly as
//! `nudge fit --html` drew it.

use plotters::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};

const W: u32 = 760;
const H: u32 = 340;
const GREY: RGBColor = RGBColor(150, 150, 150);
const DARK: RGBColor = RGBColor(60, 60, 60);
const FONT: &str = "sans-serif";

fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::runtime(format!("drawing a chart failed: {e:?}"))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG chart drawn by `f` on a `W x H` area.
fn svg(
    f: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        f(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(buf)
}

fn figure(id: &str, svg: &str, caption: &str) -> String {
    format!("<figure id=\"{id}\">{svg}<figcaption>{caption}</figcaption></figure>\n")
}

/// Bounds for an axis holding `values`, with a little room, never empty.
fn range(values: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (
        if floor_zero && lo >= 0.0 {
            lo
        } else {
            lo - pad
        },
        hi + pad,
    )
}

/// Axes over `x` and `y`, labelled with their units: the frame every
/// numeric chart here is drawn in.
fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &str,
    y_desc: &str,
) -> Result<
    ChartContext<
        'a,
        SVGBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    Ok(chart)
}

/// NUDGE-N: every grid gamma with its dev score (a circle each), the chosen
/// one marked by a triangle.
fn grid_chart(points: &[(f64, f64)], gamma: f64, val_k: &str) -> Result<String> {
    svg(|root| {
        let (x0, x1) = range(points.iter().map(|p| p.0), true);
        let (y0, y1) = range(points.iter().map(|p| p.1), false);
        let mut chart = axes(
            root,
            x0..x1,
            y0..y1,
            "gamma (largest squared move of a record)",
            &format!("dev score (hit rate@{val_k})"),
        )?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &GREY))
            .map_err(draw_err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, BLACK.filled())))
            .map_err(draw_err)?;
        if let Some(&p) = points.iter().find(|p| p.0 == gamma) {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (p.0, p.1),
                    9,
                    DARK.stroke_width(2),
                )))
                .map_err(draw_err)?;
        }
        Ok(())
    })
}

/// NUDGE-M: how many dev (query, answer) intervals contain each gamma, as a
/// step function over the swept range, the chosen gamma marked.
fn intervals_chart(intervals: &[(f64, f64)], gamma: f64) -> Result<String> {
    // The swept range: up to the largest finite bound (the reference's "no
    // upper bound" is 1e8), with room past the chosen gamma.
    let finite_hi = intervals
        .iter()
        .flat_map(|&(l, h)| [l, h])
        .filter(|&x| x.is_finite() && x < 1e7)
        .fold(0.0f64, f64::max);
    let x1 = (finite_hi.max(gamma * 2.0) * 1.05).max(1e-3);
    let mut events: Vec<(f64, i64)> = Vec::with_capacity(intervals.len() * 2);
    for &(l, h) in intervals {
        events.push((l, 1));
        events.push((h, -1));
    }
    // Lows before highs at equal values, as the sweep counts them.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut steps = vec![(0.0, 0i64)];
    let mut count = 0;
    for (x, d) in events {
        if x > x1 {
            break;
        }
        steps.push((x, count));
        count += d;
        steps.push((x, count));
    }
    steps.push((x1, count));
    let best = steps.iter().map(|s| s.1).max().unwrap_or(0) as f64;
    let at_gamma = steps.iter().rfind(|s| s.0 <= gamma).map_or(0, |s| s.1) as f64;
    svg(|root| {
        let mut chart = axes(
            root,
            0.0..x1,
            0.0..(best * 1.1).max(1.0),
            "gamma (length of each record's move)",
            "dev intervals containing gamma",
        )?;
        chart
            .draw_series(LineSeries::new(
                steps.iter().map(|&(x, c)| (x, c as f64)),
                BLACK.stroke_width(2),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(TriangleMarker::new(
                (gamma, at_gamma),
                9,
                DARK.stroke_width(2),
            )))
            .map_err(draw_err)?;
        Ok(())
    })
}

/// Labelled vertical bars (label, value, filled black or grey).
fn bar_chart(bars: &[(String, f64, bool)], y_desc: &str, y_max: Option<f64>) -> Result<String> {
    svg(|root| {
        let top = y_max.unwrap_or_else(|| bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.15);
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1e-9))
            .map_err(draw_err)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                bars.get(*i).map(|b| b.0.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let style = if b.2 { BLACK.filled() } else { GREY.filled() };
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), b.1),
                    ],
                    style,
                );
                r.set_margin(0, 0, 8, 8);
                r
            }))
            .map_err(draw_err)?;
        Ok(())
    })
}

/// Per test query, NDCG after minus before, sorted: the spread of gains and
/// losses behind the average.
fn delta_chart(deltas: &[f64], k: u64) -> Result<String> {
    svg(|root| {
        let (lo, hi) = range(deltas.iter().copied().chain([0.0]), false);
        let n = deltas.len().max(1) as f64;
        let mut chart = axes(
            root,
            0.0..n,
            lo..hi,
            "test queries, sorted by change",
            &format!("NDCG@{k} after - before"),
        )?;
        chart
            .draw_series(deltas.iter().enumerate().map(|(i, &d)| {
                let style = if d >= 0.0 {
                    BLACK.filled()
                } else {
                    GREY.filled()
                };
                Rectangle::new([(i as f64, 0.0), (i as f64 + 1.0, d)], style)
            }))
            .map_err(draw_err)?;
        Ok(())
    })
}

/// A histogram of `values` in `bins` equal bins.
fn histogram(values: &[f64], bins: usize, x_desc: &str) -> Result<String> {
    let (lo, hi) = range(values.iter().copied(), true);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    svg(|root| {
        let mut chart = axes(root, lo..hi, 0.0..(top * 1.1).max(1.0), x_desc, "records")?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width * 0.92, c as f64)], BLACK.filled())
            }))
            .map_err(draw_err)?;
        Ok(())
    })
}

const CSS: &str = "body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#111;line-height:1.45}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #999}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left}\
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}figcaption{font-size:.9em;color:#333}.note{background:#f3f3f3;border-left:4px solid #555;padding:.4em .8em}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

fn row(cells: &[String]) -> String {
    let mut s = String::from("<tr>");
    for c in cells {
        if c.parse::<f64>().is_ok() {
            s.push_str(&format!("<td class=\"n\">{c}</td>"));
        } else {
            s.push_str(&format!("<td>{c}</td>"));
        }
    }
    s.push_str("</tr>\n");
    s
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => esc(s),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
            _ => n.to_string(),
        },
        other => esc(&other.to_string()),
    }
}

/// What `backend` measured of its work so far, as the fit and eval reports
/// carry it under `timings` (the CLI's and the Python package's alike):
/// `gpu_kernels`, GPU time per kernel from timestamp queries (`{name: {ms,
/// calls, gflops}}`, `gflops` where the kernel counts its work);
/// `gpu_host`, the GPU scan's feeding thread per step (`{name: {ms,
/// calls}}`: `wait_slot`, `fill_upload`, `submit`, and where they occur
/// `host_rows` and `between_pushes`, see [`crate::Backend::host_timings`]);
/// `gpu_tile`, the tuned GEMM tile per job shape (`{"d=D,queries<=Q":
/// "TILE (SOURCE)"}`). Each is left out where there is none (all of them on
/// the CPU).
pub fn backend_timings(backend: &dyn crate::Backend) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (key, times) in [
        ("gpu_kernels", backend.kernel_timings()),
        ("gpu_host", backend.host_timings()),
    ] {
        if let Some(v) = times_json(times) {
            out.insert(key.into(), v);
        }
    }
    if let Some(v) = tiles_json(backend) {
        out.insert("gpu_tile".into(), v);
    }
    out
}

/// The GPU autotuner's choices so far as `{"d=D,queries<=Q": "TILE
/// (SOURCE)"}`; `None` when nothing was tuned (the CPU, tuning off).
pub fn tiles_json(backend: &dyn crate::Backend) -> Option<Value> {
    let tiles: serde_json::Map<String, Value> = backend
        .tune_reports()
        .iter()
        .map(|r| {
            let shape = format!("d={},queries<={}", r.key.d, r.key.queries);
            (
                shape,
                Value::from(format!("{} ({})", r.tile, r.source.as_str())),
            )
        })
        .collect();
    (!tiles.is_empty()).then_some(Value::Object(tiles))
}

/// Times as `{name: {ms, calls, gflops}}`; `None` when there are none.
pub fn times_json(times: Vec<crate::backend::gpu::KernelTime>) -> Option<Value> {
    if times.is_empty() {
        return None;
    }
    let mut o = serde_json::Map::new();
    for t in times {
        let mut k = serde_json::Map::new();
        k.insert("ms".into(), serde_json::json!(t.ms));
        k.insert("calls".into(), serde_json::json!(t.calls));
        if let Some(g) = t.gflops() {
            k.insert("gflops".into(), serde_json::json!(g));
        }
        o.insert(t.name, Value::Object(k));
    }
    Some(Value::Object(o))
}

/// The HTML report of a fit, from its report JSON ([`crate::Fit::report`],
/// as `nudge fit --report` writes it, optionally with an `inputs` object
/// describing the files).
pub fn fit_html(r: &Value) -> Result<String> {
    let bad = |what: &str| Error::data("report", format!("not a fit report: {what} is missing"));
    let method = r["method"].as_str().ok_or_else(|| bad("method"))?;
    let gamma = num(&r["gamma"]).ok_or_else(|| bad("gamma"))?;
    let records = num(&r["records"]).unwrap_or(0.0);
    let moved = num(&r["moved_records"]).unwrap_or(0.0);
    let mut body = format!(
        "<h1>nudge fit: {method}, gamma {gamma:.6}</h1>\n<p>{} of {} records moved ({:.2}%) on {} ({}).</p>\n",
        moved,
        records,
        if records > 0.0 {
            100.0 * moved / records
        } else {
            0.0
        },
        fmt(&r["device"]),
        fmt(&r["backend"]),
    );
    if let Some(reason) = r["gamma_reason"].as_str() {
        body.push_str(&format!("<p class=\"note\">Gamma: {}.</p>\n", esc(reason)));
    }

    // Inputs, so the report stands on its own.
    body.push_str("<h2>Inputs</h2>\n<table>\n");
    let q = &r["queries"];
    for (k, v) in [
        ("method", r["method"].clone()),
        (
            "records x dim",
            Value::String(format!("{} x {}", fmt(&r["records"]), fmt(&r["dim"]))),
        ),
        (
            "queries (train / dev / test)",
            Value::String(format!(
                "{} / {} / {}",
                fmt(&q["train"]),
                fmt(&q["dev"]),
                fmt(&q["test"])
            )),
        ),
        ("backend", r["backend"].clone()),
        ("device", r["device"].clone()),
        ("zero-norm rows kept", r["zero_rows"].clone()),
    ] {
        body.push_str(&row(&[k.to_string(), fmt(&v)]));
    }
    if let Some(inputs) = r["inputs"].as_object() {
        for (k, v) in inputs {
            body.push_str(&row(&[esc(k), fmt(v)]));
        }
    }
    body.push_str("</table>\n");

    // Gamma.
    body.push_str("<h2>How gamma was chosen</h2>\n");
    match &r["dev_scores"] {
        Value::Array(points) => {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((num(&p["gamma"])?, num(&p["score"])?)))
                .collect();
            let val_k = r["val_k"]
                .as_u64()
                .map_or("k".to_string(), |k| k.to_string());
            let chart = grid_chart(&pts, gamma, &val_k)?;
            let max_g = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
            let mut notes = Vec::new();
            if pts.len() > 1 && pts.iter().all(|p| p.1 == pts[0].1) {
                notes.push("The dev score is the same for every gamma: the curve is flat, gamma hardly matters here.".to_string());
            } else if pts.len() > 1 && gamma == max_g {
                notes.push(format!("The chosen gamma is at the upper edge of the searched grid ({max_g}): a larger gamma might score higher."));
            } else if pts.len() > 1 && gamma == 0.0 {
                notes.push("The chosen gamma is 0, the lower edge of the grid: no move raised the dev score.".to_string());
            }
            body.push_str(&figure(
                "gamma-chart",
                &chart,
                &format!(
                    "NUDGE-N: the dev score of each of the {} gammas of the grid (circles); the chosen gamma {gamma} is marked by a triangle.",
                    pts.len()
                ),
            ));
            for n in notes {
                body.push_str(&format!("<p class=\"note\">{}</p>\n", esc(&n)));
            }
        }
        Value::Object(o) => {
            let intervals: Vec<(f64, f64)> = r["dev_intervals"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| Some((num(&p[0])?, num(&p[1])?)))
                        .collect()
                })
                .unwrap_or_default();
            let chart = intervals_chart(&intervals, gamma)?;
            body.push_str(&figure(
                "gamma-chart",
                &chart,
                &format!(
                    "NUDGE-M: how many of the {} dev (query, answer) pairs' intervals contain each gamma ({} pairs can rank first at all); the sweep takes the lowest gamma of the highest step, {gamma:.6}, contained in {} intervals.",
                    fmt(&o.get("pairs").cloned().unwrap_or(Value::Null)),
                    fmt(&o.get("intervals").cloned().unwrap_or(Value::Null)),
                    fmt(&o.get("best_count").cloned().unwrap_or(Value::Null)),
                ),
            ));
            if o.get("best_count").and_then(Value::as_u64) == Some(0) {
                body.push_str("<p class=\"note\">No interval contains any gamma above 0: the dev queries could not judge a move.</p>\n");
            }
        }
        _ => body.push_str("<p>Gamma was fixed by the caller: no search ran.</p>\n"),
    }

    // Test quality.
    if let (Some(b), Some(a)) = (r["before"].as_object(), r["after"].as_object()) {
        body.push_str("<h2>Test quality</h2>\n<table><tr><th>metric</th><th>before</th><th>after</th><th>change</th></tr>\n");
        let mut bars = Vec::new();
        for (key, vb) in b {
            if key == "queries" {
                continue;
            }
            let (x, y) = (
                num(vb).unwrap_or(f64::NAN),
                num(&a[key]).unwrap_or(f64::NAN),
            );
            body.push_str(&row(&[
                key.clone(),
                format!("{x:.4}"),
                format!("{y:.4}"),
                format!("{:+.4}", y - x),
            ]));
            bars.push((format!("{key} before"), x, false));
            bars.push((format!("{key} after"), y, true));
        }
        body.push_str(&format!(
            "</table>\n<p>{} test queries.</p>\n",
            fmt(&a["queries"])
        ));
        body.push_str(&figure(
            "test-chart",
            &bar_chart(&bars, "score", Some(1.0))?,
            "Recall and NDCG on the test queries before (grey) and after (black) the fit.",
        ));
        if let Some(pq) = r["per_query_ndcg"].as_object() {
            let before: Vec<f64> = pq["before"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(num)
                .collect();
            let after: Vec<f64> = pq["after"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(num)
                .collect();
            let mut deltas: Vec<f64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
            deltas.sort_by(f64::total_cmp);
            let gained = deltas.iter().filter(|d| **d > 1e-12).count();
            let lost = deltas.iter().filter(|d| **d < -1e-12).count();
            let k = pq["k"].as_u64().unwrap_or(10);
            body.push_str(&figure(
                "query-chart",
                &delta_chart(&deltas, k)?,
                &format!(
                    "Change of NDCG@{k} per test query: {gained} gained (black), {lost} lost (grey), {} unchanged.",
                    deltas.len() - gained - lost
                ),
            ));
        }
    }

    // The moved records.
    body.push_str("<h2>Moved records</h2>\n");
    let dist: Vec<f64> = r["moved_distances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(num)
        .collect();
    body.push_str(&format!(
        "<p>{moved} records moved, {:.2}% of the corpus: the records that answer a training query.</p>\n",
        if records > 0.0 { 100.0 * moved / records } else { 0.0 }
    ));
    if !dist.is_empty() {
        let mean = dist.iter().sum::<f64>() / dist.len() as f64;
        let max = dist.iter().copied().fold(0.0, f64::max);
        body.push_str(&figure(
            "moved-chart",
            &histogram(
                &dist,
                20,
                "distance moved (L2, in units of a record's norm)",
            )?,
            &format!("How far the moved records moved: mean {mean:.4}, largest {max:.4}."),
        ));
    }

    // Time.
    if let Some(t) = r["timings"].as_object() {
        body.push_str("<h2>Where the time went</h2>\n<table><tr><th>phase</th><th>ms</th></tr>\n");
        let mut bars = Vec::new();
        for (phase, s) in t {
            if phase == "gpu_kernels" || phase == "gpu_host" || phase == "total" {
                continue;
            }
            if let Some(s) = num(s) {
                body.push_str(&row(&[esc(phase), format!("{:.1}", s * 1e3)]));
                bars.push((phase.clone(), s * 1e3, true));
            }
        }
        if let Some(total) = num(&t.get("total").cloned().unwrap_or(Value::Null)) {
            body.push_str(&row(&["total".into(), format!("{:.1}", total * 1e3)]));
        }
        body.push_str("</table>\n");
        body.push_str(&figure(
            "time-chart",
            &bar_chart(&bars, "milliseconds", None)?,
            "Wall time per phase.",
        ));
    }
    Ok(page(&format!("nudge fit: {method}"), &body))
}

/// The HTML report of `nudge bench --json`'s object: its table, wall time
/// per step and backend, similarity GFLOP/s against this machine's GEMM
/// floor, and peak memory.
pub fn bench_html(b: &Value) -> Result<String> {
    let runs = b["runs"]
        .as_array()
        .ok_or_else(|| Error::data("bench", "not a bench result: runs is missing"))?;
    let mut body = format!(
        "<h1>nudge bench</h1>\n<p>Dataset: {}.</p>\n",
        fmt(&b["dataset"])
    );
    body.push_str("<table><tr><th>backend</th><th>step</th><th>wall s</th><th>scan s</th><th>GFLOP/s</th><th>peak MiB</th></tr>\n");
    let mut wall = Vec::new();
    let mut gflops = Vec::new();
    let mut peak = Vec::new();
    for r in runs {
        let label = format!(
            "{} {}",
            r["backend"].as_str().unwrap_or(""),
            r["step"].as_str().unwrap_or("")
        );
        let cpu = r["backend"].as_str() == Some("cpu");
        body.push_str(&row(&[
            fmt(&r["backend"]),
            fmt(&r["step"]),
            format!("{:.3}", num(&r["wall_s"]).unwrap_or(f64::NAN)),
            format!("{:.3}", num(&r["timings"]["scan"]).unwrap_or(f64::NAN)),
            format!("{:.1}", num(&r["similarity_gflops"]).unwrap_or(f64::NAN)),
            format!("{:.0}", num(&r["peak_mib"]).unwrap_or(f64::NAN)),
        ]));
        wall.push((label.clone(), num(&r["wall_s"]).unwrap_or(0.0), cpu));
        gflops.push((
            label.clone(),
            num(&r["similarity_gflops"]).unwrap_or(0.0),
            cpu,
        ));
        peak.push((label, num(&r["peak_mib"]).unwrap_or(0.0), cpu));
    }
    body.push_str("</table>\n");
    if let Some(g) = num(&b["cpu_gemm_gflops"]) {
        gflops.push(("CPU GEMM floor".into(), g, false));
    }
    if let Some(p) = runs.iter().find_map(|r| num(&r["fp32_peak_gflops"])) {
        gflops.push(("GPU FP32 peak".into(), p, false));
    }
    body.push_str(&figure(
        "wall-chart",
        &bar_chart(&wall, "seconds", None)?,
        "Wall time per step: CPU runs black, GPU runs grey.",
    ));
    body.push_str(&figure(
        "gflops-chart",
        &bar_chart(&gflops, "similarity GFLOP/s", None)?,
        "Similarity GFLOP/s of each run's corpus scan, beside this machine's measured CPU GEMM speed (and the GPU's measured FP32 peak, when known).",
    ));
    body.push_str(&figure(
        "memory-chart",
        &bar_chart(&peak, "peak MiB", None)?,
        "Peak resident memory of each run.",
    ));
    if let Some(notes) = b["notes"].as_array() {
        for n in notes {
            body.push_str(&format!("<p class=\"note\">{}</p>\n", fmt(n)));
        }
    }
    Ok(page("nudge bench", &body))
}
