//! `ipw profile --metrics`: the live Prometheus endpoint during a real run (the embedded
//! SmolLM2-135M on MMLU, RAPL read from a fake powercap tree at a constant 40 W: the counter
//! stands in for hardware we do not have), scraped while queries run and after, every page
//! parsed by Prometheus's own client library (`prometheus_client`), and the values checked
//! against the records and the power log the run wrote.

use crate::support::fake_powercap::FakePowercap;
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// One sample of a parsed page.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every page parsed by `prometheus_client` (a page it refuses fails the test).
fn parse(dir: &Path, pages: &[String]) -> Vec<Vec<Sample>> {
    let mut paths = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let path = dir.join(format!("scrape-{i}.txt"));
        std::fs::write(&path, p).unwrap();
        paths.push(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prometheus/parse.py");
    let o = std::process::Command::new(python_with("prometheus_client"))
        .arg(script)
        .args(&paths)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let parsed: Vec<Vec<Value>> = serde_json::from_slice(&o.stdout).unwrap();
    parsed
        .into_iter()
        .map(|page| {
            page.into_iter()
                .map(|s| Sample {
                    name: s["name"].as_str().unwrap().to_string(),
                    labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                    value: s["value"].as_f64().unwrap(),
                })
                .collect()
        })
        .collect()
}

/// The value of `name` with all of `labels`, if the page has it.
fn value(page: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// A raw HTTP exchange: the status line of the answer.
fn status_of(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_string()
}

/// Whether a socket listens on exactly 127.0.0.1:`port` (and not on every address).
fn listens_on_loopback_only(port: u16) -> (bool, bool) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let suffix = format!(":{port:04X}");
    let listening: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A") && f[1].ends_with(&suffix)).then_some(f[1])
        })
        .collect();
    (
        listening.contains(&format!("0100007F{suffix}").as_str()),
        listening.contains(&format!("00000000{suffix}").as_str()),
    )
}

