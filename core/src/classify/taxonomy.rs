//! Taxonomies: the labels a classifier may give a query. The SOC 2018 major groups ship with
//! ipw (`core/data/taxonomies/soc-2018.toml`); a user's comes from a TOML or CSV file, checked
//! with errors that name the file, line and field.

use crate::config::location::line_column;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The group name of queries without a label, in every figure by domain; no label may use it.
pub const UNLABELLED: &str = "unlabelled";

/// The taxonomies shipped with ipw: (name, TOML text).
const BUILTIN: &[(&str, &str)] = &[(
    "soc-2018",
    include_str!("../../data/taxonomies/soc-2018.toml"),
)];

/// The taxonomy used when none is named.
pub const DEFAULT_TAXONOMY: &str = "soc-2018";

/// One label of a taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaxonomyLabel {
    /// Unique code (`15-0000`): what verdicts and records name.
    pub code: String,
    /// Title (`Computer and Mathematical Occupations`).
    pub title: String,
    /// One line saying what belongs under it.
    pub description: String,
}

/// A set of labels, with where it came from and a hash that changes with any label.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Taxonomy {
    /// Its name (`soc-2018`, or the file's `name`, or its file stem).
    pub name: String,
    /// Where the labels come from, if the file says.
    pub source: Option<String>,
    /// The labels, in the file's order (a tie between labels goes to the first).
    pub labels: Vec<TaxonomyLabel>,
    /// sha256 over every label's code, title and description, in order.
    pub sha256: String,
}

/// A taxonomy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    /// The file cannot be read.
    #[error("{}: cannot read taxonomy: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message already says it).
        error: std::io::Error,
    },
    /// A label or the file is malformed.
    #[error("{}:{line}: {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// `label[3].code`, `code` (a CSV column), ...
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Neither a shipped taxonomy nor a `.toml`/`.csv` file.
    #[error("taxonomy `{0}`: not a shipped taxonomy ({names}) nor a .toml or .csv file", names = builtin_names().join(", "))]
    Unknown(String),
}

/// Names of the shipped taxonomies.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    name: Option<String>,
    source: Option<String>,
    #[serde(default)]
    label: Vec<toml::Spanned<TomlLabel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlLabel {
    code: toml::Spanned<String>,
    title: toml::Spanned<String>,
    description: toml::Spanned<String>,
}

/// A label as read, with the line each field is on.
struct Placed {
    label: TaxonomyLabel,
    /// (field name, line) for code, title, description.
    lines: [(String, usize); 3],
}

