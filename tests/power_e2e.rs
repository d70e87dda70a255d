//! Power samplers through the whole pipeline (`ipw profile` with real plugin libraries):
//! ground truth from a replayed trace, the CPU estimator on the embedded model, a fake RAPL
//! powercap tree (wrap + mirrored zone), and misbehaving plugins. Queries go to the loopback
//! fault server's paced scenario where the point is energy, not the model.

use crate::support::fake_powercap::FakePowercap;
use crate::support::fault_server::FaultServer;
use crate::support::*;
use serde_json::Value;
use std::io::Write;

fn remote(server: &FaultServer, model: &str) -> String {
    format!(
        "[[models]]\nname = {model:?}\nbackend = \"openai\"\nbase_url = \"{}/v1\"\nmodel = {model:?}\n",
        server.url
    )
}

fn energy(r: &Value) -> &Value {
    assert!(r["energy"].is_object(), "record without energy: {r}");
    &r["energy"]
}

fn flags(r: &Value) -> Vec<String> {
    energy(r)["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn replayed_energy_trace_gives_exact_energy_per_query() {
    // A cumulative-energy trace at a constant 80 W (10 ms steps, 120 s) whose energy in any
    // window is known: 80 W x window length. Idle is the same 80 W, so net energy is 0.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    let mut f = std::fs::File::create(&trace).unwrap();
    writeln!(f, "t,value").unwrap();
    for i in 0..=12_000 {
        let t = i as f64 * 0.01;
        writeln!(f, "{t:.2},{:.3}", 80.0 * t).unwrap();
    }
    let server = FaultServer::start();
    let toml = format!(
        "name = \"replay\"\n[run]\nwarmup_queries = 0\nconcurrency = 2\n[energy]\nbaseline_s = 1\n{}\
         [[samplers]]\npath = {}\nconfig = {{ file = {}, kind = \"energy\" }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 6\n",
        remote(&server, "slow"),
        q(&plugin_lib("ipw_sampler_replay")),
        q(&trace)
    );
    let (o, out) = profile(dir.path(), "replay", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("slow");
    let recs = records(&run);
    assert_eq!(recs.len(), 6);
    let mut total = 0.0;
    for r in &recs {
        let e = energy(r);
        let latency = r["latency_s"].as_f64().unwrap();
        assert!(latency > 0.4, "paced scenario: {latency}");
        let gross = e["gross_j"].as_f64().unwrap();
        total += gross;
        assert!(
            e["mean_power_w"].as_f64().unwrap() <= 80.0 + 1e-6,
            "never more than the meter read"
        );
        assert!(
            e["net_j"].as_f64().unwrap().abs() < 1e-6 * gross.max(1.0) + 1e-6,
            "idle = busy: net 0, got {}",
            e["net_j"]
        );
        assert_eq!(e["estimated"], false);
        assert!((e["channels"]["replay/trace"]["idle_w"].as_f64().unwrap() - 80.0).abs() < 1e-9);
        // Split at the first token: prefill and decode add up to the query's energy, and at a
        // constant 80 W each is 80 W x its share of time.
        let ph = &e["phases"];
        let (p, d) = (
            ph["prefill_j"].as_f64().unwrap(),
            ph["decode_j"].as_f64().unwrap(),
        );
        assert!((p + d - gross).abs() < 1e-6 * gross.max(1.0), "{ph}");
        assert!(p > 0.0 && d > 0.0, "{ph}");
    }
    // Two at a time: shares add up to the meter's energy over the union of the windows.
    let s = json(&run.join("summary.json"));
    let busy = s["busy_s"].as_f64().unwrap();
    assert!(
        (total - 80.0 * busy).abs() / (80.0 * busy) < 1e-6,
        "{total} vs {}",
        80.0 * busy
    );
    assert!((s["energy"]["total_gross_j"].as_f64().unwrap() - total).abs() < 1e-6);
    let m = json(&run.join("manifest.json"));
    let sampler = &m["sessions"][0]["samplers"][0];
    assert_eq!(sampler["name"], "replay");
    assert_eq!(sampler["sha256"].as_str().unwrap().len(), 64);
    assert!(sampler["stats"]["readings"].as_u64().unwrap() > 50);
    assert!(
        m["sessions"][0]["baseline"]["to_s"].as_f64().unwrap()
            > m["sessions"][0]["baseline"]["from_s"].as_f64().unwrap()
    );
    let power_lines = std::fs::read_to_string(run.join("power.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(power_lines > 50, "raw readings kept: {power_lines}");
}

#[test]
fn cpu_estimate_labels_embedded_energy_as_estimated_and_graded_runs_get_apj_and_apw() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "name = \"est\"\n[generation]\nmax_tokens = 32\n[energy]\nbaseline_s = 1\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
         [[samplers]]\nplugin = \"cpu-estimate\"\nconfig = {{ tdp_w = 100, idle_fraction = 0.2 }}\n\
         [[datasets]]\nbuiltin = \"mmlu\"\nmax_queries = 4\nstratify = true\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 2\n",
        q(&model_path())
    );
    let (o, out) = profile(dir.path(), "est", &toml);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ESTIMATED"),
        "the terminal says so: {}",
        text(&o)
    );
    for r in records(&out.join("smollm2")) {
        let e = energy(&r);
        assert_eq!(e["estimated"], true);
        assert!(flags(&r).contains(&"estimated_power".to_string()));
        let p = e["mean_power_w"].as_f64().unwrap();
        assert!(
            (20.0..=100.0 + 1e-9).contains(&p),
            "between idle and full TDP: {p}"
        );
        assert!(e["gross_j"].as_f64().unwrap() > 0.0);
        assert!(e["j_per_output_token"].is_number());
    }
    let s = json(&out.join("smollm2/summary.json"));
    assert_eq!(s["energy"]["estimated"], true);
    assert_eq!(s["energy"]["queries"], 6);
    // Graded with `choice` (the MMLU default) and `numeric` (GSM8K's): accuracy, APJ and APW,
    // each with an interval, overall and per dataset.
    let q = &s["quality"]["overall"];
    assert_eq!(q["scored"], 6);
    assert_eq!(
        s["quality"]["graders"],
        serde_json::json!(["choice", "numeric"])
    );
    for d in ["mmlu", "gsm8k"] {
        assert!(
            s["quality"]["by_dataset"][d]["apj"]["value"].is_number(),
            "{d}"
        );
    }
    assert_eq!(q["energy_estimated"], true);
    assert_eq!(q["apj_energy"], "net");
    for key in ["accuracy", "apj", "apw"] {
        let e = &q[key];
        let (v, lo, hi) = (
            e["value"].as_f64().unwrap(),
            e["ci95"][0].as_f64().unwrap(),
            e["ci95"][1].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi, "{key}: {e}");
    }
    // Checked whatever the model scored: a weak model at 0% still has APJ = 0 / mean net J.
    let acc = q["accuracy"]["value"].as_f64().unwrap();
    let net_mean = s["energy"]["net_j"]["mean"].as_f64().unwrap();
    assert!(
        net_mean > 0.0,
        "a busy CPU draws more than idle: {net_mean}"
    );
    let apj = q["apj"]["value"].as_f64().unwrap();
    let expected = acc / net_mean;
    assert!(
        (apj - expected).abs() <= 1e-9 * expected.abs() + 1e-15,
        "APJ = accuracy / mean net J: {apj} vs {expected}"
    );
    assert!(!s["quality"]["by_subject"].as_object().unwrap().is_empty());
    assert!(!s["quality"]["by_category"].as_object().unwrap().is_empty());
}

#[test]
fn rapl_on_a_fake_powercap_tree_handles_wrap_and_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("powercap");
    let _fake = FakePowercap::start(
        &root,
        &[
            ("intel-rapl:0", "package-0", 40.0),
            ("intel-rapl:0/intel-rapl:0:0", "dram", 5.0),
            ("intel-rapl:0/intel-rapl:0:1", "core", 30.0), // overlaps the package: must be ignored
            ("intel-rapl-mmio:0", "package-0", 40.0),      // the MMIO mirror of package 0
            ("intel-rapl:1", "psys", 90.0),                // whole platform: must be ignored
        ],
    );
    let server = FaultServer::start();
    let toml = format!(
        "name = \"rapl\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0\n{}\
         [[samplers]]\nplugin = \"rapl\"\nconfig = {{ root = {} }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 8\n",
        remote(&server, "slow"),
        q(&root)
    );
    let (o, out) = profile(dir.path(), "rapl", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("slow");
    let m = json(&run.join("manifest.json"));
    let channels: Vec<&str> = m["sessions"][0]["samplers"][0]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        channels,
        ["package-0", "dram-0"],
        "core/psys left out, MMIO mirror read once"
    );
    assert_eq!(
        m["sessions"][0]["samplers"][0]["edge_reads"], true,
        "1 ms counters are read at window edges"
    );
    let recs = records(&run);
    let mut wraps = 0;
    for r in &recs {
        let e = energy(r);
        let latency = r["latency_s"].as_f64().unwrap();
        let pkg = e["channels"]["rapl/package-0"]["gross_j"].as_f64().unwrap();
        let dram = e["channels"]["rapl/dram-0"]["gross_j"].as_f64().unwrap();
        // The fake counters tick every ~0.5 ms when the machine is idle, but this test's writer
        // thread lags by tens of ms when the machine is busy (a kernel counter never does), so
        // edges can read a stale value: allow 10%. A mishandled 20 J wrap would be ~100% off.
        assert!(
            (pkg / latency - 40.0).abs() < 4.0,
            "package {} W",
            pkg / latency
        );
        assert!(
            (dram / latency - 5.0).abs() < 0.5,
            "dram {} W",
            dram / latency
        );
        assert!(e["net_j"].is_null(), "no baseline, no net");
        assert!(flags(r).contains(&"no_baseline".to_string()));
        if flags(r).contains(&"wrap".to_string()) {
            wraps += 1;
        }
    }
    assert!(
        wraps >= 1,
        "the 20 J package counter wraps every 0.5 s: some window sees it"
    );
}

