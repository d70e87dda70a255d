//! `ipw watch`: the view of a run drawn from its directory alone, checked by hand on an
//! imported run given a power log (a wall meter stepping from 20 W to 60 W halfway).
//!
//! Ten queries of 1 s laid end to end from 0 (as `ipw import` lays them), 10 J each; q1-q7
//! right, q8-q9 wrong, q10 failed.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn run(dir: &Path) -> PathBuf {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,latency_s,error\n");
    for q in 1..=10 {
        let (score, error) = match q {
            1..=7 => ("1", ""),
            8 | 9 => ("0", ""),
            _ => ("", "timeout after 30 s"),
        };
        csv += &format!("q{q},w,math,{score},10,1,{error}\n");
    }
    let run = import_table(dir, &csv).join("w");
    let path = run.join("manifest.json");
    let mut m: Value = json(&path);
    m["sessions"][0]["samplers"] = serde_json::json!([
        {"name": "meter", "path": "/meter.so", "sha256": "", "sdk_version": "1", "rate_hz": 10.0,
         "interval_s": 0.1, "edge_reads": false, "stats": null, "channels": [
            {"name": "wall", "domain": "system", "device": null, "update_period_s": 0.1,
             "kind": {"type": "power-gauge", "timing": "instant", "estimated": false}}]}
    ]);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let mut log = String::new();
    for i in 0..=100 {
        let t = i as f64 * 0.1;
        let w = if t < 5.0 { 20.0 } else { 60.0 };
        log += &format!("{{\"session\":0,\"channel\":\"meter/wall\",\"t\":{t},\"v\":{w}}}\n");
    }
    std::fs::write(run.join("power.jsonl"), log).unwrap();
    run
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_view_shows_rate_accuracy_power_and_errors_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(dir.path());
    let before = listing(&run);
    let view = dir.path().join("view.txt");
    let o = run_ipw(
        &["watch", run.to_str().unwrap(), "-o", view.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v = std::fs::read_to_string(&view).unwrap();
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(
        lines[0], "w  completed  session 1  10 records  1 failed  0 flagged",
        "{v}"
    );
    // Ten queries over 10 s of run clock, all within the last minute.
    assert_eq!(lines[1], "queries/s  last 60 s: 1.00  session: 1.00", "{v}");
    // 7 right of the 9 that answered (the failure is not scored).
    assert!(lines[2].starts_with("accuracy 0.778 ["), "{v}");
    // 30 stretches of 1/3 s over 0..10 s: 20 W, then 60 W from the 16th (the 15th holds the
    // last tenth of a second before the step, which the curve spans between two readings).
    let power = lines
        .iter()
        .find(|l| l.trim_start().starts_with("meter/wall"))
        .unwrap_or_else(|| panic!("no power line in {v}"));
    let bars: String = power.chars().filter(|c| ('▁'..='█').contains(c)).collect();
    assert_eq!(bars.chars().count(), 30, "{v}");
    assert!(bars.starts_with(&"▁".repeat(14)), "{v}");
    assert!(bars.ends_with(&"█".repeat(15)), "{v}");
    assert!(power.ends_with("60.0 W"), "{power}");
    assert!(
        v.contains("last errors:\n  q10: imported: timeout after 30 s"),
        "{v}"
    );
    // It read the run and left it as it was (no lock taken, nothing written).
    assert_eq!(listing(&run), before);
}

#[test]
fn watching_a_running_run_redraws_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(dir.path());
    let manifest = run.join("manifest.json");
    let mut m = json(&manifest);
    // Replaced whole, as ipw writes it, so the watcher never reads half a file.
    let write = |m: &Value| {
        let tmp = manifest.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(m).unwrap()).unwrap();
        std::fs::rename(&tmp, &manifest).unwrap();
    };
    m["status"] = "running".into();
    write(&m);
    let mut child = ipw()
        .args(["watch", run.to_str().unwrap(), "--interval", "0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Still drawing while the run says it is running...
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "watch stopped early");
    // ...and done, by itself, once it says it ended.
    m["status"] = "completed".into();
    write(&m);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "watch did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    // Several frames, each from the top of a cleared screen; the last one says completed.
    assert!(out.matches("\x1b[2J\x1b[H").count() >= 2, "{out}");
    let last = out.rsplit("\x1b[2J\x1b[H").next().unwrap();
    assert!(last.starts_with("w  completed"), "{last}");
}
