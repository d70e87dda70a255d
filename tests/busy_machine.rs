//! A machine that is not idle is never silent: with a real competing process spinning beside
//! the profiler, `--require-idle` refuses to start and names it, `ipw doctor` reports it, and
//! a run without the flag records the load (before the run, during the baseline) and flags
//! the baseline and the records it overlapped.

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
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 2\n",
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
    for r in records(&out.join("smollm2")) {
        let flags: Vec<&str> = r["energy"]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(flags.contains(&"busy_baseline"), "{flags:?}");
        assert!(flags.contains(&"other_load"), "{flags:?}");
    }
}
