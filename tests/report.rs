//! `ipw report` on runs whose every number is known in closed form: a table made here,
//! imported with `ipw import` (so the runs are ordinary run directories), one of them given a
//! power log written here. The page is checked as text (no remote references, an `<svg>` with
//! marks per figure, escaping) and in a real headless Chromium with the network off (no script
//! error, no load the page's Content-Security-Policy refused, every chart drawn), and
//! screenshots are kept as artefacts.
//!
//! | query | dataset | small | mid<i> | big |
//! |---|---|---|---|---|
//! | q1 | math | 1 | 1 | 1 |
//! | q2 | math | 0 | 1 | 1 |
//! | q3 | math | 0 | 0 | 1 |
//! | q4 | math | 1 | 0 | 0 |
//! | q5 | facts | 1 | 1 | 1 |
//! | q6 | facts | 0 | 0 | 0 |
//! | q7 | facts | 0 | 1 | 0 |
//! | q8 | facts | 1 | 1 | 1 |
//!
//! Query k (from 0) costs small 1 + 0.1k J in 0.5 s, mid<i> 4 + 0.5k J in 1 s, big 20 + k J
//! in 2 s. `mid<i>` checks that names from runs are escaped.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCORES: [[u8; 3]; 8] = [
    [1, 1, 1],
    [0, 1, 1],
    [0, 0, 1],
    [1, 0, 0],
    [1, 1, 1],
    [0, 0, 0],
    [0, 1, 0],
    [1, 1, 1],
];
const MODELS: [(&str, f64, f64, f64); 3] = [
    // name, J of query 0, J more per query, latency
    ("small", 1.0, 0.1, 0.5),
    ("mid<i>", 4.0, 0.5, 1.0),
    ("big", 20.0, 1.0, 2.0),
];

fn joules(m: usize, q: usize) -> f64 {
    MODELS[m].1 + MODELS[m].2 * q as f64
}

/// The imported runs, and the `small` run (given a power log).
fn runs(dir: &Path) -> (PathBuf, PathBuf) {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,latency_s\n");
    for (q, s) in SCORES.iter().enumerate() {
        let dataset = if q < 4 { "math" } else { "facts" };
        for (m, (name, _, _, latency)) in MODELS.iter().enumerate() {
            csv += &format!(
                "q{},{name},{dataset},{},{},{latency}\n",
                q + 1,
                s[m],
                joules(m, q)
            );
        }
    }
    let out = import_table(dir, &csv);
    let small = out.join("small");
    add_power_log(&small);
    (out, small)
}

