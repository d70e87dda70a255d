//! `ipw route train` through the binary: a routing table with a planted rule (imported, so
//! the outcomes are known exactly: `small` is as good as `big` on prompts that contain the
//! word `zebra`, flipped on 5% of queries as noise), a router trained on it, written as one
//! .wasm, and routed in the sandbox on the queries it never saw. Real runs of SmolLM2 are
//! trained on in `routing.rs`.

use crate::support::*;
use serde_json::Value;

const WORDS: [&str; 10] = [
    "apple", "river", "stone", "cloud", "paper", "green", "seven", "table", "light", "north",
];

/// A two-model routing table of `n` prompts (`small` 1 J, `big` 20 J), seeded.
fn planted_csv(n: usize, models: [&str; 2]) -> String {
    let mut state = 0x1234_5678_u64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "query_id",
        "model",
        "dataset",
        "prompt",
        "score",
        "energy_j",
        "latency_s",
    ])
    .unwrap();
    for i in 0..n {
        let mut words: Vec<&str> = (0..6 + next(6)).map(|_| WORDS[next(10) as usize]).collect();
        let marked = next(10) < 4;
        if marked {
            let at = next(words.len() as u64) as usize;
            words.insert(at, "zebra");
        }
        let small_ok = marked != (next(20) == 0);
        let prompt = words.join(" ");
        let id = format!("planted/{i}");
        let score = if small_ok { "1" } else { "0" };
        w.write_record([&id, models[0], "planted", &prompt, score, "1", "0.1"])
            .unwrap();
        w.write_record([&id, models[1], "planted", &prompt, "1", "20", "0.5"])
            .unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn value(v: &Value) -> f64 {
    v["value"].as_f64().unwrap()
}

#[test]
fn a_router_trained_on_a_planted_rule_recovers_the_oracles_savings_on_queries_it_never_saw() {
    let dir = tempfile::tempdir().unwrap();
    let runs = import_table(dir.path(), &planted_csv(1500, ["small", "big"]));
    let wasm = dir.path().join("router.wasm");
    let train = |out: &std::path::Path| {
        run_ipw(
            &[
                "route",
                "train",
                runs.to_str().unwrap(),
                "--reference",
                "big",
                "--holdout",
                "0.3",
                "--seed",
                "4",
                "-o",
                out.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    let o = train(&wasm);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = text(&o);
    assert!(
        stdout.contains("trained logistic-regression on"),
        "{stdout}"
    );
    assert!(stdout.contains("routing the"), "{stdout}");

    // Held out: about 30% of the queries, and nothing else, were routed.
    let report = json(&dir.path().join("router.held-out/route.json"));
    let held = report["queries"].as_u64().unwrap();
    assert!((380..520).contains(&held), "{held}");
    let learned = &report["learned"][0];
    assert_eq!(learned["meta"]["held_out_queries"].as_u64().unwrap(), held);
    assert_eq!(learned["in_sample_queries"], 0);
    assert_eq!(learned["meta"]["reference"], "big");
    assert_eq!(learned["meta"]["objective"], "energy");

    let spec = wasm.to_str().unwrap();
    let l = router(&report, spec);
    let oracle = router(&report, "oracle:energy");
    let random = router(&report, "random:0.5");
    assert_eq!(l["errors"].as_array().unwrap().len(), 0, "{l}");
    // Most of the oracle's savings, at nearly the reference's accuracy; random pays for its
    // savings in accuracy.
    let (ls, os) = (
        value(&l["savings"]["energy"]),
        value(&oracle["savings"]["energy"]),
    );
    assert!(ls > 0.8 * os, "learned saves {ls}, the oracle {os}");
    assert!(value(&l["accuracy_delta"]) > -0.06, "{l}");
    assert!(value(&random["accuracy_delta"]) < -0.2, "{random}");
    // Its threshold sweeps a curve, and it orders queries far better than random (APGR 0.5).
    assert_eq!(report["curves"][spec].as_array().unwrap().len(), 11);
    let apgr = |name: &str| {
        report["gap_recovery"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["router"] == name)
            .unwrap_or_else(|| panic!("no gap recovery of {name}: {report}"))["apgr"]
            .as_f64()
            .unwrap()
    };
    // The oracle's APGR is below 1 here: `small` is as good on 40% of queries, so sending
    // those to `big` recovers nothing.
    assert!(
        apgr(spec) > 0.9 * apgr("oracle") && apgr("oracle") > 0.6,
        "{} vs the oracle's {}",
        apgr(spec),
        apgr("oracle")
    );

    // Routed on every query, it says which figures are in-sample; with --held-out-of, only
    // the held-out queries are routed.
    let route = |extra: &[&str]| {
        let mut args = vec![
            "route",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--router",
            spec,
            "--out",
        ];
        let out = dir.path().join("again");
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = run_ipw(&args, dir.path());
        (o, json_or_null(&out.join("route.json")))
    };
    let (o, all) = route(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("its figures are in-sample"),
        "{}",
        text(&o)
    );
    assert_eq!(all["queries"], 1500);
    assert_eq!(
        all["learned"][0]["in_sample_queries"].as_u64().unwrap(),
        1500 - held
    );
    let (o, only) = route(&["--held-out-of", spec]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("in-sample"), "{}", text(&o));
    assert_eq!(only["queries"].as_u64().unwrap(), held);

    // The same runs and seed give the same bytes.
    let again = dir.path().join("again.wasm");
    assert!(train(&again).status.success());
    assert!(std::fs::read(&wasm).unwrap() == std::fs::read(&again).unwrap());

    // Runs of other models are refused by name.
    let other = tempfile::tempdir().unwrap();
    let other_runs = import_table(other.path(), &planted_csv(20, ["tiny", "big"]));
    let o = run_ipw(
        &[
            "route",
            other_runs.to_str().unwrap(),
            "--reference",
            "big",
            "--router",
            spec,
        ],
        other.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("lack small") && text(&o).contains("add tiny"),
        "{}",
        text(&o)
    );
}

fn json_or_null(path: &std::path::Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn training_refuses_what_it_cannot_learn_from_and_never_reports_training_figures() {
    let dir = tempfile::tempdir().unwrap();
    let runs = import_table(dir.path(), &planted_csv(40, ["small", "big"]));
    let wasm = dir.path().join("r.wasm");
    let train = |extra: &[&str]| {
        let mut args = vec!["route", "train", runs.to_str().unwrap(), "-o"];
        args.push(wasm.to_str().unwrap());
        args.extend_from_slice(extra);
        run_ipw(&args, dir.path())
    };
    let o = train(&["--reference", "small"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no model is cheaper than small"),
        "{}",
        text(&o)
    );
    let o = train(&["--reference", "big", "--holdout", "1.5"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--holdout 1.5"), "{}", text(&o));
    // The other family: nearest neighbours, named in the metadata and the figures.
    let o = train(&[
        "--reference",
        "big",
        "--neighbours",
        "5",
        "--prototypes",
        "20",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("trained nearest-neighbours on"),
        "{}",
        text(&o)
    );
    let report = json(&dir.path().join("r.held-out/route.json"));
    assert_eq!(
        report["learned"][0]["meta"]["algorithm"],
        "nearest-neighbours"
    );
    let o = train(&["--reference", "big", "--holdout", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no figures"), "{}", text(&o));
    assert!(!text(&o).contains("routing the"), "{}", text(&o));
    // With nothing held out, --held-out-of has nothing to route.
    let o = run_ipw(
        &[
            "route",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--held-out-of",
            wasm.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("held no query out"), "{}", text(&o));
}
