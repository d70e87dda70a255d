//! The built-in `pairwise` grader on real wasmtime, with deterministic judges standing in for
//! the judge model (a closure given the prompt): position bias cancelled, ties, a judge with a
//! real preference, unreadable verdicts, and both orders asked with the responses swapped. The
//! real model behind llama-server judges in tests/pairwise_e2e.rs.

use ipw_core::grade::{builtin, DatasetGraders, Query, WasmGrader};
use ipw_core::sandbox::{Host, JudgeFn, JudgeFuture, Limits};
use std::sync::{Arc, Mutex};

/// The prompts a judge was asked, in order.
type Asked = Arc<Mutex<Vec<String>>>;

/// A judge that records every prompt and answers what `decide` says about it.
fn judge(decide: impl Fn(&str) -> String + Send + Sync + 'static) -> (JudgeFn, Asked) {
    let asked: Asked = Default::default();
    let seen = asked.clone();
    let f: JudgeFn = Arc::new(move |prompt: String| -> JudgeFuture {
        let reply = decide(&prompt);
        seen.lock().unwrap().push(prompt);
        Box::pin(std::future::ready(Ok(reply)))
    });
    (f, asked)
}

fn pairwise(judge: JudgeFn) -> WasmGrader {
    WasmGrader::load(
        &Host::new(None).unwrap(),
        "pairwise",
        builtin::wasm("pairwise").expect("pairwise is a built-in grader"),
        Limits::default(),
        Some(judge),
    )
    .unwrap()
}

fn query(reference: &str) -> Query {
    Query {
        id: "chat/1".into(),
        prompt: "Write a haiku about rain.".into(),
        answers: vec![reference.into()],
        choices: Vec::new(),
        subject: None,
    }
}

/// The text between `[Response A]` and `[Response B]` of the default prompt.
fn shown_as_a(prompt: &str) -> &str {
    let a = prompt.find("[Response A]\n").unwrap() + "[Response A]\n".len();
    let b = prompt.find("\n\n[Response B]").unwrap();
    &prompt[a..b]
}

/// The text after `[Response B]` up to the instructions.
fn shown_as_b(prompt: &str) -> &str {
    let b = prompt.find("[Response B]\n").unwrap() + "[Response B]\n".len();
    let end = prompt.find("\n\nReply with one line").unwrap();
    &prompt[b..end]
}

const MODEL: &str = "Grey clouds gather low / MARKER";
const REFERENCE: &str = "Rain taps on the roof";

#[test]
fn a_judge_that_always_prefers_the_first_response_scores_every_model_a_half() {
    let (j, asked) = judge(|_| "VERDICT: A".into());
    let g = pairwise(j).grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(g.score, Some(0.5), "{g:?}");
    assert!(g.parsed);
    assert_eq!(
        g.extracted.as_deref(),
        Some("model-first: A, reference-first: A")
    );
    // Both orders were asked, the responses swapped between them, the question in each.
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(shown_as_a(&asked[0]), MODEL);
    assert_eq!(shown_as_b(&asked[0]), REFERENCE);
    assert_eq!(shown_as_a(&asked[1]), REFERENCE);
    assert_eq!(shown_as_b(&asked[1]), MODEL);
    assert!(asked
        .iter()
        .all(|p| p.contains("Write a haiku about rain.")));
}

#[test]
fn a_judge_that_always_says_tie_scores_a_half() {
    let (j, asked) = judge(|_| "They are equally good.\nVERDICT: TIE".into());
    let g = pairwise(j).grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(g.score, Some(0.5));
    assert_eq!(
        g.extracted.as_deref(),
        Some("model-first: TIE, reference-first: TIE")
    );
    assert_eq!(asked.lock().unwrap().len(), 2);
}

/// A judge with a real preference: the response containing MARKER wins, in either position.
fn prefers_marker(prompt: &str) -> String {
    match (
        shown_as_a(prompt).contains("MARKER"),
        shown_as_b(prompt).contains("MARKER"),
    ) {
        (true, false) => "VERDICT: A".into(),
        (false, true) => "VERDICT: B".into(),
        _ => "VERDICT: TIE".into(),
    }
}

#[test]
fn a_judge_with_a_preference_gives_one_to_the_better_response_and_zero_to_the_worse() {
    let (j, _) = judge(prefers_marker);
    let grader = pairwise(j);
    let win = grader.grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(win.score, Some(1.0), "{win:?}");
    assert_eq!(
        win.extracted.as_deref(),
        Some("model-first: A, reference-first: B")
    );
    let loss = grader.grade(&query(MODEL), REFERENCE, "{}").unwrap();
    assert_eq!(loss.score, Some(0.0), "{loss:?}");
    assert_eq!(
        loss.extracted.as_deref(),
        Some("model-first: B, reference-first: A")
    );
    // One order won, the other tied: the mean.
    let (j, _) = judge(|p| {
        if shown_as_a(p).contains("MARKER") {
            "VERDICT: A".into()
        } else {
            "VERDICT: TIE".into()
        }
    });
    let g = pairwise(j).grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(g.score, Some(0.75));
}

