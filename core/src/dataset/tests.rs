//! Hugging Face datasets end to end through `load_dataset`: small Parquet and JSONL shards
//! written here in the hub's own schemas (nested `list<string>` and `list<struct>` columns
//! included), read through the recipes.

use super::*;
use crate::config::DatasetConfig;
use arrow_schema::Field;
use serde_json::{json, Value};
use std::path::Path;

// ---- writing shards -------------------------------------------------------------------------

#[path = "../../../tests/support/hf.rs"]
mod hf;
use hf::*;

pub(crate) fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Write `rows` as HF shards `<dir>/train-0000i-of-0000n.<ext>`, `sizes[i]` rows in shard i.
fn write_shards(dir: &Path, schema: &[Field], rows: &[Value], sizes: &[usize], parquet: bool) {
    assert_eq!(sizes.iter().sum::<usize>(), rows.len());
    let mut at = 0;
    for (i, n) in sizes.iter().enumerate() {
        let ext = if parquet { "parquet" } else { "jsonl" };
        let path = dir.join(format!("train-{i:05}-of-{:05}.{ext}", sizes.len()));
        let part = &rows[at..at + n];
        if parquet {
            write_parquet(&path, schema, part);
        } else {
            write_jsonl(&path, part);
        }
        at += n;
    }
}

// ---- rows in the four schemas --------------------------------------------------------------

const TEN: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

fn mmlu_pro_rows() -> Vec<Value> {
    let row = |id: i64, q: &str, options: Vec<&str>, idx: usize, cat: &str| {
        json!({"question_id": id, "question": q, "options": options,
               "answer": ((b'A' + idx as u8) as char).to_string(), "answer_index": idx,
               "cot_content": "", "category": cat, "src": format!("ori_mmlu-{cat}")})
    };
    vec![
        row(70, "What is 3 + 6?", TEN.to_vec(), 9, "math"),
        row(
            71,
            "Which gas do plants absorb?",
            vec!["O2", "CO2", "N2"],
            1,
            "biology",
        ),
        row(72, "What is 2 * 4?", TEN.to_vec(), 8, "math"),
        row(
            73,
            "Who wrote Hamlet?",
            vec!["Shakespeare", "Marlowe"],
            0,
            "history",
        ),
        row(74, "What is 7 - 7?", TEN.to_vec(), 0, "math"),
    ]
}

fn supergpqa_rows() -> Vec<Value> {
    let row = |uuid: &str, q: &str, options: Vec<&str>, letter: &str, d: &str, f: &str| {
        let text = options[(letter.as_bytes()[0] - b'A') as usize];
        json!({"uuid": uuid, "question": q, "options": options, "answer": text,
               "answer_letter": letter, "discipline": d, "field": f, "subfield": "general",
               "difficulty": "middle", "is_calculation": false})
    };
    vec![
        row(
            "u-1",
            "Speed of light?",
            vec!["3e8 m/s", "3e6 m/s", "1 m/s"],
            "A",
            "Science",
            "Physics",
        ),
        row(
            "u-2",
            "Derivative of x^2?",
            vec!["x", "2x", "x^2", "2"],
            "B",
            "Science",
            "Mathematics",
        ),
        row(
            "u-3",
            "Who wrote Faust?",
            vec!["Goethe", "Schiller"],
            "A",
            "Literature and Arts",
            "Language and Literature",
        ),
    ]
}

fn natural_reasoning_rows() -> Vec<Value> {
    let row = |q: &str, reference: Value| {
        json!({"question": q, "reference_answer": reference,
               "responses": [{"response_model": "Llama-3.3-70B-Instruct", "response": "..."}]})
    };
    vec![
        row("Why is the sky blue?", json!("Rayleigh scattering")),
        row("Prove there are infinitely many primes.", json!("")),
        row("What is entropy?", Value::Null),
        row("Integrate x dx.", json!("x^2/2 + C")),
    ]
}

