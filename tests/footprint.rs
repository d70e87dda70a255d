//! `ipw compare --footprint`: carbon, water and cost per query, checked by hand on imported
//! runs whose every joule and second is known.
//!
//! | query | dataset | m0 net J | m1 net J | latency (both) | window (run clock) |
//! |---|---|---|---|---|---|
//! | q1 | math | 36 | 72 | 1 s | 0 to 1 |
//! | q2 | math | 72 | 144 | 2 s | 1 to 3 |
//! | q3 | facts | 108 | 216 | 3 s | 3 to 6 |
//! | q4 | facts | 144 | 288 | 4 s | 6 to 10 |
//!
//! (`ipw import` lays each model's windows end to end from 0, in table order.)

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn runs(dir: &Path) -> PathBuf {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,net_energy_j,latency_s\n");
    for (q, (dataset, net)) in [
        ("math", 36.0),
        ("math", 72.0),
        ("facts", 108.0),
        ("facts", 144.0),
    ]
    .iter()
    .enumerate()
    {
        for (m, scale) in [1.0, 2.0].iter().enumerate() {
            let j = net * scale;
            csv += &format!("q{},m{m},{dataset},1,{},{j},{}\n", q + 1, j * 1.25, q + 1);
        }
    }
    import_table(dir, &csv)
}

fn compare(runs: &Path, footprint: &Path, out: &Path) -> std::process::Output {
    run_ipw(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--footprint",
            footprint.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        runs.parent().unwrap(),
    )
}

fn row<'a>(f: &'a Value, model: &str, group: &str) -> &'a Value {
    f["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["group"] == group)
        .unwrap_or_else(|| panic!("no row {model}/{group} in {f}"))
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - want).abs() <= 1e-12 * want.abs().max(1e-12))
}

