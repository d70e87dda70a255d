//! Tests on fake `/sys/class/hwmon` trees in a temp dir, with the kernel's file names and units.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;

/// A fake hwmon class directory.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("hwmon")
    }

    /// `hwmonN/` with `name` and the given files (values written with sysfs's newline).
    fn device(&self, hwmon: &str, name: &str, files: &[(&str, &str)]) {
        let d = self.root().join(hwmon);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        for (f, v) in files {
            self.set(hwmon, f, v);
        }
    }

    fn set(&self, hwmon: &str, file: &str, value: &str) {
        std::fs::write(self.root().join(hwmon).join(file), format!("{value}\n")).unwrap();
    }

    fn open(&self, extra: serde_json::Value) -> Result<Hwmon, String> {
        let mut cfg = json!({ "root": self.root() });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        <Hwmon as Sampler>::open(&cfg)
    }
}

/// A desktop/server mix: a CPU temperature sensor, amd_energy with socket and core counters,
/// an amdgpu board, an ACPI power meter, zenpower's two CPU rails and an ina226 shunt monitor
/// at an index past 9 (natural order).
fn machine() -> Tree {
    let t = Tree::new();
    t.device(
        "hwmon0",
        "k10temp",
        &[("temp1_input", "45125"), ("temp1_label", "Tctl")],
    );
    t.device(
        "hwmon1",
        "amd_energy",
        &[
            ("energy1_input", "123456789"),
            ("energy1_label", "Esocket0"),
            ("energy2_input", "1000000"),
            ("energy2_label", "Ecore000"),
            ("energy3_input", "2000000"),
            ("energy3_label", "Ecore001"),
        ],
    );
    t.device(
        "hwmon2",
        "amdgpu",
        &[
            ("power1_average", "35000000"),
            ("power1_label", "PPT"),
            ("power1_cap", "200000000"),
            ("power1_cap_max", "250000000"),
            ("temp1_input", "51000"),
        ],
    );
    t.device(
        "hwmon3",
        "power_meter",
        &[
            ("power1_average", "250000000"),
            ("power1_average_interval", "1000"),
            ("power1_average_interval_max", "5000"),
        ],
    );
    t.device(
        "hwmon4",
        "zenpower",
        &[
            ("power1_input", "1500000"),
            ("power1_label", "SVI2_P_Core"),
            ("power2_input", "750000"),
            ("power2_label", "SVI2_P_SoC"),
            ("temp1_input", "40000"),
        ],
    );
    t.device(
        "hwmon10",
        "ina226",
        &[
            ("power1_input", "5500000"),
            ("in1_input", "12000"),
            ("curr1_input", "458"),
            ("update_interval", "2"),
        ],
    );
    t
}

fn by_name(s: &Hwmon) -> BTreeMap<String, Channel> {
    s.channels()
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect()
}

