//! Values that must never reach a file ipw writes: a managed server's environment and the
//! values of its secret-looking flags are kept in the experiment as written, and serialised
//! (into manifests, plans and exports) as `***`.

use std::collections::BTreeMap;

/// Whether a flag's name says it carries a secret (`--api-key`, `--hf-token`, `--password`).
fn secret_flag(arg: &str) -> bool {
    let a = arg.to_ascii_lowercase();
    a.starts_with('-')
        && ["key", "token", "secret", "password", "auth"]
            .iter()
            .any(|w| a.contains(w))
}

/// `args` with the value after a secret flag, and the value of `--secret-flag=value`, as `***`.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("***".into());
            hide_next = false;
        } else if let Some((flag, _)) = a.split_once('=').filter(|(f, _)| secret_flag(f)) {
            out.push(format!("{flag}=***"));
        } else {
            hide_next = secret_flag(a);
            out.push(a.clone());
        }
    }
    out
}

/// Serialise arguments with secrets hidden.
pub(super) fn args<S: serde::Serializer>(args: &[String], s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&redact_args(args), s)
}

/// Serialise an environment by names only.
pub(super) fn env<S: serde::Serializer>(
    env: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let hidden: BTreeMap<&String, &str> = env.keys().map(|k| (k, "***")).collect();
    serde::Serialize::serialize(&hidden, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_a_command_line_are_hidden() {
        let args: Vec<String> = ["--api-key", "sk-123", "--hf-token=hf_abc", "--port", "9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            redact_args(&args).join(" "),
            "--api-key *** --hf-token=*** --port 9"
        );
    }
}
