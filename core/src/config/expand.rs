//! Expansion of `~`, `${VAR}` and `${VAR:-default}` in path fields, so one experiment file works
//! on machines that keep models in different places.

/// Expand a path string; the error names the variable that is unset.
pub(super) fn expand_path(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{raw}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out == "~" || out.starts_with("~/") {
        let home = std::env::var("HOME").map_err(|_| "`~` used but HOME is not set".to_string())?;
        out = format!("{home}{}", &out[1..]);
    }
    Ok(out)
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
