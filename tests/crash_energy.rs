//! Energy survives a crash: the profiler is killed (`kill -9`) in every phase of a session
//! (model load, warm-up, idle baseline, mid-query), a torn line is left in the power log, and
//! after `ipw attribute` and `--resume` every record of every session carries the energy that
//! the replayed meter trace really holds over its window. SIGTERM stops a run like Ctrl-C.
//!
//! The meter is the real replay sampler library playing a counter trace on the monotonic
//! clock, written here from a known power curve, so each window's true energy is an integral.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const N: usize = 8;
const PERIOD_S: f64 = 7.0;

/// Power of the synthetic meter at run-clock time `t`: smooth (so a 10 ms counter trace pins
/// any window's energy to a millijoule) and never constant (so a window's energy depends on
/// where it lies, and readings from the wrong session or a shifted clock would show).
fn power_w(t: f64) -> f64 {
    60.0 + 20.0 * (std::f64::consts::TAU * t / PERIOD_S).sin()
}

/// An antiderivative of [`power_w`].
fn energy_j(t: f64) -> f64 {
    60.0 * t
        - 20.0 * PERIOD_S / std::f64::consts::TAU * (std::f64::consts::TAU * t / PERIOD_S).cos()
}

/// A cumulative-energy trace every 10 ms from a little before now to 15 minutes on.
fn write_trace(path: &Path) {
    let t0 = ipw_core::records::clock::now_s() - 5.0;
    // The truth itself: energy_j is the integral of power_w (a central difference agrees).
    for t in [t0, t0 + 1.3, t0 + 4.2] {
        let slope = (energy_j(t + 1e-4) - energy_j(t - 1e-4)) / 2e-4;
        assert!(
            (slope - power_w(t)).abs() < 1e-3,
            "{slope} vs {}",
            power_w(t)
        );
    }
    let mut text = String::from("t,value\n");
    for i in 0..=91_000 {
        let t = t0 + i as f64 * 0.01;
        text += &format!("{t:.4},{:.6}\n", energy_j(t) - energy_j(t0));
    }
    std::fs::write(path, text).unwrap();
}

fn experiment(trace: &Path) -> String {
    experiment_with(trace, "")
}

/// [`experiment`] with more replay settings (`extra`, TOML inline-table entries).
fn experiment_with(trace: &Path, extra: &str) -> String {
    format!(
        "name = \"crash-energy\"\n[run]\nwarmup_queries = 2\n[energy]\nbaseline_s = 2\n\
         [generation]\nmax_tokens = 24\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
         [[samplers]]\npath = {}\nconfig = {{ file = {}, kind = \"energy\", time_base = \"monotonic\"{extra} }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = {N}\n",
        q(&model_path()),
        q(&plugin_lib("ipw_sampler_replay")),
        q(trace)
    )
}

/// `ipw -v profile` in the background; its log lines arrive on the channel as they are written.
fn spawn(exp: &Path, out: &Path, resume: bool) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = ipw();
    cmd.args(["-v", "profile", exp.to_str().unwrap()]);
    cmd.args([
        if resume { "--resume" } else { "--out" },
        out.to_str().unwrap(),
    ]);
    let mut child = cmd
        .args(["-q"])
        .env("RUST_LOG", "info,llama_cpp_2=off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        // Keep reading after the test stops listening, so the child never blocks on a full
        // pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Wait for a log line containing `what`.
fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return,
            Ok(_) => {}
            Err(e) => panic!("no `{what}` in the log: {e}"),
        }
    }
}

