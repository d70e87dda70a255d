//! Bad input gets a message naming the place: file, line, column and field for the experiment;
//! file and line for datasets.

use crate::support::*;

fn validate(dir: &std::path::Path, name: &str, body: &str) -> String {
    let exp = write_experiment(dir, name, body);
    let o = run_ipw(&["validate", exp.to_str().unwrap()], dir);
    assert!(!o.status.success(), "{name} should be rejected");
    text(&o)
}

fn good_model() -> String {
    format!("[[models]]\nname = \"m\"\npath = {}\n", q(&model_path()))
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let msg = validate(
        dir.path(),
        "broken.toml",
        "name = \"x\"\n[run]\nconcurrency = = 2\n",
    );
    assert!(msg.contains("broken.toml:3:"), "{msg}");
    assert!(msg.contains("run.concurrency"), "{msg}");
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name = \"x\"\n[run]\nconcurency = 2\n{}[[datasets]]\nbuiltin = \"gsm8k\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "typo.toml", &body);
    assert!(
        msg.contains("typo.toml:3:1: run.concurency: unknown field `concurency`"),
        "{msg}"
    );
    assert!(msg.contains("concurrency"), "lists the valid fields: {msg}");

    let body = format!(
        "name = \"x\"\n{}pathh = \"a\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "typo2.toml", &body);
    assert!(
        msg.contains("typo2.toml:5:1: models[0].pathh: unknown field `pathh`"),
        "{msg}"
    );
}

#[test]
fn missing_dataset_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name = \"x\"\n{}[[datasets]]\npath = \"nope.jsonl\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "nodata.toml", &body);
    assert!(msg.contains("nodata.toml:5:"), "{msg}");
    assert!(
        msg.contains("datasets[0].path: dataset file not found"),
        "{msg}"
    );
    assert!(msg.contains("nope.jsonl"), "{msg}");
}

#[test]
fn bad_csv_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qa.csv"),
        "question,answer\nWhat is 2+3?,5\nbroken row with no comma\n",
    )
    .unwrap();
    let body = format!(
        "name = \"x\"\n{}[[datasets]]\npath = \"qa.csv\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "csv.toml", &body);
    assert!(
        msg.contains("qa.csv:3: expected 2 fields, found 1"),
        "{msg}"
    );

    std::fs::write(
        dir.path().join("qa.jsonl"),
        "{\"question\":\"a\",\"answer\":\"b\"}\n{\"question\": oops}\n",
    )
    .unwrap();
    let body = format!(
        "name = \"x\"\n{}[[datasets]]\npath = \"qa.jsonl\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "jsonl.toml", &body);
    assert!(msg.contains("qa.jsonl:2: invalid JSON object"), "{msg}");
}

#[test]
fn missing_model_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let body = "name = \"x\"\n[[models]]\nname = \"m\"\npath = \"/no/such/model.gguf\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n";
    let msg = validate(dir.path(), "nomodel.toml", body);
    assert!(
        msg.contains("nomodel.toml:2:1: models[0].path: model file not found: /no/such/model.gguf"),
        "{msg}"
    );
}

#[test]
fn backend_fields_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let body = "name = \"x\"\n[[models]]\nname = \"m\"\nbackend = \"openai\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n";
    let msg = validate(dir.path(), "nourl.toml", body);
    assert!(
        msg.contains("models[0].base_url: backend `openai` needs `base_url`"),
        "{msg}"
    );
    let body = "name = \"x\"\n[run]\nquery_timeout_s = -5\n[[models]]\nname = \"m\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n";
    let msg = validate(dir.path(), "deadline.toml", body);
    assert!(
        msg.contains("deadline.toml:3:")
            && msg.contains("run.query_timeout_s: must be more than 0"),
        "{msg}"
    );
    for (field, value) in [
        ("connect_timeout_s", "-1"),
        ("read_timeout_s", "0"),
        ("retry_backoff_s", "-0.5"),
        ("read_timeout_s", "inf"),
    ] {
        let body = format!(
            "name = \"x\"\n[[models]]\nname = \"m\"\nbackend = \"openai\"\n\
             base_url = \"http://127.0.0.1:1/v1\"\n{field} = {value}\n\
             [[datasets]]\nbuiltin = \"gsm8k\"\n"
        );
        let msg = validate(dir.path(), "timeout.toml", &body);
        assert!(
            msg.contains(&format!("models[0].{field}: must be")) && msg.contains("86400"),
            "{field} = {value}: {msg}"
        );
    }
    let body = "name = \"x\"\n[[models]]\nname = \"m\"\nbackend = \"vllm\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n";
    let msg = validate(dir.path(), "badkind.toml", body);
    assert!(
        msg.contains("badkind.toml:4:") && msg.contains("models[0].backend"),
        "{msg}"
    );
}

#[test]
fn valid_experiments_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for ex in [
        "examples/quickstart.toml",
        "examples/annotated.toml",
        "examples/server.toml",
    ] {
        let o = run_ipw(&["validate", root.join(ex).to_str().unwrap()], root);
        assert!(o.status.success(), "{ex}: {}", text(&o));
    }
    let o = run_ipw(
        &[
            "validate",
            root.join("examples/annotated.toml").to_str().unwrap(),
        ],
        root,
    );
    assert!(text(&o).contains("capitals: 4 of 4 rows"), "{}", text(&o));
    let o = run_ipw(&["list"], root);
    assert!(o.status.success());
    for needle in [
        "embedded",
        "openai",
        "ollama",
        "gsm8k",
        "mmlu",
        "plugin search path",
    ] {
        assert!(
            text(&o).contains(needle),
            "list shows {needle}: {}",
            text(&o)
        );
    }
}

#[test]
fn bad_grader_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name = \"x\"\n{}[[datasets]]\nbuiltin = \"gsm8k\"\ngrader = \"mine.wasm\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "nograder.toml", &body);
    assert!(msg.contains("nograder.toml:5:"), "{msg}");
    assert!(
        msg.contains("datasets[0].grader: not a built-in grader"),
        "{msg}"
    );
    assert!(msg.contains("mine.wasm"), "{msg}");

    let body = format!(
        "name = \"x\"\n{}[[datasets]]\nbuiltin = \"gsm8k\"\ngrader_params = 3\n",
        good_model()
    );
    let msg = validate(dir.path(), "params.toml", &body);
    assert!(
        msg.contains("datasets[0].grader_params: must be a table"),
        "{msg}"
    );

    // The judge model is checked like any model, and named as `grading.judge`.
    let body = format!(
        "name = \"x\"\n{}[grading.judge]\nname = \"j\"\nbackend = \"openai\"\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\ngrader = \"judge\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "judge.toml", &body);
    assert!(msg.contains("judge.toml:5:"), "{msg}");
    assert!(msg.contains("grading.judge.base_url"), "{msg}");
}

#[test]
fn a_grader_that_is_not_a_component_is_named_before_any_query() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm not really").unwrap();
    let body = format!(
        "name = \"x\"\n{}[[datasets]]\nbuiltin = \"gsm8k\"\ngrader = \"broken.wasm\"\n",
        good_model()
    );
    let msg = validate(dir.path(), "broken-grader.toml", &body);
    assert!(msg.contains("broken-grader.toml: loading graders"), "{msg}");
    assert!(
        msg.contains("grader `broken.wasm`: not a valid component"),
        "{msg}"
    );
}
