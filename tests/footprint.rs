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
