//! The WASM grader host with real wasmtime and the real built-in graders (compiled to
//! wasm32-wasip2 by the build script): reference answers, a table of tricky multiple-choice
//! responses, hostile graders (built from tests/fixtures/graders), and the compile cache.

use ipw_core::grade::host::Query;
use ipw_core::grade::{
    builtin, test_support::fixture_grader, GraderHost, GraderLimits, WasmGrader,
};
use std::time::{Duration, Instant};

fn host() -> GraderHost {
    GraderHost::new(None).unwrap()
}

fn builtin_grader(name: &str) -> WasmGrader {
    host()
        .load(
            name,
            builtin::wasm(name).unwrap(),
            GraderLimits::default(),
            None,
        )
        .unwrap()
}

fn query(answers: &[&str], choices: &[&str]) -> Query {
    Query {
        id: "t/1".into(),
        prompt: "q".into(),
        answers: answers.iter().map(|s| s.to_string()).collect(),
        choices: choices.iter().map(|s| s.to_string()).collect(),
        subject: None,
    }
}

#[test]
fn gsm8k_reference_solutions_all_score_one_under_numeric() {
    let numeric = builtin_grader("numeric");
    let text = include_str!("../data/gsm8k/test.jsonl");
    let mut n = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let solution = row["answer"].as_str().unwrap();
        let answer = ipw_core::dataset::builtin::gsm8k_final_answer(solution);
        let g = numeric
            .grade(&query(&[&answer], &[]), solution, "{}")
            .unwrap();
        assert_eq!(g.score, Some(1.0), "row {n}: {solution:?} vs {answer}");
        assert!(g.parsed);
        n += 1;
    }
    assert_eq!(n, 1319);
}

#[test]
fn tricky_multiple_choice_responses_are_read_as_a_careful_human_would() {
    let choice = builtin_grader("choice");
    let opts = ["Paris", "London", "Berlin", "Madrid"];
    // (response, letter a careful human reads, or None when there is no answer)
    let table: &[(&str, Option<&str>)] = &[
        ("Answer: C", Some("C")),
        ("The answer is B.", Some("B")),
        ("answer: (d)", Some("D")),
        ("**B**", Some("B")),
        ("The correct option is **C**.", Some("C")),
        ("(A)", Some("A")),
        ("I think (B) is right.", Some("B")),
        ("C) Berlin", Some("C")),
        ("D. Madrid", Some("D")),
        ("B", Some("B")),
        ("C.", Some("C")),
        ("Let me think. A is wrong, B is wrong. Answer: D", Some("D")),
        (
            "First I thought Answer: A but actually the answer is C",
            Some("C"),
        ),
        ("The capital is Paris.", Some("A")),
        ("Berlin is the one.", Some("C")),
        (
            "Parisian food is great, but the capital is Madrid",
            Some("D"),
        ), // "Parisian" is not "Paris"
        ("It is either Paris or London.", None),
        ("I don't know.", None),
        ("", None),
        ("Answer: **D**", Some("D")),
        ("answer is [B]", Some("B")),
        ("The answer is: A", Some("A")),
        ("Final answer: B", Some("B")),
        ("Option C", Some("C")),
        ("My choice is D.", Some("D")),
        ("A. Paris\nB. London\nAnswer: B", Some("B")),
        ("Correct answer is (C) Berlin", Some("C")),
        ("The answer is E", None),       // E is not an option
        ("A cat sat on the mat.", None), // "A" as an article is not an answer
        ("B)", Some("B")),
        ("  d) Madrid", Some("D")),
        ("Answer:\nC", Some("C")),
        ("**Answer: A**", Some("A")),
    ];
    assert!(table.len() >= 30);
    for (response, want) in table {
        let g = choice.grade(&query(&["C"], &opts), response, "{}").unwrap();
        assert_eq!(g.extracted.as_deref(), *want, "response {response:?}");
        assert_eq!(g.parsed, want.is_some(), "{response:?}");
        assert_eq!(
            g.score,
            Some(if *want == Some("C") { 1.0 } else { 0.0 }),
            "{response:?}"
        );
    }
}

