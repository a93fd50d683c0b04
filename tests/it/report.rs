//! The HTML reports, as a user sees them: the SciFact fit's report loads in
//! headless Chromium without console errors, its charts are there (one
//! circle per grid gamma), and a screenshot comes out; `nudge report`
//! redraws a saved fit exactly as `nudge fit --html` drew it.
//!
//! Chromium is Debian's `chromium` (`.ci/run` installs it and sets
//! `NUDGE_REQUIRE_CHROMIUM=1`, which makes its absence a failure; elsewhere
//! the browser checks are skipped with a hint, the rest still runs).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{expect, fixture, load, nudge};
use nudge::{Cpu, FitOptions, Method};

/// The SciFact fit's report JSON for `method`.
fn scifact_report(method: Method) -> serde_json::Value {
    let l = load(&fixture("scifact-f32"));
    nudge::fit(&Cpu, &l.inputs(), &FitOptions::new(method))
        .unwrap()
        .report()
}

/// The `<figure id=ID>` element of a page.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = html[start..].find("</figure>").expect("closed figure") + start;
    &html[start..end]
}

#[test]
fn the_nudge_n_report_draws_every_grid_point_and_marks_gamma() {
    let r = scifact_report(Method::NudgeN);
    let html = nudge::report::fit_html(&r).unwrap();
    let gamma = figure(&html, "gamma-chart");
    // One circle per gamma of the grid (25), the chosen one a triangle.
    assert_eq!(gamma.matches("<circle").count(), 25);
    assert!(gamma.contains("<polygon") || gamma.contains("<polyline"));
    for id in ["test-chart", "query-chart", "moved-chart", "time-chart"] {
        assert!(figure(&html, id).contains("<svg"), "{id} has no chart");
    }
    // Self-contained: no scripts, nothing fetched (the SVG namespace is a
    // name, not a fetch).
    for fetch in ["<script", "<link", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "the page has {fetch}");
    }
    assert!(html.contains("555 of 5183 records moved"));
}

#[test]
fn the_nudge_m_report_draws_the_interval_count() {
    let r = scifact_report(Method::NudgeM);
    let html = nudge::report::fit_html(&r).unwrap();
    let gamma = figure(&html, "gamma-chart");
    assert!(gamma.contains("<svg") && gamma.contains("contained in"));
    let intervals = r["dev_intervals"].as_array().unwrap().len();
    assert_eq!(
        Some(intervals as u64),
        r["dev_scores"]["intervals"].as_u64()
    );
}

#[test]
fn a_saved_report_redraws_the_same_page() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html, again) = (
        dir.path().join("fit.json"),
        dir.path().join("fit.html"),
        dir.path().join("again.html"),
    );
    let data = fixture("small");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = nudge(
        &[
            "fit",
            "--dataset",
            &s(&data),
            "--method",
            "nudge-m",
            "--report",
            &s(&json),
            "--html",
            &s(&html),
            "--device",
            "cpu",
            "-q",
        ],
        &[],
    );
    expect(&out, 0, &[]);
    let out = nudge(&["report", &s(&json), "--html", &s(&again), "-q"], &[]);
    expect(&out, 0, &[]);
    assert_eq!(
        std::fs::read(&html).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // Not a report: a data error naming the file.
    std::fs::write(&json, "{\"x\": 1}").unwrap();
    let out = nudge(&["report", &s(&json), "--html", &s(&again)], &[]);
    expect(&out, 3, &["fit.json", "not a fit report"]);
}

/// Debian's chromium, or `None` (after a hint) when it is not installed and
/// not required.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("NUDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    if path.exists() {
        return Some(path);
    }
    if std::env::var("NUDGE_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!(
            "NUDGE_REQUIRE_CHROMIUM=1 but {} is not there",
            path.display()
        );
    }
    eprintln!("skipping the browser check: apt-get install chromium (or set NUDGE_CHROMIUM)");
    None
}

