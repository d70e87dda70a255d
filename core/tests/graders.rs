//! The WASM grader host with real wasmtime and the real built-in graders (compiled to
//! wasm32-wasip2 by the build script): reference answers, a table of tricky multiple-choice
//! responses, hostile graders (built from tests/fixtures/graders), and the compile cache.

use ipw_core::grade::{builtin, test_support::fixture_grader, Query, WasmGrader};
use ipw_core::sandbox::{Host, JudgeFn, JudgeFuture, Limits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn host() -> Host {
    Host::new(None).unwrap()
}

fn builtin_grader(name: &str) -> WasmGrader {
    WasmGrader::load(
        &host(),
        name,
        builtin::wasm(name).unwrap(),
        Limits::default(),
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

/// A judge that answers `reply` at once.
fn replying(reply: &'static str) -> JudgeFn {
    Arc::new(move |_: String| -> JudgeFuture {
        Box::pin(std::future::ready(Ok(reply.to_string())))
    })
}

/// A judge that counts the calls it gets and answers each after `delay`.
fn counting(calls: Arc<AtomicUsize>, delay: Duration) -> JudgeFn {
    Arc::new(move |_: String| -> JudgeFuture {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok("GRADE: C".to_string())
        })
    })
}

fn hostile(name: &str, limits: Limits) -> WasmGrader {
    let bytes = std::fs::read(fixture_grader(name)).unwrap();
    WasmGrader::load(&host(), name, &bytes, limits, None).unwrap()
}

#[test]
fn hostile_graders_become_errors_and_nothing_escapes() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout_ms: 1000,
        memory_mib: 64,
        ..Limits::default()
    };
    let q = query(&["x"], &[]);

    // Timed from the call, not from the load: compiling the fixture is not the guest's time
    // (on a busy machine it took 0.6 s of the window when it was counted).
    let spin = hostile("spin", limits);
    let started = Instant::now();
    let err = spin.grade(&q, "r", "{}").unwrap_err().to_string();
    let took = started.elapsed();
    assert!(err.contains("deadline"), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "an infinite loop is stopped at the 1 s deadline: {took:?}"
    );

    let err = hostile(
        "spin",
        Limits {
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
    assert!(
        err.contains("grader exceeded its 64 MiB memory budget"),
        "{err}"
    );

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
    let host = Host::new(Some(dir.path().to_path_buf())).unwrap();
    let bytes = builtin::wasm("exact").unwrap();
    let first = WasmGrader::load(&host, "exact", bytes, Limits::default(), None).unwrap();
    assert!(!first.from_cache);
    let second = WasmGrader::load(&host, "exact", bytes, Limits::default(), None).unwrap();
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
        !WasmGrader::load(&host, "exact", bytes, Limits::default(), None)
            .unwrap()
            .from_cache
    );
}

#[test]
fn judge_grader_reads_grade_lines_and_leaves_unreadable_replies_unscored() {
    // The model is replaced by a closure here so every reply shape is covered exactly; the
    // real model behind llama-server is tested in tests/graders_e2e.rs.
    let judge_with = |reply: &'static str| {
        let judge = replying(reply);
        WasmGrader::load(
            &host(),
            "judge",
            builtin::wasm("judge").unwrap(),
            Limits::default(),
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
    let failing: JudgeFn = Arc::new(|_: String| -> JudgeFuture {
        Box::pin(std::future::ready(Err("connection refused".into())))
    });
    let g = WasmGrader::load(
        &host(),
        "judge",
        builtin::wasm("judge").unwrap(),
        Limits::default(),
        Some(failing),
    )
    .unwrap();
    let err = g.grade(&q, "Paris", "{}").unwrap_err().to_string();
    assert!(err.contains("connection refused"), "{err}");
    // No judge configured: the error says how to configure one.
    let none = WasmGrader::load(
        &host(),
        "judge",
        builtin::wasm("judge").unwrap(),
        Limits::default(),
        None,
    )
    .unwrap();
    let err = none.grade(&q, "Paris", "{}").unwrap_err().to_string();
    assert!(err.contains("[grading.judge]"), "{err}");
}

/// A grader component built from a core module in WAT: the module exports the canonical-ABI
/// `grade` (15 flat i32 params, a pointer to the result back), `memory` and `cabi_realloc`,
/// and wit-component wraps it in the real `ipw:plugins/grader` world. Hostile graders that
/// Rust cannot express (grow a table, declare several memories) are written this way.
fn wat_grader(body: &str) -> Vec<u8> {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/wit/ipw.wit");
    wat_grader_against(body, &std::fs::read_to_string(wit).unwrap())
}

/// [`wat_grader`] built against the WIT text `wit` (e.g. an earlier version of the contract).
fn wat_grader_against(body: &str, wit: &str) -> Vec<u8> {
    // Imports come before every other definition in a module.
    let (imports, body): (Vec<&str>, Vec<&str>) = body
        .lines()
        .partition(|l| l.trim_start().starts_with("(import"));
    let (imports, body) = (imports.join("\n"), body.join("\n"));
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  ;; The result area: `err("not stopped")`, what the grader returns if the host lets it be.
  (data (i32.const 16) "\01\00\00\00\00\00\00\00\40\00\00\00\0b\00\00\00")
  (data (i32.const 64) "not stopped")
  {body}
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p)))"#
    );
    let mut module = wat::parse_str(&wat).expect("fixture WAT parses");
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_source("ipw.wit", wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("grader")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .unwrap()
        .encode()
        .unwrap()
}