#[test]
fn text_graders_normalise_and_score() {
    let q = query(&["The Eiffel Tower"], &[]);
    assert_eq!(
        builtin_grader("exact")
            .grade(&q, "eiffel tower!", "{}")
            .unwrap()
            .score,
        Some(1.0)
    );
    assert_eq!(
        builtin_grader("exact")
            .grade(&q, "eiffel tower!", r#"{"punctuation": false}"#)
            .unwrap()
            .score,
        Some(0.0)
    );
    assert_eq!(
        builtin_grader("includes")
            .grade(&q, "It is the Eiffel tower, in Paris.", "{}")
            .unwrap()
            .score,
        Some(1.0)
    );
    // Whole words only: a longer word that starts with the answer is not the answer.
    let includes = builtin_grader("includes");
    let rome = query(&["Rome"], &[]);
    for (response, want) in [
        ("The capital is Rome.", 1.0),
        ("rome", 1.0),
        ("Romeo and Juliet", 0.0),
        ("Jerome", 0.0),
        ("Rome, then Romeo", 1.0),
    ] {
        let g = includes.grade(&rome, response, "{}").unwrap();
        assert_eq!(g.score, Some(want), "{response:?}");
    }
    let f1 = builtin_grader("f1")
        .grade(&q, "eiffel", "{}")
        .unwrap()
        .score
        .unwrap();
    assert!((f1 - 2.0 / 3.0).abs() < 1e-9, "{f1}");
    let re = builtin_grader("regex");
    let g = re
        .grade(
            &query(&["42"], &[]),
            "x=1, result: 42.",
            r#"{"pattern": "result: (\\d+)"}"#,
        )
        .unwrap();
    assert_eq!((g.score, g.extracted.as_deref()), (Some(1.0), Some("42")));
    assert!(
        !re.grade(
            &query(&["42"], &[]),
            "nothing",
            r#"{"pattern": "result: (\\d+)"}"#
        )
        .unwrap()
        .parsed
    );
    let num = builtin_grader("numeric");
    assert_eq!(
        num.grade(&query(&["18"], &[]), "She makes $18.00 a day.", "{}")
            .unwrap()
            .score,
        Some(1.0)
    );
    assert_eq!(
        num.grade(&query(&["0.5"], &[]), "about 0.51", r#"{"rel_tol": 0.05}"#)
            .unwrap()
            .score,
        Some(1.0)
    );
    assert!(
        !num.grade(&query(&["3"], &[]), "no idea", "{}")
            .unwrap()
            .parsed
    );
}

fn hostile(name: &str, limits: GraderLimits) -> WasmGrader {
    let bytes = std::fs::read(fixture_grader(name)).unwrap();
    host().load(name, &bytes, limits, None).unwrap()
}

#[test]
fn hostile_graders_become_errors_and_nothing_escapes() {
    let limits = GraderLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 1000,
        memory_mib: 64,
    };
    let q = query(&["x"], &[]);

    let started = Instant::now();
    let err = hostile("spin", limits)
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(err.contains("deadline"), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "an infinite loop is stopped at the 1 s deadline: {took:?}"
    );

    let err = hostile(
        "spin",
        GraderLimits {
            fuel: 10_000_000,
            ..limits
        },
    )
    .grade(&q, "r", "{}")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("fuel"),
        "the instruction budget stops it too: {err}"
    );

    let err = hostile("membomb", limits)
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory") || err.contains("trapped"), "{err}");

    let err = hostile("trap", limits)
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("trapped"), "{err}");

    let err = hostile("bigoutput", limits)
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("memory") || err.contains("trapped"),
        "100 MB cannot be built under a 64 MiB cap: {err}"
    );

    let escape = hostile("escape", limits);
    for attempt in ["file", "env", "socket"] {
        let result = escape.grade(&q, "r", &format!(r#"{{"try": "{attempt}"}}"#));
        let err = result.expect_err("the sandbox must stop it").to_string();
        assert!(err.contains(&format!("blocked ({attempt})")), "{err}");
    }

    // The host is unharmed: a well-behaved grader still works afterwards.
    assert_eq!(
        builtin_grader("exact").grade(&q, "x", "{}").unwrap().score,
        Some(1.0)
    );
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let host = GraderHost::new(Some(dir.path().to_path_buf())).unwrap();
    let bytes = builtin::wasm("exact").unwrap();
    let first = host
        .load("exact", bytes, GraderLimits::default(), None)
        .unwrap();
    assert!(!first.from_cache);
    let second = host
        .load("exact", bytes, GraderLimits::default(), None)
        .unwrap();
    assert!(second.from_cache, "second load comes from the cache");
    assert_eq!(first.sha256, second.sha256);
    let q = query(&["a"], &[]);
    assert_eq!(
        first.grade(&q, "a", "{}").unwrap(),
        second.grade(&q, "a", "{}").unwrap()
    );
    // A corrupt cache entry is ignored and rebuilt, not trusted. (Replace the file, never
    // truncate it in place: a loaded component maps it, which is why the cache itself always
    // writes a new file and renames it.)
    drop((first, second));
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
    }
    assert!(
        !host
            .load("exact", bytes, GraderLimits::default(), None)
            .unwrap()
            .from_cache
    );
}

