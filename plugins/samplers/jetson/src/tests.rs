//! Tests on fake Jetson sysfs trees in a temp dir, with the kernels' file names and units.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;

/// A fake filesystem root holding `sys/...`.
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
        self.dir.path().to_path_buf()
    }

    /// Write `files` (with sysfs's trailing newline) into `rel` under the root.
    fn put(&self, rel: &str, files: &[(&str, &str)]) {
        let d = self.root().join(rel);
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn open(&self, extra: serde_json::Value) -> Result<Jetson, String> {
        let mut cfg = json!({ "root": self.root() });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        <Jetson as Sampler>::open(&cfg)
    }
}

const NX: &str = "sys/class/hwmon/hwmon1";

/// Orin NX on a recent L4T: one ina3221 with the module input and two sub-rails, plus the
/// chip's unlabelled shunt-voltage and sum channels, and a thermal hwmon device.
fn orin_nx() -> Tree {
    let t = Tree::new();
    t.put(
        "sys/class/hwmon/hwmon0",
        &[("name", "cpu_thermal"), ("temp1_input", "41000")],
    );
    t.put(
        NX,
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
            ("in3_label", "VDD_SOC"),
            ("in3_enable", "1"),
            ("in3_input", "5000"),
            ("curr3_input", "300"),
            ("in4_input", "6000"),
            ("in7_input", "9500"),
            ("curr4_input", "1900"),
        ],
    );
    t
}

/// AGX Orin: two ina3221 chips, no total-input monitor, NC and disabled channels.
fn agx_orin() -> Tree {
    let t = Tree::new();
    t.put(
        "sys/class/hwmon/hwmon2",
        &[
            ("name", "ina3221"),
            ("in1_label", "VDD_GPU_SOC"),
            ("in1_input", "19000"),
            ("curr1_input", "1000"),
            ("in2_label", "VDD_CPU_CV"),
            ("in2_input", "19000"),
            ("curr2_input", "500"),
            ("in3_label", "VIN_SYS_5V0"),
            ("in3_input", "5000"),
            ("curr3_input", "800"),
        ],
    );
    t.put(
        "sys/class/hwmon/hwmon10",
        &[
            ("name", "ina3221"),
            ("in1_label", "NC"),
            ("in1_input", "0"),
            ("curr1_input", "0"),
            ("in2_label", "VDDQ_VDD2_1V8AO"),
            ("in2_input", "5000"),
            ("curr2_input", "250"),
            ("in3_label", "VDD_SPARE"),
            ("in3_enable", "0"),
            ("in3_input", "0"),
            ("curr3_input", "0"),
        ],
    );
    t
}

const NANO: &str = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0";
const TX2: &str = "sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1";

/// Jetson Nano on old L4T: the IIO driver with power files and the module input.
fn nano() -> Tree {
    let t = Tree::new();
    t.put(
        NANO,
        &[
            ("rail_name_0", "POM_5V_IN"),
            ("in_power0_input", "4321"),
            ("in_current0_input", "864"),
            ("in_voltage0_input", "5000"),
            ("rail_name_1", "POM_5V_GPU"),
            ("in_power1_input", "500"),
            ("rail_name_2", "POM_5V_CPU"),
            ("in_power2_input", "800"),
        ],
    );
    t.put(
        "sys/bus/i2c/drivers/ina3221x/6-0040",
        &[("name", "ina3221x")],
    );
    t
}

fn names(s: &Jetson) -> Vec<String> {
    s.channels().into_iter().map(|c| c.name).collect()
}

fn by_name(s: &Jetson) -> BTreeMap<String, Channel> {
    s.channels()
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect()
}