const GRADE_SIGNATURE: &str =
    "(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)";

#[test]
fn one_memory_budget_covers_tables_and_every_memory() {
    let limits = Limits {
        memory_mib: 64,
        ..Limits::default()
    };
    let q = query(&["x"], &[]);
    // 10 million table slots: 80 MB of host memory that no linear memory shows.
    let table = wat_grader(&format!(
        r#"(table $t 0 funcref)
  (func (export "grade") {GRADE_SIGNATURE}
    (drop (table.grow $t (ref.null func) (i32.const 10000000)))
    (i32.const 16))"#
    ));
    let err = WasmGrader::load(&host(), "table-grow", &table, limits, None)
        .unwrap()
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grader exceeded its 64 MiB memory budget") && err.contains("a table"),
        "{err}"
    );
    // Two more memories of 40 MiB each: each fits under 64 MiB, together they do not.
    let memories = wat_grader(&format!(
        r#"(memory $b 640)
  (memory $c 640)
  (func (export "grade") {GRADE_SIGNATURE}
    (i32.const 16))"#
    ));
    let err = WasmGrader::load(&host(), "many-memories", &memories, limits, None)
        .unwrap()
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grader exceeded its 64 MiB memory budget") && err.contains("a linear memory"),
        "{err}"
    );
    // The same memories under a budget that holds them: the fixture itself is sound, so the
    // refusal above is the budget's doing.
    let err = WasmGrader::load(
        &host(),
        "many-memories",
        &memories,
        Limits {
            memory_mib: 128,
            ..limits
        },
        None,
    )
    .unwrap()
    .grade(&q, "r", "{}")
    .unwrap_err()
    .to_string();
    assert!(err.contains("not stopped"), "{err}");
}

#[test]
fn a_grader_asleep_in_a_blocking_call_ends_at_its_deadline() {
    let limits = Limits {
        timeout_ms: 500,
        ..Limits::default()
    };
    let sleeper = Arc::new(hostile("sleep", limits));
    let q = query(&["x"], &[]);
    // Several records in a row, and several threads at once (the profiler grades on
    // blocking-pool threads): each call ends as a deadline error.
    let started = Instant::now();
    for _ in 0..3 {
        let err = sleeper.grade(&q, "r", "{}").unwrap_err().to_string();
        assert!(err.contains("grader exceeded its 500 ms deadline"), "{err}");
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (sleeper, q) = (sleeper.clone(), q.clone());
            std::thread::spawn(move || sleeper.grade(&q, "r", "{}").unwrap_err().to_string())
        })
        .collect();
    for t in threads {
        let err = t.join().unwrap();
        assert!(err.contains("deadline"), "{err}");
    }
    // A sleep of an hour ended 7 times: far under one hour whatever the machine's load.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "{took:?}");
    // The host is unharmed.
    assert_eq!(
        builtin_grader("exact").grade(&q, "x", "{}").unwrap().score,
        Some(1.0)
    );
}