fn wildchat_rows() -> Vec<Value> {
    let row = |hash: &str, first: &str, lang: &str, toxic: bool, redacted: bool| {
        json!({"conversation_hash": hash, "model": "gpt-4-0314", "timestamp": 1_680_000_000,
               "conversation": [
                   {"content": first, "role": "user", "language": lang, "turn_identifier": 1, "toxic": toxic},
                   {"content": "Sure!", "role": "assistant", "language": lang, "turn_identifier": 1, "toxic": false},
                   {"content": "Thanks, and more?", "role": "user", "language": lang, "turn_identifier": 2, "toxic": false}],
               "turn": 2, "language": lang, "toxic": toxic, "redacted": redacted})
    };
    vec![
        row("h-a", "Write a haiku about rain.", "English", false, false),
        row("h-b", "something hateful", "English", true, false),
        row("h-c", "Bonjour, peux-tu m'aider ?", "French", false, false),
        row("h-d", "My address is [REDACTED]", "English", false, true),
        row("h-e", "Erkläre Photosynthese.", "German", false, false),
    ]
}

// ---- helpers --------------------------------------------------------------------------------

fn config(toml_text: &str, path: &Path) -> DatasetConfig {
    let mut cfg: DatasetConfig = toml::from_str(toml_text).unwrap();
    cfg.path = Some(path.to_path_buf());
    cfg
}

fn load(cfg: &DatasetConfig) -> (Vec<Query>, DatasetInfo) {
    load_dataset(cfg, 1).unwrap_or_else(|e| panic!("{e}"))
}

fn ids(queries: &[Query]) -> Vec<&str> {
    queries.iter().map(|q| q.id.as_str()).collect()
}

fn file_sha(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn mmlu_pro_parquet_shards_through_a_glob() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(
        dir.path(),
        &mmlu_pro_schema(),
        &mmlu_pro_rows(),
        &[2, 1, 2],
        true,
    );
    let cfg = config(
        r#"recipe = "mmlu-pro""#,
        &dir.path().join("train-*.parquet"),
    );
    let (q, info) = load(&cfg);
    // Shard order, then row order within a shard; ids from `question_id`.
    assert_eq!(
        ids(&q),
        [
            "mmlu-pro/70",
            "mmlu-pro/71",
            "mmlu-pro/72",
            "mmlu-pro/73",
            "mmlu-pro/74"
        ]
    );
    assert_eq!(info.name, "mmlu-pro");
    assert_eq!((info.rows, info.selected), (5, 5));
    assert_eq!(q[0].choices, TEN);
    assert_eq!(q[0].answers, ["J"]);
    assert_eq!(q[1].answers, ["B"]);
    assert_eq!(q[1].choices, ["O2", "CO2", "N2"]);
    assert_eq!(q[0].subject.as_deref(), Some("math"));
    assert_eq!(q[3].subject.as_deref(), Some("history"));
    // The multiple-choice template letters all ten options, A to J.
    assert!(q[0].prompt.starts_with(
        "The following is a multiple choice question about math. Reply with the letter"
    ));
    assert!(
        q[0].prompt.contains("What is 3 + 6?\nA. 0\nB. 1\n"),
        "{}",
        q[0].prompt
    );
    assert!(
        q[0].prompt.ends_with("I. 8\nJ. 9\nAnswer:"),
        "{}",
        q[0].prompt
    );
    assert_eq!(cfg.grader_name().as_deref(), Some("choice"));
    // Three shards: each named with its own hash, and one hash over all of them.
    assert_eq!(info.shards.len(), 3);
    assert!(info.shards[0]
        .file
        .ends_with("train-00000-of-00003.parquet"));
    assert!(info.shards[2]
        .file
        .ends_with("train-00002-of-00003.parquet"));
    let shard1 = dir.path().join("train-00001-of-00003.parquet");
    assert_eq!(info.shards[1].sha256, file_sha(&shard1));
    assert_ne!(info.sha256, info.shards[0].sha256);

    // The directory names the same shards, in the same order.
    let by_dir = config(r#"recipe = "mmlu-pro""#, dir.path());
    let (q2, info2) = load(&by_dir);
    assert_eq!(ids(&q2), ids(&q));
    assert_eq!(info2.sha256, info.sha256);
}

#[test]
fn explicit_fields_template_and_grader_win_over_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test-00000-of-00001.parquet");
    write_parquet(&path, &mmlu_pro_schema(), &mmlu_pro_rows());
    let cfg = config(
        r#"recipe = "mmlu-pro"
           name = "pro"
           template_text = "{question} ({subject})"
           grader = "exact"
           fields = { subject = "src", answer = "answer_index" }"#,
        &path,
    );
    let (q, _) = load(&cfg);
    assert_eq!(q[0].id, "pro/70");
    assert_eq!(q[0].subject.as_deref(), Some("ori_mmlu-math"));
    assert_eq!(q[0].answers, ["9"]);
    assert_eq!(q[0].prompt, "What is 3 + 6? (ori mmlu-math)");
    assert_eq!(cfg.grader_name().as_deref(), Some("exact"));
    let none = config(
        r#"recipe = "mmlu-pro"
                          grader = "none""#,
        &path,
    );
    assert_eq!(none.grader_name(), None);
}

