//! A machine that is not idle is never silent: with a real competing process spinning beside
//! the profiler, `--require-idle` refuses to start and names it, `ipw doctor` reports it, and
//! a run without the flag records the load (before the run, during the baseline) and flags
//! the baseline and every record it overlapped, short windows included. And an idle machine
//! is not called busy: the same run without the spinner flags nothing.
//!
//! The records' windows are tens of milliseconds (8 tokens of a 135M model); the flag is judged
//! over at least a second around each, from a counter of other processes' CPU, so it does not
//! hinge on whether a reading lands inside a window. A spinner holds one core (4x the
//! quarter-core threshold) however slow the machine.

use crate::support::*;
use std::path::Path;

/// A shell spinning on both cores' worth of work until dropped.
struct Spinner(Vec<std::process::Child>);

impl Spinner {
    fn start(n: usize) -> Self {
        let children = (0..n)
            .map(|_| {
                std::process::Command::new("sh")
                    .args([
                        "-c",
                        "i=0; while [ $i -lt 2000000000 ]; do i=$((i+1)); done",
                    ])
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        Self(children)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn experiment() -> String {
    format!(
        "name = \"busy\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 1\n\
         [generation]\nmax_tokens = 8\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 1\n\
         [[samplers]]\nplugin = \"cpu-estimate\"\nconfig = {{ tdp_w = 100, idle_fraction = 0.2 }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 4\n",
        q(&model_path())
    )
}

#[test]
fn a_busy_machine_is_refused_reported_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "busy.toml", &experiment());
    let _spin = Spinner::start(1);

    let out = dir.path().join("refused");
    let o = run_ipw(
        &[
            "profile",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--require-idle",
            "-q",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("the machine is not idle (--require-idle): other processes keep")
            && msg.contains("sh (pid"),
        "{msg}"
    );
    assert!(
        !out.join("smollm2/records.jsonl").exists() || records(&out.join("smollm2")).is_empty()
    );

    let o = run_ipw(&["doctor"], Path::new("."));
    assert!(text(&o).contains("machine load: NOT IDLE"), "{}", text(&o));

    let out = dir.path().join("measured");
    let o = profile_file(&exp, &out, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the machine is not idle"), "{}", text(&o));
    let m = json(&out.join("smollm2/manifest.json"));
    let s = &m["sessions"][0];
    assert!(s["preflight_load"]["cores"].as_f64().unwrap() > 0.5, "{s}");
    assert!(
        s["baseline"]["other_cpu_cores"].as_f64().unwrap() > 0.5,
        "{s}"
    );
    let flags = flags_of(&out.join("smollm2"));
    assert_eq!(flags.len(), 4);
    for f in &flags {
        assert!(f.iter().any(|f| f == "busy_baseline"), "{flags:?}");
        assert!(f.iter().any(|f| f == "other_load"), "{flags:?}");
    }
}

/// Flags of every record of a run.
fn flags_of(run: &Path) -> Vec<Vec<String>> {
    records(run)
        .iter()
        .map(|r| {
            r["energy"]["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Busy CPU of the whole machine over `span`, in cores, from `/proc/stat`: this test's
/// precondition, read independently of ipw.
fn machine_busy_cores(span: std::time::Duration) -> f64 {
    let busy = || {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let v: Vec<f64> = stat.lines().next().unwrap()[4..]
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        // user nice system [idle iowait] irq softirq steal, in 10 ms ticks
        (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0
    };
    let a = busy();
    std::thread::sleep(span);
    (busy() - a) / span.as_secs_f64()
}

#[test]
fn an_idle_machine_is_not_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "idle.toml", &experiment());
    // Not a skip: a machine that is busy before the run cannot show that an idle one is not
    // flagged, and says so (CI runs the tests one at a time on an otherwise idle machine).
    let before = machine_busy_cores(std::time::Duration::from_secs(1));
    assert!(
        before < 0.15,
        "this test needs an otherwise idle machine: {before:.2} cores were busy before it ran"
    );
    let out = dir.path().join("idle");
    let o = profile_file(&exp, &out, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("the machine is not idle"),
        "{}",
        text(&o)
    );
    let flags = flags_of(&out.join("smollm2"));
    assert_eq!(flags.len(), 4);
    for f in &flags {
        assert!(!f.iter().any(|f| f == "other_load"), "{flags:?}");
    }
    // The counter the flag is judged from is in the power log, read before the first window
    // and after the last.
    let log = std::fs::read_to_string(out.join("smollm2/power.jsonl")).unwrap();
    let counter: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["channel"] == "host/other_cpu_s")
        .collect();
    let first_start = records(&out.join("smollm2"))
        .iter()
        .map(|r| r["window"]["start_s"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let last_end = records(&out.join("smollm2"))
        .iter()
        .map(|r| r["window"]["end_s"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(counter.len() >= 2, "{counter:?}");
    assert!(counter[0]["t"].as_f64().unwrap() <= first_start);
    assert!(counter.last().unwrap()["t"].as_f64().unwrap() >= last_end);
}
