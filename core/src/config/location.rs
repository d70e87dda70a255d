//! Config errors that point at a place: `file:line:column: in <field>: message`.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// An experiment file that cannot be used, with the place and the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read experiment file: {source}", file.display())]
    Read {
        /// The experiment file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is malformed or a value is invalid.
    #[error("{}:{line}:{column}: {field}: {message}", file.display())]
    Invalid {
        /// The experiment file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted path of the offending field, e.g. `models[1].path`.
        field: String,
        /// What is wrong and, where possible, how to fix it.
        message: String,
    },
}

impl ConfigError {
    /// An error at byte range `span` of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source, span.start);
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted field path at byte `offset`: the enclosing `[table]` / `[[array]]` header (with
/// the element index for arrays of tables) and the key on that line, e.g. `models[1].pathh`.
pub(super) fn field_path_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let mut table = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut line_start = 0;
    let mut key = None;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim();
        let is_current = offset >= line_start && offset < line_start + line.len().max(1);
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|t| t.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = array_counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
            table = name.trim().to_string();
        } else if is_current {
            key = trimmed
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string());
        }
        if is_current {
            break;
        }
        line_start += line.len();
    }
    match (table.is_empty(), key) {
        (true, Some(k)) => k,
        (true, None) => "(top level)".into(),
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_column_and_field() {
        let src = "name = \"x\"\n[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\npathh = 1\n";
        let off = src.find("pathh").unwrap();
        assert_eq!(line_column(src, off), (6, 1));
        assert_eq!(field_path_at(src, off), "models[1].pathh");
        assert_eq!(field_path_at(src, 0), "name");
    }
}