impl Taxonomy {
    /// A shipped taxonomy by name, or a `.toml` / `.csv` file.
    pub fn load(spec: &str) -> Result<Self, TaxonomyError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            return Self::from_toml(Path::new(&format!("<shipped {name}>")), text);
        }
        let path = Path::new(spec);
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        if !matches!(ext.as_deref(), Some("toml" | "csv")) {
            return Err(TaxonomyError::Unknown(spec.into()));
        }
        let text = std::fs::read_to_string(path).map_err(|error| TaxonomyError::Read {
            path: path.into(),
            error,
        })?;
        match ext.as_deref() {
            Some("csv") => Self::from_csv(path, &text),
            _ => Self::from_toml(path, &text),
        }
    }

    /// The shipped default (SOC 2018 major groups).
    pub fn default_taxonomy() -> Self {
        Self::load(DEFAULT_TAXONOMY).expect("the shipped taxonomy is valid")
    }

    /// [`Self::load`] `spec`, or the shipped default when none is given (`[classification]`'s
    /// `taxonomy`).
    pub fn load_or_default(spec: Option<&str>) -> Result<Self, TaxonomyError> {
        spec.map_or_else(|| Ok(Self::default_taxonomy()), Self::load)
    }

    /// Parse TOML: optional `name` and `source`, then `[[label]]` tables of `code`, `title`
    /// and `description`.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, TaxonomyError> {
        let at = |offset: usize, field: &str, message: String| TaxonomyError::Invalid {
            path: path.into(),
            line: line_column(text, offset).0,
            field: field.into(),
            message,
        };
        let file: TomlFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, "taxonomy", e.message().to_string())
        })?;
        if file.label.is_empty() {
            return Err(at(
                0,
                "label",
                "no [[label]] tables: a taxonomy needs labels".into(),
            ));
        }
        let line = |s: &std::ops::Range<usize>| line_column(text, s.start).0;
        let placed = file
            .label
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let l = l.into_inner();
                Placed {
                    lines: [
                        (format!("label[{i}].code"), line(&l.code.span())),
                        (format!("label[{i}].title"), line(&l.title.span())),
                        (
                            format!("label[{i}].description"),
                            line(&l.description.span()),
                        ),
                    ],
                    label: TaxonomyLabel {
                        code: l.code.into_inner(),
                        title: l.title.into_inner(),
                        description: l.description.into_inner(),
                    },
                }
            })
            .collect();
        let name = file.name.unwrap_or_else(|| stem(path));
        Self::checked(path, name, file.source, placed)
    }

    /// Parse CSV with a header row naming `code`, `title` and `description` (any order; other
    /// columns are ignored).
    pub fn from_csv(path: &Path, text: &str) -> Result<Self, TaxonomyError> {
        let invalid = |line: usize, field: &str, message: String| TaxonomyError::Invalid {
            path: path.into(),
            line,
            field: field.into(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| invalid(1, "header", e.to_string()))?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    invalid(
                        1,
                        "header",
                        format!(
                            "no `{name}` column (the header must name code, title and description)"
                        ),
                    )
                })
        };
        let (c, t, d) = (column("code")?, column("title")?, column("description")?);
        let mut placed = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                invalid(line, "row", e.to_string())
            })?;
            let line = row.position().map_or(0, |p| p.line() as usize);
            let get = |i: usize| row.get(i).unwrap_or("").trim().to_string();
            placed.push(Placed {
                label: TaxonomyLabel {
                    code: get(c),
                    title: get(t),
                    description: get(d),
                },
                lines: [
                    ("code".into(), line),
                    ("title".into(), line),
                    ("description".into(), line),
                ],
            });
        }
        if placed.is_empty() {
            return Err(invalid(1, "row", "no labels after the header".into()));
        }
        Self::checked(path, stem(path), None, placed)
    }

    fn checked(
        path: &Path,
        name: String,
        source: Option<String>,
        placed: Vec<Placed>,
    ) -> Result<Self, TaxonomyError> {
        let invalid = |(field, line): &(String, usize), message: String| TaxonomyError::Invalid {
            path: path.into(),
            line: *line,
            field: field.clone(),
            message,
        };
        for (i, p) in placed.iter().enumerate() {
            let l = &p.label;
            if l.code.trim().is_empty() || l.code.chars().any(char::is_whitespace) {
                return Err(invalid(
                    &p.lines[0],
                    format!("`{}`: a code is one word, not empty", l.code),
                ));
            }
            if l.code.eq_ignore_ascii_case(UNLABELLED) {
                return Err(invalid(
                    &p.lines[0],
                    format!(
                        "`{UNLABELLED}` is the group of queries without a label; use another code"
                    ),
                ));
            }
            if let Some(first) = placed[..i].iter().find(|q| q.label.code == l.code) {
                return Err(invalid(
                    &p.lines[0],
                    format!(
                        "`{}` is already the code of the label on line {}",
                        l.code, first.lines[0].1
                    ),
                ));
            }
            if l.title.trim().is_empty() {
                return Err(invalid(
                    &p.lines[1],
                    "empty: every label needs a title".into(),
                ));
            }
            if l.description.trim().is_empty() {
                return Err(invalid(
                    &p.lines[2],
                    "empty: every label needs a one-line description (a judge classifier reads it)"
                        .into(),
                ));
            }
        }
        let labels: Vec<TaxonomyLabel> = placed.into_iter().map(|p| p.label).collect();
        let mut h = Sha256::new();
        for l in &labels {
            for part in [&l.code, &l.title, &l.description] {
                h.update(part.as_bytes());
                h.update([0]);
            }
        }
        Ok(Self {
            name,
            source,
            labels,
            sha256: format!("{:x}", h.finalize()),
        })
    }

    /// The position of the label with `code`.
    pub fn index(&self, code: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.code == code)
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "taxonomy".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_soc_taxonomy_has_22_unique_groups_each_described() {
        let t = Taxonomy::default_taxonomy();
        assert_eq!(t.name, "soc-2018");
        assert_eq!(t.labels.len(), 22);
        let mut codes: Vec<&str> = t.labels.iter().map(|l| l.code.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 22);
        // SOC major groups: two digits, odd from 11 to 53, then -0000; no military group.
        for (l, n) in t.labels.iter().zip((11..=53).step_by(2)) {
            assert_eq!(l.code, format!("{n}-0000"));
            assert!(l.title.ends_with("Occupations"), "{l:?}");
            assert!(l.description.len() > 20, "{l:?}");
        }
        assert!(t.source.as_deref().unwrap().contains("public domain"));
    }

    #[test]
    fn bad_taxonomies_name_the_line_and_field() {
        let p = Path::new("t.toml");
        let good = "[[label]]\ncode = \"a\"\ntitle = \"A\"\ndescription = \"aa\"\n";
        let t = Taxonomy::from_toml(p, good).unwrap();
        assert_eq!((t.name.as_str(), t.labels.len()), ("t", 1));
        let dup = format!("{good}\n[[label]]\ncode = \"a\"\ntitle = \"B\"\ndescription = \"bb\"\n");
        let e = Taxonomy::from_toml(p, &dup).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.toml:7: label[1].code: `a` is already the code of the label on line 2"
        );
        let empty = good.replace("\"aa\"", "\"  \"");
        let e = Taxonomy::from_toml(p, &empty).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:4: label[0].description: empty"),
            "{e}"
        );
        let unknown = good.replace("title", "titel");
        let e = Taxonomy::from_toml(p, &unknown).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:3: taxonomy: unknown field `titel`"),
            "{e}"
        );
        let reserved = good.replace("\"a\"", "\"unlabelled\"");
        let e = Taxonomy::from_toml(p, &reserved).unwrap_err().to_string();
        assert!(
            e.contains("label[0].code: `unlabelled` is the group"),
            "{e}"
        );

        let c = Path::new("t.csv");
        let t = Taxonomy::from_csv(c, "code,title,description\nx,X,the x\ny,Y,the y\n").unwrap();
        assert_eq!(t.labels[1].code, "y");
        let e = Taxonomy::from_csv(c, "code,title\nx,X\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.csv:1: header: no `description` column"),
            "{e}"
        );
        let e = Taxonomy::from_csv(c, "code,title,description\nx,X,the x\ny,,the y\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.csv:3: title: empty: every label needs a title");
        let e = Taxonomy::from_csv(c, "code,title,description\nx,X,the x\nx,Y,y\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.csv:3: code: `x` is already the code of the label on line 2"),
            "{e}"
        );
        let e = Taxonomy::load("nope").unwrap_err().to_string();
        assert!(e.contains("soc-2018"), "{e}");
    }

    #[test]
    fn the_hash_changes_with_any_label() {
        let p = Path::new("t.csv");
        let a = Taxonomy::from_csv(p, "code,title,description\nx,X,the x\n").unwrap();
        let b = Taxonomy::from_csv(p, "code,title,description\nx,X,the x!\n").unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(
            a.sha256,
            Taxonomy::from_csv(p, "title,code,description\nX,x,the x\n")
                .unwrap()
                .sha256
        );
    }
}
