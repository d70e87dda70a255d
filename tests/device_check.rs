//! The GPU device check (`scripts/device-check.sh`) in its dry mode: every step of the real
//! check (doctor, the nvml conformance check, the sampler bench, a managed workload server
//! measured end to end, the per-query comparison) against the fake NVML library at a constant
//! scripted power, where ipw's per-query energy, the instant-power integral over the same
//! window and the server's own counter reading must agree. Keeps the script working on
//! machines without a GPU, so the hardware run finds no surprises.

use crate::support::*;
use std::path::Path;
use std::process::Command;

#[test]
fn device_check_dry_run_agrees_with_the_fake_nvml_counter() {
    // The script finds the fake beside the binary under test, where this looks for it too.
    let fake = plugin_lib("fake_nvml");
    assert_eq!(fake.parent(), Path::new(env!("CARGO_BIN_EXE_ipw")).parent());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("device-check-out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/device-check.sh");
    let mut c = Command::new("bash");
    c.arg(&script)
        .arg("--dry")
        .arg(&out)
        .env("IPW", env!("CARGO_BIN_EXE_ipw"))
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("RUST_LOG")
        .current_dir(dir.path());
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        c.env_remove(var);
    }
    let o = c.output().expect("bash runs the device check");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    let compare = std::fs::read_to_string(out.join("compare.txt")).unwrap_or_default();
    assert!(
        o.status.success(),
        "device check failed:\n{}\n--- compare.txt\n{compare}",
        text(&o)
    );
    assert!(summary.contains("DRY RUN"), "{summary}");
    assert!(summary.contains("RESULT: PASS"), "{summary}");
    for f in [
        "gpu.txt",
        "doctor.txt",
        "check.txt",
        "bench.txt",
        "profile.txt",
        "compare.txt",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        std::fs::read_to_string(out.join("check.txt"))
            .unwrap()
            .contains("verdict: PASS"),
        "conformance check"
    );

    let cmp = json(&out.join("compare.json"));
    assert_eq!(cmp["mode"], "dry");
    assert_eq!(cmp["pass"], true, "failures: {}", cmp["failures"]);
    assert_eq!(cmp["energy_channel"], "nvml/gpu0");
    let queries = cmp["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 12, "{compare}");
    // The fake draws a constant 150 W (the script's DRY_WATTS).
    let watts = 150.0;
    for q in queries {
        let id = &q["query_id"];
        let f = |key: &str| {
            q[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{id}: no {key}: {q}"))
        };
        let gross = f("ipw_gross_j");
        let integral = f("power_integral_j");
        let window = f("window_len_s");
        let delta = f("server_delta_j");
        let span = f("server_span_len_s");
        assert!(gross > 0.0, "{id}: {gross} J");
        assert!(
            ((gross - integral) / integral).abs() <= 0.02,
            "{id}: ipw {gross} J vs power integral {integral} J"
        );
        assert!(
            ((gross - watts * window) / (watts * window)).abs() <= 0.02,
            "{id}: ipw {gross} J over {window} s at {watts} W"
        );
        // The server's counter covers its compute only, inside ipw's window: a lower
        // reference in joules, the same power.
        assert!(
            delta <= gross * 1.02 + 0.01,
            "{id}: server {delta} J > ipw {gross} J"
        );
        assert!(
            ((delta / span - watts) / watts).abs() <= 0.02,
            "{id}: server {delta} J over {span} s"
        );
        let bound = q["ipw_bound_j"].as_array().expect("gross_bound_j");
        let (lo, hi) = (bound[0].as_f64().unwrap(), bound[1].as_f64().unwrap());
        assert!(
            lo <= integral && integral <= hi,
            "{id}: {integral} J outside ipw's bound [{lo}, {hi}]"
        );
    }
}
