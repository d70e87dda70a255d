//! Which files a dataset `path` names: one file, every dataset file in a directory, or the files
//! a glob in the file name matches (`data/train-*.parquet`), always in file-name order so the
//! concatenated rows and the dataset hash do not depend on the file system's listing order.
//!
//! Hugging Face names shards `<split>-00000-of-00003.parquet`. A directory that holds more than
//! one split (`test-...` and `validation-...`) is refused: concatenating splits is never what a
//! benchmark wants, and a glob says which one. A glob or directory missing shards of a numbered
//! set (an interrupted download) is logged as a warning.

use crate::config::DatasetFormat;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The format of one shard: the configured one, else from its extension (JSONL by default).
pub fn format_of(path: &Path, configured: Option<DatasetFormat>) -> DatasetFormat {
    configured.unwrap_or_else(|| match extension(path).as_deref() {
        Some("csv") => DatasetFormat::Csv,
        Some("parquet") => DatasetFormat::Parquet,
        _ => DatasetFormat::Jsonl,
    })
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Extensions a directory listing takes as dataset shards.
const SHARD_EXTENSIONS: [&str; 5] = ["parquet", "jsonl", "ndjson", "json", "csv"];

/// The files `path` names, sorted by file name; an error (a sentence naming the path) when it
/// names none, mixes formats or mixes splits.
pub fn resolve(path: &Path, format: Option<DatasetFormat>) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = if path.is_dir() {
        let files = list(path, |f| {
            extension(Path::new(f)).is_some_and(|e| SHARD_EXTENSIONS.contains(&e.as_str()))
        })?;
        if files.is_empty() {
            return Err(format!(
                "no dataset files ({}) in directory {}",
                SHARD_EXTENSIONS.map(|e| format!(".{e}")).join(", "),
                path.display()
            ));
        }
        let splits: BTreeSet<String> = files.iter().filter_map(|f| split_of(f)).collect();
        if splits.len() > 1 {
            let list: Vec<&str> = splits.iter().map(String::as_str).collect();
            return Err(format!(
                "directory {} holds the splits {}; point `path` at one, e.g. `{}/{}-*.{}`",
                path.display(),
                list.join(", "),
                path.display(),
                list[0],
                extension(&files[0]).unwrap_or_default()
            ));
        }
        files
    } else if is_glob(&path.to_string_lossy()) {
        let dir = path.parent().unwrap_or(Path::new("."));
        if is_glob(&dir.to_string_lossy()) {
            return Err(format!(
                "{}: wildcards are allowed in the file name only",
                path.display()
            ));
        }
        if !dir.is_dir() {
            return Err(format!("directory not found: {}", dir.display()));
        }
        let pattern = glob::Pattern::new(&name)
            .map_err(|e| format!("{}: not a valid wildcard: {e}", path.display()))?;
        let files = list(dir, |f| pattern.matches_with(f, MATCH))?;
        if files.is_empty() {
            return Err(format!("no file matches {}", path.display()));
        }
        files
    } else {
        return Err(format!("dataset file not found: {}", path.display()));
    };
    let formats: BTreeSet<String> = files
        .iter()
        .map(|f| format!("{:?}", format_of(f, format)).to_lowercase())
        .collect();
    if formats.len() > 1 {
        return Err(format!(
            "{} mixes formats ({}); shards of one dataset share one format",
            path.display(),
            formats.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    warn_missing_shards(path, &files);
    Ok(files)
}

/// Plain files in `dir` whose names pass `keep`, sorted by name.
fn list(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && keep(&name) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// File-name wildcards: `*` (any run of characters), `?` (one character), `[abc]`/`[a-z]` (one
/// of a set), `[!abc]` (none of it), case-sensitive. Only names in one directory are matched, and
/// hidden files are left out by [`list`].
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// The parts of a Hugging Face shard name `<split>-<index>-of-<count>.<ext>`.
fn shard_parts(file: &Path) -> Option<(String, u32, u32)> {
    let stem = file.file_name()?.to_str()?.split('.').next()?;
    let mut parts = stem.rsplitn(4, '-');
    let count = parts.next()?;
    let of = parts.next()?;
    let index = parts.next()?;
    let split = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if of != "of" || !digits(count) || !digits(index) {
        return None;
    }
    Some((split.to_string(), index.parse().ok()?, count.parse().ok()?))
}

fn split_of(file: &Path) -> Option<String> {
    shard_parts(file).map(|(split, _, _)| split)
}

fn warn_missing_shards(path: &Path, files: &[PathBuf]) {
    let mut sets: BTreeMap<(String, u32), BTreeSet<u32>> = BTreeMap::new();
    for (split, index, count) in files.iter().filter_map(|f| shard_parts(f)) {
        sets.entry((split, count)).or_default().insert(index);
    }
    for ((split, count), have) in sets {
        if (have.len() as u32) < count {
            tracing::warn!(
                path = %path.display(),
                "split `{split}` has {} of its {count} shards; the others are not read",
                have.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
    }

    fn names(files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn glob_and_directory_list_shards_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "train-00002-of-00003.parquet",
                "train-00000-of-00003.parquet",
                "train-00001-of-00003.parquet",
                "README.md",
                ".gitattributes",
            ],
        );
        let by_dir = resolve(dir.path(), None).unwrap();
        assert_eq!(
            names(&by_dir),
            [
                "train-00000-of-00003.parquet",
                "train-00001-of-00003.parquet",
                "train-00002-of-00003.parquet"
            ]
        );
        let by_glob = resolve(&dir.path().join("train-*.parquet"), None).unwrap();
        assert_eq!(by_glob, by_dir);
        let one = resolve(&dir.path().join("train-0000[1-1]-of-*"), None).unwrap();
        assert_eq!(names(&one), ["train-00001-of-00003.parquet"]);
    }

    #[test]
    fn refuses_mixed_splits_formats_and_empty_matches() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "test-00000-of-00001.parquet",
                "validation-00000-of-00001.parquet",
            ],
        );
        let err = resolve(dir.path(), None).unwrap_err();
        assert!(err.contains("test, validation"), "{err}");
        assert!(err.contains("test-*.parquet"), "{err}");
        let err = resolve(&dir.path().join("dev-*.parquet"), None).unwrap_err();
        assert!(err.contains("no file matches"), "{err}");
        touch(dir.path(), &["test-extra.jsonl"]);
        let err = resolve(&dir.path().join("test-*"), None).unwrap_err();
        assert!(err.contains("mixes formats"), "{err}");
        let err = resolve(&dir.path().join("*/x.parquet"), None).unwrap_err();
        assert!(err.contains("file name only"), "{err}");
    }

    #[test]
    fn shard_names_parse() {
        assert_eq!(
            shard_parts(Path::new("d/train-00001-of-00003.parquet")),
            Some(("train".into(), 1, 3))
        );
        assert_eq!(
            shard_parts(Path::new("my-set-00000-of-00001.jsonl")),
            Some(("my-set".into(), 0, 1))
        );
        assert_eq!(shard_parts(Path::new("train.parquet")), None);
        let p = glob::Pattern::new("a*c?e").unwrap();
        assert!(p.matches_with("abbbcde", MATCH));
        assert!(!p.matches_with("abbbce", MATCH));
        assert!(glob::Pattern::new("train-[0-9]*.parquet")
            .unwrap()
            .matches_with("train-1.parquet", MATCH));
    }
}