#[test]
fn judge_grader_reads_grade_lines_and_leaves_unreadable_replies_unscored() {
    // The model is replaced by a closure here so every reply shape is covered exactly; the
    // real model behind llama-server is tested in tests/graders_e2e.rs.
    let judge_with = |reply: &'static str| {
        let judge: ipw_core::grade::JudgeFn = std::sync::Arc::new(move |_| Ok(reply.to_string()));
        host()
            .load(
                "judge",
                builtin::wasm("judge").unwrap(),
                GraderLimits::default(),
                Some(judge),
            )
            .unwrap()
    };
    let q = query(&["Paris"], &[]);
    let ends_in_grade = r#"{"template": "Q: {question}\nR: {response}\nGRADE:"}"#;
    // (reply, params, score, extracted)
    let table: &[(&str, &str, Option<f64>, Option<&str>)] = &[
        ("GRADE: C", "{}", Some(1.0), Some("C")),
        (
            "The response is wrong.\nGRADE: I",
            "{}",
            Some(0.0),
            Some("I"),
        ),
        ("**Grade: P**", "{}", Some(0.5), Some("P")),
        (
            "GRADE: I ... on reflection GRADE: C",
            "{}",
            Some(1.0),
            Some("C"),
        ),
        ("It looks correct to me.", "{}", None, None),
        ("GRADE: X", "{}", None, None),
        // A prompt that ends in `GRADE:` may get the bare letter back.
        (" C", ends_in_grade, Some(1.0), Some("C")),
        ("I.", ends_in_grade, Some(0.0), Some("I")),
        ("Correct!", ends_in_grade, None, None),
        ("I think it is right.", ends_in_grade, None, None),
        (
            "C\nThe response names Paris.",
            ends_in_grade,
            Some(1.0),
            Some("C"),
        ),
        ("C", "{}", None, None), // without the cue a lone letter is not a grade
    ];
    for (reply, params, score, extracted) in table {
        let g = judge_with(reply).grade(&q, "Paris", params).unwrap();
        assert_eq!(g.score, *score, "{reply:?} {params}");
        assert_eq!(g.extracted.as_deref(), *extracted, "{reply:?}");
        assert_eq!(g.parsed, score.is_some(), "{reply:?}");
    }
    // The judge's own failure (model down) is a grader error, not a wrong answer.
    let failing: ipw_core::grade::JudgeFn =
        std::sync::Arc::new(|_| Err("connection refused".into()));
    let g = host()
        .load(
            "judge",
            builtin::wasm("judge").unwrap(),
            GraderLimits::default(),
            Some(failing),
        )
        .unwrap();
    let err = g.grade(&q, "Paris", "{}").unwrap_err().to_string();
    assert!(err.contains("connection refused"), "{err}");
    // No judge configured: the error says how to configure one.
    let none = host()
        .load(
            "judge",
            builtin::wasm("judge").unwrap(),
            GraderLimits::default(),
            None,
        )
        .unwrap();
    let err = none.grade(&q, "Paris", "{}").unwrap_err().to_string();
    assert!(err.contains("[grading.judge]"), "{err}");
}
