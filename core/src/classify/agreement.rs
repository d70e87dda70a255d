//! How well a classifier's labels agree with labels made by hand (`ipw classify --against
//! labels.csv`): accuracy, per-label precision and recall, and the confusion matrix. Queries
//! left unlabelled count as a prediction of `unlabelled`, so a classifier cannot raise its
//! accuracy by abstaining.

use super::taxonomy::{Taxonomy, UNLABELLED};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A hand-labelled set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file cannot be read.
    #[error("{}: cannot read labels: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message already says it).
        error: std::io::Error,
    },
    /// A row is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Query id -> the label's code, from a CSV with `query_id` (or `id`) and `label` columns.
/// Other columns (the prompt, a note) are ignored.
pub fn read_labels(path: &Path, taxonomy: &Taxonomy) -> Result<Vec<(String, String)>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|error| LabelsError::Read {
        path: path.into(),
        error,
    })?;
    let invalid = |line: usize, message: String| LabelsError::Invalid {
        path: path.into(),
        line,
        message,
    };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| invalid(1, e.to_string()))?
        .clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
    let (Some(id), Some(label)) = (col(&["query_id", "id"]), col(&["label"])) else {
        return Err(invalid(
            1,
            "the header must name `query_id` and `label` columns".into(),
        ));
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in reader.records() {
        let row =
            row.map_err(|e| invalid(e.position().map_or(0, |p| p.line() as usize), e.to_string()))?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let (q, l) = (
            row.get(id).unwrap_or("").trim(),
            row.get(label).unwrap_or("").trim(),
        );
        if q.is_empty() {
            return Err(invalid(line, "query_id is empty".into()));
        }
        if l != UNLABELLED && taxonomy.index(l).is_none() {
            return Err(invalid(
                line,
                format!(
                    "label `{l}` is not in taxonomy {} (nor `{UNLABELLED}`)",
                    taxonomy.name
                ),
            ));
        }
        if let Some(first) = seen.insert(q.to_string(), line) {
            return Err(invalid(
                line,
                format!("query `{q}` is already labelled on line {first}"),
            ));
        }
        out.push((q.to_string(), l.to_string()));
    }
    Ok(out)
}

/// One label's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabelAgreement {
    /// The label's code (or `unlabelled`).
    pub label: String,
    /// Hand-labelled queries with this label.
    pub support: usize,
    /// Of the queries the classifier gave this label, the share that have it by hand.
    pub precision: Option<f64>,
    /// Of the queries with this label by hand, the share the classifier gave it.
    pub recall: Option<f64>,
}

/// Agreement of predictions with hand labels.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agreement {
    /// Hand-labelled queries found among the records.
    pub compared: usize,
    /// Hand-labelled queries not in any record (left out of every figure).
    pub missing: usize,
    /// Share of compared queries given their hand label.
    pub accuracy: Option<f64>,
    /// Per label that occurs by hand or as a prediction, in taxonomy order, `unlabelled` last.
    pub per_label: Vec<LabelAgreement>,
    /// `matrix[i][j]`: queries labelled `per_label[i]` by hand and `per_label[j]` by the
    /// classifier.
    pub matrix: Vec<Vec<usize>>,
}

/// Compare hand labels with `predicted` (query id -> label code, `None` = unlabelled).
pub fn agreement(
    truth: &[(String, String)],
    predicted: &HashMap<String, Option<String>>,
    taxonomy: &Taxonomy,
) -> Agreement {
    let pairs: Vec<(&str, &str)> = truth
        .iter()
        .filter_map(|(q, t)| {
            predicted
                .get(q)
                .map(|p| (t.as_str(), p.as_deref().unwrap_or(UNLABELLED)))
        })
        .collect();
    let used = |code: &str| pairs.iter().any(|(t, p)| *t == code || *p == code);
    let mut labels: Vec<String> = taxonomy
        .labels
        .iter()
        .map(|l| l.code.clone())
        .filter(|c| used(c))
        .collect();
    if used(UNLABELLED) {
        labels.push(UNLABELLED.into());
    }
    let at: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut matrix = vec![vec![0usize; labels.len()]; labels.len()];
    for (t, p) in &pairs {
        matrix[at[t]][at[p]] += 1;
    }
    let ratio = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    let per_label = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let support: usize = matrix[i].iter().sum();
            let predicted: usize = matrix.iter().map(|row| row[i]).sum();
            LabelAgreement {
                label: l.clone(),
                support,
                precision: ratio(matrix[i][i], predicted),
                recall: ratio(matrix[i][i], support),
            }
        })
        .collect();
    let right = pairs.iter().filter(|(t, p)| t == p).count();
    Agreement {
        compared: pairs.len(),
        missing: truth.len() - pairs.len(),
        accuracy: ratio(right, pairs.len()),
        per_label,
        matrix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_match_a_matrix_counted_by_hand() {
        let tax = Taxonomy::from_csv(
            Path::new("t.csv"),
            "code,title,description\na,A,aa\nb,B,bb\nc,C,cc\n",
        )
        .unwrap();
        let truth: Vec<(String, String)> = [
            ("1", "a"),
            ("2", "a"),
            ("3", "b"),
            ("4", "b"),
            ("5", "a"),
            ("9", "b"),
        ]
        .iter()
        .map(|(q, l)| (q.to_string(), l.to_string()))
        .collect();
        let predicted: HashMap<String, Option<String>> = [
            ("1", Some("a")),
            ("2", Some("b")),
            ("3", Some("b")),
            ("4", None),
            ("5", Some("a")),
        ]
        .iter()
        .map(|(q, l)| (q.to_string(), l.map(String::from)))
        .collect();
        let a = agreement(&truth, &predicted, &tax);
        assert_eq!((a.compared, a.missing), (5, 1));
        assert_eq!(a.accuracy, Some(3.0 / 5.0));
        let labels: Vec<&str> = a.per_label.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", UNLABELLED]);
        // truth a: a a b; truth b: b, unlabelled.
        assert_eq!(a.matrix, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 0]]);
        assert_eq!(a.per_label[0].precision, Some(1.0));
        assert_eq!(a.per_label[0].recall, Some(2.0 / 3.0));
        assert_eq!(a.per_label[1].precision, Some(0.5));
        assert_eq!(a.per_label[1].recall, Some(0.5));
        assert_eq!(a.per_label[2].precision, Some(0.0));
    }

    #[test]
    fn a_bad_labels_file_names_its_line() {
        let tax = Taxonomy::default_taxonomy();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "query_id,label\nq1,15-0000\nq2,99-0000\n").unwrap();
        let e = read_labels(&p, &tax).unwrap_err().to_string();
        assert!(
            e.ends_with("l.csv:3: label `99-0000` is not in taxonomy soc-2018 (nor `unlabelled`)"),
            "{e}"
        );
        std::fs::write(&p, "query_id,label\nq1,15-0000\nq1,unlabelled\n").unwrap();
        let e = read_labels(&p, &tax).unwrap_err().to_string();
        assert!(
            e.ends_with(":3: query `q1` is already labelled on line 2"),
            "{e}"
        );
    }
}