/// Channel name -> value of one `read`.
fn read_all(s: &mut Hwmon) -> BTreeMap<String, f64> {
    let names: Vec<String> = s.channels().into_iter().map(|c| c.name).collect();
    let mut out = Vec::new();
    s.read(&mut out).unwrap();
    assert_eq!(out.len(), names.len(), "one reading per channel");
    let now = ipw_sampler_sdk::monotonic_now();
    out.iter()
        .map(|r| {
            assert!(r.timestamp_s > 0.0 && r.timestamp_s <= now);
            (names[r.channel as usize].clone(), r.value)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn finds_power_and_energy_files_with_kinds_domains_periods_and_honest_device_strings() {
    let t = machine();
    let s = t.open(json!({})).unwrap();
    let names: Vec<String> = s.channels().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "amd_energy/Esocket0",
            "amdgpu/PPT",
            "amdgpu/PPT-cap",
            "power_meter/power1",
            "zenpower/SVI2_P_Core",
            "zenpower/SVI2_P_SoC",
            "ina226/power1",
        ],
        "temperatures ignored, per-core counters left out beside their socket, hwmon10 last; \
         a gauge's cap beside it"
    );
    let ch = by_name(&s);
    // The cap is the gauge's ceiling: the same device string, so the host pairs them.
    let cap = &ch["amdgpu/PPT-cap"];
    assert_eq!(
        cap.kind,
        ChannelKind::Telemetry {
            unit: POWER_LIMIT_UNIT.into()
        }
    );
    assert_eq!(cap.device, ch["amdgpu/PPT"].device);

    let e = &ch["amd_energy/Esocket0"];
    assert_eq!(
        e.kind,
        ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None
        }
    );
    assert_eq!(e.domain, Domain::CpuPackage);
    assert_eq!(e.update_period_s, DEFAULT_UPDATE_PERIOD_S);
    assert_eq!(
        e.device.as_deref().unwrap(),
        "hwmon1 (amd_energy), energy1_input (µJ counter), update interval not exposed, assumed 0.1 s"
    );
    assert!(e.accuracy.is_none() && e.shaped_by.is_none());

    let g = &ch["amdgpu/PPT"];
    assert_eq!(
        g.kind,
        ChannelKind::PowerGauge {
            timing: GaugeTiming::Averaged { window_s: 0.1 },
            estimated: false
        },
        "no power1_average_interval: the window is taken to be the update period"
    );
    assert_eq!(g.domain, Domain::Gpu);
    assert!(g
        .device
        .as_deref()
        .unwrap()
        .contains("power1_average (µW, averaging window not exposed, assumed to be the update interval (0.1 s))"));

    let m = &ch["power_meter/power1"];
    assert_eq!(
        m.kind,
        ChannelKind::PowerGauge {
            timing: GaugeTiming::Averaged { window_s: 1.0 },
            estimated: false
        }
    );
    assert_eq!(m.domain, Domain::System);
    assert!(m
        .device
        .as_deref()
        .unwrap()
        .starts_with("hwmon3 (power_meter), power1_average (µW, averaged over 1 s)"));

    for n in ["zenpower/SVI2_P_Core", "zenpower/SVI2_P_SoC"] {
        assert_eq!(ch[n].domain, Domain::CpuPackage, "{n}");
        assert_eq!(
            ch[n].kind,
            ChannelKind::PowerGauge {
                timing: GaugeTiming::Instant,
                estimated: false
            }
        );
    }

    let i = &ch["ina226/power1"];
    assert_eq!(i.domain, Domain::System);
    assert_eq!(i.update_period_s, 0.002, "update_interval is in ms");
    assert_eq!(
        i.device.as_deref().unwrap(),
        "hwmon10 (ina226), power1_input (µW, instant), update interval 2 ms"
    );
}

#[test]
fn read_converts_microjoules_and_microwatts_and_follows_the_files() {
    let t = machine();
    let mut s = t.open(json!({})).unwrap();
    let v = read_all(&mut s);
    let want = [
        ("amd_energy/Esocket0", 123.456789),
        ("amdgpu/PPT", 35.0),
        ("amdgpu/PPT-cap", 200.0),
        ("power_meter/power1", 250.0),
        ("zenpower/SVI2_P_Core", 1.5),
        ("zenpower/SVI2_P_SoC", 0.75),
        ("ina226/power1", 5.5),
    ];
    for (n, w) in want {
        assert!(close(v[n], w), "{n}: {} != {w}", v[n]);
    }
    t.set("hwmon1", "energy1_input", "223456789");
    t.set("hwmon2", "power1_average", "40250000");
    t.set("hwmon10", "power1_input", "0");
    let v = read_all(&mut s);
    assert!(close(v["amd_energy/Esocket0"], 223.456789));
    assert!(close(v["amdgpu/PPT"], 40.25));
    assert_eq!(v["ina226/power1"], 0.0, "a real 0 is still read as 0");
}