#[test]
fn judge_calls_are_capped_per_grade_and_timed_apart_from_the_grader() {
    let q = query(&["Paris"], &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    let looping = |limits: Limits, calls: &Arc<AtomicUsize>| {
        let bytes = std::fs::read(fixture_grader("judge-loop")).unwrap();
        WasmGrader::load(
            &host(),
            "judge-loop",
            &bytes,
            limits,
            Some(counting(calls.clone(), Duration::ZERO)),
        )
        .unwrap()
    };
    // A grader that asks forever: stopped after `judge_max_calls`, and the model saw no more.
    let err = looping(Limits::default(), &calls)
        .grade(&q, "Paris", r#"{"bytes": 100}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grader exceeded its judge cap of 4 calls per grade"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Big prompts: the byte cap ends it first (20000 + 20000 + 20000 + 20000 > 65536).
    calls.store(0, Ordering::SeqCst);
    let err = looping(Limits::default(), &calls)
        .grade(&q, "Paris", r#"{"bytes": 20000}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grader exceeded its judge cap of 65536 prompt bytes per grade"),
        "{err}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the fourth prompt is never sent"
    );

    // A judge slower than the grader's deadline: its time is not the grader's.
    let slow = |limits: Limits| {
        WasmGrader::load(
            &host(),
            "judge",
            builtin::wasm("judge").unwrap(),
            limits,
            Some(counting(
                Arc::new(AtomicUsize::new(0)),
                Duration::from_millis(1500),
            )),
        )
        .unwrap()
    };
    let limits = Limits {
        timeout_ms: 500,
        ..Limits::default()
    };
    let g = slow(limits).grade(&q, "Paris", "{}").unwrap();
    assert_eq!(g.score, Some(1.0));
    // And the judge's own timeout ends a judge call that takes too long.
    let err = slow(Limits {
        judge_timeout_ms: 200,
        ..limits
    })
    .grade(&q, "Paris", "{}")
    .unwrap_err()
    .to_string();
    assert!(err.contains("judge timed out after 200 ms"), "{err}");
}

#[test]
fn cache_entries_are_verified_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Some(dir.path().to_path_buf())).unwrap();
    let bytes = builtin::wasm("exact").unwrap();
    let load = || WasmGrader::load(&host, "exact", bytes, Limits::default(), None).unwrap();
    assert!(!load().from_cache);
    assert!(load().from_cache);
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let good = std::fs::read(&entry).unwrap();
    let replace = |content: &[u8]| {
        std::fs::remove_file(&entry).unwrap();
        std::fs::write(&entry, content).unwrap();
        let mut perm = std::fs::metadata(&entry).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(&entry, perm).unwrap();
    };
    // One flipped payload byte (past the 16-byte magic, source hash and checksum).
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    replace(&flipped);
    assert!(
        !load().from_cache,
        "a payload that fails its checksum is rebuilt"
    );
    // An entry that says it was compiled from other wasm.
    let mut other = std::fs::read(&entry).unwrap();
    other[16] ^= 0xff;
    replace(&other);
    assert!(!load().from_cache, "an entry of other source is rebuilt");
    // A sound entry that others could have written.
    assert!(load().from_cache);
    let mut perm = std::fs::metadata(&entry).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o666);
    std::fs::set_permissions(&entry, perm).unwrap();
    assert!(!load().from_cache, "a world-writable entry is not trusted");
    assert!(load().from_cache, "and its replacement is");
}

#[test]
fn every_call_starts_from_a_fresh_instance() {
    // The grader counts its calls in a global and in linear memory, and grows its memory by a
    // page each call; it answers `stale` if any of them is not as a fresh instance has it. A
    // host that reused an instance, or a pool slot that kept a previous call's memory, a
    // global or a grown size, would show here.
    let counter = wat_grader(&format!(
        r#"(global $calls (mut i32) (i32.const 0))
  (data (i32.const 128) "\01\00\00\00\00\00\00\00\c8\00\00\00\05\00\00\00")
  (data (i32.const 144) "\01\00\00\00\00\00\00\00\2c\01\00\00\05\00\00\00")
  (data (i32.const 200) "fresh")
  (data (i32.const 300) "stale")
  (func (export "grade") {GRADE_SIGNATURE}
    (local $stale i32)
    (local.set $stale
      (i32.or
        (i32.or (global.get $calls) (i32.load (i32.const 400)))
        (i32.ne (memory.size) (i32.const 1))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 400) (i32.add (i32.load (i32.const 400)) (i32.const 1)))
    (drop (memory.grow (i32.const 1)))
    (if (result i32) (local.get $stale)
      (then (i32.const 144))
      (else (i32.const 128))))"#
    ));
    let grader =
        Arc::new(WasmGrader::load(&host(), "counter", &counter, Limits::default(), None).unwrap());
    let q = query(&["x"], &[]);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (grader, q) = (grader.clone(), q.clone());
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| grader.grade(&q, "r", "{}").unwrap_err().to_string())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for err in t.join().unwrap() {
            assert_eq!(err, "grader error: fresh");
        }
    }
}