/// Describe two samplers' channels in the run's one session with an idle baseline over
/// [-2, -0.5] s, and write their readings: a 1 kHz instant gauge at 10 W idle and 30 + 5k W
/// during query k (imported windows are laid end to end from 0: [0.5k, 0.5k + 0.5]); a
/// 100 Hz energy counter at a constant 5 W; and a channel no sampler describes.
fn add_power_log(run: &Path) {
    let path = run.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["sessions"][0]["baseline"] = serde_json::json!({"from_s": -2.0, "to_s": -0.5});
    m["sessions"][0]["samplers"] = serde_json::json!([
        {"name": "fake", "path": "/fake.so", "sha256": "", "sdk_version": "1", "rate_hz": 1000.0,
         "interval_s": 0.001, "edge_reads": false, "stats": null, "channels": [
            {"name": "gpu0", "domain": "gpu", "device": null, "update_period_s": 0.001,
             "kind": {"type": "power-gauge", "timing": "instant", "estimated": false}}]},
        {"name": "rapl", "path": "/rapl.so", "sha256": "", "sdk_version": "1", "rate_hz": 100.0,
         "interval_s": 0.01, "edge_reads": false, "stats": null, "channels": [
            {"name": "package0", "domain": "cpu-package", "device": null, "update_period_s": 0.01,
             "kind": {"type": "energy-counter", "resolution_j": 0.001, "wrap_j": null}}]}
    ]);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let mut log = String::new();
    for i in 0..=6500 {
        let t = -2.0 + i as f64 * 0.001;
        let w = if (0.0..4.0).contains(&t) {
            30.0 + 5.0 * (t / 0.5).floor()
        } else {
            10.0
        };
        log += &format!(r#"{{"session":0,"channel":"fake/gpu0","t":{t},"v":{w}}}"#);
        log.push('\n');
    }
    for i in 0..=650 {
        let t = -2.0 + i as f64 * 0.01;
        let j = 5.0 * (t + 2.0);
        log += &format!(r#"{{"session":0,"channel":"rapl/package0","t":{t},"v":{j}}}"#);
        log.push('\n');
    }
    log += "{\"session\":0,\"channel\":\"ghost/x\",\"t\":0.0,\"v\":1.0}\n";
    std::fs::write(run.join("power.jsonl"), log).unwrap();
}

fn report(runs: &Path, out: &Path, extra: &[&str]) -> (String, Value) {
    let mut args = vec![
        "report",
        runs.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run_ipw(&args, runs.parent().unwrap());
    assert!(o.status.success(), "{}", text(&o));
    (
        std::fs::read_to_string(out).unwrap(),
        json(&out.with_extension("json")),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

fn value(v: &Value) -> f64 {
    v["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no value in {v}"))
}

/// The `<figure class="chart" ...>...</figure>` blocks of the page, by their `data-chart`.
fn figures(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(r#"<figure class="chart""#) {
        let end = rest[i..].find("</figure>").expect("figure closes") + i;
        let fig = &rest[i..end];
        let id = fig
            .split("data-chart=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        out.push((id, fig.to_string()));
        rest = &rest[end..];
    }
    out
}

/// No remote reference anywhere: no http(s) URL at all (inline SVG needs no namespace URL in
/// HTML), and no src/href/url() outside the page itself.
fn assert_offline(html: &str) {
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page names a remote URL"
    );
    for attr in ["src=", "url(", "@import", "<link"] {
        assert!(!html.contains(attr), "the page loads something: {attr}");
    }
    for href in html.split("href=\"").skip(1) {
        assert!(href.starts_with('#'), "a link leaves the page: {href:.40}");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
}

#[test]
fn report_numbers_match_the_table_by_hand_and_every_figure_has_marks() {
    let dir = tempfile::tempdir().unwrap();
    let (runs, small) = runs(dir.path());

    // Before `ipw route`: the page says there are no routing results.
    let (html, _) = report(&runs, &dir.path().join("before/report.html"), &[]);
    assert!(html.contains("no routing results"), "{html}");
    assert!(!html.contains("data-chart=\"route-savings\""));

    let o = run_ipw(
        &["route", runs.to_str().unwrap(), "--reference", "big"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("out/report.html");
    let (html, r) = report(&runs, &out, &[]);
    assert_offline(&html);

    // Summary, by hand: accuracy 4/8, 5/8, 5/8; APJ = Σscore / ΣJ; APW = accuracy / (ΣJ /
    // busy seconds), windows end to end so busy = 8 x latency; J/query = ΣJ / 8.
    let rows = r["summary"]["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (m, (name, _, _, latency)) in MODELS.iter().enumerate() {
        let row = rows.iter().find(|x| x["model"] == *name).unwrap();
        let score: f64 = SCORES.iter().map(|s| s[m] as f64).sum();
        let total_j: f64 = (0..8).map(|q| joules(m, q)).sum();
        let acc = score / 8.0;
        assert!(close(value(&row["accuracy"]), acc), "{name}: {row}");
        assert!(close(value(&row["apj"]), score / total_j), "{name}: {row}");
        assert!(
            close(value(&row["apw"]), acc / (total_j / (8.0 * latency))),
            "{name}: {row}"
        );
        assert!(close(row["j_per_query"].as_f64().unwrap(), total_j / 8.0));
        assert!(close(row["latency_p50_s"].as_f64().unwrap(), *latency));
    }
    // Pareto: small (1.35 J, 0.5) and mid<i> (5.75 J, 0.625) are on the frontier; big is as
    // accurate as mid<i> for 23.5 J.
    let pareto = r["pareto"]["data"].as_array().unwrap();
    let on = |n: &str| pareto.iter().find(|p| p["run"] == n).unwrap()["frontier"] == true;
    assert!(on("small") && on("mid<i>") && !on("big"), "{pareto:?}");

    // Coverage: no --reference, so the run with the most energy per query (big); small covers
    // q1 q4 q5 q6 q7 q8, mid<i> all but q3.
    let cov = &r["coverage"]["data"];
    assert_eq!(cov["report"]["reference"], "big");
    assert!(cov["reference_chosen"]
        .as_str()
        .unwrap()
        .contains("most energy per query"));
    let share = |model: &str, group: &str| {
        value(
            &cov["report"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["model"] == model && x["group"] == group)
                .unwrap()["coverage"],
        )
    };
    assert!(close(share("small", "all"), 0.75));
    assert!(close(share("mid<i>", "all"), 0.875));
    assert!(close(share("small", "math"), 0.5));

    // Energy histograms: small's 1.0..1.7 J in ceil(sqrt(8)) = 3 bins of 0.7/3 J: 3, 2, 3.
    let hists = r["energy"]["data"].as_array().unwrap();
    let h = hists.iter().find(|h| h["run"] == "small").unwrap();
    let counts: Vec<u64> = h["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [3, 2, 3]);
    assert!(close(h["mean"].as_f64().unwrap(), 1.35));

    // Trace: small's log, the gauge averaged into at most TRACE_POINTS (600) points, idle
    // power over the baseline as written, the 8 windows (touching, not merged).
    let t = &r["trace"]["data"];
    assert_eq!(t["run"], "small");
    assert_eq!(t["windows"].as_array().unwrap().len(), 8);
    assert_eq!(t["baseline"], serde_json::json!([-2.0, -0.5]));
    assert_eq!(t["undescribed"], serde_json::json!(["ghost/x"]));
    let ch = |name: &str| {
        t["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no channel {name} in {t}"))
            .clone()
    };
    let gpu = ch("fake/gpu0");
    assert_eq!(gpu["readings"], 6501);
    let points = gpu["points"].as_array().unwrap();
    assert_eq!(points.len(), 600);
    assert!((gpu["idle_w"].as_f64().unwrap() - 10.0).abs() < 1e-9);
    let peak = points
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((peak - 65.0).abs() < 1e-6, "peak {peak}");
    let pkg = ch("rapl/package0");
    assert!((pkg["idle_w"].as_f64().unwrap() - 5.0).abs() < 1e-6);
    assert!(pkg["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| (p[1].as_f64().unwrap() - 5.0).abs() < 1e-6));
    assert_eq!(
        r["trace"]["provenance"]["runs"],
        serde_json::json!(["small"])
    );
    assert_eq!(
        r["trace"]["provenance"]["file"].as_str().unwrap(),
        small.join("power.jsonl").to_str().unwrap()
    );

    // Routing, from the route.json `ipw route` wrote in the first run's analysis/.
    let route = &r["routing"]["data"]["route"];
    assert_eq!(route["reference"], "big");
    assert!(!route["routers"].as_array().unwrap().is_empty());

    // Every figure is an <svg> with marks, with its provenance (runs' paths, ipw version, the
    // command line, the energy's source).
    let figs = figures(&html);
    let ids: Vec<&str> = figs.iter().map(|(id, _)| id.as_str()).collect();
    for want in [
        "pareto",
        "apj",
        "apw",
        "coverage",
        "trace",
        "energy",
        "route-savings",
        "route-curves",
    ] {
        assert!(ids.contains(&want), "no figure {want}: {ids:?}");
    }
    let count = |s: &str, what: &str| s.matches(what).count();
    for (id, fig) in &figs {
        assert_eq!(count(fig, "<svg"), 1, "{id}");
        assert!(count(fig, "class=\"mark") > 0, "{id} has no marks");
        assert!(fig.contains("<title") && fig.contains("<desc"), "{id}");
        assert!(
            fig.contains("viewBox=") && fig.contains("width=\"100%\""),
            "{id}"
        );
        assert!(fig.contains("report by ipw "), "{id}: no provenance");
        assert!(fig.contains(" report "), "{id}: no command line");
    }
    let fig = |id: &str| figs.iter().find(|(i, _)| i == id).unwrap().1.clone();
    assert_eq!(count(&fig("pareto"), "<circle class=\"mark point"), 3);
    assert_eq!(count(&fig("pareto"), "class=\"mark pareto\""), 1);
    assert_eq!(count(&fig("apj"), "<rect class=\"mark bar\""), 3);
    assert_eq!(count(&fig("apw"), "class=\"mark ci\""), 3);
    // Coverage: small, mid<i>, best-of-local x all, facts, math.
    assert_eq!(count(&fig("coverage"), "<rect class=\"mark cell\""), 9);
    assert_eq!(count(&fig("trace"), "class=\"mark line\""), 2);
    assert_eq!(count(&fig("trace"), "class=\"mark window\""), 8);
    assert_eq!(count(&fig("trace"), "class=\"mark baseline\""), 1);
    assert_eq!(count(&fig("trace"), "class=\"mark idle\""), 2);
    assert!(fig("trace").contains(&format!("{}/power.jsonl", small.display())));
    assert_eq!(count(&fig("energy"), "<rect class=\"mark bar\""), 9);
    assert!(fig("pareto").contains(&runs.join("big").display().to_string()));
    assert!(fig("pareto").contains("energy imported (no readings)"));

    // Names from runs are escaped everywhere.
    assert!(!html.contains("mid<i>"));
    assert!(html.contains("mid&lt;i&gt;"));

    // The tables as CSV beside the page.
    let csv = std::fs::read_to_string(out.with_extension("summary.csv")).unwrap();
    assert!(csv.starts_with("run,accelerator,path,scored,accuracy"));
    assert_eq!(csv.lines().count(), 4);
    for suffix in ["coverage", "energy", "trace"] {
        assert!(
            out.with_extension(format!("{suffix}.csv")).is_file(),
            "{suffix}"
        );
    }

    // --trace-run and --reference choose; an unknown --trace-run is an error naming the runs.
    let (_, r) = report(
        &runs,
        &dir.path().join("again/report.html"),
        &["--reference", "mid<i>", "--trace-run", "small"],
    );
    assert_eq!(r["coverage"]["data"]["report"]["reference"], "mid<i>");
    let o = run_ipw(
        &[
            "report",
            runs.to_str().unwrap(),
            "-o",
            dir.path().join("x.html").to_str().unwrap(),
            "--trace-run",
            "nope",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--trace-run `nope`: no such run"),
        "{}",
        text(&o)
    );
}

/// Chromium, from `IPW_CHROMIUM` or the PATH. Missing is a failure, not a skip: CI installs it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("IPW_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "IPW_CHROMIUM={} is not a file: install chromium with `scripts/install-deps.sh --tests`",
            p.display()
        );
        return p;
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(p) = found.filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    panic!(
        "chromium not found (checked IPW_CHROMIUM, chromium, chromium-browser, google-chrome): \
         install it with `scripts/install-deps.sh --tests`"
    );
}

/// Where the screenshots go: `$IPW_TEST_ARTEFACTS`, else the target dir's `tmp/`.
fn artefacts() -> PathBuf {
    let dir = std::env::var_os("IPW_TEST_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium on `page` with the network off: every host resolves to nothing and
/// every request goes to a proxy on the discard port, so a fetch can only fail.
fn headless(page: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    let o = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "chromium failed: {:?}\n{err}", o.status);
    (out, err)
}

/// The value of `attr` on the first `<tag ...>` of a dumped DOM.
fn attr(dom: &str, tag: &str, attr: &str) -> Option<String> {
    let open = dom.find(&format!("<{tag}"))?;
    let end = dom[open..].find('>')? + open;
    let head = &dom[open..end];
    let v = head.split(&format!("{attr}=\"")).nth(1)?;
    Some(v.split('"').next()?.to_string())
}

/// Console errors Chromium logged for the page: uncaught errors and refused loads.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            (l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error")))
                || l.contains("Refused to")
        })
        .collect()
}

/// The page in a real browser. How this is checked, and why it is robust: the page carries two
/// inline scripts. The first, in `<head>`, counts `error` events (script errors, failed loads)
/// and `securitypolicyviolation` events (any load the page's `default-src 'none'` policy
/// refused: a fetch it must not make) into `data-errors` on `<html>`. The last, at the end of
/// `<body>`, counts each chart's `.mark` elements into `data-marks`, checks each chart has a
/// laid-out size, and sets `data-ok` on `<body>`. `--dump-dom` prints the DOM after the scripts
/// ran: a missing `data-ok` (the script did not run or threw) fails as surely as `no`. Chromium's
/// own console log is grepped too. A copy of the page with a remote image added must then FAIL
/// the same check: proof that the check sees fetches.
#[test]
fn report_renders_in_headless_chromium_offline_with_every_chart_drawn() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let (runs, _) = runs(dir.path());
    // With a footprint, routing has a carbon chart and the page a footprint table.
    let fp = dir.path().join("footprint.toml");
    std::fs::write(
        &fp,
        "region = \"FRA\"\npue = 1.2\nprice_per_kwh = 0.25\ncurrency = \"EUR\"\n",
    )
    .unwrap();
    let fp = fp.to_str().unwrap();
    let o = run_ipw(
        &[
            "route",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--footprint",
            fp,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let page = dir.path().join("out/report.html");
    let (html, r) = report(&runs, &page, &["--footprint", fp]);
    let charts = figures(&html).len();
    assert!(
        html.contains(r#"id="route-savings-carbon""#),
        "no carbon chart"
    );
    let footprint = r["footprint"]["data"]["rows"].as_array().unwrap();
    assert_eq!(footprint.len(), r["runs"].as_array().unwrap().len());
    assert!(footprint.iter().all(|row| row["g_co2e_per_query"].is_f64()));
    assert!(html.contains(r#"id="fig-footprint""#) && html.contains("FRA (France)"));
    assert!(page.with_extension("footprint.csv").exists());
    let profile = dir.path().join("chromium-profile");

    let (dom, err) = headless(&page, &profile, &["--dump-dom"]);
    assert_eq!(
        attr(&dom, "body", "data-ok").as_deref(),
        Some("yes"),
        "the page's check failed in {}: body {:?}, errors {:?}\n{}",
        browser.display(),
        attr(&dom, "body", "data-ok"),
        attr(&dom, "html", "data-errors"),
        console_errors(&err).join("\n")
    );
    assert_eq!(attr(&dom, "html", "data-errors"), None);
    assert_eq!(
        attr(&dom, "body", "data-charts"),
        Some(charts.to_string()),
        "charts in the DOM"
    );
    let marks: Vec<usize> = dom
        .split("data-marks=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(marks.len(), charts);
    assert!(marks.iter().all(|&n| n > 0), "{marks:?}");
    assert!(
        console_errors(&err).is_empty(),
        "{}",
        console_errors(&err).join("\n")
    );

    // Screenshots: a wide window and a phone-sized one, kept.
    let out = artefacts();
    for (name, size) in [
        ("report-1200.png", "1200,3000"),
        ("report-420.png", "420,3000"),
    ] {
        let shot = out.join(name);
        let _ = std::fs::remove_file(&shot);
        headless(
            &page,
            &profile,
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
                "--hide-scrollbars",
            ],
        );
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
    std::fs::copy(&page, out.join("report.html")).unwrap();
    println!("page: {}", out.join("report.html").display());

    // The check sees a fetch: the same page with a remote image fails it.
    let bad = dir.path().join("out/fetching.html");
    std::fs::write(
        &bad,
        html.replacen(
            "<body>",
            "<body><img alt=\"\" src=\"https://example.com/pixel.png\">",
            1,
        ),
    )
    .unwrap();
    let (dom, _) = headless(&bad, &profile, &["--dump-dom"]);
    assert_eq!(
        attr(&dom, "body", "data-ok").as_deref(),
        Some("no"),
        "{dom:.300}"
    );
    assert!(attr(&dom, "html", "data-errors").is_some());
}

/// Runs of costs only (no energy, no latency), as in the routing literature: the routing
/// section shows the cost savings `ipw route` found, and the summary no latency of 0.
#[test]
fn a_report_on_runs_of_costs_shows_their_cost_savings_and_no_latency() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("query_id,model,dataset,score,cost_usd\n");
    for (q, s) in SCORES.iter().enumerate() {
        for (m, (name, _, _, _)) in MODELS.iter().enumerate() {
            csv += &format!(
                "q{},{name},math,{},{}\n",
                q + 1,
                s[m],
                1e-5 * 10f64.powi(m as i32)
            );
        }
    }
    let runs = import_table(dir.path(), &csv);
    let o = run_ipw(
        &["route", runs.to_str().unwrap(), "--reference", "big"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let route = json(&runs.join("big/analysis/route.json"));
    let out = dir.path().join("out/report.html");
    let (html, r) = report(&runs, &out, &[]);
    let routers = r["routing"]["data"]["route"]["routers"].as_array().unwrap();
    assert_eq!(routers.len(), route["routers"].as_array().unwrap().len());
    for (shown, routed) in routers.iter().zip(route["routers"].as_array().unwrap()) {
        assert!(shown["savings"]["energy"].is_null());
        assert_eq!(shown["savings"]["cost"], routed["savings"]["cost"]);
        assert!(
            shown["savings"]["cost"]["value"].as_f64().is_some(),
            "{shown}"
        );
    }
    let figs = figures(&html);
    let ids: Vec<&str> = figs.iter().map(|(id, _)| id.as_str()).collect();
    assert!(ids.contains(&"route-savings-cost"), "{ids:?}");
    assert!(!ids.contains(&"route-savings"), "no energy chart: {ids:?}");
    let cost = &figs
        .iter()
        .find(|(i, _)| i == "route-savings-cost")
        .unwrap()
        .1;
    assert!(cost.contains("Cost saved against sending every query to big"));
    assert_eq!(
        cost.matches("class=\"mark ci\"").count(),
        routers.len(),
        "one whisker per router"
    );
    assert!(!html.contains("no router has"), "routing section empty");
    // No latency in the table: none in the summary, not 0.
    for row in r["summary"]["data"].as_array().unwrap() {
        assert!(row["latency_p50_s"].is_null(), "{row}");
    }
    let summary = std::fs::read_to_string(out.with_extension("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "latency_p50_s").unwrap();
    for line in summary.lines().skip(1) {
        assert_eq!(line.split(',').nth(at), Some(""), "{line}");
    }
}
