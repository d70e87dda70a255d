//! Tests from recorded-style IOReport samples (M1 and M1 Pro channel names and units) and
//! powermetrics text, so the portable logic is checked on any OS.

use super::energy::*;
use super::powermetrics::*;
use super::*;

fn ch(group: &str, channel: &str, unit: &str, value: i64) -> ChannelSample {
    ChannelSample {
        group: group.into(),
        subgroup: String::new(),
        channel: channel.into(),
        unit: unit.into(),
        value,
    }
}

fn em(channel: &str, unit: &str, value: i64) -> ChannelSample {
    ch(GROUP, channel, unit, value)
}

/// An M1 Pro-style delta sample over ~1 s: CPU total beside its clusters and per-core
/// channels, GPU in nJ, ANE and DRAM in mJ, media blocks, and another group that also has a
/// channel named like a CPU total.
fn m1_pro(scale: i64) -> Vec<ChannelSample> {
    vec![
        em("EACC_CPU", "mJ", 120 * scale),
        em("EACC_CPU0", "mJ", 30 * scale),
        em("EACC_CPU1", "mJ", 90 * scale),
        em("PACC0_CPU", "mJ", 2_000 * scale),
        em("PACC0_CPU0", "mJ", 1_500 * scale),
        em("PACC1_CPU", "mJ", 880 * scale),
        em("CPU Energy", "mJ", 3_000 * scale),
        em("GPU Energy", "nJ", 2_500_000_000 * scale),
        em("GPU SRAM", "nJ", 40_000_000 * scale),
        em("ANE", "mJ", 150 * scale),
        em("DRAM", "mJ", 700 * scale),
        em("ISP", "mJ", 5 * scale),
        em("AVE", "mJ", 9 * scale),
        ch("CPU Stats", "CPU Energy", "mJ", 999_999),
    ]
}

/// An M1-style sample with clusters only (no totals), per-core channels, in uJ.
fn m1(scale: i64) -> Vec<ChannelSample> {
    vec![
        em("ECPU", "uJ", 100_000 * scale),
        em("PCPU", "uJ", 1_900_000 * scale),
        em("PACC_CPU0", "uJ", 800_000 * scale),
        em("GPU", "uJ", 1_250_000 * scale),
        em("ANE", "uJ", 0),
        em("DRAM", "uJ", 400_000 * scale),
    ]
}

