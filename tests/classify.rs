//! `ipw classify` end to end through the binary: the built-in `mapping` and `keywords`
//! classifiers on runs imported from 110 hand-labelled MMLU questions
//! (`tests/fixtures/domains`, labelling rule in its README), their agreement with the hand
//! labels, `ipw coverage --by domain` checked against counts made here, and the `judge`
//! classifier asking the real SmolLM2 behind llama-server (the plumbing and the cache, not the
//! model's accuracy).

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// (query_id, subject, hand label, prompt) of the hand-labelled set.
fn labelled() -> Vec<(String, String, String, String)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/domains/mmlu-110.csv");
    csv::Reader::from_path(&path)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].into(), r[1].into(), r[2].into(), r[3].into())
        })
        .collect()
}

fn labels_file() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/domains/mmlu-110.csv")
        .display()
        .to_string()
}

/// Two models on the 110 questions plus two `miscellaneous` ones the mapping leaves
/// unlabelled: `big` (the reference) answers all; `small` every other query.
fn import(dir: &Path) -> PathBuf {
    let mut rows = labelled();
    for i in 0..2 {
        rows.push((
            format!("mmlu/miscellaneous-{i}"),
            "miscellaneous".into(),
            String::new(),
            format!("trivia {i}"),
        ));
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "query_id",
        "model",
        "dataset",
        "subject",
        "prompt",
        "score",
        "energy_j",
        "latency_s",
    ])
    .unwrap();
    for (i, (id, subject, _, prompt)) in rows.iter().enumerate() {
        let small = if i % 2 == 0 { "1" } else { "0" };
        for (model, score, joules) in [("small", small, "1"), ("big", "1", "10")] {
            w.write_record([id, model, "mmlu", subject, prompt, score, joules, "0.5"])
                .unwrap();
        }
    }
    import_table(dir, &String::from_utf8(w.into_inner().unwrap()).unwrap())
}