/// Joules of `channel` over the whole `power.jsonl`, by the energy curve attribution builds
/// from the channel's description in the manifest (a counter's wraps and restarts read by its
/// rules), the mean power over its last second, and the plain sum of its increases with a
/// 20 J wrap.
fn log_joules(run: &Path, channel: &str) -> (f64, f64, f64) {
    let log = std::fs::read_to_string(run.join("power.jsonl")).unwrap();
    let mut readings: Vec<(f64, f64)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["channel"] == channel)
        .filter_map(|v| Some((v["t"].as_f64()?, v["v"].as_f64()?)))
        .collect();
    readings.sort_by(|a, b| a.0.total_cmp(&b.0));
    let manifest = json(&run.join("manifest.json"));
    let (sampler, name) = channel.split_once('/').unwrap();
    let kind = manifest["sessions"][0]["samplers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == sampler)
        .flat_map(|s| s["channels"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .map(|c| serde_json::from_value(c["kind"].clone()).unwrap())
        .unwrap();
    let curve = ipw_core::power::curve::EnergyCurve::build(&kind, &readings);
    let (a, b) = curve.span().unwrap();
    let increases = readings
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .map(|d| if d < 0.0 { d + 20.0 } else { d })
        .sum();
    let from = a.max(b - 1.0);
    let watts = curve.between(from, b).unwrap() / (b - from);
    (curve.between(a, b).unwrap(), watts, increases)
}

/// The profile process, killed if the test fails before it is done with it (it would linger).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_scrape_during_a_real_run_matches_the_records_and_the_power_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("powercap");
    let _fake = FakePowercap::start(&root, &[("intel-rapl:0", "package-0", 40.0)]);
    let exp = write_experiment(
        dir.path(),
        "live.toml",
        &format!(
            "name = \"live\"\nseed = 3\n[run]\nwarmup_queries = 0\n[generation]\nmax_tokens = 8\n\
             [energy]\nbaseline_s = 0\n\
             [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
             [[samplers]]\nplugin = \"rapl\"\nconfig = {{ root = {} }}\n\
             [[datasets]]\nbuiltin = \"mmlu\"\nmax_queries = 16\nstratify = true\n",
            q(&model_path()),
            q(&root)
        ),
    );
    let out = dir.path().join("out");
    let mut child = Child(
        profile_command(&exp, &out)
            .args(["--metrics", "127.0.0.1:0", "--metrics-linger", "300"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut wait_for = |what: &str, within: Duration| -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
                log.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
        }
        panic!("no `{what}` from ipw within {within:?}: {}", log.join("\n"));
    };
    let line = wait_for("metrics: http://", Duration::from_secs(60));
    let port: u16 = line
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();

    // Scrape while the queries run, until ipw says the run is over.
    let mut pages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(page) = http_get(port, "/metrics") {
            let body = page.split("\r\n\r\n").nth(1).unwrap().to_string();
            pages.push(body);
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            if line.contains("the run is over") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the run did not end");
    }
    let last = http_get(port, "/metrics").expect("the final values are served");
    assert!(
        last.contains("Content-Type: text/plain; version=0.0.4"),
        "{last}"
    );
    pages.push(last.split("\r\n\r\n").nth(1).unwrap().to_string());

    // Read-only, and only where it was told to listen.
    for method in ["POST", "PUT", "DELETE"] {
        let status = status_of(
            port,
            &format!("{method} /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{}}"),
        );
        assert!(status.contains("405"), "{method}: {status}");
    }
    assert!(status_of(port, "GET /records.jsonl HTTP/1.1\r\n\r\n").contains("404"));
    assert_eq!(listens_on_loopback_only(port), (true, false));

    // A stop signal ends the linger, not the finished run: exit 0.
    std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let parsed = parse(dir.path(), &pages);
    let run = out.join("smollm2");
    let recs = records(&run);
    assert_eq!(recs.len(), 16);
    let m = [("model", "smollm2")];
    let sum = |recs: &[Value], f: &dyn Fn(&Value) -> Option<f64>| -> f64 {
        recs.iter().filter_map(f).sum()
    };
    let tokens = |key: &'static str| move |r: &Value| r[key].as_f64();

    // Mid-run pages count exactly the records written before them (records.jsonl keeps the
    // order they were written in).
    let mut mid_run = 0;
    let mut energy_seen = 0.0;
    let channel = [("channel", "rapl/package-0")];
    for page in &parsed[..parsed.len() - 1] {
        let Some(n) = value(page, "ipw_queries_total", &m) else {
            continue;
        };
        let n = n as usize;
        let done = &recs[..n];
        assert_eq!(
            value(page, "ipw_prompt_tokens_total", &m),
            Some(sum(done, &tokens("input_tokens")))
        );
        assert_eq!(
            value(page, "ipw_generated_tokens_total", &m),
            Some(sum(done, &tokens("output_tokens")))
        );
        assert_eq!(
            value(page, "ipw_ttft_seconds_count", &m),
            Some(done.iter().filter(|r| r["ttft_s"].is_f64()).count() as f64)
        );
        let e = value(page, "ipw_channel_energy_joules_total", &channel).unwrap_or(0.0);
        assert!(e >= energy_seen, "the energy counter went down");
        energy_seen = e;
        if n > 0 && n < recs.len() {
            mid_run += 1;
        }
    }
    assert!(mid_run > 0, "no scrape fell while queries were running");

    // The final page: the records, the summary and the power log, exactly.
    let fin = parsed.last().unwrap();
    let summary = json(&run.join("summary.json"));
    let close =
        |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
    let failed = recs.iter().filter(|r| !r["error"].is_null()).count() as f64;
    let answered: Vec<Value> = recs
        .iter()
        .filter(|r| r["error"].is_null())
        .cloned()
        .collect();
    let scores: Vec<f64> = recs
        .iter()
        .filter_map(|r| r["grade"]["score"].as_f64())
        .collect();
    assert_eq!(value(fin, "ipw_queries_planned", &m), Some(16.0));
    assert_eq!(value(fin, "ipw_queries_total", &m), Some(16.0));
    assert_eq!(value(fin, "ipw_queries_failed_total", &m), Some(failed));
    assert_eq!(
        value(fin, "ipw_generated_tokens_total", &m),
        Some(sum(&recs, &tokens("output_tokens")))
    );
    assert_eq!(
        value(fin, "ipw_query_latency_seconds_count", &m),
        Some(answered.len() as f64)
    );
    assert!(close(
        value(fin, "ipw_query_latency_seconds_sum", &m),
        sum(&answered, &|r| r["latency_s"].as_f64())
    ));
    assert!(close(
        value(fin, "ipw_ttft_seconds_sum", &m),
        sum(&recs, &|r| r["ttft_s"].as_f64())
    ));
    // Every answer lands in the +Inf bucket; none of 8 tokens takes 120 s.
    let within_120_s = fin.iter().find(|s| {
        s.name == "ipw_query_latency_seconds_bucket"
            && s.labels.get("le").and_then(|le| le.parse::<f64>().ok()) == Some(120.0)
    });
    assert_eq!(within_120_s.map(|s| s.value), Some(answered.len() as f64));
    assert_eq!(
        value(fin, "ipw_graded_queries_total", &m),
        Some(scores.len() as f64)
    );
    assert!(close(
        value(fin, "ipw_score_total", &m),
        scores.iter().sum()
    ));
    assert!(close(
        value(fin, "ipw_accuracy_ratio", &m),
        scores.iter().sum::<f64>() / scores.len() as f64
    ));
    assert!(close(
        value(fin, "ipw_harness_window_cpu_seconds_total", &m),
        sum(&recs, &|r| r["harness"]["cpu_s"].as_f64())
    ));
    assert!(close(
        value(fin, "ipw_attributed_energy_joules", &m),
        summary["energy"]["total_gross_j"].as_f64().unwrap()
    ));
    // The channel's energy is its counter's over the whole log, by attribution's rules. (The
    // fake counter wraps every half second at 40 W; a gap of more than a quarter of that
    // between two readings, on a busy machine, is read as a restart, not a wrap: the plain
    // sum of increases then differs.)
    let (joules, log_watts, increases) = log_joules(&run, "rapl/package-0");
    let live = value(fin, "ipw_channel_energy_joules_total", &channel).unwrap();
    assert!(
        (live - joules).abs() < 1e-6,
        "live {live} J, power log {joules} J (its increases with a 20 J wrap: {increases} J)"
    );
    assert!(
        joules > 20.0,
        "the counter wrapped at least once: {joules} J"
    );
    let watts = value(fin, "ipw_channel_power_watts", &channel).unwrap();
    assert!(
        (watts - log_watts).abs() < 1e-6 * log_watts && watts > 0.0,
        "{watts} W live, {log_watts} W over the log's last second"
    );
    assert_eq!(
        value(fin, "ipw_sampler_read_errors_total", &channel),
        Some(0.0)
    );
    assert!(value(fin, "ipw_metrics_cpu_seconds_total", &[]).is_some_and(|c| c > 0.0));

    // The sample dashboard draws only what the endpoint serves.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/ipw-dashboard.json"),
    )
    .unwrap();
    let final_page = pages.last().unwrap();
    let mut drawn = 0;
    for (i, _) in dashboard.match_indices("ipw_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name == "ipw_" {
            continue;
        }
        drawn += 1;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            final_page.contains(&format!("# TYPE {family} ")),
            "the dashboard draws {name}, which /metrics does not serve"
        );
    }
    assert!(drawn >= 15, "{drawn}");
}