#[test]
fn supergpqa_answers_by_letter_with_field_and_discipline() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(
        dir.path(),
        &supergpqa_schema(),
        &supergpqa_rows(),
        &[1, 2],
        true,
    );
    let cfg = config(r#"recipe = "supergpqa""#, dir.path());
    let (q, info) = load(&cfg);
    assert_eq!(ids(&q), ["supergpqa/u-1", "supergpqa/u-2", "supergpqa/u-3"]);
    assert_eq!(info.shards.len(), 2);
    // The letter, not the option text the `answer` column holds.
    assert_eq!(q[1].answers, ["B"]);
    assert_eq!(q[1].choices, ["x", "2x", "x^2", "2"]);
    assert_eq!(q[1].subject.as_deref(), Some("Mathematics"));
    assert_eq!(q[1].category.as_deref(), Some("Science"));
    assert_eq!(q[2].category.as_deref(), Some("Literature and Arts"));
    assert!(q[1].prompt.contains("about Mathematics"));
    assert!(q[1]
        .prompt
        .contains("Derivative of x^2?\nA. x\nB. 2x\nC. x^2\nD. 2\nAnswer:"));
    assert_eq!(cfg.grader_name().as_deref(), Some("choice"));
    // The experiment's `categories` win over the discipline column.
    let mut mapped = cfg.clone();
    mapped.categories = [("Physics".to_string(), "STEM".to_string())].into();
    let (q, _) = load(&mapped);
    assert_eq!(q[0].category.as_deref(), Some("STEM"));
    assert_eq!(q[1].category.as_deref(), Some("Science"));
}

#[test]
fn natural_reasoning_ids_are_positions_and_unreferenced_rows_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(
        dir.path(),
        &natural_reasoning_schema(),
        &natural_reasoning_rows(),
        &[2, 2],
        true,
    );
    let cfg = config(r#"recipe = "natural-reasoning""#, dir.path());
    let (q, info) = load(&cfg);
    // Rows 1 ("") and 2 (null) have no reference; ids stay the rows' positions.
    assert_eq!(ids(&q), ["natural-reasoning/0", "natural-reasoning/3"]);
    assert_eq!(info.rows, 2);
    assert_eq!(q[0].prompt, "Why is the sky blue?");
    assert_eq!(q[0].answers, ["Rayleigh scattering"]);
    assert_eq!(q[1].answers, ["x^2/2 + C"]);
    assert!(q[0].choices.is_empty() && q[0].subject.is_none());
    assert_eq!(cfg.grader_name().as_deref(), Some("judge"));

    let mut all = cfg.clone();
    all.keep_all_rows = true;
    let (q, _) = load(&all);
    assert_eq!(
        ids(&q),
        [
            "natural-reasoning/0",
            "natural-reasoning/1",
            "natural-reasoning/2",
            "natural-reasoning/3"
        ]
    );
    assert!(q[1].answers.is_empty() && q[2].answers.is_empty());
}