#[test]
fn graders_over_the_per_instance_caps_get_a_clear_error() {
    let limits = Limits {
        memory_mib: 64,
        ..Limits::default()
    };
    let q = query(&["x"], &[]);
    // 17 memories (16 declared here, the template's one besides): refused when loaded, on
    // either allocator (the pool's own check at compile time, or the host's before any slot
    // is asked for), naming both counts.
    let memories: String = (0..16).map(|i| format!("(memory $m{i} 0)\n")).collect();
    let many = wat_grader(&format!(
        r#"{memories}
  (func (export "grade") {GRADE_SIGNATURE}
    (i32.const 16))"#
    ));
    let err = WasmGrader::load(&host(), "many-memories", &many, limits, None)
        .err()
        .expect("17 memories are refused")
        .to_string();
    assert!(
        err.starts_with("grader `many-memories`")
            && err.contains("17")
            && err.contains("16")
            && err.contains("memor"),
        "{err}"
    );
    // 2M table slots (16 MiB): inside the memory budget, but more than a pooled table holds.
    let table = wat_grader(&format!(
        r#"(table $t 0 funcref)
  (func (export "grade") {GRADE_SIGNATURE}
    (drop (table.grow $t (ref.null func) (i32.const 2000000)))
    (i32.const 16))"#
    ));
    let host = host();
    let err = WasmGrader::load(&host, "big-table", &table, limits, None)
        .unwrap()
        .grade(&q, "r", "{}")
        .unwrap_err()
        .to_string();
    if host.pooled() {
        assert!(
            err.contains("grader asked for a table of 2000000 elements, over the host's cap"),
            "{err}"
        );
    } else {
        assert!(err.contains("not stopped"), "{err}");
    }
    // The host is unharmed.
    assert_eq!(
        builtin_grader("exact").grade(&q, "x", "{}").unwrap().score,
        Some(1.0)
    );
}

#[test]
fn a_grader_built_against_wit_0_1_0_runs_on_this_host() {
    // The contract as 0.1.0 had it: no `regex-captures`, no `span` or `matches`. A plugin built
    // then imports `ipw:plugins/host@0.1.0`; the host (0.1.2) must still link and run it.
    let now = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/wit/ipw.wit"),
    )
    .unwrap();
    assert!(
        now.contains("package ipw:plugins@0.1.2;"),
        "update this test"
    );
    let cut = |s: &str, from: &str, to: &str| -> String {
        let a = s.find(from).unwrap();
        let b = a + s[a..].find(to).unwrap() + to.len();
        format!("{}{}", &s[..a], &s[b..])
    };
    let mut old = now.replace("package ipw:plugins@0.1.2;", "package ipw:plugins@0.1.0;");
    old = cut(&old, "///\n/// 0.1.1 added", "`classifying` interface).\n");
    // 0.1.2's classifier world and its types, to the end of the file.
    old.truncate(old.find("\n/// Types a classifier sees.").unwrap());
    old = cut(&old, "    /// A piece of a string", "        all,\n    }\n");
    old = cut(&old, "    /// Search `text` with `pattern`", "string>;\n");
    old = old.replace("use types.{level, span, matches};", "use types.{level};");
    assert!(
        !old.contains("regex") && !old.contains("span") && !old.contains("classif"),
        "{old}"
    );
    // It logs through the 0.1.0 host interface, then returns `err("not stopped")`.
    let grader = wat_grader_against(
        &format!(
            r#"(import "ipw:plugins/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (data (i32.const 512) "hello from 0.1.0")
  (func (export "grade") {GRADE_SIGNATURE}
    (call $log (i32.const 2) (i32.const 512) (i32.const 16))
    (i32.const 16))"#
        ),
        &old,
    );
    let text = String::from_utf8_lossy(&grader);
    assert!(
        text.contains("ipw:plugins/host@0.1.0"),
        "built against 0.1.0"
    );
    let g = WasmGrader::load(&host(), "old", &grader, Limits::default(), None).unwrap();
    let err = g.grade(&query(&["x"], &[]), "r", "{}").unwrap_err();
    assert_eq!(err.to_string(), "grader error: not stopped");
}

