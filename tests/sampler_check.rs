//! `ipw sampler check` / `ipw doctor --plugin` (the sampler conformance check) through the real
//! loader and real libraries: every first-party sampler passes on a fake device, each faulty
//! fixture fails with the check it breaks named, `ipw sampler new` gives a crate that builds and
//! passes on the first try, and `ipw doctor` says what each plugin measures and needs.

use crate::support::fake_powercap::FakePowercap;
use crate::support::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Run `ipw sampler check TARGET --config CONFIG --seconds 1` with extra environment.
fn check(target: &str, config: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = ipw();
    c.args([
        "sampler",
        "check",
        target,
        "--config",
        config,
        "--seconds",
        "1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("ipw runs")
}

/// The checks named on the `verdict: FAIL (...)` line (empty when it passed).
fn failed(o: &Output) -> BTreeSet<String> {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("verdict: FAIL ("))
        .map(|l| {
            l.trim_end_matches(')')
                .split(", ")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Exit 0, a PASS verdict, no FAIL line, and every check of the contract ran.
fn assert_passes(o: &Output, what: &str) {
    let t = text(o);
    assert!(o.status.success(), "{what} should pass:\n{t}");
    assert!(t.contains("\nverdict: PASS"), "{what}:\n{t}");
    assert!(!t.contains(" FAIL "), "{what}:\n{t}");
    for check in [
        "load",
        "open",
        "describe",
        "read",
        "readings",
        "timestamps",
        "read-cost",
        "close",
    ] {
        assert!(
            t.contains(&format!("PASS {check:<10}")),
            "{what}: no PASS for {check}:\n{t}"
        );
    }
}

fn lib(stem: &str) -> String {
    plugin_lib(stem).display().to_string()
}

#[test]
fn replay_passes_on_a_trace_file() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    let mut f = std::fs::File::create(&trace).unwrap();
    writeln!(f, "t,value").unwrap();
    for i in 0..=3000 {
        writeln!(f, "{:.2},{:.3}", i as f64 * 0.01, 80.0 * i as f64 * 0.01).unwrap();
    }
    let config = serde_json::json!({"file": trace, "kind": "energy"}).to_string();
    let o = check(&lib("ipw_sampler_replay"), &config, &[]);
    assert_passes(&o, "replay");
    assert!(text(&o).contains("PASS counters"), "{}", text(&o));
}

/// IOReport Energy Model samples every 20 ms for 20 s, M1 Pro style (CPU clusters in mJ, no CPU
/// total; GPU in mJ; ANE and DRAM in nJ), cumulative; `drop_ane` leaves ANE out of every 10th.
fn ioreport_recording(path: &Path, drop_ane: bool) {
    let mut text = String::new();
    for i in 0..1000u64 {
        let t = i as f64 * 0.02;
        let ch = |name: &str, unit: &str, value: u64| {
            format!(
                r#"{{"group": "Energy Model", "subgroup": "", "channel": "{name}", "unit": "{unit}", "value": {value}}}"#
            )
        };
        let mut channels = vec![
            ch("EACC_CPU", "mJ", 40 * i),
            ch("PACC0_CPU", "mJ", 120 * i),
            ch("GPU Energy", "mJ", 200 * i),
            ch("DRAM", "nJ", 30_000_000 * i),
        ];
        if !(drop_ane && i % 10 == 5) {
            channels.push(ch("ANE", "nJ", 5_000_000 * i));
        }
        text += &format!(
            "{{\"t\": {t:.3}, \"channels\": [{}]}}\n",
            channels.join(", ")
        );
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn apple_passes_on_recorded_ioreport_samples_and_a_missing_subsystem_fails_the_read() {
    // The IOReport channel logic through the real loader and host on Linux: a recording made
    // in the format the sampler's `recorded` source replays.
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("ioreport.jsonl");
    ioreport_recording(&rec, false);
    let config = serde_json::json!({"source": "recorded", "file": rec}).to_string();
    let o = check(&lib("ipw_sampler_apple"), &config, &[]);
    assert_passes(&o, "apple (recorded)");
    assert!(text(&o).contains("PASS counters"), "{}", text(&o));
    // ANE absent from some samples: those reads fail naming it (a warning: a gap in the curve,
    // never a zero reading).
    ioreport_recording(&rec, true);
    let o = check(&lib("ipw_sampler_apple"), &config, &[]);
    let t = text(&o);
    let read = t.lines().find(|l| l.contains(" read ")).unwrap_or_default();
    assert!(read.contains("WARN") && read.contains("lacks `ANE`"), "{t}");
}

#[test]
fn cpu_estimate_passes_found_by_name() {
    // By name: found next to the binary, as `plugin = "cpu-estimate"` would be.
    let o = check("cpu-estimate", "{}", &[]);
    assert_passes(&o, "cpu-estimate");
    assert!(text(&o).contains("PASS gauges"), "{}", text(&o));
}

#[test]
fn rapl_passes_on_a_fake_powercap_tree_through_its_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("powercap");
    let _fake = FakePowercap::start(
        &root,
        &[
            ("intel-rapl:0", "package-0", 40.0),
            ("intel-rapl:0/intel-rapl:0:0", "dram", 5.0),
        ],
    );
    let config = serde_json::json!({ "root": root }).to_string();
    let o = check(&lib("ipw_sampler_rapl"), &config, &[]);
    assert_passes(&o, "rapl");
    let t = text(&o);
    // The 20 J counter wraps every 0.5 s at 40 W: the check saw wraps and accepted them.
    let line = t.lines().find(|l| l.contains("PASS counters")).unwrap();
    assert!(line.contains("wrap(s) seen"), "{t}");
}

#[test]
fn nvml_passes_on_the_fake_nvml_library() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gpus.json");
    std::fs::write(
        &script,
        r#"{"devices": [{"uuid": "GPU-aaaaaaaa-1111", "name": "Fake A", "power_w": [[0, 120], [1000, 180]]}]}"#,
    )
    .unwrap();
    let config = serde_json::json!({ "lib_path": plugin_lib("fake_nvml") }).to_string();
    let o = check(
        &lib("ipw_sampler_nvml"),
        &config,
        &[("IPW_FAKE_NVML_SCRIPT", &script)],
    );
    assert_passes(&o, "nvml");
    assert!(text(&o).contains("PASS counters"), "{}", text(&o));
}

#[test]
fn amdsmi_passes_on_the_fake_amdsmi_library() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gpus.json");
    std::fs::write(
        &script,
        r#"{"devices": [{"uuid": "fake-uuid-0", "power_w": [[0, 300], [1000, 300]]}]}"#,
    )
    .unwrap();
    let config = serde_json::json!({ "lib_path": plugin_lib("fake_amdsmi") }).to_string();
    let o = check(
        &lib("ipw_sampler_amdsmi"),
        &config,
        &[("IPW_FAKE_AMDSMI_SCRIPT", &script)],
    );
    assert_passes(&o, "amdsmi");
    assert!(text(&o).contains("PASS counters"), "{}", text(&o));
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (f, v) in files {
        std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
    }
}

#[test]
fn hwmon_passes_on_a_fake_hwmon_tree() {
    // An energy counter (amd_energy), an averaged gauge (ACPI power meter) and an instant
    // gauge (ina226), with the kernel's file names and units.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hwmon");
    write_files(
        &root.join("hwmon0"),
        &[
            ("name", "amd_energy"),
            ("energy1_input", "123456789"),
            ("energy1_label", "Esocket0"),
        ],
    );
    write_files(
        &root.join("hwmon1"),
        &[
            ("name", "power_meter"),
            ("power1_average", "250000000"),
            ("power1_average_interval", "1000"),
        ],
    );
    write_files(
        &root.join("hwmon2"),
        &[
            ("name", "ina226"),
            ("power1_input", "5500000"),
            // Its cap becomes a power-limit telemetry channel, which must pass the check too.
            ("power1_cap", "20000000"),
            ("update_interval", "2"),
        ],
    );
    let config = serde_json::json!({ "root": root }).to_string();
    let o = check(&lib("ipw_sampler_hwmon"), &config, &[]);
    assert_passes(&o, "hwmon");
    let t = text(&o);
    assert!(
        t.contains("PASS counters") && t.contains("PASS gauges"),
        "{t}"
    );
}

#[test]
fn jetson_passes_on_a_fake_sysfs_tree() {
    // Orin NX layout: an ina3221 hwmon device with the module input and two sub-rails.
    let dir = tempfile::tempdir().unwrap();
    write_files(
        &dir.path().join("sys/class/hwmon/hwmon1"),
        &[
            ("name", "ina3221"),
            ("update_interval", "140"),
            ("in1_label", "VDD_IN"),
            ("in1_enable", "1"),
            ("in1_input", "5000"),
            ("curr1_input", "1200"),
            ("in2_label", "VDD_CPU_GPU_CV"),
            ("in2_enable", "1"),
            ("in2_input", "4992"),
            ("curr2_input", "400"),
        ],
    );
    let config = serde_json::json!({ "root": dir.path() }).to_string();
    let o = check(&lib("ipw_sampler_jetson"), &config, &[]);
    assert_passes(&o, "jetson");
    assert!(text(&o).contains("PASS gauges"), "{}", text(&o));
}

#[test]
fn faulty_samplers_fail_with_the_check_they_break() {
    let faulty = lib("ipw_testfixture_faulty_sampler");
    let cases: &[(&str, &[&str])] = &[
        ("panic-open", &["open"]),
        ("panic-read", &["read"]),
        ("error-read", &["read", "readings"]),
        ("nan", &["gauges"]),
        ("negative", &["gauges"]),
        ("decreasing", &["counters"]),
        ("block-read", &["read"]),
        ("duplicate-names", &["describe"]),
        ("unix-clock", &["timestamps"]),
        ("time-backwards", &["timestamps"]),
        ("bad-index", &["read"]),
    ];
    for (mode, want) in cases {
        let o = check(&faulty, &format!("{{\"mode\": \"{mode}\"}}"), &[]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{mode} must exit 1:\n{t}");
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(failed(&o), want, "{mode}:\n{t}");
        for check in &want {
            assert!(t.contains(&format!("FAIL {check:<10}")), "{mode}:\n{t}");
        }
    }
    // Usable but costly: a warning, exit 0. And the fixture's file name does not follow the
    // naming `plugin = "..."` finds: a warning saying what to call it.
    let o = check(&faulty, r#"{"mode": "slow"}"#, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("WARN read-cost"), "{t}");
    assert!(
        t.contains("WARN name") && t.contains("libipw_sampler_fixture_faulty"),
        "{t}"
    );
    let o = check(&faulty, r#"{"mode": "ok"}"#, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(failed(&o).is_empty(), "{}", text(&o));
}

#[test]
fn wrong_abi_and_non_samplers_fail_the_load_check() {
    let o = check(&lib("ipw_testfixture_wrong_abi_sampler"), "{}", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(failed(&o), BTreeSet::from(["load".to_string()]));
    assert!(text(&o).contains("ABI version 99"), "{}", text(&o));
    // A shared library that is no sampler at all (the fake NVML library).
    let o = check(&lib("fake_nvml"), "{}", &[]);
    assert_eq!(failed(&o), BTreeSet::from(["load".to_string()]));
    assert!(
        text(&o).contains("no `ipw_sampler_api` symbol"),
        "{}",
        text(&o)
    );
}

#[test]
fn doctor_plugin_runs_the_same_check() {
    let faulty = lib("ipw_testfixture_faulty_sampler");
    let o = ipw()
        .args([
            "doctor",
            "--plugin",
            &faulty,
            "--config",
            r#"{"mode": "nan"}"#,
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(failed(&o), BTreeSet::from(["gauges".to_string()]));
    let o = ipw()
        .args(["doctor", "--plugin", "cpu-estimate", "--seconds", "1"])
        .output()
        .unwrap();
    assert_passes(&o, "doctor --plugin cpu-estimate");
}

#[test]
fn doctor_says_what_every_plugin_measures_and_needs() {
    let o = ipw().arg("doctor").output().unwrap();
    let t = text(&o);
    // cpu-estimate works anywhere with /proc; the others say why not, and what they need.
    assert!(o.status.success(), "{t}");
    for (name, needs) in [
        ("cpu-estimate", "/proc/stat"),
        ("rapl", "powercap"),
        ("nvml", "libnvidia-ml.so.1"),
        ("amdsmi", "libamd_smi.so"),
        ("hwmon", "/sys/class/hwmon"),
        ("jetson", "ina3221"),
        ("apple", "macOS"),
        ("replay", "trace file"),
    ] {
        let at = t
            .lines()
            .position(|l| l.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{t}"));
        let block: Vec<&str> = t.lines().skip(at + 1).take(3).collect();
        assert!(
            block[0].trim_start().starts_with("measures: "),
            "{name}:\n{t}"
        );
        assert!(block[1].trim_start().starts_with("how: "), "{name}:\n{t}");
        assert!(
            block[2].trim_start().starts_with("needs: ") && block[2].contains(needs),
            "{name}:\n{t}"
        );
    }
}

/// The shared target directory for crates the tests build outside the workspace, so their
/// dependencies are compiled once, not once per run.
fn outside_target() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ipw"))
        .parent() // release/
        .and_then(Path::parent) // the target dir
        .unwrap()
        .join("sampler-new-test")
}

#[test]
fn sampler_new_builds_and_passes_the_check_on_the_first_try() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("my-meter");
    let o = ipw()
        .args(["sampler", "new", "my-meter", "--dir"])
        .arg(&krate)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"), "{manifest}");
    assert!(
        manifest.contains("name = \"ipw_sampler_my_meter\""),
        "{manifest}"
    );
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/sampler");
    assert!(
        manifest.contains(&format!("path = {:?}", sdk.display().to_string())),
        "from a checkout, the SDK by path: {manifest}"
    );
    assert!(krate.join("README.md").is_file() && krate.join("Cargo.lock").is_file());
    // Offline: the copied Cargo.lock pins what ipw itself was built with, already cached.
    let target = outside_target();
    let b = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "--offline", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(b.status.success(), "cargo build: {}", text(&b));
    let so = target.join("release").join(format!(
        "{}ipw_sampler_my_meter{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let watts = dir.path().join("watts");
    std::fs::write(&watts, "12.5\n").unwrap();
    let config = serde_json::json!({ "file": watts }).to_string();
    let o = check(so.to_str().unwrap(), &config, &[]);
    assert_passes(&o, "the generated sampler");
    assert!(
        !text(&o).contains("WARN"),
        "not even a warning: {}",
        text(&o)
    );
    // Without its setting it fails at open, saying what to set.
    let o = check(so.to_str().unwrap(), "{}", &[]);
    assert_eq!(failed(&o), BTreeSet::from(["open".to_string()]));
    assert!(text(&o).contains("set `file`"), "{}", text(&o));
}

#[test]
fn sampler_new_refuses_bad_names_and_non_empty_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let o = ipw()
        .args(["sampler", "new", "My Meter", "--dir"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("lowercase letters"), "{}", text(&o));
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let o = ipw()
        .args(["sampler", "new", "meter", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
}
