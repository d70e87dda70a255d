//! Tests against the fake AMD SMI library (`tests/fixtures/fake-amdsmi`), which plays a scripted
//! power trace through the real function signatures. Build it before these tests, with the same
//! profile and target dir: `cargo build --release -p ipw-fixture-fake-amdsmi`.

use super::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// The fake keeps one script per process and the visibility variables are process-wide:
/// tests that open the sampler take turns.
static LOCK: Mutex<()> = Mutex::new(());

/// `libfake_amdsmi.so` beside this test binary's `deps/` directory.
fn fake_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let lib = dir.join("libfake_amdsmi.so");
    assert!(
        lib.exists(),
        "{} is missing: build the fake AMD SMI library first, with the same profile and target dir as these tests: `cargo build --release -p ipw-fixture-fake-amdsmi`",
        lib.display()
    );
    lib
}

/// An open sampler and the lock it holds; the sampler drops (shutting the fake down) first.
struct Session {
    smi: AmdSmi,
    _dir: tempfile::TempDir,
    _guard: MutexGuard<'static, ()>,
}

const VARS: [&str; 3] = [
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
];

fn open(script: Value, cfg: Value, env: &[(&str, &str)]) -> Result<Session, String> {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.json");
    std::fs::write(&path, script.to_string()).unwrap();
    std::env::set_var("IPW_FAKE_AMDSMI_SCRIPT", &path);
    for v in VARS {
        std::env::remove_var(v);
    }
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let mut c = json!({ "lib_path": fake_lib() });
    for (k, v) in cfg.as_object().unwrap() {
        c[k] = v.clone();
    }
    let r = <AmdSmi as Sampler>::open(&c);
    for v in VARS {
        std::env::remove_var(v);
    }
    r.map(|smi| Session {
        smi,
        _dir: dir,
        _guard: guard,
    })
}

fn device(uuid: &str, watts: f64) -> Value {
    json!({ "uuid": uuid, "power_w": [[0.0, watts]] })
}

fn names(s: &Session) -> Vec<String> {
    s.smi.channels().into_iter().map(|c| c.name).collect()
}

/// The fake's time origin: the same library handle, so the same statics.
fn fake_t0() -> f64 {
    unsafe {
        let lib = Library::new(fake_lib()).unwrap();
        let f: libloading::Symbol<unsafe extern "C" fn() -> f64> =
            lib.get(b"ipw_fake_amdsmi_t0\0").unwrap();
        f()
    }
}

/// Integral of a piecewise-linear trace from 0 to t (the test's own, not the fake's).
fn integral(trace: &[(f64, f64)], t: f64) -> f64 {
    let p = |x: f64| {
        if x <= trace[0].0 {
            return trace[0].1;
        }
        for w in trace.windows(2) {
            if x <= w[1].0 {
                return w[0].1 + (w[1].1 - w[0].1) * (x - w[0].0) / (w[1].0 - w[0].0);
            }
        }
        trace[trace.len() - 1].1
    };
    let n = 20_000;
    let h = t / n as f64;
    (0..n)
        .map(|i| (p(i as f64 * h) + p((i + 1) as f64 * h)) / 2.0 * h)
        .sum()
}