#[test]
fn wildchat_first_user_turn_without_flagged_conversations() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(
        dir.path(),
        &wildchat_schema(),
        &wildchat_rows(),
        &[3, 2],
        true,
    );
    let cfg = config(r#"recipe = "wildchat""#, &dir.path().join("train-*"));
    let (q, info) = load(&cfg);
    // h-b is toxic, h-d redacted.
    assert_eq!(ids(&q), ["wildchat/h-a", "wildchat/h-c", "wildchat/h-e"]);
    assert_eq!(info.rows, 3);
    assert_eq!(q[0].prompt, "Write a haiku about rain.");
    assert_eq!(q[1].prompt, "Bonjour, peux-tu m'aider ?");
    assert_eq!(q[1].subject.as_deref(), Some("French"));
    assert!(q
        .iter()
        .all(|q| q.answers.is_empty() && q.choices.is_empty()));
    assert_eq!(cfg.grader_name(), None);

    let mut all = cfg.clone();
    all.keep_all_rows = true;
    let (q, _) = load(&all);
    assert_eq!(q.len(), 5);
    assert_eq!(q[3].prompt, "My address is [REDACTED]");
}

#[test]
fn jsonl_shards_in_the_same_schemas_give_the_same_queries() {
    for (recipe, schema, rows, sizes) in [
        ("mmlu-pro", mmlu_pro_schema(), mmlu_pro_rows(), vec![3, 2]),
        (
            "supergpqa",
            supergpqa_schema(),
            supergpqa_rows(),
            vec![2, 1],
        ),
        (
            "natural-reasoning",
            natural_reasoning_schema(),
            natural_reasoning_rows(),
            vec![1, 3],
        ),
        ("wildchat", wildchat_schema(), wildchat_rows(), vec![4, 1]),
    ] {
        let pq = tempfile::tempdir().unwrap();
        let js = tempfile::tempdir().unwrap();
        write_shards(pq.path(), &schema, &rows, &sizes, true);
        write_shards(js.path(), &schema, &rows, &sizes, false);
        let entry = format!("recipe = \"{recipe}\"");
        let (from_parquet, _) = load(&config(&entry, pq.path()));
        let (from_jsonl, info) = load(&config(&entry, &js.path().join("train-*.jsonl")));
        assert!(!from_jsonl.is_empty(), "{recipe}");
        assert_eq!(from_jsonl, from_parquet, "{recipe}");
        assert_eq!(info.shards.len(), 2, "{recipe}");
    }
}