#[test]
fn misbehaving_samplers_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let faulty = plugin_lib("ipw_testfixture_faulty_sampler");
    let exp = |mode: &str| {
        format!(
            "name = \"faulty\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0\n{}\
             [[samplers]]\npath = {}\nconfig = {{ mode = {mode:?} }}\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 4\n",
            remote(&server, "slow"),
            q(&faulty)
        )
    };
    // A panic inside read: caught at the boundary; the run completes; affected records flagged.
    let (o, out) = profile(dir.path(), "panic", &exp("panic-read"));
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out.join("slow"));
    assert_eq!(recs.len(), 4);
    let m = json(&out.join("slow/manifest.json"));
    assert_eq!(
        m["sessions"][0]["samplers"][0]["stats"]["errors"], 1,
        "one panicking read"
    );
    let power = std::fs::read_to_string(out.join("slow/power.jsonl")).unwrap();
    assert!(
        power.contains("sampler panicked: fixture: panic in read"),
        "the panic message is kept"
    );
    assert!(recs
        .iter()
        .any(|r| flags(r).contains(&"sampler_error".to_string())));

    // Every read failing (a sensor that opens, then answers "not supported"): the start fails
    // loudly, naming the channel and the sampler's error, before any query.
    let (o, out) = profile(dir.path(), "error", &exp("error-read"));
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("no reading from fixture-faulty/")
            && msg.contains("last error: fixture: sensor unavailable"),
        "{msg}"
    );
    assert!(!out.join("slow/records.jsonl").exists() || records(&out.join("slow")).is_empty());

    // A read that never returns (a hung driver call): the run finishes anyway, the sampler's
    // thread is abandoned and said so, and records after the hang lack energy, flagged.
    let started = std::time::Instant::now();
    let (o, out) = profile(dir.path(), "block", &exp("block-read"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let m = json(&out.join("slow/manifest.json"));
    assert_eq!(
        m["sessions"][0]["samplers"][0]["stats"]["abandoned"], true,
        "{m}"
    );
    let recs = records(&out.join("slow"));
    assert_eq!(recs.len(), 4);
    assert!(recs
        .iter()
        .any(|r| flags(r).contains(&"missing_samples".to_string())));

    // NaN readings are dropped and flagged, the rest still integrates (25 W).
    let (o, out) = profile(dir.path(), "nan", &exp("nan"));
    assert!(o.status.success(), "{}", text(&o));
    for r in records(&out.join("slow")) {
        let p = energy(&r)["mean_power_w"].as_f64().unwrap();
        assert!((p - 25.0).abs() < 1e-6, "{p}");
        assert!(flags(&r).contains(&"sampler_error".to_string()));
    }

    // A counter that goes backwards is flagged as a reset.
    let (o, out) = profile(dir.path(), "decreasing", &exp("decreasing"));
    assert!(o.status.success(), "{}", text(&o));
    let s = json(&out.join("slow/summary.json"));
    assert!(
        s["energy"]["flags"]["counter_reset"].as_u64().unwrap_or(0) >= 1,
        "{}",
        s["energy"]
    );

    // A panic in open fails the start with the message, before any query.
    let (o, _) = profile(dir.path(), "panic-open", &exp("panic-open"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("sampler panicked: fixture: panic in open"),
        "{}",
        text(&o)
    );
}

#[test]
fn wrong_abi_short_table_and_missing_symbol_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let exp = |lib: &std::path::Path| {
        format!(
            "name = \"abi\"\n[run]\nwarmup_queries = 0\n{}[[samplers]]\npath = {}\n[[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 1\n",
            remote(&server, "ok"),
            q(lib)
        )
    };
    let wrong = plugin_lib("ipw_testfixture_wrong_abi_sampler");
    let run = |name: &str, lib: &std::path::Path, env: &[(&str, &str)]| {
        let e = write_experiment(dir.path(), &format!("{name}.toml"), &exp(lib));
        let mut c = ipw();
        c.args([
            "profile",
            e.to_str().unwrap(),
            "--out",
            dir.path().join(name).to_str().unwrap(),
            "-q",
        ]);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "{name} must be refused");
        text(&o)
    };
    let msg = run("version", &wrong, &[]);
    assert!(
        msg.contains(wrong.to_str().unwrap()) && msg.contains("sampler ABI version 99"),
        "{msg}"
    );
    let msg = run(
        "short",
        &wrong,
        &[("IPW_FIXTURE_ABI", "1"), ("IPW_FIXTURE_SIZE", "8")],
    );
    assert!(msg.contains("function table is 8 bytes"), "{msg}");
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
    .expect("libm");
    let msg = run("symbol", &libm, &[]);
    assert!(
        msg.contains("libm.so.6") && msg.contains("no `ipw_sampler_api` symbol"),
        "{msg}"
    );
}