fn kill_9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Start (or resume) a session, wait for its third record, and `kill -9` it 150 ms later: past
/// the next background reading (20 Hz), inside the next query. Returns the run clock's time
/// just before the kill.
fn kill_9_mid_query(exp: &Path, out: &Path, run: &Path, resume: bool) -> f64 {
    let (child, rx) = spawn(exp, out, resume);
    wait_for_line(&rx, "phase: measuring queries");
    let deadline = Instant::now() + Duration::from_secs(120);
    while record_count(run) < 3 {
        assert!(Instant::now() < deadline, "no records");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    let at = ipw_core::records::clock::now_s();
    kill_9(child);
    at
}

/// Times of the replay sampler's readings in a run's power log (a line torn by the kill is
/// not one).
fn replay_reading_times(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("power.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["channel"].as_str().unwrap().starts_with("replay/"))
        .filter_map(|l| l["t"].as_f64())
        .collect()
}

fn record_count(run: &Path) -> usize {
    std::fs::read_to_string(run.join("records.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Every record's gross energy equals the trace's over its window.
fn assert_true_energy(records: &[Value]) {
    for r in records {
        let e = &r["energy"];
        assert!(e.is_object(), "a record without energy: {r}");
        let (start, end) = (
            r["window"]["start_s"].as_f64().unwrap(),
            r["window"]["end_s"].as_f64().unwrap(),
        );
        let truth = energy_j(end) - energy_j(start);
        let got = e["gross_j"]
            .as_f64()
            .unwrap_or_else(|| panic!("no gross energy: {r}"));
        assert!(
            (got - truth).abs() <= 1e-3 * truth + 0.01,
            "{} (session {}): {got} J vs true {truth} J",
            r["query_id"],
            r["session"]
        );
    }
}

#[test]
fn kill_9_in_every_phase_then_attribute_and_resume_gives_every_record_its_true_energy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    write_trace(&trace);
    let exp = write_experiment(dir.path(), "e.toml", &experiment(&trace));
    let out = dir.path().join("out");
    let run = out.join("smollm2");

    // Killed while the model loads, then while it warms up, then in the idle baseline: no
    // records yet, but each session's samplers are already in the manifest.
    let (child, rx) = spawn(&exp, &out, false);
    wait_for_line(&rx, "phase: loading model");
    kill_9(child);
    let (child, rx) = spawn(&exp, &out, true);
    wait_for_line(&rx, "phase: warming up");
    kill_9(child);
    let (child, rx) = spawn(&exp, &out, true);
    wait_for_line(&rx, "phase: measuring idle baseline");
    std::thread::sleep(Duration::from_millis(500));
    kill_9(child);
    assert_eq!(record_count(&run), 0);
    let m = json(&run.join("manifest.json"));
    let sessions = m["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    for s in sessions {
        assert_eq!(
            s["samplers"][0]["name"], "replay",
            "on disk before the kill: {s}"
        );
        assert!(s["clock"]["unix_s"].as_f64().unwrap() > 1.7e9);
    }

    // Killed mid-query, after a few records; then a torn line at the power log's end, as a
    // kill inside a write would leave.
    kill_9_mid_query(&exp, &out, &run, true);
    let killed = records(&run);
    assert!(killed.len() >= 3 && killed.len() < N, "{}", killed.len());
    assert!(
        killed.iter().all(|r| r["energy"].is_null()),
        "a killed session attributes nothing itself"
    );
    assert!(
        m["sessions"][2]["baseline"].is_null(),
        "the baseline killed midway is not recorded as measured"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("power.jsonl"))
        .unwrap()
        .write_all(br#"{"session":3,"channel":"replay/trace","t":12"#)
        .unwrap();

    // `ipw attribute` gives the killed session's records their energy from its own readings.
    let o = run_ipw(&["attribute", run.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{0} of {0} records have energy", killed.len())),
        "{}",
        text(&o)
    );
    let attributed = records(&run);
    assert_true_energy(&attributed);
    assert!(attributed
        .iter()
        .all(|r| r["energy"]["net_j"].is_number() && r["session"] == 3));

    // The resumed session finishes the plan; the earlier session keeps its true energy.
    let (child, rx) = spawn(&exp, &out, true);
    drop(rx);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let all = records(&run);
    assert_eq!(all.len(), N);
    assert_true_energy(&all);
    let sessions: std::collections::BTreeSet<u64> =
        all.iter().map(|r| r["session"].as_u64().unwrap()).collect();
    assert_eq!(sessions.into_iter().collect::<Vec<_>>(), [3, 4]);
    let s = json(&run.join("summary.json"));
    assert_eq!(s["energy"]["queries"], N);
    assert_eq!(s["energy"]["without_energy"], 0);
    // The torn line stayed apart: every other line of the power log reads.
    let power = std::fs::read_to_string(run.join("power.jsonl")).unwrap();
    let unreadable = power
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    assert_eq!(unreadable, 1, "only the torn line itself");
}

/// A sampler read at window edges keeps its periodic readings in memory and writes them with
/// the next edge reading: killed mid-query, with readings still in memory (shown: the log on
/// disk stops well before the kill, where a reading was taken every 10 ms), every record
/// already written still finds every reading its window needs on disk.
#[test]
fn kill_9_loses_no_reading_a_written_record_needs_when_readings_wait_for_edges() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    write_trace(&trace);
    // A 1 ms update period: the host reads at every window edge (and at 100 Hz between them),
    // and keeps the periodic readings in memory until the next edge.
    let toml = experiment_with(&trace, ", update_period_s = 0.001")
        .replace("[[samplers]]\n", "[[samplers]]\nrate_hz = 100\n");
    let exp = write_experiment(dir.path(), "e.toml", &toml);
    // A kill that lands just after an edge reading was written finds nothing in memory and
    // proves nothing: such an attempt is repeated (each lands elsewhere in a query), not
    // passed.
    let mut proven = None;
    for attempt in 0..5 {
        let out = dir.path().join(format!("out{attempt}"));
        let run = out.join("smollm2");
        let killed_at = kill_9_mid_query(&exp, &out, &run, false);
        let last_written = replay_reading_times(&run)
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        // At 100 Hz, five periods without a reading on disk: readings taken since were lost
        // with the process.
        if killed_at - last_written > 0.05 {
            proven = Some(run);
            break;
        }
        eprintln!(
            "attempt {attempt}: the kill came {:.0} ms after the last reading on disk; again",
            (killed_at - last_written) * 1e3
        );
    }
    let run = proven.expect("five kills each landed right after readings were written");
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["sessions"][0]["samplers"][0]["edge_reads"], true);
    let killed = records(&run);
    assert!(killed.len() >= 3 && killed.len() < N, "{}", killed.len());
    let o = run_ipw(&["attribute", run.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{0} of {0} records have energy", killed.len())),
        "{}",
        text(&o)
    );
    assert_true_energy(&records(&run));
}

#[test]
fn sigterm_stops_like_ctrl_c_with_energy_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    write_trace(&trace);
    let exp = write_experiment(dir.path(), "e.toml", &experiment(&trace));
    let out = dir.path().join("out");
    let run: PathBuf = out.join("smollm2");
    let (mut child, rx) = spawn(&exp, &out, false);
    wait_for_line(&rx, "phase: measuring queries");
    let deadline = Instant::now() + Duration::from_secs(120);
    while record_count(&run) < 2 {
        assert!(Instant::now() < deadline, "no records");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    // The log after the signal says how it ended (the reader thread has all of it once the
    // child has exited and the pipe closed).
    let log: Vec<String> = rx.iter().collect();
    assert_eq!(status.code(), Some(143), "{status:?}\n{}", log.join("\n"));
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "interrupted");
    let partial = records(&run);
    assert!(partial.len() >= 2 && partial.len() < N);
    assert_true_energy(&partial);
    assert_eq!(
        json(&run.join("summary.json"))["recorded"]
            .as_u64()
            .unwrap() as usize,
        partial.len()
    );
}

#[test]
fn a_wall_meter_log_added_after_the_run_is_placed_by_the_clock_origin_and_attributed() {
    // A run with no sampler at all; the meter logged on its own, in Unix seconds, a power curve
    // known exactly (the same smooth curve, on the Unix time axis).
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(
        dir.path(),
        "plain.toml",
        &format!(
            "name = \"plain\"\n[run]\nwarmup_queries = 0\n[generation]\nmax_tokens = 16\n\
             [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 3\n",
            q(&model_path())
        ),
    );
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let from = unix_now() - 2.0;
    let out = dir.path().join("out");
    let o = profile_file(&exp, &out, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let to = unix_now() + 1.0;
    let run = out.join("smollm2");
    assert!(records(&run).iter().all(|r| r["energy"].is_null()));
    // Cumulative joules every 10 ms over the run, on the Unix axis.
    let meter = dir.path().join("wall.csv");
    let mut text_out = String::from("ts,joules\n");
    let mut t = from;
    while t <= to {
        text_out += &format!("{t:.4},{:.6}\n", energy_j(t) - energy_j(from));
        t += 0.01;
    }
    std::fs::write(&meter, text_out).unwrap();
    let o = run_ipw(
        &[
            "attribute",
            run.to_str().unwrap(),
            "--trace",
            meter.to_str().unwrap(),
            "--trace-config",
            r#"{"kind": "energy", "time_field": "ts", "value_field": "joules"}"#,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&run.join("manifest.json"));
    assert_eq!(
        m["sessions"][0]["samplers"][0]["channels"][0]["name"],
        "wall"
    );
    let origin = &m["sessions"][0]["clock"];
    let (mono0, unix0) = (
        origin["monotonic_s"].as_f64().unwrap(),
        origin["unix_s"].as_f64().unwrap(),
    );
    // Truth: the windows (run clock) mapped back onto the meter's Unix axis.
    for r in records(&run) {
        let (start, end) = (
            r["window"]["start_s"].as_f64().unwrap() - mono0 + unix0,
            r["window"]["end_s"].as_f64().unwrap() - mono0 + unix0,
        );
        let truth = energy_j(end) - energy_j(start);
        let got = r["energy"]["gross_j"].as_f64().unwrap();
        assert!(
            (got - truth).abs() <= 1e-3 * truth + 0.01,
            "{}: {got} J vs true {truth} J",
            r["query_id"]
        );
        assert!(r["energy"]["channels"]["replay/wall"].is_object());
    }
}