fn classify(runs: &Path, args: &[&str], cwd: &Path) -> String {
    let mut all = vec!["classify", runs.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = run_ipw(&all, cwd);
    assert!(o.status.success(), "{}", text(&o));
    words(&text(&o))
}

/// `s` with every run of whitespace made one space, so assertions do not count columns.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn mapping_and_keywords_label_imported_runs_and_coverage_by_domain_matches_counts_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let runs = import(dir.path());
    let labels = labels_file();
    let out = classify(
        &runs,
        &["--classifier", "mapping", "--against", &labels],
        dir.path(),
    );
    // Nine of the 110 hand labels differ from their subject's mapping (the fixture's README).
    assert!(
        out.contains("110 queries compared (0 not in the runs), accuracy 91.8%"),
        "{out}"
    );
    assert!(out.contains("unlabelled 2"), "{out}");
    for run in ["small", "big"] {
        let recs = records(&runs.join(run));
        assert_eq!(recs.len(), 112);
        let d = &recs[0]["domain"];
        assert_eq!(
            (d["classifier"].as_str(), d["taxonomy"].as_str()),
            (Some("mapping"), Some("soc-2018"))
        );
        assert_eq!(d["taxonomy_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(d["wasm_sha256"].as_str().unwrap().len(), 64);
        // Measured fields are untouched.
        assert_eq!(
            recs[0]["energy"]["gross_j"].as_f64(),
            Some(if run == "big" { 10.0 } else { 1.0 })
        );
    }

    // Coverage of `small` per domain, counted here from the subjects' mapping: covered where
    // small scores (even rows), unlabelled for the two miscellaneous queries.
    let mapping: BTreeMap<&str, &str> = [
        ("professional_law", "23-0000"),
        ("clinical_knowledge", "29-0000"),
        ("college_computer_science", "15-0000"),
        ("high_school_macroeconomics", "19-0000"),
        ("management", "11-0000"),
        ("marketing", "13-0000"),
        ("electrical_engineering", "17-0000"),
        ("formal_logic", "25-0000"),
        ("public_relations", "27-0000"),
        ("nutrition", "29-0000"),
        ("high_school_us_history", "19-0000"),
        ("miscellaneous", "unlabelled"),
    ]
    .into_iter()
    .collect();
    let mut by_hand: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut subjects: Vec<String> = labelled().into_iter().map(|r| r.1).collect();
    subjects.extend(["miscellaneous".into(), "miscellaneous".into()]);
    for (i, s) in subjects.iter().enumerate() {
        let e = by_hand.entry(mapping[s.as_str()]).or_default();
        e.0 += 1;
        e.1 += (i % 2 == 0) as usize;
    }
    let analysis = dir.path().join("analysis");
    let o = run_ipw(
        &[
            "coverage",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--by",
            "domain",
            "--out",
            analysis.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = json(&analysis.join("coverage.json"));
    let rows: Vec<&Value> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["model"] == "small" && r["group"] != "all")
        .collect();
    assert_eq!(rows.len(), by_hand.len(), "{rows:?}");
    for r in rows {
        let (n, covered) = by_hand[r["group"].as_str().unwrap()];
        assert_eq!(r["queries"].as_u64(), Some(n as u64), "{r}");
        let share = r["coverage"]["value"].as_f64().unwrap();
        assert!((share - covered as f64 / n as f64).abs() < 1e-12, "{r}");
    }
    let o = run_ipw(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--by",
            "domain",
            "--out",
            analysis.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let compare = json(&analysis.join("compare.json"));
    assert!(compare["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["group"] == "unlabelled"));

    // summary.json carries quality per domain, refreshed by `ipw classify`: small's accuracy
    // in each domain is the share it covers.
    let summary = json(&runs.join("small").join("summary.json"));
    let by_domain = summary["quality"]["by_domain"].as_object().unwrap();
    assert_eq!(by_domain.len(), by_hand.len(), "{by_domain:?}");
    for (group, q) in by_domain {
        let (n, covered) = by_hand[group.as_str()];
        assert_eq!(q["scored"].as_u64(), Some(n as u64), "{group}");
        let acc = q["accuracy"]["value"].as_f64().unwrap();
        assert!(
            (acc - covered as f64 / n as f64).abs() < 1e-12,
            "{group}: {q}"
        );
    }

    // Routing per domain: the oracle sends a query to small (1 J) where small is right, else
    // to big (10 J), so per domain it saves 1 - (covered + 10 (n - covered)) / 10 n.
    let o = run_ipw(
        &[
            "route",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--router",
            "oracle",
            "--by",
            "domain",
            "--out",
            analysis.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        words(&text(&o)).contains("by domain: group queries"),
        "{}",
        text(&o)
    );
    let route = json(&analysis.join("route.json"));
    assert_eq!(route["by"], "domain");
    let groups = route["routers"][0]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), by_hand.len());
    for g in groups {
        let (n, covered) = by_hand[g["group"].as_str().unwrap()];
        assert_eq!(g["queries"].as_u64(), Some(n as u64), "{g}");
        let (n, covered) = (n as f64, covered as f64);
        let saved = g["savings"]["energy"]["value"].as_f64().unwrap();
        let want = 1.0 - (covered + 10.0 * (n - covered)) / (10.0 * n);
        assert!((saved - want).abs() < 1e-12, "{g}");
        let to_small = g["answered_by"]["small"].as_f64().unwrap_or(0.0);
        assert!((to_small - covered / n).abs() < 1e-12, "{g}");
    }
    let csv = std::fs::read_to_string(analysis.join("route.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 1 + by_hand.len(), "{csv}");

    // The report's domain chart: one bar per domain (the unlabelled group too), and who
    // labelled the queries.
    let html = dir.path().join("report.html");
    let o = run_ipw(
        &[
            "report",
            runs.to_str().unwrap(),
            "--by",
            "domain",
            "--reference",
            "big",
            "-o",
            html.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    let at = page
        .find(r#"id="fig-coverage-domains""#)
        .expect("the domain chart");
    let figure = &page[at..at + page[at..].find("</figure>").unwrap()];
    assert_eq!(
        figure.matches(r#"class="mark bar""#).count(),
        by_hand.len(),
        "{figure}"
    );
    assert!(figure.contains("Labelled by mapping (sha256 "), "{figure}");
    assert!(
        figure.contains("unlabelled") && figure.contains("23-0000 Legal"),
        "{figure}"
    );

    // Classified again with keywords: the mapping's label moves to the history.
    let out = classify(
        &runs,
        &["--classifier", "keywords", "--against", &labels],
        dir.path(),
    );
    let accuracy: f64 = out
        .split("accuracy ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // A keyword table is a weak baseline, but far above the 1-in-22 of a guess.
    assert!(accuracy > 40.0, "{out}");
    let recs = records(&runs.join("small"));
    assert_eq!(recs[0]["domain"]["classifier"], "keywords");
    assert_eq!(recs[0]["domain_history"][0]["classifier"], "mapping");
}

#[test]
fn bad_taxonomies_labels_and_classifiers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let runs = import(dir.path());
    let tax = dir.path().join("mine.csv");
    std::fs::write(&tax, "code,title,description\nx,X,the x\nx,Y,the y\n").unwrap();
    let o = run_ipw(
        &[
            "classify",
            runs.to_str().unwrap(),
            "--classifier",
            "keywords",
            "--taxonomy",
            tax.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("mine.csv:3: code: `x` is already the code of the label on line 2"),
        "{}",
        text(&o)
    );
    let o = run_ipw(
        &["classify", runs.to_str().unwrap(), "--classifier", "nope"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a built-in classifier (judge, keywords, mapping)"),
        "{}",
        text(&o)
    );
    // The judge classifier without a judge model says how to name one.
    let o = run_ipw(
        &["classify", runs.to_str().unwrap(), "--classifier", "judge"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--judge-config"), "{}", text(&o));
    // A user taxonomy with the mapping's table from params.
    std::fs::write(
        &tax,
        "code,title,description\nlaw,Law,legal work\nother,Other,the rest\n",
    )
    .unwrap();
    let out = classify(
        &runs,
        &[
            "--classifier",
            "mapping",
            "--taxonomy",
            tax.to_str().unwrap(),
            "--params",
            r#"{"table": {"professional_law": "law", "mmlu": "other"}}"#,
        ],
        dir.path(),
    );
    assert!(
        out.contains("law 10 Law other 102 Other unlabelled 0"),
        "{out}"
    );
}

#[test]
fn a_third_party_classifier_built_outside_the_workspace_labels_runs() {
    let wasm = build_wasm_example("classifier-code-spotter");
    let dir = tempfile::tempdir().unwrap();
    let csv = "query_id,model,dataset,prompt,score\n\
        q1,m,d,\"Why does this fail?\n```\nx = [1, 2\n```\",1\n\
        q2,m,d,\"def f(x):\n    return x\nWhat does f return?\",1\n\
        q3,m,d,What is the capital of France?,1\n";
    let runs = import_table(dir.path(), csv);
    let out = classify(&runs, &["--classifier", wasm.to_str().unwrap()], dir.path());
    assert!(
        out.contains("classifier classifier_code_spotter.wasm"),
        "{out}"
    );
    assert!(
        out.contains("15-0000 2 Computer and Mathematical Occupations unlabelled 1"),
        "{out}"
    );
    let recs = records(&runs.join("m"));
    assert_eq!(recs[1]["domain"]["explanation"], "code: \"def\"");
    assert_eq!(recs[2]["domain"]["explanation"], "no code in the query");
    // Its params: a label the taxonomy lacks fails every query, the reason recorded.
    let out = classify(
        &runs,
        &[
            "--classifier",
            wasm.to_str().unwrap(),
            "--params",
            r#"{"label": "99"}"#,
        ],
        dir.path(),
    );
    assert!(
        out.contains("failed 3 first: classifier error: label `99` is not in the taxonomy"),
        "{out}"
    );
}

#[test]
fn the_judge_classifier_asks_the_real_model_once_per_query() {
    let server = LlamaServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("query_id,model,dataset,prompt,score\n");
    for (i, p) in [
        "Is a verbal contract legally binding?",
        "Write a Python loop that sums a list.",
        "How long should I bake bread?",
    ]
    .iter()
    .enumerate()
    {
        csv += &format!("q{i},m,d,\"{p}\",1\n");
    }
    let runs = import_table(dir.path(), &csv);
    let judge = dir.path().join("judge.toml");
    // A judge that times out leaves an error, not a label: on a loaded 2-core machine the
    // taxonomy prompt took longer than a minute once, so the bound here is a hang's, not a
    // speed target's (what this test checks does not depend on how fast the model is).
    std::fs::write(
        &judge,
        format!("[grading]\ntimeout_ms = 600000\njudge_timeout_ms = 600000\n[grading.judge]\nname = \"smol\"\nbackend = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"smollm2\"\n", server.url),
    )
    .unwrap();
    // A cache of its own, so the first pass asks the model.
    let cache = dir.path().join("cache");
    let run = |extra: &[&str]| {
        let mut c = ipw();
        c.args([
            "classify",
            runs.to_str().unwrap(),
            "--classifier",
            "judge",
            "--judge-config",
            judge.to_str().unwrap(),
        ])
        .args(extra)
        .env("IPW_CACHE", &cache)
        .current_dir(dir.path());
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let first = run(&[]);
    assert!(
        first.contains("judge: 3 asked, 0 from the cache"),
        "{first}"
    );
    let soc = [
        "11", "13", "15", "17", "19", "21", "23", "25", "27", "29", "31", "33", "35", "37", "39",
        "41", "43", "45", "47", "49", "51", "53",
    ];
    for r in records(&runs.join("m")) {
        let d = &r["domain"];
        assert_eq!(d["judge"], "smol", "{d}");
        match d["label"].as_str() {
            Some(code) => assert!(soc.iter().any(|g| code == format!("{g}-0000")), "{d}"),
            // Unlabelled: the reason is the judge's answer, never a guess.
            None => assert!(
                d["explanation"]
                    .as_str()
                    .is_some_and(|e| e.contains("judge")),
                "{d}"
            ),
        }
    }
    let second = run(&[]);
    assert!(
        second.contains("judge: 0 asked, 3 from the cache"),
        "{second}"
    );
    let recs = records(&runs.join("m"));
    assert_eq!(
        recs[0]["domain"]["label"],
        recs[0]["domain_history"][0]["label"]
    );
}

#[test]
fn classification_in_the_experiment_labels_queries_after_the_real_run_and_bad_ones_are_refused_first(
) {
    let dir = tempfile::tempdir().unwrap();
    let experiment = |classification: &str| {
        format!(
            r#"name = "classified"
seed = 3
[generation]
max_tokens = 4
[[models]]
name = "smollm2"
path = {model}
threads = 2
[[datasets]]
builtin = "mmlu"
max_queries = 6
stratify = true
{classification}
"#,
            model = q(&model_path())
        )
    };
    // A classifier that does not exist, a taxonomy file that does not exist: refused, with the
    // field named, before any model is loaded or any record written.
    for (bad, field) in [
        ("[classification]\nclassifier = \"nope\"\n", "nope"),
        (
            "[classification]\nclassifier = \"mapping\"\ntaxonomy = \"missing.toml\"\n",
            "classification.taxonomy",
        ),
        (
            "[classification]\nclassifier = \"mapping\"\nbatch = 0\n",
            "classification.batch",
        ),
    ] {
        let (o, out) = profile(dir.path(), "bad", &experiment(bad));
        assert!(!o.status.success(), "{bad}");
        assert!(text(&o).contains(field), "{bad}: {}", text(&o));
        assert!(!out.join("smollm2").join("records.jsonl").exists(), "{bad}");
    }

    let (o, out) = profile(
        dir.path(),
        "ok",
        &experiment("[classification]\nclassifier = \"mapping\"\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("smollm2");
    let recs = records(&run);
    assert_eq!(recs.len(), 6);
    for r in &recs {
        let d = &r["domain"];
        assert_eq!(d["classifier"], "mapping", "{r}");
        assert_eq!(d["taxonomy"], "soc-2018");
        // Every MMLU subject but `miscellaneous` maps to a group.
        if r["subject"] != "miscellaneous" {
            assert!(d["label"].is_string(), "{r}");
        }
        // Measured and graded as without a classifier.
        assert!(r["grade"]["score"].is_number(), "{r}");
        assert!(r["latency_s"].as_f64().unwrap() > 0.0);
    }
    let summary = json(&run.join("summary.json"));
    let by_domain = summary["quality"]["by_domain"].as_object().unwrap();
    let scored: u64 = by_domain
        .values()
        .map(|q| q["scored"].as_u64().unwrap())
        .sum();
    assert_eq!(scored, 6, "{by_domain:?}");
    // The summary printed at the end has a line per domain.
    let printed = text(&o);
    let lines = printed
        .lines()
        .filter(|l| l.trim_start().starts_with("domain "))
        .count();
    assert_eq!(lines, by_domain.len(), "{printed}");
    // The manifest keeps the experiment, classification included.
    let manifest = json(&run.join("manifest.json"));
    assert!(
        manifest.to_string().contains("\"classifier\":\"mapping\""),
        "{manifest}"
    );
}