#[test]
fn nvml_plugin_reads_energy_through_a_test_nvml_library() {
    // A test NVML library (tests/fixtures/fake-nvml) stands in for the driver; the real
    // nvml-wrapper loads it via `lib_path` and the real plugin reads it.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gpus.json");
    std::fs::write(
        &script,
        r#"{"devices": [
            {"uuid": "GPU-aaaaaaaa-1111", "name": "Fake A", "power_w": [[0, 120], [1000, 120]]},
            {"uuid": "GPU-bbbbbbbb-2222", "name": "Fake B", "power_w": [[0, 250], [1000, 250]],
             "pci_bus_id": "00000000:C2:00.0"}
        ]}"#,
    )
    .unwrap();
    let fake = plugin_lib("fake_nvml");
    let server = FaultServer::start();
    let exp = |name: &str, sampler_config: &str| {
        format!(
            "name = {name:?}\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0.5\n{}\
             [[samplers]]\nplugin = \"nvml\"\nconfig = {sampler_config}\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 3\n",
            remote(&server, "slow")
        )
    };
    let run_with = |name: &str, config: String, cuda: Option<&str>, order: Option<&str>| {
        let e = write_experiment(dir.path(), &format!("{name}.toml"), &exp(name, &config));
        let out = dir.path().join(name);
        let mut c = ipw();
        c.args([
            "profile",
            e.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
        .env("IPW_FAKE_NVML_SCRIPT", &script);
        match cuda {
            Some(v) => c.env("CUDA_VISIBLE_DEVICES", v),
            None => c.env_remove("CUDA_VISIBLE_DEVICES"),
        };
        match order {
            Some(v) => c.env("CUDA_DEVICE_ORDER", v),
            None => c.env_remove("CUDA_DEVICE_ORDER"),
        };
        let o = c.output().unwrap();
        (o, out.join("slow"))
    };
    let run = |name: &str, config: String, cuda: Option<&str>| run_with(name, config, cuda, None);
    let check = |run_dir: &std::path::Path, channel: &str, watts: f64| {
        let m = json(&run_dir.join("manifest.json"));
        let chans = m["sessions"][0]["samplers"][0]["channels"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            chans.len(),
            8,
            "one GPU selected: energy + 7 telemetry channels"
        );
        assert_eq!(chans[0]["name"], channel);
        assert_eq!(chans[0]["shaped_by"], format!("{channel}-power"));
        assert_eq!(chans[0]["accuracy"]["relative"], 0.05);
        for r in records(run_dir) {
            let e = energy(&r);
            // Energy is integrated over the record's window, whose edges are taken a few
            // microseconds from the ones `latency_s` is timed by: at 150 W that gap alone
            // (14 us) once cost 2.1 mJ, so the truth here is power x the window's length.
            let w = &r["window"];
            let latency = w["end_s"].as_f64().unwrap() - w["start_s"].as_f64().unwrap();
            let gross = e["gross_j"].as_f64().unwrap();
            // Counter resolution is 1 mJ at each edge, and each edge's read lands a scheduling
            // delay after its timestamp (3 mJ at 150 W was seen on a busy CI machine): up to
            // 100 us an edge is allowed, far below a wrong window or a missed channel.
            assert!(
                (gross - watts * latency).abs() <= 0.002 + 2.0 * 100e-6 * watts + 1e-9,
                "{gross} J vs {} J",
                watts * latency
            );
            // Constant power leaves nothing above idle. The idle power comes from the 0.5 s
            // baseline, whose two counter reads each land a scheduling delay after their
            // timestamps (at 250 W, 20 us is 5 mJ): spread over 0.5 s and multiplied by the
            // window, that error depends on how busy the machine is. So the check is relative:
            // idle not subtracted (net = gross) or subtracted twice (net = -gross) fails it by
            // a factor of a hundred; a machine's timing does not.
            let net = e["net_j"].as_f64().unwrap();
            assert!(
                net.abs() <= 0.004 + 0.01 * gross,
                "constant power: net {net} J should be ~0 (gross {gross} J)"
            );
            // NVML's declared +-5% holds the truth; without edge reads the bound is no tighter.
            let b = &e["gross_bound_j"];
            let (lo, hi) = (b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
            assert!(
                lo <= watts * latency && watts * latency <= hi,
                "[{lo}, {hi}]"
            );
            assert!(
                hi - lo >= 0.09 * watts * latency,
                "+-5% at least: [{lo}, {hi}]"
            );
            assert_eq!(
                e["channels"].as_object().unwrap().len(),
                1,
                "telemetry is not energy"
            );
        }
        let power = std::fs::read_to_string(run_dir.join("power.jsonl")).unwrap();
        assert!(
            power.contains(&format!("nvml/{channel}-power")),
            "instant power kept for timelines"
        );
        assert!(power.contains(&format!("nvml/{channel}-temp")));
    };
    let lib = q(&fake);
    let (o, run_dir) = run(
        "by-uuid",
        format!("{{ lib_path = {lib}, gpus = [\"GPU-bbbbbbbb-2222\"] }}"),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    check(&run_dir, "gpu1", 250.0);

    // By PCI bus id in llama.cpp's form (how samplers follow the embedded model's GPU).
    let (o, run_dir) = run(
        "by-pci",
        format!("{{ lib_path = {lib}, gpus = [\"0000:c2:00.0\"] }}"),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    check(&run_dir, "gpu1", 250.0);

    let (o, run_dir) = run(
        "cuda-visible",
        format!("{{ lib_path = {lib} }}"),
        Some("GPU-aaaaaaaa-1111"),
    );
    assert!(o.status.success(), "{}", text(&o));
    check(&run_dir, "gpu0", 120.0);

    // By CUDA index on mixed GPUs: CUDA's default order (fastest first) may not be NVML's.
    let (o, _) = run("cuda-index", format!("{{ lib_path = {lib} }}"), Some("1"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("CUDA_DEVICE_ORDER=PCI_BUS_ID") && text(&o).contains("Fake A, Fake B"),
        "{}",
        text(&o)
    );
    let (o, run_dir) = run_with(
        "cuda-index-pci",
        format!("{{ lib_path = {lib} }}"),
        Some("1"),
        Some("PCI_BUS_ID"),
    );
    assert!(o.status.success(), "{}", text(&o));
    check(&run_dir, "gpu1", 250.0);
    // A MIG instance has no energy counter of its own: refused, pointing at the parent.
    let (o, _) = run(
        "mig",
        format!("{{ lib_path = {lib} }}"),
        Some("MIG-4b2a1c3d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is a MIG instance"), "{}", text(&o));

    let (o, _) = run(
        "no-driver",
        "{ lib_path = \"/nonexistent/libnvidia-ml.so.1\" }".into(),
        None,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot initialise NVML") && text(&o).contains("NVIDIA driver"),
        "{}",
        text(&o)
    );

    let (o, _) = run(
        "bad-gpu",
        format!("{{ lib_path = {lib}, gpus = [\"GPU-nope\"] }}"),
        None,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no GPU `GPU-nope`") && text(&o).contains("GPU-aaaaaaaa-1111"),
        "{}",
        text(&o)
    );
}

#[test]
fn two_channels_of_one_name_are_refused_and_overlapping_domains_named() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("meter.csv");
    std::fs::write(&trace, "t,value\n0,10\n0.5,10\n1,10\n").unwrap();
    let server = FaultServer::start();
    let replay = format!(
        "[[samplers]]\npath = {}\nconfig = {{ file = {} }}\n",
        q(&plugin_lib("ipw_sampler_replay")),
        q(&trace)
    );
    let toml = format!(
        "name = \"dup\"\n[energy]\nbaseline_s = 0\n{}{replay}{replay}[[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 1\n",
        remote(&server, "slow"),
    );
    let (o, _) = profile(dir.path(), "dup", &toml);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("channel `replay/trace` is already given by"),
        "{}",
        text(&o)
    );

    // Renamed, the two are accepted, but both measure the whole system: a warning says the
    // total counts it twice, unless the experiment says to sum them.
    let wall = format!(
        "[[samplers]]\npath = {}\nconfig = {{ file = {}, channel = \"wall\" }}\n",
        q(&plugin_lib("ipw_sampler_replay")),
        q(&trace)
    );
    let body = |overlap: &str| {
        format!(
            "name = \"dup\"\n[energy]\nbaseline_s = 0\n{overlap}\n{}{replay}{wall}[[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 1\n",
            remote(&server, "slow"),
        )
    };
    let (o, _) = profile(dir.path(), "overlap", &body(""));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .contains("samplers measure overlapping domains: replay (System) and replay (System)"),
        "{}",
        text(&o)
    );
    let (o, _) = profile(dir.path(), "overlap-sum", &body("overlap = \"sum\""));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("overlapping domains"), "{}", text(&o));
}

/// Square steps between 60 W and 180 W, 0.35 s each, on the run clock.
fn square_w(t: f64) -> f64 {
    if (t / 0.7).rem_euclid(1.0) < 0.5 {
        60.0
    } else {
        180.0
    }
}

#[test]
fn every_record_bounds_the_true_energy_of_a_coarse_jittered_gauge() {
    // The case that was off by 14% with no word: a 20 Hz instant gauge with +-20% jitter and 5%
    // dropped readings, replayed on the monotonic clock (so no reading falls on a window's
    // edge) while ~0.5 s queries run. The estimate may be off; the record's bound must hold the
    // truth (the integral of the square wave over its window), every time.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("gauge.csv");
    let t0 = ipw_core::records::clock::now_s() - 5.0;
    let mut csv = String::from("t,value\n");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0
    };
    for i in 0..20 * 300 {
        let (jitter, keep) = ((rand() - 0.5) * 0.4 / 20.0, rand() >= 0.05);
        let t = t0 + i as f64 / 20.0 + jitter;
        if keep {
            csv += &format!("{t:.6},{}\n", square_w(t));
        }
    }
    std::fs::write(&trace, csv).unwrap();
    let server = FaultServer::start();
    let toml = format!(
        "name = \"bounds\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 1\n{}\
         [[samplers]]\npath = {}\nconfig = {{ file = {}, kind = \"power\", time_base = \"monotonic\" }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 10\n",
        remote(&server, "slow"),
        q(&plugin_lib("ipw_sampler_replay")),
        q(&trace)
    );
    let (o, out) = profile(dir.path(), "bounds", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("slow");
    let (mut worst_error, mut widest): (f64, f64) = (0.0, 0.0);
    for r in records(&run) {
        let (a, b) = (
            r["window"]["start_s"].as_f64().unwrap(),
            r["window"]["end_s"].as_f64().unwrap(),
        );
        let n = ((b - a) * 1e6) as usize;
        let h = (b - a) / n as f64;
        let truth: f64 = (0..n).map(|i| square_w(a + (i as f64 + 0.5) * h) * h).sum();
        let e = energy(&r);
        let got = e["gross_j"].as_f64().unwrap();
        let bound = &e["gross_bound_j"];
        let (lo, hi) = (bound[0].as_f64().unwrap(), bound[1].as_f64().unwrap());
        // 1 us grid: each edge of a step is off by < 0.12 mJ.
        assert!(
            lo - 1e-3 <= truth && truth <= hi + 1e-3,
            "truth {truth} J outside [{lo}, {hi}] (estimate {got})"
        );
        assert_eq!(
            e["channels"]["replay/trace"]["gross_bound_j"], *bound,
            "one channel: the record's bound is the channel's"
        );
        worst_error = worst_error.max((got - truth).abs() / truth);
        widest = widest.max((hi - lo) / truth);
    }
    println!(
        "worst estimate error {:.2}%, widest bound {:.2}% of the truth",
        worst_error * 100.0,
        widest * 100.0
    );
    assert!(
        worst_error > 1e-4,
        "steps between readings: the estimate is not exact"
    );
    let s = json(&run.join("summary.json"));
    let mean = &s["energy"]["gross_j_mean"];
    let m = mean["measurement"]
        .as_array()
        .expect("a measurement bound on the mean");
    let c = mean["combined"].as_array().unwrap();
    let (v, ci) = (mean["value"].as_f64().unwrap(), &mean["ci95"]);
    let (m0, m1) = (m[0].as_f64().unwrap(), m[1].as_f64().unwrap());
    let (ci0, ci1) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(m0 <= v && v <= m1);
    // Energy is positive: the combined interval scales the sampling one by the bound's reach
    // on each side (Estimate::with_measurement), so it holds it and stays above zero.
    let (c0, c1) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
    assert!(
        (c0 - ci0 * m0 / v).abs() <= 1e-9 * v,
        "{c0} vs {ci0} x {m0} / {v}"
    );
    assert!(
        (c1 - ci1 * m1 / v).abs() <= 1e-9 * v,
        "{c1} vs {ci1} x {m1} / {v}"
    );
    assert!(
        0.0 < c0 && c0 <= ci0 && c1 >= ci1,
        "[{c0}, {c1}] around [{ci0}, {ci1}]"
    );
}

#[test]
fn another_process_on_the_measured_gpu_flags_an_embedded_run() {
    // The test NVML library lists a compute process that is not ipw on the GPU; with the model
    // inside ipw, that process shares the meter: its records are `shared_device` and its
    // baseline `busy_baseline`. The same run without it is not `shared_device` (CPU load from
    // tests running beside this one may still make it `other_load` or `busy_baseline`).
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, processes: &str| {
        let script = dir.path().join(format!("{name}.json"));
        std::fs::write(
            &script,
            format!(
                r#"{{"devices": [{{"uuid": "GPU-aaaaaaaa-1111", "name": "Fake A",
                    "power_w": [[0, 90], [1000, 90]], "processes": {processes}}}]}}"#
            ),
        )
        .unwrap();
        let toml = format!(
            "name = {name:?}\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0.5\n\
             [generation]\nmax_tokens = 8\n\
             [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
             [[samplers]]\nplugin = \"nvml\"\nconfig = {{ lib_path = {} }}\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 2\n",
            q(&model_path()),
            q(&plugin_lib("fake_nvml"))
        );
        let e = write_experiment(dir.path(), &format!("{name}.toml"), &toml);
        let out = dir.path().join(name);
        let o = profile_command(&e, &out)
            .env("IPW_FAKE_NVML_SCRIPT", &script)
            .env_remove("CUDA_VISIBLE_DEVICES")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        records(&out.join("smollm2"))
    };
    let shared = run("shared", "[[4242, 0, 100000]]");
    assert_eq!(shared.len(), 2);
    for r in &shared {
        let f = flags(r);
        assert!(f.contains(&"shared_device".to_string()), "{f:?}");
        assert!(f.contains(&"busy_baseline".to_string()), "{f:?}");
    }
    for r in &run("alone", "[]") {
        assert!(
            !flags(r).contains(&"shared_device".to_string()),
            "{:?}",
            flags(r)
        );
    }
}

