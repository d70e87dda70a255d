//! `ipw init` writes a starter experiment that validates as written and never overwrites a
//! file; `ipw completions` prints a completion script that knows the subcommands.

mod support;

use support::*;

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