fn energy(u: &Update, s: Subsystem) -> Option<f64> {
    u.energy_j.iter().find(|(x, _)| *x == s).map(|(_, j)| *j)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn totals_are_used_over_clusters_and_units_convert() {
    let mut m = EnergyModel::new(&m1_pro(1)).unwrap();
    assert_eq!(
        m.subsystems(),
        [
            Subsystem::Cpu,
            Subsystem::Gpu,
            Subsystem::Ane,
            Subsystem::Dram
        ]
    );
    let u = m.add_deltas(&m1_pro(1)).unwrap();
    // 3000 mJ of CPU total, not 3000 + the clusters + the cores, nor the other group's.
    assert!(close(energy(&u, Subsystem::Cpu).unwrap(), 3.0), "{u:?}");
    // 2.5e9 nJ of GPU, without GPU SRAM.
    assert!(close(energy(&u, Subsystem::Gpu).unwrap(), 2.5), "{u:?}");
    assert!(close(energy(&u, Subsystem::Ane).unwrap(), 0.15), "{u:?}");
    assert!(close(energy(&u, Subsystem::Dram).unwrap(), 0.7), "{u:?}");
    assert!(u.missing.is_empty());
    // Counters: the next sample adds to them.
    let u = m.add_deltas(&m1_pro(2)).unwrap();
    assert!(close(energy(&u, Subsystem::Cpu).unwrap(), 9.0), "{u:?}");
    assert!(close(energy(&u, Subsystem::Gpu).unwrap(), 7.5), "{u:?}");
}

#[test]
fn clusters_are_summed_when_there_is_no_total() {
    let mut m = EnergyModel::new(&m1(1)).unwrap();
    let u = m.add_deltas(&m1(1)).unwrap();
    // ECPU + PCPU in µJ; the per-core channel is inside PCPU and not added again.
    assert!(close(energy(&u, Subsystem::Cpu).unwrap(), 2.0), "{u:?}");
    assert!(close(energy(&u, Subsystem::Gpu).unwrap(), 1.25), "{u:?}");
    // A channel reading 0 is a reading of 0 J: present, not missing.
    assert_eq!(energy(&u, Subsystem::Ane), Some(0.0));
    // Multi-die totals add up.
    let ultra = vec![
        em("DIE_0_CPU Energy", "mJ", 1_000),
        em("DIE_1_CPU Energy", "mJ", 500),
        em("DIE_0_PACC0_CPU", "mJ", 900),
    ];
    let mut m = EnergyModel::new(&ultra).unwrap();
    let u = m.add_deltas(&ultra).unwrap();
    assert!(close(energy(&u, Subsystem::Cpu).unwrap(), 1.5), "{u:?}");
}

#[test]
fn unit_labels_convert_and_unknown_ones_are_refused() {
    assert_eq!(joules_per_unit("mJ"), Some(1e-3));
    assert_eq!(joules_per_unit("uJ"), Some(1e-6));
    assert_eq!(joules_per_unit("µJ"), Some(1e-6));
    assert_eq!(joules_per_unit("nJ"), Some(1e-9));
    assert_eq!(joules_per_unit("mW"), None);
    let s = vec![em("GPU Energy", "kWh", 3)];
    let mut m = EnergyModel::new(&s).unwrap();
    let e = m.add_deltas(&s).unwrap_err();
    assert!(e.contains("`GPU Energy`") && e.contains("`kWh`"), "{e}");
}

#[test]
fn a_missing_subsystem_is_flagged_never_zero() {
    let mut m = EnergyModel::new(&m1_pro(1)).unwrap();
    let subs = m.subsystems();
    m.add_deltas(&m1_pro(1)).unwrap();
    let without_ane: Vec<_> = m1_pro(1)
        .into_iter()
        .filter(|c| c.channel != "ANE")
        .collect();
    let u = m.add_deltas(&without_ane).unwrap();
    assert_eq!(energy(&u, Subsystem::Ane), None, "{u:?}");
    assert_eq!(u.missing, [(Subsystem::Ane, "ANE".to_string())]);
    let mut out = Vec::new();
    let e = energy_readings(&subs, &u, 5.0, &mut out).unwrap_err();
    assert!(e.contains("ane") && e.contains("`ANE`"), "{e}");
    // The others are still read; ANE (channel 2) is not.
    let chans: Vec<u32> = out.iter().map(|r| r.channel).collect();
    assert_eq!(chans, [0, 1, 3]);
    // Back again: ANE continues from where it was, the gap's delta lost but no zero written.
    let u = m.add_deltas(&m1_pro(1)).unwrap();
    assert!(close(energy(&u, Subsystem::Ane).unwrap(), 0.3), "{u:?}");
}

#[test]
fn a_cluster_missing_makes_the_cpu_missing_not_smaller() {
    let mut m = EnergyModel::new(&m1(1)).unwrap();
    m.add_deltas(&m1(1)).unwrap();
    let no_pcpu: Vec<_> = m1(1).into_iter().filter(|c| c.channel != "PCPU").collect();
    let u = m.add_deltas(&no_pcpu).unwrap();
    assert_eq!(energy(&u, Subsystem::Cpu), None);
    assert_eq!(u.missing, [(Subsystem::Cpu, "PCPU".to_string())]);
}

#[test]
fn only_subsystems_seen_at_open_are_channels() {
    let no_dram: Vec<_> = m1(1).into_iter().filter(|c| c.channel != "DRAM").collect();
    let mut m = EnergyModel::new(&no_dram).unwrap();
    assert_eq!(
        m.subsystems(),
        [Subsystem::Cpu, Subsystem::Gpu, Subsystem::Ane]
    );
    let u = m.add_deltas(&m1(1)).unwrap();
    assert_eq!(energy(&u, Subsystem::Dram), None);
    assert!(u.missing.is_empty());
    let chans = energy_channels(&m.subsystems());
    let names: Vec<&str> = chans.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cpu", "gpu", "ane"]);
    assert_eq!(chans[0].domain, Domain::CpuPackage);
    assert!(matches!(
        chans[1].kind,
        ChannelKind::EnergyCounter { wrap_j: None, .. }
    ));
    let none = vec![em("ISP", "mJ", 1), ch("CPU Stats", "CPU Energy", "mJ", 1)];
    let e = EnergyModel::new(&none).unwrap_err();
    assert!(e.contains("Energy Model"), "{e}");
}

#[test]
fn cumulative_samples_count_from_the_first_and_never_decrease() {
    // Cumulative nJ/mJ values since boot, as IOReportCreateSamples gives them.
    let at = |cpu_mj: i64, gpu_nj: i64, ane: Option<i64>| {
        let mut v = vec![
            em("CPU Energy", "mJ", cpu_mj),
            em("GPU Energy", "nJ", gpu_nj),
        ];
        if let Some(a) = ane {
            v.push(em("ANE", "mJ", a));
        }
        v
    };
    let first = at(1_000_000, 9_000_000_000, Some(50_000));
    let mut m = EnergyModel::new(&first).unwrap();
    let u = m.add_cumulative(&first).unwrap();
    assert_eq!(energy(&u, Subsystem::Cpu), Some(0.0));
    let u = m
        .add_cumulative(&at(1_002_000, 9_500_000_000, Some(50_100)))
        .unwrap();
    assert!(close(energy(&u, Subsystem::Cpu).unwrap(), 2.0));
    assert!(close(energy(&u, Subsystem::Gpu).unwrap(), 0.5));
    // ANE absent: flagged; back later: its gap is counted from the cumulative value.
    let u = m
        .add_cumulative(&at(1_003_000, 9_600_000_000, None))
        .unwrap();
    assert_eq!(energy(&u, Subsystem::Ane), None);
    let u = m
        .add_cumulative(&at(1_004_000, 9_700_000_000, Some(50_400)))
        .unwrap();
    assert!(close(energy(&u, Subsystem::Ane).unwrap(), 0.4), "{u:?}");
    let mut last = 0.0;
    for k in 7..20 {
        let u = m
            .add_cumulative(&at(
                1_000_000 + k * 1_000,
                9_000_000_000 + k * 100_000_000,
                Some(50_000 + k * 100),
            ))
            .unwrap();
        let cpu = energy(&u, Subsystem::Cpu).unwrap();
        assert!(cpu >= last, "{cpu} < {last}");
        last = cpu;
    }
    let e = m
        .add_cumulative(&at(5, 9_000_000_000, Some(0)))
        .unwrap_err();
    assert!(e.contains("`CPU Energy`") && e.contains("went back"), "{e}");
}

const POWERMETRICS: &str = "Machine model: MacBookPro18,3
OS version: 22G120
Boot arguments:
Boot time: Mon Sep 11 08:58:12 2023



*** Sampled system activity (Mon Sep 11 10:14:03 2023 +0200) (502.83ms elapsed) ***


**** Processor usage ****

E-Cluster HW active frequency: 1166 MHz
E-Cluster HW active residency:  61.09% (600 MHz:   0% 972 MHz:  46% 1332 MHz:  21%)
E-Cluster idle residency:  38.91%
CPU 0 frequency: 1228 MHz
CPU 0 active residency:  45.92%
P0-Cluster HW active frequency: 2364 MHz
P0-Cluster HW active residency:  12.60%
P0-Cluster Power: 842 mW

CPU Power: 1234 mW
GPU Power: 56 mW
ANE Power: 0 mW
Combined Power (CPU + GPU + ANE): 1290 mW

**** GPU usage ****

GPU HW active frequency: 389 MHz
GPU HW active residency:   3.51% (389 MHz: 3.5% 486 MHz:   0%)
GPU SW requested state: (P1 : 100% P2 :   0%)
GPU idle residency:  96.49%
GPU Power: 56 mW


*** Sampled system activity (Mon Sep 11 10:14:04 2023 +0200) (500.12ms elapsed) ***


**** Processor usage ****

CPU Power: 4210 mW
GPU Power: 12345 mW
Combined Power (CPU + GPU + ANE): 16555 mW
";

#[test]
fn powermetrics_text_gives_power_and_absent_lines_give_nothing() {
    let samples = parse_stream(POWERMETRICS);
    assert_eq!(samples.len(), 2);
    assert_eq!(
        samples[0],
        PowerSample {
            cpu_w: Some(1.234),
            gpu_w: Some(0.056),
            ane_w: Some(0.0),
            combined_w: Some(1.29),
        }
    );
    // No ANE line in the second sample: absent, not 0 W.
    assert_eq!(samples[1].ane_w, None);
    assert!(close(samples[1].gpu_w.unwrap(), 12.345));
    let mut out = Vec::new();
    powermetrics_readings(&samples[1], 7.0, &mut out);
    let chans: Vec<u32> = out.iter().map(|r| r.channel).collect();
    assert_eq!(chans, [0, 1, 3]);
    let names: Vec<String> = powermetrics_channels(0.5)
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names[..], ["cpu", "gpu", "ane", "combined-power"]);
    // Watts spelled as W, garbage, and nothing at all.
    assert_eq!(parse_sample("CPU Power: 1.5 W\n").cpu_w, Some(1.5));
    assert_eq!(parse_sample("CPU Power: lots mW\n").cpu_w, None);
    assert!(parse_sample("E-Cluster Power: 5 mW\n").is_empty());
}

#[cfg(not(target_os = "macos"))]
#[test]
fn off_macos_open_says_apple_silicon_only() {
    let e = <Apple as Sampler>::open(&serde_json::json!({}))
        .err()
        .unwrap();
    assert!(e.contains("Apple Silicon only"), "{e}");
    let e = <Apple as Sampler>::open(&serde_json::json!({ "source": "nope" }))
        .err()
        .unwrap();
    assert!(e.contains("apple config"), "{e}");
}