/// Profile the fault server's "slow" model measured by the real nvml plugin on the test NVML
/// library scripted with one `device` (JSON fields after uuid and name), with `energy` as the
/// `[energy]` table's lines; returns the records and the manifest.
fn fake_gpu_run(
    dir: &std::path::Path,
    server: &FaultServer,
    name: &str,
    device: &str,
    energy: &str,
) -> (Vec<Value>, Value) {
    let script = dir.join(format!("{name}.json"));
    std::fs::write(
        &script,
        format!(r#"{{"devices": [{{"uuid": "GPU-aaaaaaaa-1111", "name": "Fake A", {device}}}]}}"#),
    )
    .unwrap();
    let toml = format!(
        "name = {name:?}\n[run]\nwarmup_queries = 0\n[energy]\n{energy}\n{}\
         [[samplers]]\nplugin = \"nvml\"\nconfig = {{ lib_path = {} }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 2\n",
        remote(server, "slow"),
        q(&plugin_lib("fake_nvml"))
    );
    let e = write_experiment(dir, &format!("{name}.toml"), &toml);
    let out = dir.join(name);
    let o = profile_command(&e, &out)
        .env("IPW_FAKE_NVML_SCRIPT", &script)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("slow");
    (records(&run), json(&run.join("manifest.json")))
}

#[test]
fn a_gpu_that_throttles_flags_the_records_measured_meanwhile() {
    // The test NVML library reports clock event reasons: a power-cap slowdown (0x4) on one
    // run's GPU, only "idle" (0x1, not a slowdown for power or heat) on the other's.
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let run = |name: &str, reasons: u64| {
        let device =
            format!(r#""power_w": [[0, 300], [1000, 300]], "throttle": [[0, 100000, {reasons}]]"#);
        fake_gpu_run(dir.path(), &server, name, &device, "baseline_s = 0.3").0
    };
    let hot = run("power-capped", 0x4);
    assert_eq!(hot.len(), 2);
    for r in &hot {
        assert!(
            flags(r).contains(&"throttled".to_string()),
            "{:?}",
            flags(r)
        );
    }
    for r in &run("idle-reason", 0x1) {
        assert!(
            !flags(r).contains(&"throttled".to_string()),
            "{:?}",
            flags(r)
        );
    }
}

#[test]
fn a_warming_gpu_is_waited_for_and_the_wait_is_bounded() {
    // The test NVML library heats the GPU from 40 to 80 °C over the 4 s after the sampler
    // opens it, at a steady 200 W. ipw waits until the temperature stops rising: the settle
    // before the baseline saw 80 °C, whenever it began.
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let (recs, m) = fake_gpu_run(
        dir.path(),
        &server,
        "warming",
        r#""power_w": [[0, 200], [1000, 200]], "temperature_c": [[0, 40], [4, 80]]"#,
        "baseline_s = 0.3\n[energy.settle]\nwindow_s = 1",
    );
    assert_eq!(recs.len(), 2);
    let settle = m["sessions"][0]["settle"].as_array().unwrap();
    assert_eq!(
        settle.len(),
        2,
        "before the baseline and before the queries: {settle:?}"
    );
    assert_eq!(settle[0]["before"], "baseline");
    assert_eq!(settle[0]["settled"], true, "{settle:?}");
    assert_eq!(
        settle[0]["temperature_c"]["nvml/gpu0-temp"], 80.0,
        "{settle:?}"
    );
    let power = settle[0]["power_w"]["nvml/gpu0"].as_f64().unwrap();
    assert!((power - 200.0).abs() < 2.0, "{power}");
    assert_eq!(settle[1]["before"], "queries");
    // A GPU that never stops heating: ipw waits `max_wait_s`, says so, and measures anyway.
    let (recs, m) = fake_gpu_run(
        dir.path(),
        &server,
        "heating",
        r#""power_w": [[0, 200], [1000, 200]], "temperature_c": [[0, 40], [1000, 3040]]"#,
        "baseline_s = 0\n[energy.settle]\nwindow_s = 1\nmax_wait_s = 2",
    );
    assert_eq!(recs.len(), 2);
    let settle = m["sessions"][0]["settle"].as_array().unwrap();
    assert_eq!(
        settle.len(),
        1,
        "no baseline: one settle, before the queries"
    );
    assert_eq!(settle[0]["settled"], false, "{settle:?}");
    assert!(settle[0]["waited_s"].as_f64().unwrap() >= 2.0, "{settle:?}");
}

#[test]
fn a_declared_ceiling_bounds_pulses_a_coarse_gauge_never_saw() {
    // 10 ms pulses to 400 W on 90 W, every 0.5 s, and a 20 Hz gauge whose readings all fall
    // between them (a trace that reads a flat 90 W), replayed while ~0.5 s queries run: too
    // few readings per window (`coarse_sampling`). The readings alone bound each window at
    // zero width and miss its pulse; with the meter's `max_w = 450` every record's bound
    // reaches the ceiling, says so, and holds the truth.
    let pulses = |t: f64| {
        if (t * 2.0).rem_euclid(1.0) < 0.02 {
            400.0
        } else {
            90.0
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("gauge.csv");
    // Readings at k/20 + 0.02 s on the run clock: never inside a pulse ([k/2, k/2 + 0.01]).
    let base = (ipw_core::records::clock::now_s() - 5.0).floor();
    let mut csv = String::from("t,value\n");
    for i in 0..20 * 300 {
        let t = base + i as f64 / 20.0 + 0.02;
        assert_eq!(pulses(t), 90.0);
        csv += &format!("{t:.6},90\n");
    }
    std::fs::write(&trace, csv).unwrap();
    let server = FaultServer::start();
    let run = |name: &str, extra: &str| {
        let toml = format!(
            "name = \"{name}\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0.5\n{}\
             [[samplers]]\npath = {}\nconfig = {{ file = {}, kind = \"power\", time_base = \"monotonic\"{extra} }}\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 6\n",
            remote(&server, "slow"),
            q(&plugin_lib("ipw_sampler_replay")),
            q(&trace)
        );
        let (o, out) = profile(dir.path(), name, &toml);
        assert!(o.status.success(), "{}", text(&o));
        records(&out.join("slow"))
            .iter()
            .map(|r| {
                let (a, b) = (
                    r["window"]["start_s"].as_f64().unwrap(),
                    r["window"]["end_s"].as_f64().unwrap(),
                );
                let n = ((b - a) * 1e6) as usize;
                let h = (b - a) / n as f64;
                let truth: f64 = (0..n).map(|i| pulses(a + (i as f64 + 0.5) * h) * h).sum();
                let e = energy(r);
                let b = &e["gross_bound_j"];
                let flags: Vec<String> = e["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect();
                (truth, b[0].as_f64().unwrap(), b[1].as_f64().unwrap(), flags)
            })
            .collect::<Vec<_>>()
    };
    let plain = run("no-ceiling", "");
    assert!(
        plain.iter().any(|(truth, _, hi, _)| *truth > hi + 1e-3),
        "the readings alone miss the pulses: {plain:?}"
    );
    let capped = run("ceiling", ", max_w = 450");
    for (truth, lo, hi, flags) in &capped {
        assert!(
            lo - 1e-3 <= *truth && *truth <= hi + 1e-3,
            "truth {truth} outside [{lo}, {hi}]"
        );
        assert!(
            flags.contains(&"coarse_sampling".to_string())
                && flags.contains(&"bound_from_ceiling".to_string()),
            "{flags:?}"
        );
    }
}
