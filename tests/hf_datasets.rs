//! Hugging Face datasets through the `ipw` binary: Parquet shards in the MMLU-Pro and WildChat
//! schemas, named by a glob and a directory, validated and profiled on the real embedded model;
//! a bad recipe name refused with the file and line.

use crate::support::hf::{
    mmlu_pro_schema, natural_reasoning_schema, wildchat_schema, write_parquet,
};
use crate::support::*;
use serde_json::json;
use std::path::Path;

/// MMLU-Pro's `test` split as two shards (3 rows) in `data`.
fn mmlu_pro_shards(data: &Path) {
    let schema = mmlu_pro_schema();
    let row = |id: i64, q: &str, options: Vec<&str>, letter: &str, cat: &str| {
        json!({"question_id": id, "question": q, "options": options, "answer": letter,
               "answer_index": (letter.as_bytes()[0] - b'A'), "cot_content": "",
               "category": cat, "src": "ori_mmlu"})
    };
    std::fs::create_dir_all(data).unwrap();
    write_parquet(
        &data.join("test-00000-of-00002.parquet"),
        &schema,
        &[row(
            11,
            "What is 2 + 2?",
            vec!["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
            "D",
            "math",
        )],
    );
    write_parquet(
        &data.join("test-00001-of-00002.parquet"),
        &schema,
        &[
            row(
                12,
                "Water boils at sea level at?",
                vec!["50 C", "100 C"],
                "B",
                "physics",
            ),
            row(
                13,
                "The capital of Italy?",
                vec!["Rome", "Oslo", "Lima"],
                "A",
                "history",
            ),
        ],
    );
}

/// WildChat as two shards in `data`, the first conversation flagged toxic.
fn wildchat_shards(data: &Path) {
    let schema = wildchat_schema();
    let row = |hash: &str, prompt: &str, toxic: bool| {
        json!({"conversation_hash": hash, "model": "gpt-3.5-turbo",
               "conversation": [
                   {"content": prompt, "role": "user", "language": "English", "turn_identifier": 7},
                   {"content": "Hello!", "role": "assistant", "language": "English", "turn_identifier": 7}],
               "turn": 1, "language": "English", "toxic": toxic, "redacted": false})
    };
    std::fs::create_dir_all(data).unwrap();
    write_parquet(
        &data.join("train-00000-of-00002.parquet"),
        &schema,
        &[row("wc-toxic", "say something awful", true)],
    );
    write_parquet(
        &data.join("train-00001-of-00002.parquet"),
        &schema,
        &[row("wc-ok", "Say hello in French.", false)],
    );
}

fn experiment(model: &Path, recipe: &str) -> String {
    format!(
        r#"name = "hf"
[run]
warmup_queries = 0
[energy]
baseline_s = 0
[generation]
max_tokens = 6
[[models]]
name = "smollm2"
path = {model}
threads = 2
context = 1024
[[datasets]]
recipe = "{recipe}"
path = "data/test-*.parquet"
max_queries = 1
[[datasets]]
recipe = "wildchat"
path = "wildchat"
"#,
        model = q(model)
    )
}

#[test]
fn validate_refuses_an_unknown_recipe_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    mmlu_pro_shards(&dir.path().join("data"));
    wildchat_shards(&dir.path().join("wildchat"));
    let exp = write_experiment(
        dir.path(),
        "bad.toml",
        &experiment(&model_path(), "mmlu-prox"),
    );
    let o = run_ipw(&["validate", exp.to_str().unwrap()], dir.path());
    assert!(!o.status.success());
    let msg = text(&o);
    // Line 14 is `recipe = "mmlu-prox"`, column 10 its value.
    assert!(msg.contains("bad.toml:14:10: datasets[0].recipe"), "{msg}");
    assert!(msg.contains("datasets[0].recipe"), "{msg}");
    assert!(msg.contains("unknown variant `mmlu-prox`"), "{msg}");
    assert!(msg.contains("`mmlu-pro`"), "lists the recipes: {msg}");

    // A glob that matches nothing is named too.
    let body = experiment(&model_path(), "mmlu-pro").replace("test-*", "dev-*");
    let exp = write_experiment(dir.path(), "nomatch.toml", &body);
    let o = run_ipw(&["validate", exp.to_str().unwrap()], dir.path());
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(msg.contains("nomatch.toml:13:1: datasets[0].path"), "{msg}");
    assert!(msg.contains("datasets[0].path: no file matches"), "{msg}");
    assert!(msg.contains("dev-*.parquet"), "{msg}");
}