#[test]
fn carbon_water_and_cost_per_query_match_the_table_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let fp = dir.path().join("footprint.toml");
    // 3155.76 EUR over one year: 1e-4 EUR per busy second.
    std::fs::write(
        &fp,
        "carbon_g_per_kwh = 400.0\nwater_l_per_kwh = 2.0\npue = 1.5\nprice_per_kwh = 0.2\ncurrency = \"EUR\"\n[hardware]\nprice = 3155.76\nlifetime_years = 1.0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = compare(&runs, &fp, &out);
    assert!(o.status.success(), "{}", text(&o));
    let c = json(&out.join("compare.json"));
    let f = &c["footprint"];
    assert_eq!(f["inputs"]["pue"], 1.5, "{f}");
    assert_eq!(f["inputs"]["currency"], "EUR");
    assert!(f["inputs"]["carbon"]
        .as_str()
        .unwrap()
        .contains("400 g CO2e/kWh, given"));
    // m0, all: mean net 90 J x PUE 1.5 = 135 J = 3.75e-5 kWh.
    let all = row(f, "m0", "all");
    assert_eq!(all["energy_basis"], "net");
    assert_eq!(all["with_energy"], 4);
    assert!(close(&all["kwh_per_query"], 3.75e-5), "{all}");
    assert!(close(&all["g_co2e_per_query"], 3.75e-5 * 400.0), "{all}");
    assert!(close(&all["water_l_per_query"], 3.75e-5 * 2.0), "{all}");
    assert!(close(&all["energy_cost_per_query"], 3.75e-5 * 0.2), "{all}");
    // Windows of 1..4 s end to end (busy 10 s for 4 queries): 2.5 s x 1e-4 EUR/s.
    assert!(close(&all["hardware_cost_per_query"], 2.5e-4), "{all}");
    assert!(close(&all["cost_per_query"], 2.5e-4 + 7.5e-6), "{all}");
    // m1, facts: net 216 and 288 J (mean 252) x 1.5 = 378 J; windows 3 and 4 s.
    let facts = row(f, "m1", "facts");
    assert!(close(&facts["kwh_per_query"], 378.0 / 3.6e6), "{facts}");
    assert!(
        close(&facts["g_co2e_per_query"], 378.0 / 3.6e6 * 400.0),
        "{facts}"
    );
    assert!(close(&facts["hardware_cost_per_query"], 3.5e-4), "{facts}");
    // The same rows as CSV beside compare.csv.
    let csv = std::fs::read_to_string(out.join("footprint.csv")).unwrap();
    assert!(
        csv.starts_with("model,accelerator,group,records,with_energy,energy_basis,kwh_per_query"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    // compare.json is otherwise what compare writes without a footprint.
    let plain = dir.path().join("plain");
    let o = run_ipw(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--out",
            plain.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut with = c.clone();
    with.as_object_mut().unwrap().remove("footprint");
    assert_eq!(with, json(&plain.join("compare.json")));
    assert!(!plain.join("footprint.csv").exists());
}

#[test]
fn a_region_takes_its_intensities_from_the_shipped_table_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let fp = dir.path().join("fr.toml");
    std::fs::write(&fp, "region = \"France\"\n").unwrap();
    let out = dir.path().join("out");
    let o = compare(&runs, &fp, &out);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&out.join("compare.json"))["footprint"];
    let carbon = f["inputs"]["carbon"].as_str().unwrap();
    assert!(
        carbon.starts_with("56.039 g CO2e/kWh: FRA (France), 2023, Our World in Data"),
        "{carbon}"
    );
    let water = f["inputs"]["water"].as_str().unwrap();
    assert!(water.contains("a lower bound"), "{water}");
    let all = row(f, "m0", "all");
    assert!(
        close(&all["g_co2e_per_query"], 90.0 / 3.6e6 * 56.039),
        "{all}"
    );
    // No prices given: no costs, rather than zeros.
    assert!(all["cost_per_query"].is_null(), "{all}");
}

#[test]
fn a_time_series_splits_a_window_that_crosses_a_row_edge() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    // Imported runs carry no wall clock; give m0's session one, as a measured run's manifest
    // has: run-clock 0 is Unix 1.7e9.
    let m0 = run_dirs(&runs)
        .into_iter()
        .find(|r| r.file_name().unwrap() == "m0")
        .expect("m0's run");
    let manifest = m0.join("manifest.json");
    let mut m = json(&manifest);
    m["sessions"][0]["clock"] = serde_json::json!({"monotonic_s": 0.0, "unix_s": 1.7e9});
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    // 100 g/kWh, then 300 from 2 s in: q2's window (1 to 3 s) is half in each row.
    std::fs::write(
        dir.path().join("grid.csv"),
        "time,g_co2e_per_kwh\n1700000000,100\n2023-11-14T22:13:22Z,300\n1700000012,300\n",
    )
    .unwrap();
    let fp = dir.path().join("series.toml");
    std::fs::write(&fp, "intensity_csv = \"grid.csv\"\n").unwrap();
    let out = dir.path().join("out");
    let o = run_ipw(
        &[
            "compare",
            m0.to_str().unwrap(),
            "--footprint",
            fp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&out.join("compare.json"))["footprint"];
    // q1..q4 at 100, (100 + 300) / 2, 300, 300 g/kWh.
    let grams = (36.0 * 100.0 + 72.0 * 200.0 + 108.0 * 300.0 + 144.0 * 300.0) / 3.6e6 / 4.0;
    let all = row(f, "m0", "all");
    assert!(close(&all["g_co2e_per_query"], grams), "{all} vs {grams}");
    let math = row(f, "m0", "math");
    assert!(
        close(
            &math["g_co2e_per_query"],
            (36.0 * 100.0 + 72.0 * 200.0) / 3.6e6 / 2.0
        ),
        "{math}"
    );

    // m1 has no clock: the series cannot be joined to its windows, and the error says so.
    let o = compare(&runs, &fp, &out);
    assert!(!o.status.success());
    let e = text(&o);
    assert!(
        e.contains("m1") && e.contains("no clock") && e.contains("carbon_g_per_kwh"),
        "{e}"
    );
}

#[test]
fn a_wrong_footprint_file_is_refused_by_field_before_any_run_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let out = dir.path().join("out");
    for (body, says) in [
        (
            "region = \"Atlantis\"\n",
            "region: `Atlantis` is not in the shipped table",
        ),
        (
            "carbon_g_per_kwh = 300.0\npue = 0.9\n",
            "pue: 0.9 is below 1",
        ),
        (
            "carbon_g_per_kwh = 300.0\ncarbon = 1\n",
            "unknown field `carbon`",
        ),
        ("price_per_kwh = 0.3\n", "currency: prices are given"),
        ("pue = 1.2\n", "nothing to compute"),
        (
            "carbon_g_per_kwh = 300.0\n[hardware]\nprice = 100.0\nlifetime_years = 0\n",
            "hardware.lifetime_years",
        ),
        ("intensity_csv = \"missing.csv\"\n", "missing.csv"),
    ] {
        let fp = dir.path().join("bad.toml");
        std::fs::write(&fp, body).unwrap();
        let o = compare(&runs, &fp, &out);
        assert!(!o.status.success(), "{body}");
        let e = text(&o);
        assert!(e.contains("bad.toml") && e.contains(says), "{body}: {e}");
    }
    // A series line that is not a number is named by file and line.
    std::fs::write(
        dir.path().join("grid.csv"),
        "time,g_co2e_per_kwh\n1700000000,100\n1700000010,lots\n",
    )
    .unwrap();
    let fp = dir.path().join("bad.toml");
    std::fs::write(&fp, "intensity_csv = \"grid.csv\"\n").unwrap();
    let o = compare(&runs, &fp, &out);
    let e = text(&o);
    assert!(e.contains("grid.csv:3") && e.contains("`lots`"), "{e}");
    assert!(
        !out.join("compare.json").exists(),
        "nothing written on a refused footprint"
    );
}