#[test]
fn the_hash_covers_every_shard_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rows = mmlu_pro_rows();
    write_shards(dir.path(), &mmlu_pro_schema(), &rows, &[2, 3], true);
    let cfg = config(r#"recipe = "mmlu-pro""#, dir.path());
    let (_, before) = load(&cfg);
    assert_eq!(before.shards.len(), 2);
    // Change only the second shard: the dataset hash and that shard's hash change.
    let mut changed = rows[2..].to_vec();
    changed[0]["question"] = json!("What is 2 * 5?");
    write_parquet(
        &dir.path().join("train-00001-of-00002.parquet"),
        &mmlu_pro_schema(),
        &changed,
    );
    let (_, after) = load(&cfg);
    assert_ne!(after.sha256, before.sha256);
    assert_eq!(after.shards[0], before.shards[0]);
    assert_ne!(after.shards[1].sha256, before.shards[1].sha256);
    // Changing the first shard changes it too.
    write_parquet(
        &dir.path().join("train-00000-of-00002.parquet"),
        &mmlu_pro_schema(),
        &rows[..1],
    );
    let (_, third) = load(&cfg);
    assert_ne!(third.sha256, after.sha256);
    // Swapping the shards' contents (same bytes, other order) changes the hash.
    let a = dir.path().join("train-00000-of-00002.parquet");
    let b = dir.path().join("train-00001-of-00002.parquet");
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &bb).unwrap();
    std::fs::write(&b, &ba).unwrap();
    let (_, swapped) = load(&cfg);
    assert_ne!(swapped.sha256, third.sha256);
    // One file: the hash of its bytes, no shard list.
    let (_, one) = load(&config(r#"recipe = "mmlu-pro""#, &a));
    assert_eq!(one.sha256, file_sha(&a));
    assert!(one.shards.is_empty());
}

#[test]
fn a_recipe_refuses_csv_and_keep_all_rows_needs_a_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pro.csv");
    std::fs::write(&csv, "question_id,question,answer\n1,q,A\n").unwrap();
    let err = load_dataset(&config(r#"recipe = "mmlu-pro""#, &csv), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recipe `mmlu-pro` reads Parquet or JSONL, not CSV"),
        "{err}"
    );

    let exp = dir.path().join("exp.toml");
    let text = format!(
        "name = \"x\"\n[[models]]\nname = \"m\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         [[datasets]]\npath = {:?}\nkeep_all_rows = true\n",
        csv.display().to_string()
    );
    let err = crate::config::parse_experiment(&exp, text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exp.toml:6:1: datasets[0].keep_all_rows: only a `recipe`"),
        "{err}"
    );
}

#[test]
fn a_wrong_typed_column_is_named_with_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = mmlu_pro_schema();
    schema[2] = utf8("options");
    let mut rows = mmlu_pro_rows();
    for r in &mut rows {
        r["options"] = json!("A, B, C");
    }
    write_parquet(
        &dir.path().join("train-00000-of-00002.parquet"),
        &mmlu_pro_schema(),
        &mmlu_pro_rows()[..2],
    );
    write_parquet(
        &dir.path().join("train-00001-of-00002.parquet"),
        &schema,
        &rows[2..],
    );
    let err = load_dataset(&config(r#"recipe = "mmlu-pro""#, dir.path()), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train-00001-of-00002.parquet: row 1:"),
        "{err}"
    );
    assert!(
        err.contains("`options` (fields.choices) is text, not a list"),
        "{err}"
    );

    // An item of the wrong type inside a list, in JSONL: line and item.
    let jsonl = dir.path().join("bad.jsonl");
    let mut rows = mmlu_pro_rows();
    rows[1]["options"] = json!(["O2", {"x": 1}, "N2"]);
    write_jsonl(&jsonl, &rows);
    let err = load_dataset(&config(r#"recipe = "mmlu-pro""#, &jsonl), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    assert!(
        err.contains("`options` (fields.choices) item 2 is an object"),
        "{err}"
    );

    // A flag that is not true/false, and a mapped column of a type ipw does not read.
    let wc = dir.path().join("wc.parquet");
    let mut schema = wildchat_schema();
    schema[7] = utf8("toxic");
    let mut rows = wildchat_rows();
    for r in &mut rows {
        r["toxic"] = json!("no");
    }
    write_parquet(&wc, &schema, &rows);
    let err = load_dataset(&config(r#"recipe = "wildchat""#, &wc), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wc.parquet: row 1: `toxic` is text, expected true/false"),
        "{err}"
    );
    write_parquet(&wc, &wildchat_schema(), &wildchat_rows());
    let err = load_dataset(
        &config(
            r#"recipe = "wildchat"
               fields = { subject = "timestamp" }"#,
            &wc,
        ),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("wc.parquet: row 1: column `timestamp` has type Timestamp"),
        "{err}"
    );
}