#[test]
fn counter_beats_power_and_a_known_window_beats_an_instant_value() {
    let t = Tree::new();
    t.device(
        "hwmon0",
        "psu_a",
        &[
            ("energy1_input", "5000000"),
            ("power1_input", "90000000"),
            ("power1_average", "91000000"),
        ],
    );
    t.device(
        "hwmon1",
        "fam15h_power",
        &[
            ("power1_input", "60000000"),
            ("power1_average", "61000000"),
            ("power1_average_interval", "250"),
        ],
    );
    t.device(
        "hwmon2",
        "chip_c",
        &[("power1_input", "7000000"), ("power1_average", "7100000")],
    );
    let mut s = t.open(json!({})).unwrap();
    let ch = by_name(&s);
    assert!(matches!(
        ch["psu_a/energy1"].kind,
        ChannelKind::EnergyCounter { .. }
    ));
    assert_eq!(
        ch["fam15h_power/power1"].kind,
        ChannelKind::PowerGauge {
            timing: GaugeTiming::Averaged { window_s: 0.25 },
            estimated: false
        }
    );
    assert_eq!(ch["fam15h_power/power1"].domain, Domain::CpuPackage);
    assert_eq!(
        ch["chip_c/power1"].kind,
        ChannelKind::PowerGauge {
            timing: GaugeTiming::Instant,
            estimated: false
        },
        "an average of unknown window loses to the instant value"
    );
    assert_eq!(ch.len(), 3, "one channel per index");
    let v = read_all(&mut s);
    assert!(close(v["psu_a/energy1"], 5.0));
    assert!(close(v["fam15h_power/power1"], 61.0));
    assert!(close(v["chip_c/power1"], 7.0));
}

#[test]
fn names_are_sanitized_and_unique() {
    let t = Tree::new();
    for h in ["hwmon2", "hwmon5"] {
        t.device(
            h,
            "amdgpu",
            &[("power1_average", "1000000"), ("power1_label", "PPT")],
        );
    }
    t.device(
        "hwmon3",
        "corsairpsu",
        &[
            ("power1_input", "300000000"),
            ("power1_label", "power 12v"),
            ("power2_input", "200000000"),
            ("power2_label", "PPT"),
            ("power3_input", "100000000"),
            ("power3_label", "PPT"),
        ],
    );
    let s = t.open(json!({})).unwrap();
    let names: Vec<String> = s.channels().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "amdgpu-hwmon2/PPT",
            "corsairpsu/power-12v",
            "corsairpsu/PPT",
            "corsairpsu/PPT-power3",
            "amdgpu-hwmon5/PPT",
        ]
    );
}