/// Runs headless Chromium on `page` with `args`; returns stdout and stderr.
fn headless(chrome: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page's console messages, as Chromium logs them.
fn console(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

#[test]
fn the_scifact_report_loads_in_chromium_and_renders() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("scifact.html");
    let html = nudge::report::fit_html(&scifact_report(Method::NudgeN)).unwrap();
    std::fs::write(&page, &html).unwrap();

    // The DOM as loaded: every chart there, one circle per grid gamma, and
    // no console message at all (the page has no scripts).
    let (dom, log) = headless(&chrome, &page, &["--dump-dom"]);
    assert_eq!(figure(&dom, "gamma-chart").matches("<circle").count(), 25);
    for id in ["test-chart", "query-chart", "moved-chart", "time-chart"] {
        assert!(figure(&dom, id).contains("<svg"));
    }
    assert!(
        console(&log).is_empty(),
        "console messages: {:?}",
        console(&log)
    );

    // The console check catches an error when there is one.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<html><body><script>undefined_fn();</script></body></html>",
    )
    .unwrap();
    let (_, log) = headless(&chrome, &bad, &["--dump-dom"]);
    assert!(
        console(&log).iter().any(|l| l.contains("undefined_fn")),
        "{log}"
    );

    // A screenshot, as the README shows.
    let png = dir.path().join("report.png");
    headless(
        &chrome,
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=900,1400",
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (900, 1400));
    // Not a blank page: a blank PNG of this size compresses to a few KB.
    assert!(bytes.len() > 30_000, "{} bytes", bytes.len());
}

/// A CPU bench of a small synthetic dataset, quiet.
const SMALL_BENCH: [&str; 14] = [
    "bench",
    "--records",
    "3000",
    "--dim",
    "16",
    "--train",
    "60",
    "--dev",
    "20",
    "--test",
    "10",
    "--device",
    "cpu",
    "-q",
];

#[test]
fn bench_writes_its_runs_as_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bench.html");
    let p = page.to_str().unwrap();
    let out = nudge(&[&SMALL_BENCH[..], &["--html", p]].concat(), &[]);
    expect(&out, 0, &[]);
    let html = std::fs::read_to_string(&page).unwrap();
    // The table's three runs, and each chart.
    for step in ["eval dev", "fit nudge-m", "fit nudge-n"] {
        assert!(html.contains(step), "no {step}");
    }
    for id in ["wall-chart", "gflops-chart", "memory-chart"] {
        assert!(figure(&html, id).contains("<rect"), "{id} has no bars");
    }
    // The CPU GEMM floor is one of the bars of the GFLOP/s chart.
    assert!(figure(&html, "gflops-chart").contains("CPU GEMM floor"));
}

#[test]
fn bench_holds_each_cpu_run_to_the_gemm_timed_after_it() {
    let out = nudge(&[&SMALL_BENCH[..], &["--json"]].concat(), &[]);
    expect(&out, 0, &[]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    // Each run's phases share the GEMM speed timed after that run, and
    // their floor is their GFLOP at it.
    let mut speeds = Vec::new();
    for run in runs {
        let floor = run["floor"].as_object().expect("a floor per CPU run");
        let gemm = floor["scan"]["gemm_gflops"].as_f64().unwrap();
        assert!(gemm > 0.0, "{run}");
        for (phase, f) in floor {
            assert_eq!(f["gemm_gflops"].as_f64(), Some(gemm), "{phase}");
            let (gflop, floor_s) = (f["gflop"].as_f64().unwrap(), f["floor_s"].as_f64().unwrap());
            assert!(
                (floor_s - gflop / gemm).abs() <= 1e-12 * (1.0 + floor_s),
                "{phase}: {f}"
            );
        }
        speeds.push(gemm);
    }
    // The bench's one figure is their median.
    speeds.sort_by(f64::total_cmp);
    assert_eq!(r["cpu_gemm_gflops"].as_f64(), Some(speeds[1]));
}