#[test]
fn energy_is_the_integral_of_the_scripted_power() {
    let trace = [(0.0, 120.0), (0.45, 120.0), (0.55, 480.0), (1.0, 480.0)];
    let mut s = open(
        json!({ "devices": [{ "uuid": "aa11-0000", "power_w": trace, "start_uj": 5.0e9 }] }),
        json!({}),
        &[],
    )
    .unwrap();
    let chans = s.smi.channels();
    assert_eq!(names(&s), ["gpu0", "gpu0-power"]);
    let ChannelKind::EnergyCounter { resolution_j, .. } = chans[0].kind else {
        panic!("gpu0 is not a counter")
    };
    assert!((resolution_j - 15.259e-6).abs() < 1e-9, "{resolution_j}");
    assert_eq!(chans[0].shaped_by.as_deref(), Some("gpu0-power"));
    assert_eq!(chans[0].device.as_deref(), Some("aa11-0000"));
    let t0 = fake_t0();
    let mut counts = Vec::new();
    let mut powers = Vec::new();
    for _ in 0..14 {
        let mut out = Vec::new();
        s.smi.read(&mut out).unwrap();
        for r in out {
            match r.channel {
                0 => counts.push((r.timestamp_s - t0, r.value)),
                1 => powers.push((r.timestamp_s - t0, r.value)),
                c => panic!("channel {c}"),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(counts.len(), 14);
    // The counter starts where the script does: 5e9 µJ = 5 kJ (plus what was used since init).
    assert!(
        counts[0].1 >= 5000.0 && counts[0].1 < 5000.0 + 480.0,
        "{:?}",
        counts[0]
    );
    for w in counts.windows(2) {
        let (ta, ea) = w[0];
        let (tb, eb) = w[1];
        assert!(eb >= ea, "counter went back: {ea} -> {eb}");
        let want = integral(&trace, tb) - integral(&trace, ta);
        // One resolution step of truncation at each end, plus the microseconds between the
        // plugin's timestamp and the fake's clock read at 480 W.
        let tol = 2.0 * resolution_j + 480.0 * 1e-4;
        assert!(
            (eb - ea - want).abs() <= tol,
            "{ta:.3}..{tb:.3}: counted {} J, scripted {want} J",
            eb - ea
        );
    }
    for (t, w) in powers {
        let want = integral(&trace, t + 1e-4) - integral(&trace, t);
        assert!((w - want / 1e-4).abs() <= 1.0, "at {t}: {w} W");
    }
}

#[test]
fn selects_by_index_and_uuid() {
    let script = json!({ "devices": [
        device("1111aaaa-0000", 100.0),
        device("2222bbbb-0000", 100.0),
        device("3333cccc-0000", 100.0),
    ]});
    let s = open(script.clone(), json!({ "gpus": [2, "1111aa"] }), &[]).unwrap();
    assert_eq!(names(&s), ["gpu2", "gpu2-power", "gpu0", "gpu0-power"]);
    assert_eq!(s.smi.channels()[0].device.as_deref(), Some("3333cccc-0000"));
    drop(s);
    // The visibility variables do not override an explicit list.
    let s = open(
        script.clone(),
        json!({ "gpus": ["1"] }),
        &[("HIP_VISIBLE_DEVICES", "0")],
    )
    .unwrap();
    assert_eq!(names(&s), ["gpu1", "gpu1-power"]);
    drop(s);
    let e = open(script.clone(), json!({ "gpus": ["9"] }), &[])
        .err()
        .unwrap();
    assert!(
        e.contains("no GPU `9`") && e.contains("2=3333cccc-0000"),
        "{e}"
    );
    // By PCI address, in llama.cpp's form (how samplers follow the embedded model's GPU); the
    // fake puts device n on bus n+1.
    let s = open(script.clone(), json!({ "gpus": ["0000:02:00.0"] }), &[]).unwrap();
    assert_eq!(names(&s), ["gpu1", "gpu1-power"]);
    drop(s);
    let e = open(script, json!({ "gpus": ["0000:0a:00.0"] }), &[])
        .err()
        .unwrap();
    assert!(
        e.contains("no GPU at PCI address `0000:0a:00.0`") && e.contains("1=0000:02:00.0"),
        "{e}"
    );
}

#[test]
fn rocr_applies_first_then_hip_indexes_into_it() {
    let all: Vec<(u32, String)> = (0..4).map(|i| (i, format!("{i}{i}{i}{i}-uuid"))).collect();
    let ids = |v: Vec<(u32, String)>| v.into_iter().map(|g| g.0).collect::<Vec<_>>();
    assert_eq!(ids(select(&all, None, None, None).unwrap()), [0, 1, 2, 3]);
    assert_eq!(ids(select(&all, None, Some("2,3"), None).unwrap()), [2, 3]);
    assert_eq!(
        ids(select(&all, None, Some("2,3"), Some("1")).unwrap()),
        [3]
    );
    assert_eq!(ids(select(&all, None, None, Some("1")).unwrap()), [1]);
    assert_eq!(
        ids(select(&all, None, Some("GPU-3333"), None).unwrap()),
        [3]
    );
    assert_eq!(
        ids(select(&all, None, Some(" "), Some("")).unwrap()),
        [0, 1, 2, 3]
    );
    let e = select(&all, None, Some("2,3"), Some("2")).unwrap_err();
    assert!(
        e.contains("HIP_VISIBLE_DEVICES") && e.contains("`2`"),
        "{e}"
    );
    let e = select(&all, None, Some("7"), None).unwrap_err();
    assert!(e.contains("ROCR_VISIBLE_DEVICES"), "{e}");
    let gpus = ["0".to_string()];
    assert_eq!(
        ids(select(&all, Some(&gpus), Some("2"), Some("0")).unwrap()),
        [0]
    );
}

#[test]
fn open_honours_the_visibility_variables() {
    let script = json!({ "devices": [
        device("a0-0", 100.0), device("a1-0", 100.0), device("a2-0", 100.0),
    ]});
    let s = open(
        script.clone(),
        json!({}),
        &[
            ("ROCR_VISIBLE_DEVICES", "1,2"),
            ("HIP_VISIBLE_DEVICES", "1"),
        ],
    )
    .unwrap();
    assert_eq!(names(&s), ["gpu2", "gpu2-power"]);
    drop(s);
    // HIP also reads CUDA_VISIBLE_DEVICES when its own variable is unset.
    let s = open(script, json!({}), &[("CUDA_VISIBLE_DEVICES", "0")]).unwrap();
    assert_eq!(names(&s), ["gpu0", "gpu0-power"]);
}

#[test]
fn a_stuck_counter_is_refused_at_open() {
    let script = json!({ "devices": [
        device("good-0", 300.0),
        { "uuid": "stuck-1", "power_w": [[0.0, 300.0]], "counter": "stuck" },
    ]});
    let e = open(script.clone(), json!({}), &[]).err().unwrap();
    assert!(
        e.contains("GPU 1 (stuck-1)") && e.contains("did not move") && e.contains("300 W"),
        "{e}"
    );
    assert!(e.contains("check_counter = false"), "{e}");
    // Asked not to check: opens, and the counter reads as it is.
    let s = open(script, json!({ "check_counter": false }), &[]).unwrap();
    assert_eq!(names(&s), ["gpu0", "gpu0-power", "gpu1", "gpu1-power"]);
}

#[test]
fn a_scaled_counter_is_refused_at_open() {
    for (scale, shown) in [(4.0, "4.00x"), (0.25, "0.25x")] {
        let script = json!({ "devices": [
            { "uuid": "scaled-0", "power_w": [[0.0, 250.0]], "counter_scale": scale },
        ]});
        let e = open(script, json!({}), &[]).err().unwrap();
        assert!(
            e.contains("GPU 0 (scaled-0)")
                && e.contains("implies")
                && e.contains("reported 250 W")
                && e.contains(shown),
            "{e}"
        );
    }
    // Within the factor (a 1 s average lagging a change): accepted.
    let script = json!({ "devices": [
        { "uuid": "ok-0", "power_w": [[0.0, 250.0]], "counter_scale": 1.4 },
    ]});
    assert!(open(script, json!({}), &[]).is_ok());
}

#[test]
fn check_ignores_idle_power_and_judges_the_rest() {
    let f = |units, implied_w, reported_w| CheckFigures {
        dt_s: 0.25,
        units,
        implied_w,
        reported_w,
    };
    assert!(check("g", &f(0, 0.0, 3.0)).is_ok());
    assert!(check("g", &f(0, 0.0, 6.0)).is_err());
    assert!(check("g", &f(10, 199.0, 100.0)).is_ok());
    assert!(check("g", &f(10, 201.0, 100.0)).is_err());
    assert!(check("g", &f(10, 49.0, 100.0)).is_err());
}

#[test]
fn without_current_power_there_is_no_power_channel_and_no_shaping() {
    for mode in ["none", "average"] {
        let script = json!({ "devices": [
            { "uuid": "np-0", "power_w": [[0.0, 200.0]], "power": mode },
        ]});
        let mut s = open(script, json!({}), &[]).unwrap();
        let ch = s.smi.channels();
        assert_eq!(names(&s), ["gpu0"], "{mode}");
        assert_eq!(ch[0].shaped_by, None, "{mode}");
        let mut out = Vec::new();
        s.smi.read(&mut out).unwrap();
        assert!(
            out.iter().all(|r| r.channel == 0) && out.len() == 1,
            "{out:?}"
        );
    }
    // An average is still enough to catch a scaled counter.
    let script = json!({ "devices": [
        { "uuid": "np-0", "power_w": [[0.0, 200.0]], "power": "average", "counter_scale": 3.0 },
    ]});
    assert!(open(script, json!({}), &[]).is_err());
}

#[test]
fn the_older_power_info_layout_is_read_as_such() {
    let script = json!({ "lib_version": 24, "devices": [device("old-0", 333.0)] });
    let mut s = open(script, json!({}), &[]).unwrap();
    let mut out = Vec::new();
    s.smi.read(&mut out).unwrap();
    let power: Vec<f64> = out
        .iter()
        .filter(|r| r.channel == 1)
        .map(|r| r.value)
        .collect();
    assert_eq!(power, [333.0]);
}

#[test]
fn a_32_bit_wrap_is_declared_only_while_the_counter_could_be_32_bit() {
    let res = 15.259f32 as f64;
    let wrap_of = |s: &Session| match s.smi.channels()[0].kind {
        ChannelKind::EnergyCounter { wrap_j, .. } => wrap_j,
        _ => panic!(),
    };
    let low = open(json!({ "devices": [device("w-0", 100.0)] }), json!({}), &[]).unwrap();
    let w = wrap_of(&low).expect("a counter below 2^32 units may wrap there");
    assert!((w - 4_294_967_296.0 * res * 1e-6).abs() < 1e-3, "{w}");
    drop(low);
    let high = open(
        json!({ "devices": [{ "uuid": "w-0", "power_w": [[0.0, 100.0]], "start_uj": 2.0f64.powi(33) * res }] }),
        json!({}),
        &[],
    )
    .unwrap();
    assert_eq!(wrap_of(&high), None);
    drop(high);
    // A 32-bit counter wrapping during the open check is a wrap, not a stuck counter.
    let start = (4_294_967_296.0 - 100.0) * res;
    let s = open(
        json!({ "devices": [{ "uuid": "w-0", "power_w": [[0.0, 300.0]], "start_uj": start, "wrap32": true }] }),
        json!({}),
        &[],
    );
    assert!(s.is_ok(), "{:?}", s.err());
}

#[test]
fn a_missing_library_is_named() {
    let e = <AmdSmi as Sampler>::open(&json!({ "lib_path": "/nonexistent/libamd_smi.so" }))
        .err()
        .unwrap();
    assert!(e.contains("`/nonexistent/libamd_smi.so`"), "{e}");
}

#[test]
fn a_gpu_without_a_counter_is_refused() {
    let script =
        json!({ "devices": [{ "uuid": "vf-0", "power_w": [[0.0, 50.0]], "counter": "missing" }] });
    let e = open(script, json!({}), &[]).err().unwrap();
    assert!(
        e.contains("GPU 0 (vf-0)") && e.contains("no energy counter"),
        "{e}"
    );
}

#[test]
fn throttle_status_is_a_channel_where_the_board_reports_it() {
    // PPT0 (bit 0) and TEMP_HOTSPOT (bit 36) of the ASIC-independent bits; a board with only
    // the ASIC-dependent member reports those bits instead; a board with neither has no channel.
    let hot = 1u64 | (1 << 36);
    let script = json!({ "devices": [
        { "uuid": "1111aaaa-0000", "power_w": [[0.0, 300.0]], "throttle": [[0.0, 1e6, hot]] },
        { "uuid": "2222bbbb-0000", "power_w": [[0.0, 300.0]], "throttle": [[0.0, 1e6, 4]],
          "throttle_indep": false },
        { "uuid": "3333cccc-0000", "power_w": [[0.0, 300.0]], "throttle": [] },
        device("4444dddd-0000", 300.0),
    ]});
    let mut s = open(script, json!({ "check_counter": false }), &[]).unwrap();
    let channels = s.smi.channels();
    let throttle: Vec<(usize, &Channel)> = channels
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.ends_with("-throttle"))
        .collect();
    let names: Vec<&str> = throttle.iter().map(|(_, c)| c.name.as_str()).collect();
    assert_eq!(names, ["gpu0-throttle", "gpu1-throttle", "gpu2-throttle"]);
    for (_, c) in &throttle {
        assert_eq!(
            c.kind,
            ChannelKind::Telemetry {
                unit: THROTTLE_UNIT.into()
            }
        );
    }
    let mut readings = Vec::new();
    s.smi.read(&mut readings).unwrap();
    let value = |i: usize| {
        readings
            .iter()
            .find(|r| r.channel as usize == throttle[i].0)
            .map(|r| r.value)
    };
    assert_eq!(value(0), Some(hot as f64));
    assert_eq!(value(1), Some(4.0));
    assert_eq!(value(2), Some(0.0), "reported, and not throttled");
}