#[test]
fn devices_and_channels_select_and_unknown_names_list_what_was_found() {
    let t = machine();
    let names = |v: serde_json::Value| -> Vec<String> {
        t.open(v)
            .unwrap()
            .channels()
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(
        names(json!({"devices": ["amdgpu"]})),
        ["amdgpu/PPT", "amdgpu/PPT-cap"]
    );
    assert_eq!(
        names(json!({"devices": ["hwmon3", "ina226"]})),
        ["power_meter/power1", "ina226/power1"]
    );
    assert_eq!(
        names(json!({"channels": ["SVI2_P_SoC", "esocket0"]})),
        ["amd_energy/Esocket0", "zenpower/SVI2_P_SoC"],
        "labels match without case"
    );
    assert_eq!(
        names(json!({"devices": ["zenpower"], "channels": ["zenpower/SVI2_P_Core"]})),
        ["zenpower/SVI2_P_Core"],
        "a full channel name selects too"
    );

    let Err(e) = t.open(json!({"devices": ["nvidia"]})) else {
        panic!("unknown device accepted")
    };
    assert!(e.contains("no device `nvidia`"), "{e}");
    assert!(
        e.contains("hwmon0 k10temp: no power or energy files"),
        "{e}"
    );
    assert!(e.contains("hwmon2 amdgpu: PPT (power1_average)"), "{e}");
    let Err(e) = t.open(json!({"devices": ["amdgpu"], "channels": ["Esocket0"]})) else {
        panic!("a channel outside the selected devices was accepted")
    };
    assert!(e.contains("no channel `Esocket0`"), "{e}");
    assert!(e.contains("Ecore000 (energy2_input)"), "{e}");
}

#[test]
fn an_empty_selection_is_an_error_naming_what_was_found() {
    let t = Tree::new();
    t.device(
        "hwmon0",
        "k10temp",
        &[("temp1_input", "45125"), ("temp1_label", "Tctl")],
    );
    t.device("hwmon1", "nvme", &[("temp1_input", "38850")]);
    let Err(e) = t.open(json!({})) else {
        panic!("a tree without power files opened")
    };
    assert!(e.contains("no power or energy sensor selected"), "{e}");
    assert!(
        e.contains("hwmon0 k10temp: no power or energy files"),
        "{e}"
    );
    assert!(e.contains("hwmon1 nvme: no power or energy files"), "{e}");
    assert!(e.contains(&t.root().display().to_string()), "{e}");

    let Err(e) = <Hwmon as Sampler>::open(&json!({"root": t.dir.path().join("nope")})) else {
        panic!("a missing root opened")
    };
    assert!(e.contains("no hwmon at") && e.contains("nope"), "{e}");
    let Err(e) = t.open(json!({"device": ["k10temp"]})) else {
        panic!("a misspelt setting was accepted")
    };
    assert!(e.contains("unknown field `device`"), "{e}");
}

#[test]
fn parts_beside_their_whole_are_left_out_or_reported_as_telemetry() {
    let t = Tree::new();
    t.device(
        "hwmon0",
        "amd_energy",
        &[
            ("energy1_input", "10000000"),
            ("energy1_label", "Esocket0"),
            ("energy2_input", "3000000"),
            ("energy2_label", "Ecore000"),
        ],
    );
    t.device(
        "hwmon1",
        "dps920ab",
        &[
            ("power1_input", "400000000"),
            ("power1_label", "pin"),
            ("power2_input", "370000000"),
            ("power2_label", "pout1"),
        ],
    );
    let names = |s: &Hwmon| -> Vec<String> { s.channels().into_iter().map(|c| c.name).collect() };
    let s = t.open(json!({})).unwrap();
    assert_eq!(names(&s), ["amd_energy/Esocket0", "dps920ab/pin"]);
    assert_eq!(by_name(&s)["dps920ab/pin"].domain, Domain::System);

    let mut s = t
        .open(json!({"channels": ["Esocket0", "Ecore000", "pout1"]}))
        .unwrap();
    let ch = by_name(&s);
    let core = &ch["amd_energy/Ecore000"];
    assert_eq!(core.kind, ChannelKind::Telemetry { unit: "J".into() });
    assert_eq!(core.domain, Domain::Telemetry);
    assert!(
        core.device
            .as_deref()
            .unwrap()
            .ends_with("; part of amd_energy/Esocket0: telemetry in J, not summed"),
        "{:?}",
        core.device
    );
    assert!(matches!(
        ch["amd_energy/Esocket0"].kind,
        ChannelKind::EnergyCounter { .. }
    ));
    let pout = &ch["dps920ab/pout1"];
    assert!(
        matches!(pout.kind, ChannelKind::PowerGauge { .. }),
        "without its whole selected, a part is an ordinary channel"
    );
    assert_eq!(pout.domain, Domain::System);
    let v = read_all(&mut s);
    assert!(
        close(v["amd_energy/Ecore000"], 3.0),
        "telemetry is in J too"
    );
}

#[test]
fn an_unreadable_or_garbage_file_is_an_error_naming_it_never_zero() {
    let t = machine();
    let mut s = t.open(json!({"devices": ["amdgpu", "ina226"]})).unwrap();
    let ina = t.root().join("hwmon10/power1_input");

    t.set("hwmon10", "power1_input", "N/A");
    let mut out = Vec::new();
    let e = s.read(&mut out).unwrap_err();
    assert!(e.contains(&ina.display().to_string()), "{e}");
    assert!(e.contains("not a number: `N/A`"), "{e}");
    let ina_channel = s
        .channels()
        .iter()
        .position(|c| c.name == "ina226/power1")
        .unwrap() as u32;
    assert!(
        out.iter().all(|r| r.channel != ina_channel),
        "no value for the bad file"
    );

    // A sensor that answers with an error (ENODATA, EIO) looks like a failed read; a file gone
    // or replaced by a directory fails the same way here.
    std::fs::remove_file(&ina).unwrap();
    let e = s.read(&mut Vec::new()).unwrap_err();
    assert!(
        e.starts_with(&format!("cannot read {}", ina.display())),
        "{e}"
    );
    std::fs::create_dir(&ina).unwrap();
    assert!(s.read(&mut Vec::new()).unwrap_err().contains("cannot read"));

    std::fs::remove_dir(&ina).unwrap();
    t.set("hwmon10", "power1_input", "1000000");
    assert!(close(read_all(&mut s)["ina226/power1"], 1.0), "recovers");

    // At open, too: a bad value or update interval is named before a run starts.
    t.set("hwmon2", "power1_average", "");
    let e = t.open(json!({"devices": ["amdgpu"]})).err().unwrap();
    assert!(e.contains("hwmon2/power1_average: not a number"), "{e}");
    t.set("hwmon2", "power1_average", "1");
    t.set("hwmon2", "update_interval", "fast");
    let e = t.open(json!({"devices": ["amdgpu"]})).err().unwrap();
    assert!(e.contains("hwmon2/update_interval: not a number"), "{e}");
}

#[test]
fn old_style_devices_keep_their_files_under_device() {
    let t = Tree::new();
    let d = t.root().join("hwmon0/device");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("name"), "lm25066\n").unwrap();
    std::fs::write(d.join("power1_input"), "12000000\n").unwrap();
    let mut s = t.open(json!({})).unwrap();
    let ch = s.channels();
    assert_eq!(ch[0].name, "lm25066/power1");
    assert!(close(read_all(&mut s)["lm25066/power1"], 12.0));
}