#[test]
fn profile_mmlu_pro_and_wildchat_shards_on_the_embedded_model() {
    let dir = tempfile::tempdir().unwrap();
    mmlu_pro_shards(&dir.path().join("data"));
    wildchat_shards(&dir.path().join("wildchat"));
    let body = experiment(&model_path(), "mmlu-pro");
    let exp = write_experiment(dir.path(), "hf.toml", &body);
    let o = run_ipw(&["validate", exp.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let (o, out) = profile(dir.path(), "hf", &body);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("smollm2");
    let recs = records(&run);
    // One MMLU-Pro query (max_queries) and the one WildChat conversation not flagged toxic.
    let ids: Vec<&str> = recs
        .iter()
        .map(|r| r["query_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mmlu-pro/11", "wildchat/wc-ok"]);
    let (pro, chat) = (&recs[0], &recs[1]);
    assert!(
        pro["error"].is_null() && chat["error"].is_null(),
        "{pro}\n{chat}"
    );
    assert_eq!(pro["subject"], "math");
    assert_eq!(pro["answers"], json!(["D"]));
    assert_eq!(pro["choices"].as_array().unwrap().len(), 10);
    let prompt = pro["prompt"].as_str().unwrap();
    assert!(prompt.contains("What is 2 + 2?\nA. 1\n"), "{prompt}");
    assert!(prompt.contains("\nJ. 10\nAnswer:"), "{prompt}");
    // The recipe's grader scored it; WildChat has nothing to grade against.
    assert!(
        pro["grade"]["grader"].as_str().unwrap().contains("choice"),
        "{pro}"
    );
    assert!(chat["grade"].is_null(), "{chat}");
    assert_eq!(chat["prompt"], "Say hello in French.");
    assert_eq!(chat["subject"], "English");
    assert_eq!(chat["answers"], json!([]));
    for r in &recs {
        let n = r["output_tokens"].as_u64().unwrap();
        assert!(n > 0 && n <= 6, "{r}");
    }

    // The manifest names both shards of each dataset and one hash over them.
    let manifest = json(&run.join("manifest.json"));
    let datasets = manifest["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 2);
    for d in datasets {
        let shards = d["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2, "{d}");
        assert_eq!(d["sha256"].as_str().unwrap().len(), 64);
        assert_ne!(d["sha256"], shards[0]["sha256"]);
    }
    assert!(datasets[0]["shards"][1]["file"]
        .as_str()
        .unwrap()
        .ends_with("test-00001-of-00002.parquet"));
    assert_eq!(datasets[0]["rows"], 3);
    assert_eq!(datasets[1]["rows"], 1);
}

#[test]
fn the_example_validates_on_files_in_the_hub_layout() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hf-datasets.toml");
    let exp = dir.path().join("hf-datasets.toml");
    std::fs::copy(&example, &exp).unwrap();
    let hf = dir.path().join("hf");
    mmlu_pro_shards(&hf.join("MMLU-Pro/data"));
    // The validation split sits beside the test split; the example's glob must leave it out.
    std::fs::copy(
        hf.join("MMLU-Pro/data/test-00000-of-00002.parquet"),
        hf.join("MMLU-Pro/data/validation-00000-of-00001.parquet"),
    )
    .unwrap();
    wildchat_shards(&hf.join("WildChat-1M/data"));
    let supergpqa = [
        json!({"uuid": "s1", "question": "Unit of force?", "options": ["newton", "joule"],
               "answer": "newton", "answer_letter": "A", "discipline": "Science",
               "field": "Physics", "subfield": "Mechanics", "difficulty": "easy",
               "is_calculation": false}),
        json!({"uuid": "s2", "question": "3 * 3?", "options": ["6", "9", "12"], "answer": "9",
               "answer_letter": "B", "discipline": "Science", "field": "Mathematics",
               "subfield": "Arithmetic", "difficulty": "easy", "is_calculation": true}),
    ];
    std::fs::create_dir_all(hf.join("SuperGPQA")).unwrap();
    let lines: String = supergpqa.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(hf.join("SuperGPQA/SuperGPQA-all.jsonl"), lines).unwrap();
    let nr_schema = natural_reasoning_schema();
    let nr = |q: &str, reference: Option<&str>| {
        json!({"question": q, "reference_answer": reference,
               "responses": [{"response_model": "Llama-3.3-70B-Instruct", "response": "..."}]})
    };
    let nr_dir = hf.join("natural_reasoning/data");
    std::fs::create_dir_all(&nr_dir).unwrap();
    write_parquet(
        &nr_dir.join("train-00000-of-00002.parquet"),
        &nr_schema,
        &[nr(
            "Why do ice cubes float?",
            Some("Ice is less dense than water"),
        )],
    );
    write_parquet(
        &nr_dir.join("train-00001-of-00002.parquet"),
        &nr_schema,
        &[nr("Is P equal to NP?", None)],
    );

    let o = run_ipw(&["validate", exp.to_str().unwrap()], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for line in [
        "mmlu-pro: 3 of 3 rows (",
        "test-*.parquet, 2 shards)",
        "supergpqa: 2 of 2 rows (",
        "SuperGPQA-all.jsonl)",
        "natural-reasoning: 1 of 1 rows (",
        "natural_reasoning/data, 2 shards)",
        "wildchat: 1 of 1 rows (",
        "train-*.parquet, 2 shards)",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    for (dataset, grader) in [
        ("mmlu-pro", "choice"),
        ("supergpqa", "choice"),
        ("natural-reasoning", "judge"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("grader      {dataset}: ")) && l.contains(grader)),
            "{dataset} graded by {grader}: {out}"
        );
    }
    assert!(!out.contains("grader      wildchat"), "{out}");
}