#[test]
fn the_regex_grader_searches_through_the_host_and_reports_a_bad_pattern() {
    let re = builtin_grader("regex");
    let q = query(&["7"], &[]);
    // The last match counts; group 0 when the pattern has no group; a group that took no
    // part leaves the response unparsed.
    let g = re
        .grade(&q, "a: 3 then a: 7", r#"{"pattern": "a: (\\d)"}"#)
        .unwrap();
    assert_eq!((g.score, g.extracted.as_deref()), (Some(1.0), Some("7")));
    let g = re.grade(&q, "x 7 y 3", r#"{"pattern": "\\d"}"#).unwrap();
    assert_eq!((g.score, g.extracted.as_deref()), (Some(0.0), Some("3")));
    let g = re
        .grade(&q, "a: 7", r#"{"pattern": "a: (\\d)|(b)", "group": 2}"#)
        .unwrap();
    assert!(!g.parsed, "{g:?}");
    // Multibyte text: spans are byte offsets into the response.
    let g = re
        .grade(
            &query(&["ç7"], &[]),
            "é→ ç7!",
            r#"{"pattern": "→ (\\S+)!"}"#,
        )
        .unwrap();
    assert_eq!(g.extracted.as_deref(), Some("ç7"));
    let err = re.grade(&q, "x", r#"{"pattern": "("}"#).unwrap_err();
    assert!(err.to_string().contains("bad pattern"), "{err}");
}

#[test]
fn the_deadline_never_fires_before_its_time() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout_ms: 2000,
        ..Limits::default()
    };
    let q = query(&["x"], &[]);
    let sleeper = hostile("sleep", limits);
    // A grader that sleeps 1.2 s of its 2 s: a deadline firing any earlier (at half the limit,
    // say) would stop it. The 0.8 s left over is for a busy machine's scheduling.
    let started = Instant::now();
    let g = sleeper
        .grade(&q, "r", r#"{"sleep_ms": 1200}"#)
        .expect("a grader within its deadline is not stopped");
    eprintln!("slept 1.2 s in {:?}", started.elapsed());
    assert_eq!(g.score, Some(1.0));
    assert_eq!(g.explanation.as_deref(), Some("slept 1200 ms"));
    // When the deadline does stop a grader (asleep in a blocking call, or computing), not
    // before the limit has passed. Only a lower bound: an upper one would flake when busy.
    for (name, grader) in [("sleep", sleeper), ("spin", hostile("spin", limits))] {
        let started = Instant::now();
        let err = grader.grade(&q, "r", "{}").unwrap_err().to_string();
        let took = started.elapsed();
        eprintln!("{name}: stopped after {took:?}");
        assert!(
            err.contains("grader exceeded its 2000 ms deadline"),
            "{name}: {err}"
        );
        assert!(
            took >= Duration::from_millis(2000),
            "{name}: the 2 s deadline fired after {took:?}"
        );
    }
}

#[test]
fn a_socket_to_a_real_listener_is_refused_by_the_sandbox_not_by_the_peer() {
    // Something listens, so "connection refused" cannot pass for the sandbox's refusal.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let escape = hostile("escape", Limits::default());
    let q = query(&["x"], &[]);
    let err = escape
        .grade(
            &q,
            "r",
            &format!(r#"{{"try": "socket", "addr": "{addr}"}}"#),
        )
        .expect_err("the sandbox must stop it")
        .to_string();
    eprintln!("{err}");
    // WASI refuses the capability: the guest sees access denied (EACCES), not a refusal from
    // a peer (ECONNREFUSED) and not a timeout.
    assert!(
        err.contains("blocked (socket): PermissionDenied"),
        "not the sandbox's refusal: {err}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener was reached: {other:?}"),
    }
}