/// Channel name -> value of one `read`.
fn read_all(s: &mut Jetson) -> BTreeMap<String, f64> {
    let names = names(s);
    let mut out = Vec::new();
    s.read(&mut out).unwrap();
    assert_eq!(out.len(), names.len(), "one reading per channel");
    out.iter()
        .map(|r| {
            assert!(r.timestamp_s > 0.0 && r.timestamp_s <= ipw_sampler_sdk::monotonic_now());
            (names[r.channel as usize].clone(), r.value)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

const INSTANT: ChannelKind = ChannelKind::PowerGauge {
    timing: GaugeTiming::Instant,
    estimated: false,
};

#[test]
fn orin_nx_input_rail_is_the_gauge_and_its_sub_rails_are_telemetry() {
    let t = orin_nx();
    let mut s = t.open(json!({})).unwrap();
    assert_eq!(
        names(&s),
        ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
        "unlabelled shunt/sum channels skipped"
    );
    let ch = by_name(&s);
    let vin = &ch["VDD_IN"];
    assert_eq!(vin.kind, INSTANT);
    assert_eq!(vin.domain, Domain::System);
    assert_eq!(vin.update_period_s, 0.14, "update_interval is in ms");
    assert_eq!(
        vin.device.as_deref().unwrap(),
        "hwmon1 (ina3221) channel 1, in1_input mV x curr1_input mA, instant, update interval \
         140 ms; the board's total input: it includes the other rails, do not add them to it"
    );
    assert!(vin.accuracy.is_none() && vin.shaped_by.is_none());
    for n in ["VDD_CPU_GPU_CV", "VDD_SOC"] {
        assert_eq!(
            ch[n].kind,
            ChannelKind::Telemetry { unit: "W".into() },
            "{n}"
        );
        assert_eq!(ch[n].domain, Domain::Telemetry, "{n}");
        let d = ch[n].device.as_deref().unwrap();
        assert!(
            d.ends_with("; part of VDD_IN: telemetry in W, not summed"),
            "{d}"
        );
        assert!(!d.contains("total input"), "{d}");
    }

    let v = read_all(&mut s);
    assert!(
        close(v["VDD_IN"], 6.0),
        "5000 mV x 1200 mA = 6 W, got {}",
        v["VDD_IN"]
    );
    assert!(close(v["VDD_CPU_GPU_CV"], 1.9968));
    assert!(close(v["VDD_SOC"], 1.5));
    t.put(NX, &[("in1_input", "4800"), ("curr1_input", "2500")]);
    assert!(close(read_all(&mut s)["VDD_IN"], 12.0));
}

#[test]
fn agx_orin_every_connected_rail_is_a_gauge_and_nc_or_disabled_channels_are_skipped() {
    let t = agx_orin();
    let mut s = t.open(json!({})).unwrap();
    assert_eq!(
        names(&s),
        [
            "VDD_GPU_SOC",
            "VDD_CPU_CV",
            "VIN_SYS_5V0",
            "VDDQ_VDD2_1V8AO"
        ]
    );
    let ch = by_name(&s);
    let want = [
        ("VDD_GPU_SOC", Domain::Gpu),
        ("VDD_CPU_CV", Domain::CpuPackage),
        ("VIN_SYS_5V0", Domain::System),
        ("VDDQ_VDD2_1V8AO", Domain::Dram),
    ];
    for (n, d) in want {
        assert_eq!(ch[n].kind, INSTANT, "{n}");
        assert_eq!(ch[n].domain, d, "{n}");
        assert_eq!(ch[n].update_period_s, DEFAULT_UPDATE_PERIOD_S, "{n}");
        let dev = ch[n].device.as_deref().unwrap();
        assert!(
            dev.ends_with("instant, update interval not exposed, assumed 0.1 s"),
            "{n}: {dev}"
        );
    }
    assert!(ch["VDDQ_VDD2_1V8AO"]
        .device
        .as_deref()
        .unwrap()
        .starts_with("hwmon10 (ina3221) channel 2, in2_input mV x curr2_input mA"));
    let v = read_all(&mut s);
    assert!(close(v["VDD_GPU_SOC"], 19.0));
    assert!(close(v["VDD_CPU_CV"], 9.5));
    assert!(close(v["VIN_SYS_5V0"], 4.0));
    assert!(close(v["VDDQ_VDD2_1V8AO"], 1.25));

    let Err(e) = t.open(json!({"rails": ["NC"]})) else {
        panic!("an NC channel was selectable")
    };
    assert!(e.contains("no rail `NC`"), "{e}");
    assert!(
        e.contains("skipped: hwmon10 channel 1 `NC`, hwmon10 channel 3 `VDD_SPARE`"),
        "{e}"
    );
}

#[test]
fn old_l4t_iio_layout_reads_milliwatts_and_falls_back_to_volts_times_amps() {
    let t = nano();
    let mut s = t.open(json!({})).unwrap();
    assert_eq!(names(&s), ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]);
    let ch = by_name(&s);
    assert_eq!(ch["POM_5V_IN"].kind, INSTANT);
    assert_eq!(ch["POM_5V_IN"].domain, Domain::System);
    assert_eq!(
        ch["POM_5V_IN"].device.as_deref().unwrap(),
        "ina3221x 6-0040 iio:device0 channel 0, in_power0_input mW, instant, update interval \
         not exposed, assumed 0.1 s; the board's total input: it includes the other rails, do \
         not add them to it"
    );
    assert_eq!(
        ch["POM_5V_GPU"].kind,
        ChannelKind::Telemetry { unit: "W".into() }
    );
    let v = read_all(&mut s);
    assert!(
        close(v["POM_5V_IN"], 4.321),
        "mW -> W, got {}",
        v["POM_5V_IN"]
    );
    assert!(close(v["POM_5V_GPU"], 0.5));
    assert!(close(v["POM_5V_CPU"], 0.8));
    t.put(NANO, &[("in_power0_input", "7000")]);
    assert!(close(read_all(&mut s)["POM_5V_IN"], 7.0));

    // TX2-like chip without power files: V x I; no total-input rail, so all are gauges.
    let t = Tree::new();
    t.put(
        TX2,
        &[
            ("rail_name_0", "VDD_SYS_GPU"),
            ("in_voltage0_input", "19000"),
            ("in_current0_input", "152"),
            ("rail_name_1", "VDD_SYS_SOC"),
            ("in_voltage1_input", "19000"),
            ("in_current1_input", "100"),
            ("rail_name_2", "VDD_4V0_WIFI"),
            ("in_voltage2_input", "4000"),
            ("in_current2_input", "25"),
        ],
    );
    let mut s = t.open(json!({})).unwrap();
    let ch = by_name(&s);
    assert_eq!(ch["VDD_SYS_GPU"].domain, Domain::Gpu);
    assert_eq!(ch["VDD_SYS_SOC"].domain, Domain::Soc);
    assert_eq!(ch["VDD_4V0_WIFI"].domain, Domain::System);
    assert!(ch["VDD_SYS_GPU"]
        .device
        .as_deref()
        .unwrap()
        .contains("in_voltage0_input mV x in_current0_input mA"));
    let v = read_all(&mut s);
    assert!(close(v["VDD_SYS_GPU"], 2.888));
    assert!(close(v["VDD_SYS_SOC"], 1.9));
    assert!(close(v["VDD_4V0_WIFI"], 0.1));
}

#[test]
fn both_layouts_on_one_root_and_repeated_rail_names_stay_unique() {
    let t = orin_nx();
    t.put(
        "sys/class/hwmon/hwmon4",
        &[
            ("name", "ina3221"),
            ("in1_label", "VDD_IN"),
            ("in1_input", "12000"),
            ("curr1_input", "100"),
        ],
    );
    t.put(
        NANO,
        &[("rail_name_0", "VDD_IN"), ("in_power0_input", "1000")],
    );
    let s = t.open(json!({"rails": ["VDD_IN"]})).unwrap();
    assert_eq!(
        names(&s),
        ["VDD_IN", "VDD_IN-hwmon4", "VDD_IN-6-0040-iio-device0"]
    );
    // Selected by name, the renamed ones are reachable too.
    let s = t.open(json!({"rails": ["VDD_IN-hwmon4"]})).unwrap();
    assert_eq!(names(&s), ["VDD_IN-hwmon4"]);
}

#[test]
fn rails_select_and_an_unknown_rail_lists_what_was_found() {
    let t = orin_nx();
    let s = t
        .open(json!({"rails": ["VDD_CPU_GPU_CV", "vdd_soc"]}))
        .unwrap();
    assert_eq!(names(&s), ["VDD_CPU_GPU_CV", "VDD_SOC"]);
    for c in s.channels() {
        assert_eq!(
            c.kind, INSTANT,
            "without the input rail, sub-rails are gauges"
        );
        assert_eq!(c.domain, Domain::Soc, "{}", c.name);
    }
    let s = t.open(json!({"rails": ["VDD_IN"]})).unwrap();
    assert_eq!(names(&s), ["VDD_IN"]);

    let Err(e) = t.open(json!({"rails": ["VDD_GPU"]})) else {
        panic!("an unknown rail was accepted")
    };
    assert!(e.contains("no rail `VDD_GPU`"), "{e}");
    assert!(
        e.contains("rails found: VDD_IN (hwmon1), VDD_CPU_GPU_CV (hwmon1), VDD_SOC (hwmon1)"),
        "{e}"
    );
    let Err(e) = t.open(json!({"rail": ["VDD_IN"]})) else {
        panic!("a misspelt setting was accepted")
    };
    assert!(e.contains("unknown field `rail`"), "{e}");
}

#[test]
fn finding_no_rail_is_an_error_naming_what_was_searched_and_seen() {
    let t = Tree::new();
    t.put(
        "sys/class/hwmon/hwmon0",
        &[("name", "cpu_thermal"), ("temp1_input", "41000")],
    );
    let Err(e) = t.open(json!({})) else {
        panic!("a board without INA3221 opened")
    };
    assert!(e.contains("no power rail to read"), "{e}");
    assert!(
        e.contains(&format!(
            "no INA3221 rail found under {}",
            t.root().display()
        )),
        "{e}"
    );
    assert!(e.contains("hwmon devices: hwmon0 cpu_thermal"), "{e}");

    t.put(
        "sys/class/hwmon/hwmon1",
        &[
            ("name", "ina3221"),
            ("in1_label", "NC"),
            ("in1_input", "0"),
            ("curr1_input", "0"),
        ],
    );
    let e = t.open(json!({})).err().unwrap();
    assert!(e.contains("skipped: hwmon1 channel 1 `NC`"), "{e}");
}

#[test]
fn an_unreadable_or_garbage_file_is_an_error_naming_it_never_zero() {
    let t = orin_nx();
    let mut s = t.open(json!({})).unwrap();
    let curr = t.path(NX).join("curr2_input");
    std::fs::write(&curr, "garbage\n").unwrap();
    let mut out = Vec::new();
    let e = s.read(&mut out).unwrap_err();
    assert!(
        e.contains(&format!("{}: not a number: `garbage`", curr.display())),
        "{e}"
    );
    assert!(
        out.iter().all(|r| r.channel != 1),
        "no value for the bad rail"
    );

    // ENODATA / EIO look like a failed read; a vanished file fails the same way.
    std::fs::remove_file(&curr).unwrap();
    let e = s.read(&mut Vec::new()).unwrap_err();
    assert!(
        e.starts_with(&format!("cannot read {}", curr.display())),
        "{e}"
    );

    std::fs::write(&curr, "400\n").unwrap();
    assert!(
        close(read_all(&mut s)["VDD_CPU_GPU_CV"], 1.9968),
        "recovers"
    );

    // At open, too.
    t.put(NX, &[("in1_input", "")]);
    let e = t.open(json!({})).err().unwrap();
    assert!(e.contains("hwmon1/in1_input: not a number"), "{e}");

    let t = nano();
    let mut s = t.open(json!({})).unwrap();
    let p = t.path(NANO).join("in_power1_input");
    std::fs::remove_file(&p).unwrap();
    let e = s.read(&mut Vec::new()).unwrap_err();
    assert!(e.contains(&p.display().to_string()), "{e}");
}

#[test]
fn rail_names_give_domains_and_the_total_input() {
    for (rail, domain, total) in [
        ("VDD_IN", Domain::System, true),
        ("POM_5V_IN", Domain::System, true),
        ("VIN", Domain::System, true),
        ("VDD_GPU_SOC", Domain::Gpu, false),
        ("VDD_CPU_CV", Domain::CpuPackage, false),
        ("VDD_CPU_GPU_CV", Domain::Soc, false),
        ("VIN_SYS_5V0", Domain::System, false),
        ("SYS5V", Domain::System, false),
        ("VDDQ_VDD2_1V8AO", Domain::Dram, false),
        ("VDD_SYS_DDR", Domain::Dram, false),
        ("VDDRQ", Domain::Dram, false),
        ("VDD_SOC", Domain::Soc, false),
        ("CV", Domain::Soc, false),
        ("GPU", Domain::Gpu, false),
        ("POM_5V_CPU", Domain::CpuPackage, false),
        ("VDD_SYS_CPU_IN", Domain::CpuPackage, false),
        ("VDD_4V0_WIFI", Domain::System, false),
    ] {
        assert_eq!(domain_of(rail), domain, "{rail}");
        assert_eq!(is_total_input(rail), total, "{rail}");
    }
    assert!(disconnected("nc") && disconnected("") && !disconnected("VDD_IN"));
    assert_eq!(sanitize("6-0040 iio:device0"), "6-0040-iio-device0");
}
