//! Expansion of `~`, `${VAR}` and `${VAR:-default}` in path fields, so one experiment file works
//! on machines that keep models in different places.

/// Expand a path string; the error names the variable that is unset. `$VAR` and `${VAR}`
/// take the variable (an empty one counts as unset), `${VAR:-default}` the default where it is
/// unset, and a leading `~` is `$HOME` (shell rules, by the `shellexpand` crate).
pub(super) fn expand_path(raw: &str) -> Result<String, String> {
    let mut home_missing = false;
    let home = || {
        let home = std::env::var("HOME").ok();
        home_missing = home.is_none();
        home
    };
    let var = |name: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(()),
    };
    let out = shellexpand::full_with_context(raw, home, var)
        .map_err(|e| format!("environment variable `{}` is not set", e.var_name))?;
    if home_missing && out.starts_with('~') {
        return Err("`~` used but HOME is not set".into());
    }
    Ok(out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_defaults_and_home() {
        std::env::set_var("IPW_TEST_EXPAND_X", "/models");
        assert_eq!(
            expand_path("${IPW_TEST_EXPAND_X}/a.gguf").unwrap(),
            "/models/a.gguf"
        );
        assert_eq!(
            expand_path("${IPW_TEST_EXPAND_UNSET:-/d}/a").unwrap(),
            "/d/a"
        );
        assert!(expand_path("${IPW_TEST_EXPAND_UNSET}/a")
            .unwrap_err()
            .contains("IPW_TEST_EXPAND_UNSET"));
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_path("~/m").unwrap(), format!("{home}/m"));
    }
}