#[test]
fn an_unreadable_verdict_in_either_order_leaves_the_query_unscored_naming_the_order() {
    // Readable in the model-first order only.
    let (j, asked) = judge(|p| {
        if shown_as_a(p).contains("MARKER") {
            "VERDICT: A".into()
        } else {
            "Both responses have merit.".into()
        }
    });
    let g = pairwise(j).grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(g.score, None, "{g:?}");
    assert!(!g.parsed);
    assert_eq!(
        g.extracted.as_deref(),
        Some("model-first: A, reference-first: ?")
    );
    let why = g.explanation.unwrap();
    assert!(why.contains("reference-first order"), "{why}");
    assert!(!why.contains("model-first order"), "{why}");
    assert!(why.contains("Both responses have merit."), "{why}");
    // The second order is asked even after an unreadable first one.
    let (j2, asked2) = judge(|p| {
        if shown_as_a(p).contains("MARKER") {
            "VERDICT: maybe".into()
        } else {
            "VERDICT: B".into()
        }
    });
    let g = pairwise(j2).grade(&query(REFERENCE), MODEL, "{}").unwrap();
    assert_eq!(g.score, None);
    let why = g.explanation.unwrap();
    assert!(why.contains("model-first order"), "{why}");
    assert_eq!(asked.lock().unwrap().len(), 2);
    assert_eq!(asked2.lock().unwrap().len(), 2);
}

#[test]
fn params_replace_the_prompt_and_a_missing_reference_or_failing_judge_is_an_error() {
    let (j, asked) = judge(|_| "B".into());
    let grader = pairwise(j);
    // A template ending in VERDICT: accepts the bare verdict; `against_model` is named.
    let params = r#"{"template": "Q={question}\nA={a}\nB={b}\nVERDICT:", "against_model": "big"}"#;
    let g = grader.grade(&query(REFERENCE), MODEL, params).unwrap();
    assert_eq!(g.score, Some(0.5), "{g:?}");
    assert!(g.explanation.unwrap().contains("`big`"));
    assert_eq!(
        asked.lock().unwrap()[0],
        format!("Q=Write a haiku about rain.\nA={MODEL}\nB={REFERENCE}\nVERDICT:")
    );
    // No reference response: a grader error saying how to give one.
    let mut q = query(REFERENCE);
    q.answers.clear();
    let err = grader.grade(&q, MODEL, "{}").unwrap_err().to_string();
    assert!(err.contains("--against"), "{err}");
    // The judge model failing is a grader error, not a loss.
    let down: JudgeFn = Arc::new(|_: String| -> JudgeFuture {
        Box::pin(std::future::ready(Err("connection refused".into())))
    });
    let err = pairwise(down)
        .grade(&query(REFERENCE), MODEL, "{}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn grading_against_a_reference_passes_its_response_or_leaves_the_record_unscored() {
    let (j, asked) = judge(prefers_marker);
    let params = Some(serde_json::json!({"against_model": "big"}));
    let graders = DatasetGraders::uniform(["chat".to_string()], pairwise(j), &params);
    let mut r: ipw_core::records::Record = serde_json::from_value(serde_json::json!({
        "schema": 1, "query_id": "chat/1", "index": 0, "dataset": "chat", "subject": null,
        "category": null, "prompt_hash": "h", "prompt": "Write a haiku about rain.",
        "answers": [], "model": "small", "backend": "embedded", "response": MODEL,
        "input_tokens": null, "output_tokens": null, "tokens_estimated": false,
        "token_source": null, "ttft_s": null, "latency_s": 1.0, "decode_tps": null,
        "finish_reason": null, "attempts": 1, "started_at": "2025-01-01T00:00:00Z",
        "window": {"start_s": 0.0, "end_s": 1.0}, "error": null
    }))
    .unwrap();
    graders.grade_against(&mut r, Ok(REFERENCE));
    let g = r.grade.clone().unwrap();
    assert_eq!(g.score, Some(1.0), "{g:?}");
    assert_eq!(g.grader, "pairwise");
    assert_eq!(g.params.unwrap()["against_model"], "big");
    assert_eq!(asked.lock().unwrap().len(), 2);
    // The reference did not answer: unscored with the reason, and the judge is not asked.
    graders.grade_against(&mut r, Err("the reference failed query chat/1".into()));
    let g = r.grade.unwrap();
    assert_eq!(g.score, None);
    assert!(g.error.is_none());
    assert_eq!(
        g.explanation.as_deref(),
        Some("the reference failed query chat/1")
    );
    assert_eq!(asked.lock().unwrap().len(), 2);
}
