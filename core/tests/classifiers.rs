//! WASM classifiers under real wasmtime: the built-in `keywords`, `mapping` and `judge` (with
//! deterministic test judges standing in for a model: the point is the parsing, not a model's
//! accuracy), and a hostile fixture whose queries loop, allocate, trap, name a label outside the
//! taxonomy, give a confidence of 2 or try to read files: each costs only its own label, in a
//! batch with well-behaved queries.

use ipw_core::classify::apply::load_classifier;
use ipw_core::classify::wasm::ClassifyQuery;
use ipw_core::classify::{Taxonomy, Verdict, WasmClassifier};
use ipw_core::grade::test_support::fixture_classifier;
use ipw_core::sandbox::{Host, JudgeFn, JudgeFuture, Limits};
use std::sync::{Arc, Mutex};

fn load(name: &str, limits: Limits, judge: Option<JudgeFn>) -> WasmClassifier {
    load_classifier(&Host::new(None).unwrap(), name, limits, judge).unwrap()
}

fn q(prompt: &str, dataset: &str, subject: Option<&str>) -> ClassifyQuery {
    ClassifyQuery {
        id: format!("{dataset}/{prompt}"),
        prompt: prompt.into(),
        dataset: dataset.into(),
        subject: subject.map(String::from),
        category: None,
    }
}

fn labels(results: &[Result<Verdict, String>]) -> Vec<Option<&str>> {
    results
        .iter()
        .map(|r| r.as_ref().unwrap().label.as_deref())
        .collect()
}

#[test]
fn keywords_places_a_query_by_its_words_and_takes_a_table_from_params() {
    let soc = Taxonomy::default_taxonomy();
    let c = load("keywords", Limits::default(), None);
    let queries = [
        q(
            "Write a Python function that sorts a list of integers.",
            "d",
            None,
        ),
        q(
            "The defendant appealed the court's verdict to a higher court.",
            "d",
            None,
        ),
        q(
            "What dose of insulin should a diabetic patient take?",
            "d",
            None,
        ),
        q(
            "Give me a recipe for a quick weeknight dinner with chicken.",
            "d",
            None,
        ),
        q("zxcv qwerty", "d", None),
    ];
    let r = c.classify(&queries, &soc, "{}");
    assert_eq!(
        labels(&r),
        [
            Some("15-0000"),
            Some("23-0000"),
            Some("29-0000"),
            Some("35-0000"),
            None
        ]
    );
    let court = r[1].as_ref().unwrap();
    assert!(
        court.confidence.unwrap() > 0.5 && court.confidence.unwrap() <= 1.0,
        "{court:?}"
    );
    assert!(court
        .explanation
        .as_deref()
        .unwrap()
        .contains("keyword votes for 23-0000"));
    // A table from params replaces the shipped list of the labels it names.
    let r = c.classify(
        &queries[4..],
        &soc,
        r#"{"keywords": {"45-0000": ["qwert*"]}}"#,
    );
    assert_eq!(labels(&r), [Some("45-0000")]);
    // A table naming a label the taxonomy lacks fails every query of the batch, saying why.
    let r = c.classify(&queries, &soc, r#"{"keywords": {"99-0000": ["x"]}}"#);
    for e in &r {
        assert!(
            e.as_ref()
                .unwrap_err()
                .contains("`99-0000`, which is not a label"),
            "{e:?}"
        );
    }
}

#[test]
fn mapping_labels_by_subject_then_dataset_and_leaves_the_rest_unlabelled() {
    let soc = Taxonomy::default_taxonomy();
    let c = load("mapping", Limits::default(), None);
    let queries = [
        q("x", "mmlu", Some("anatomy")),
        q("x", "mmlu", Some("professional_law")),
        q("x", "mmlu", Some("miscellaneous")),
        q("x", "gsm8k", None),
    ];
    let r = c.classify(&queries, &soc, "{}");
    assert_eq!(labels(&r), [Some("29-0000"), Some("23-0000"), None, None]);
    let table = r#"{"table": {"gsm8k": "15-0000", "mmlu/miscellaneous": "43-0000"}}"#;
    let r = c.classify(&queries, &soc, table);
    assert_eq!(labels(&r), [None, None, Some("43-0000"), Some("15-0000")]);
    assert_eq!(
        r[2].as_ref().unwrap().explanation.as_deref(),
        Some("dataset/subject `mmlu/miscellaneous` maps to 43-0000")
    );
}

/// A judge that answers every prompt with `reply`, keeping the prompts it was asked.
fn judge_saying(reply: &'static str) -> (JudgeFn, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let judge: JudgeFn = Arc::new(move |prompt: String| -> JudgeFuture {
        log.lock().unwrap().push(prompt);
        Box::pin(async move { Ok(reply.to_string()) })
    });
    (judge, asked)
}