/// m0 and m1 of [`runs`], m0 on the accelerator `smoky` and m1 on `hydro`, with m0's session
/// given a wall clock (run-clock 0 is Unix 1.7e9) so that an intensity series can be joined.
fn runs_on_two_grids(dir: &Path) -> PathBuf {
    let runs = runs(dir);
    let mut table = std::fs::read_to_string(dir.join("study.csv")).unwrap();
    table = table.replacen("latency_s\n", "latency_s,accelerator\n", 1);
    let table: String = table
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ if l.contains(",m0,") => format!("{l},smoky\n"),
            _ => format!("{l},hydro\n"),
        })
        .collect();
    std::fs::remove_dir_all(&runs).unwrap();
    let runs = import_table(dir, &table);
    let m0 = run_dirs(&runs)
        .into_iter()
        .find(|r| json(&r.join("manifest.json"))["model"]["name"] == "m0")
        .expect("m0's run");
    let manifest = m0.join("manifest.json");
    let mut m = json(&manifest);
    m["sessions"][0]["clock"] = serde_json::json!({"monotonic_s": 0.0, "unix_s": 1.7e9});
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    runs
}

fn route(runs: &Path, extra: &[&str], out: &Path) -> std::process::Output {
    let mut args = vec![
        "route",
        runs.to_str().unwrap(),
        "--reference",
        "m1",
        "--router",
        "oracle:energy",
        "--router",
        "oracle:carbon",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ipw(&args, runs.parent().unwrap())
}

#[test]
fn route_minimises_carbon_across_grids_and_reports_its_saving() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs_on_two_grids(dir.path());
    // m0 (half m1's joules) is on a grid at 10 g/kWh until 2 s into its run, then 3000;
    // m1 is on hydro at 20 g/kWh in a facility of PUE 1.5 (30 g per IT kWh).
    std::fs::write(
        dir.path().join("smoky.csv"),
        "time,g_co2e_per_kwh\n1700000000,10\n1700000002,3000\n1700000012,3000\n",
    )
    .unwrap();
    let fp = dir.path().join("grids.toml");
    std::fs::write(
        &fp,
        "[accelerators.smoky]\nintensity_csv = \"smoky.csv\"\n\
         [accelerators.hydro]\ncarbon_g_per_kwh = 20.0\npue = 1.5\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = route(&runs, &["--footprint", fp.to_str().unwrap()], &out);
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&out.join("route.json"));
    let router = |name: &str| {
        r["routers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["router"] == name)
            .unwrap_or_else(|| panic!("no router {name} in {r}"))
            .clone()
    };
    // Grams x 3.6e6 per query. m1: 72, 144, 216, 288 J x 30. m0: 36 J x 10 (q1, window 0-1 s),
    // 72 J x (10 + 3000) / 2 (q2, 1-3 s: half in each row), 108 and 144 J x 3000.
    let m1 = [2160.0, 4320.0, 6480.0, 8640.0];
    let m0 = [360.0, 108_360.0, 324_000.0, 432_000.0];
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    // Every answer is right, so the carbon oracle takes the lower carbon of each query: m0 on
    // q1 only.
    let carbon = router("oracle:carbon");
    let chosen = m0[0] + sum(&m1[1..]);
    assert!(
        close(&carbon["g_co2e"]["value"], chosen / 3.6e6 / 4.0),
        "{carbon}"
    );
    assert!(
        close(
            &carbon["savings"]["carbon"]["value"],
            1.0 - chosen / sum(&m1)
        ),
        "{carbon}"
    );
    assert!(close(&carbon["answered_by"]["m0"], 0.25), "{carbon}");
    // The energy oracle takes m0 (half the joules) every time, and emits far more.
    let energy = router("oracle:energy");
    assert!(close(&energy["answered_by"]["m0"], 1.0), "{energy}");
    assert!(
        close(
            &energy["savings"]["carbon"]["value"],
            1.0 - sum(&m0) / sum(&m1)
        ),
        "{energy}"
    );
    assert!(
        close(&energy["savings"]["energy"]["value"], 0.5),
        "{energy}"
    );
    // route.csv carries the carbon figures.
    let csv = std::fs::read_to_string(out.join("route.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "carbon_saving").unwrap();
    let line = csv
        .lines()
        .find(|l| l.starts_with("oracle:carbon,"))
        .unwrap();
    let saving: f64 = line.split(',').nth(at).unwrap().parse().unwrap();
    assert!((saving - (1.0 - chosen / sum(&m1))).abs() < 1e-12, "{csv}");
    assert!(text(&o).contains("g CO2e/query"), "{}", text(&o));

    // compare names each section's inputs beside the rows they priced.
    let o = compare(&runs, &fp, &out);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&out.join("compare.json"))["footprint"];
    assert!(f["inputs"].is_null(), "no run priced by the top level: {f}");
    assert_eq!(f["accelerators"]["hydro"]["pue"], 1.5, "{f}");
    assert!(
        close(
            &row(f, "m1", "all")["g_co2e_per_query"],
            sum(&m1) / 3.6e6 / 4.0
        ),
        "{f}"
    );
}

#[test]
fn carbon_routing_without_a_footprint_or_with_a_wrong_section_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs_on_two_grids(dir.path());
    let out = dir.path().join("out");
    // No footprint: nothing has carbon, and the error says where carbon comes from.
    let o = route(&runs, &[], &out);
    assert!(!o.status.success());
    let e = text(&o);
    assert!(
        e.contains("no run has carbon figures") && e.contains("--footprint"),
        "{e}"
    );
    let fp = dir.path().join("typo.toml");
    for (body, says) in [
        // A section for an accelerator no run is on (a typo) would price nothing.
        (
            "carbon_g_per_kwh = 100.0\n[accelerators.hydr0]\ncarbon_g_per_kwh = 20.0\n",
            "[accelerators.\"hydr0\"] names no run's accelerator (the runs are on: hydro, smoky)",
        ),
        // Sections only, and a run on an accelerator none of them names.
        (
            "[accelerators.hydro]\ncarbon_g_per_kwh = 20.0\n",
            "no [accelerators.\"smoky\"] section and no top-level footprint",
        ),
        // A section's field is named with its section.
        (
            "carbon_g_per_kwh = 100.0\n[accelerators.hydro]\npue = 0.5\n",
            "[accelerators.\"hydro\"] pue: 0.5 is below 1",
        ),
        (
            "price_per_kwh = 0.2\ncurrency = \"EUR\"\n[accelerators.hydro]\ncurrency = \"USD\"\n",
            "[accelerators.\"hydro\"] currency: `USD` differs from the top level's `EUR`",
        ),
    ] {
        std::fs::write(&fp, body).unwrap();
        let o = route(&runs, &["--footprint", fp.to_str().unwrap()], &out);
        assert!(!o.status.success(), "{body}");
        let e = text(&o);
        assert!(e.contains("typo.toml") && e.contains(says), "{body}: {e}");
    }
}

#[test]
fn the_parquet_export_carries_each_records_footprint_and_sums_to_compares_figures() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs_on_two_grids(dir.path());
    std::fs::write(
        dir.path().join("smoky.csv"),
        "time,g_co2e_per_kwh,water_l_per_kwh\n1700000000,10,1\n1700000002,3000,2\n1700000012,3000,2\n",
    )
    .unwrap();
    let fp = dir.path().join("grids.toml");
    std::fs::write(
        &fp,
        "carbon_g_per_kwh = 400.0\nprice_per_kwh = 0.2\ncurrency = \"EUR\"\n\
         [hardware]\nprice = 3155.76\nlifetime_years = 1.0\n\
         [accelerators.smoky]\nintensity_csv = \"smoky.csv\"\npue = 1.25\n",
    )
    .unwrap();
    let out = dir.path().join("export");
    let o = run_ipw(
        &[
            "export",
            runs.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--footprint",
            fp.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 footprint rows"), "{}", text(&o));
    // Read back with pyarrow: per run, the means of the rows and the metadata.
    let script = r#"
import json, sys, pathlib, pyarrow.parquet as pq
out = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/footprint.parquet")):
    t = pq.read_table(f)
    rows = t.to_pylist()
    n = len(rows)
    mean = lambda k: None if any(r[k] is None for r in rows) else sum(r[k] for r in rows) / n
    out[rows[0]["run"]] = {
        "records": [r["record"] for r in rows],
        "queries": [r["query_id"] for r in rows],
        "basis": rows[0]["energy_basis"],
        "accelerator": rows[0]["accelerator"],
        "kwh": mean("kwh"), "g_co2e": mean("g_co2e"), "water_l": mean("water_l"),
        "energy_cost": mean("energy_cost"), "hardware_cost": mean("hardware_cost"),
        "meta": json.loads(t.schema.metadata[b"ipw.footprint"]),
    }
print(json.dumps(out))
"#;
    let py = python_with("pyarrow");
    let o = std::process::Command::new(py)
        .args(["-c", script, out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let exported: Value = serde_json::from_slice(&o.stdout).unwrap();
    // compare --footprint on the same runs: the per-query means the rows must give.
    let cmp = dir.path().join("cmp");
    let o = compare(&runs, &fp, &cmp);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&cmp.join("compare.json"))["footprint"];
    for model in ["m0", "m1"] {
        let e = exported
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with(model))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {model} in {exported}"));
        assert_eq!(e["records"], serde_json::json!([0, 1, 2, 3]), "{e}");
        assert_eq!(
            e["queries"],
            serde_json::json!(["q1", "q2", "q3", "q4"]),
            "{e}"
        );
        assert_eq!(e["basis"], "net");
        let all = row(f, model, "all");
        for (col, figure) in [
            ("kwh", "kwh_per_query"),
            ("g_co2e", "g_co2e_per_query"),
            ("water_l", "water_l_per_query"),
            ("energy_cost", "energy_cost_per_query"),
            ("hardware_cost", "hardware_cost_per_query"),
        ] {
            match all[figure].as_f64() {
                Some(want) => assert!(close(&e[col], want), "{model} {col}: {} vs {want}", e[col]),
                // No input for it (m1's grid gives no water): no figure in either.
                None => assert!(e[col].is_null(), "{model} {col}: {}", e[col]),
            }
        }
        // The metadata names the inputs the rows came from.
        let section = model == "m0";
        assert_eq!(e["meta"]["section"], section, "{e}");
        assert_eq!(e["meta"]["inputs"]["pue"], if section { 1.25 } else { 1.0 });
    }
    // By hand for m0: q2's window (1 to 3 s) is half at 10 and half at 3000 g/kWh.
    let m0 = exported
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("m0"))
        .unwrap()
        .1;
    let g = 1.25 * (36.0 * 10.0 + 72.0 * 1505.0 + 108.0 * 3000.0 + 144.0 * 3000.0) / 3.6e6 / 4.0;
    assert!(close(&m0["g_co2e"], g), "{m0} vs {g}");
}

/// A replayed meter whose power climbs from 20 W by 20 W a second, so that every query's net
/// energy is above the baseline's (the first second), whenever it runs.
fn climbing_meter(dir: &Path) -> PathBuf {
    use std::io::Write;
    let trace = dir.join("meter.csv");
    let mut f = std::fs::File::create(&trace).unwrap();
    writeln!(f, "t,value").unwrap();
    for i in 0..=12_000 {
        let t = i as f64 * 0.01;
        writeln!(f, "{t:.2},{:.4}", 20.0 * t + 10.0 * t * t).unwrap();
    }
    trace
}

/// The fault server's paced model with the replayed meter, and `footprint` as the
/// experiment's `[footprint]`.
fn experiment_with_footprint(
    server: &crate::support::fault_server::FaultServer,
    meter: &Path,
    footprint: &str,
) -> String {
    format!(
        "name = \"fp\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 1\n\
         [[models]]\nname = \"slow\"\nbackend = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"slow\"\n\
         [[samplers]]\npath = {}\nconfig = {{ file = {}, kind = \"energy\" }}\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 3\n\
         [footprint]\n{footprint}",
        server.url,
        q(&plugin_lib("ipw_sampler_replay")),
        q(meter)
    )
}

#[test]
fn an_experiments_footprint_travels_with_its_runs_into_compare() {
    let dir = tempfile::tempdir().unwrap();
    let meter = climbing_meter(dir.path());
    let server = crate::support::fault_server::FaultServer::start();
    // 250 g/kWh over the hours around now, in a series beside the experiment.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let grid = dir.path().join("grid.csv");
    std::fs::write(
        &grid,
        format!(
            "time,g_co2e_per_kwh\n{},250\n{},250\n",
            now - 3600,
            now + 3600
        ),
    )
    .unwrap();
    let toml = experiment_with_footprint(
        &server,
        &meter,
        "intensity_csv = \"grid.csv\"\npue = 1.4\nprice_per_kwh = 0.3\ncurrency = \"EUR\"\n",
    );
    let (o, out) = profile(dir.path(), "fp", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("slow");
    // The manifest carries the footprint with the series' full path, and the run a copy of it.
    let m = json(&run.join("manifest.json"));
    assert_eq!(
        m["experiment"]["footprint"]["pue"], 1.4,
        "{}",
        m["experiment"]
    );
    assert_eq!(
        m["experiment"]["footprint"]["intensity_csv"],
        grid.to_str().unwrap()
    );
    assert_eq!(
        std::fs::read(run.join("grid.csv")).unwrap(),
        std::fs::read(&grid).unwrap()
    );
    // Read elsewhere: the original series is gone, the run's copy is used.
    std::fs::remove_file(&grid).unwrap();
    let cmp = dir.path().join("cmp");
    let o = run_ipw(
        &[
            "compare",
            out.to_str().unwrap(),
            "--out",
            cmp.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("g CO2e"), "{}", text(&o));
    let f = &json(&cmp.join("compare.json"))["footprint"];
    assert_eq!(f["runs"]["slow"]["pue"], 1.4, "{f}");
    // Against the records: mean net joules x PUE x 250 g/kWh.
    let nets: Vec<f64> = records(&run)
        .iter()
        .map(|r| r["energy"]["net_j"].as_f64().expect("net energy"))
        .collect();
    assert_eq!(nets.len(), 3);
    assert!(nets.iter().all(|&j| j > 0.0), "{nets:?}");
    let kwh = nets.iter().sum::<f64>() / 3.0 * 1.4 / 3.6e6;
    let all = row(f, "slow", "all");
    assert!(close(&all["kwh_per_query"], kwh), "{all} vs {kwh}");
    assert!(close(&all["g_co2e_per_query"], kwh * 250.0), "{all}");
    assert!(close(&all["energy_cost_per_query"], kwh * 0.3), "{all}");
    // A file given on the command line wins over the runs' own.
    let fp = dir.path().join("other.toml");
    std::fs::write(&fp, "carbon_g_per_kwh = 100.0\n").unwrap();
    let o = compare(&out, &fp, &cmp);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&cmp.join("compare.json"))["footprint"];
    assert!(f["runs"].is_null(), "{f}");
    assert!(close(
        &row(f, "slow", "all")["g_co2e_per_query"],
        kwh / 1.4 * 100.0
    ));
}

#[test]
fn a_wrong_experiment_footprint_is_refused_before_anything_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let meter = climbing_meter(dir.path());
    let server = crate::support::fault_server::FaultServer::start();
    for (name, footprint, says) in [
        (
            "pue",
            "region = \"FRA\"\npue = 0.5\n",
            "[footprint] pue: 0.5 is below 1",
        ),
        (
            "series",
            "intensity_csv = \"nowhere.csv\"\n",
            "footprint.intensity_csv",
        ),
        ("key", "carbon = 3\n", "unknown field `carbon`"),
    ] {
        let toml = experiment_with_footprint(&server, &meter, footprint);
        let (o, out) = profile(dir.path(), name, &toml);
        assert!(!o.status.success(), "{name}");
        let e = text(&o);
        assert!(
            e.contains(&format!("{name}.toml")) && e.contains(says),
            "{name}: {e}"
        );
        assert!(
            !out.join("slow/records.jsonl").exists(),
            "{name}: nothing measured"
        );
    }
}

#[test]
fn a_top_level_pue_is_shared_by_sections_that_give_the_grids() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs_on_two_grids(dir.path());
    let fp = dir.path().join("shared.toml");
    std::fs::write(
        &fp,
        "pue = 1.5\n[accelerators.hydro]\ncarbon_g_per_kwh = 20.0\n\
         [accelerators.smoky]\ncarbon_g_per_kwh = 800.0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = compare(&runs, &fp, &out);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&out.join("compare.json"))["footprint"];
    assert!(
        f["inputs"].is_null(),
        "every run is priced by its section: {f}"
    );
    // m1 (hydro): mean net 180 J; m0 (smoky): 90 J; both x PUE 1.5.
    let g = |model: &str| row(f, model, "all")["g_co2e_per_query"].clone();
    assert!(close(&g("m1"), 180.0 * 1.5 / 3.6e6 * 20.0), "{f}");
    assert!(close(&g("m0"), 90.0 * 1.5 / 3.6e6 * 800.0), "{f}");
}

#[test]
fn runs_priced_in_two_currencies_by_their_experiments_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let give = |currency: [&str; 2]| {
        for (run, c) in run_dirs(&runs).iter().zip(currency) {
            let manifest = run.join("manifest.json");
            let mut m = json(&manifest);
            m["experiment"]["footprint"] = serde_json::json!({
                "carbon_g_per_kwh": 100.0, "price_per_kwh": 0.2, "currency": c
            });
            std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        }
    };
    let out = dir.path().join("out");
    let plain = |out: &Path| {
        run_ipw(
            &[
                "compare",
                runs.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    // One currency: the runs' own footprints are used without a file.
    give(["EUR", "EUR"]);
    let o = plain(&out);
    assert!(o.status.success(), "{}", text(&o));
    let f = &json(&out.join("compare.json"))["footprint"];
    assert!(close(
        &row(f, "m0", "all")["energy_cost_per_query"],
        90.0 / 3.6e6 * 0.2
    ));
    // Two: refused, naming both.
    give(["EUR", "USD"]);
    let o = plain(&dir.path().join("out2"));
    assert!(!o.status.success());
    let e = text(&o);
    assert!(
        e.contains("different currencies") && e.contains("EUR in") && e.contains("USD in"),
        "{e}"
    );
}
