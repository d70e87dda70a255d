//! `ipw grade --judge-config FILE`: a `[grading]` table read from a file of its own, for
//! grading a saved run whose manifest names no judge (or a judge that is no longer there). The
//! file's other top-level tables are ignored, so an experiment file works as well.

use super::load::check_model;
use super::location::ConfigError;
use super::GradingConfig;
use std::path::Path;

/// Only `[grading]` is read; anything beside it (an experiment's models, datasets) is not.
#[derive(serde::Deserialize)]
struct GradingFile {
    #[serde(default)]
    grading: Option<GradingConfig>,
}

/// Read `[grading]` from `file`; it must name a judge (`[grading.judge]`), which is checked as
/// an experiment's is (backend fields, a GGUF path resolved against the file's directory).
pub fn load_grading_file(file: &Path) -> Result<GradingConfig, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let parsed: GradingFile = toml::from_str(&source).map_err(|e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        let field = super::location::field_path_at(&source, span.start);
        ConfigError::at(file, &source, span, &field, e.message().trim().to_string())
    })?;
    let span = |table: &str| {
        let header = format!("[{table}]");
        source
            .find(&header)
            .map(|i| i..i + header.len())
            .unwrap_or(0..0)
    };
    let mut grading = parsed.grading.unwrap_or_default();
    let Some(judge) = &grading.judge else {
        return Err(ConfigError::at(
            file,
            &source,
            0..0,
            "grading.judge",
            "no [grading.judge] table: name the judge model there (same fields as [[models]])",
        ));
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let at = |field: &str, msg: String| {
        ConfigError::at(
            file,
            &source,
            span("grading.judge"),
            &format!("grading.judge.{field}"),
            msg,
        )
    };
    grading.judge = Some(check_model(judge, base, &at)?);
    Ok(grading)
}

impl GradingConfig {
    /// Every field set in `over` replaces this one's (a `--judge-config` file over a run's own
    /// `[grading]`).
    pub fn overlay(&mut self, over: GradingConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            fuel,
            timeout_ms,
            memory_mib,
            judge_timeout_ms,
            judge_max_calls,
            judge_max_prompt_bytes,
            judge_concurrency,
            judge
        );
    }
}