#[test]
fn the_judge_classifier_reads_one_label_strictly_and_leaves_the_rest_unlabelled() {
    let soc = Taxonomy::default_taxonomy();
    let query = [q("Is a verbal contract binding?", "d", None)];
    let (judge, asked) = judge_saying(" 23-0000\n");
    let r = load("judge", Limits::default(), Some(judge)).classify(&query, &soc, "{}");
    assert_eq!(labels(&r), [Some("23-0000")]);
    let prompt = asked.lock().unwrap()[0].clone();
    assert!(prompt.contains("Is a verbal contract binding?"), "{prompt}");
    assert!(
        prompt.contains("23-0000 Legal Occupations: Lawyers, judges"),
        "{prompt}"
    );
    for (reply, why) in [
        ("I would say it is about law.", "unreadable judge answer"),
        ("99-0000", "`99-0000`, which is not a label of the taxonomy"),
        ("23-0000 or 11-0000", "several labels (11-0000, 23-0000)"),
    ] {
        let (judge, _) = judge_saying(reply);
        let r = load("judge", Limits::default(), Some(judge)).classify(&query, &soc, "{}");
        let v = r[0].as_ref().unwrap();
        assert_eq!(v.label, None, "{reply}");
        assert!(v.explanation.as_deref().unwrap().contains(why), "{v:?}");
    }
    // A template of the user's own, and no judge at all.
    let (judge, asked) = judge_saying("Legal Occupations");
    let r = load("judge", Limits::default(), Some(judge)).classify(
        &query,
        &soc,
        r#"{"template": "Q: {query}\nA:"}"#,
    );
    assert_eq!(labels(&r), [Some("23-0000")]);
    assert_eq!(
        asked.lock().unwrap()[0],
        "Q: Is a verbal contract binding?\nA:"
    );
    let r = load("judge", Limits::default(), None).classify(&query, &soc, "{}");
    assert!(
        r[0].as_ref().unwrap_err().contains("no judge model"),
        "{r:?}"
    );
}

#[test]
fn a_hostile_query_costs_only_its_own_label_in_a_batch() {
    let soc = Taxonomy::default_taxonomy();
    let limits = Limits {
        fuel: 50_000_000,
        timeout_ms: 500,
        memory_mib: 32,
        ..Limits::default()
    };
    let path = fixture_classifier("hostile");
    let bytes = std::fs::read(&path).unwrap();
    let c = WasmClassifier::load(
        &Host::new(None).unwrap(),
        "hostile.wasm",
        &bytes,
        limits,
        None,
    )
    .unwrap();
    let prompts = [
        "fine",
        "spin",
        "fine",
        "membomb",
        "trap",
        "foreign",
        "overconfident",
        "escape",
        "fine",
    ];
    let queries: Vec<ClassifyQuery> = prompts.iter().map(|p| q(p, "d", None)).collect();
    let r = c.classify(&queries, &soc, "{}");
    assert_eq!(r.len(), prompts.len());
    let err = |i: usize| r[i].as_ref().unwrap_err().as_str();
    for i in [0, 2, 8] {
        assert_eq!(r[i].as_ref().unwrap().label.as_deref(), Some("11-0000"));
    }
    assert!(
        err(1).contains("fuel") || err(1).contains("deadline"),
        "{}",
        err(1)
    );
    assert!(err(3).contains("memory"), "{}", err(3));
    assert!(
        err(4).contains("trap") || err(4).contains("unreachable"),
        "{}",
        err(4)
    );
    assert!(
        err(5).contains("label `99-9999`, which is not in taxonomy soc-2018"),
        "{}",
        err(5)
    );
    assert!(err(6).contains("confidence 2"), "{}", err(6));
    // No file and no environment inside the sandbox.
    let escape = r[7].as_ref().unwrap().explanation.clone().unwrap();
    assert!(escape.starts_with("file: Err("), "{escape}");
    assert!(
        escape.contains("env: Err(\"environment variable not found\")"),
        "{escape}"
    );
    assert!(!escape.contains("root:"), "{escape}");
    // One batch call, then each query alone.
    assert_eq!(c.calls(), 1 + prompts.len() as u64);
}
