//! `ipw init` writes a starter experiment that validates as written and never overwrites a
//! file; `ipw completions` prints a completion script that knows the subcommands.

use crate::support::*;

#[test]
fn init_writes_a_starter_that_validates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_ipw(&["init", "my-exp.toml"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let written = std::fs::read_to_string(dir.path().join("my-exp.toml")).unwrap();
    assert!(written.contains("name = \"my-exp\""), "{written}");
    let o = ipw()
        .args(["validate", "my-exp.toml"])
        .current_dir(dir.path())
        .env("IPW_TEST_MODEL", model_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "the starter validates: {}", text(&o));
    std::fs::write(dir.path().join("keep.toml"), "mine").unwrap();
    let o = run_ipw(&["init", "keep.toml"], dir.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("exists already"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.toml")).unwrap(),
        "mine"
    );
}

#[test]
fn completions_know_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = run_ipw(&["completions", shell], dir.path());
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for sub in ["profile", "route", "import", "coverage", "attribute"] {
            assert!(script.contains(sub), "{shell}: no `{sub}`");
        }
    }
    let o = run_ipw(&["completions", "tcsh"], dir.path());
    assert!(!o.status.success());
}

/// `ipw schema` describes the experiment file as ipw reads it: every shipped example and the
/// `ipw init` starter validate against it with a real JSON Schema validator (Python's
/// `jsonschema`, draft 2020-12), and a misspelt key or a wrongly typed value does not.
#[test]
fn the_schema_accepts_every_example_and_refuses_what_ipw_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_ipw(&["schema"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let schema = dir.path().join("ipw.schema.json");
    std::fs::write(&schema, &o.stdout).unwrap();
    let o = run_ipw(&["init", "starter.toml"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(
        dir.path().join("typo.toml"),
        "name = \"x\"\n[run]\nconcurency = 2\n[[models]]\nname = \"m\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wrong-type.toml"),
        "name = \"x\"\n[generation]\nmax_tokens = \"many\"\n[[models]]\nname = \"m\"\n[[datasets]]\nbuiltin = \"gsm8k\"\n",
    )
    .unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut good: Vec<std::path::PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    good.sort();
    assert!(good.len() >= 4, "{good:?}");
    good.push(dir.path().join("starter.toml"));
    // Each file: its path, then `ok` or the validator's first error.
    let script = r#"
import json, sys, tomllib
from jsonschema import Draft202012Validator
v = Draft202012Validator(json.load(open(sys.argv[1])))
for f in sys.argv[2:]:
    errors = sorted(v.iter_errors(tomllib.load(open(f, "rb"))), key=lambda e: list(e.path))
    print(f, "ok" if not errors else errors[0].message)
"#;
    let mut args = vec![
        "-c".to_string(),
        script.into(),
        schema.display().to_string(),
    ];
    args.extend(good.iter().map(|p| p.display().to_string()));
    for bad in ["typo.toml", "wrong-type.toml"] {
        args.push(dir.path().join(bad).display().to_string());
    }
    let o = std::process::Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "python3 jsonschema: {}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let verdict = |file: &std::path::Path| {
        let f = file.display().to_string();
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{f} ")))
            .unwrap_or_else(|| panic!("no verdict for {f}: {out}"))
            .to_string()
    };
    for f in &good {
        assert_eq!(verdict(f), "ok", "{}", f.display());
    }
    let typo = verdict(&dir.path().join("typo.toml"));
    assert!(typo.contains("concurency"), "{typo}");
    let wrong = verdict(&dir.path().join("wrong-type.toml"));
    assert!(wrong.contains("many"), "{wrong}");
}