#[test]
fn domains_are_guessed_from_driver_and_label() {
    assert_eq!(domain_of("amd_energy", "Esocket1"), Domain::CpuPackage);
    assert_eq!(domain_of("zenpower", "SVI2_P_SoC"), Domain::CpuPackage);
    assert_eq!(domain_of("amdgpu", "PPT"), Domain::Gpu);
    assert_eq!(domain_of("xe", "card"), Domain::Gpu);
    assert_eq!(domain_of("xe", "VRAM mem"), Domain::GpuMemory);
    assert_eq!(domain_of("some_vr", "DRAM_VDD"), Domain::Dram);
    assert_eq!(domain_of("ina2xx", "vmem"), Domain::Dram);
    assert_eq!(domain_of("corsairpsu", "power total"), Domain::System);
    assert_eq!(domain_of("mystery", "power1"), Domain::System);
}

#[test]
fn attribute_names_parse() {
    assert_eq!(
        parse_attr("power12_average"),
        Some(("power", 12, "_average"))
    );
    assert_eq!(
        parse_attr("power1_average_interval"),
        Some(("power", 1, "_average_interval"))
    );
    assert_eq!(parse_attr("energy3_input"), Some(("energy", 3, "_input")));
    assert_eq!(parse_attr("power_input"), None);
    assert_eq!(parse_attr("temp1_input"), None);
    assert_eq!(sanitize("power total"), "power-total");
    assert_eq!(sanitize(" /?"), "_");
}
