//! Datasets shipped inside the binary (copies of the public test splits, MIT licensed; see
//! `core/data/*/LICENSE`): GSM8K (1,319 rows) and 51 MMLU subjects (13,116 rows) with their
//! subject -> category map.

use super::{hex, Row};
use crate::config::BuiltinDataset;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

include!(concat!(env!("OUT_DIR"), "/mmlu_files.rs"));

static GSM8K: &str = include_str!("../../data/gsm8k/test.jsonl");
static MMLU_SUBJECTS: &str = include_str!("../../data/mmlu/subjects.json");

/// A built-in dataset, parsed.
pub struct Builtin {
    /// Rows in source order.
    pub rows: Vec<Row>,
    /// sha256 of the embedded bytes.
    pub sha256: String,
    /// subject -> category.
    pub categories: BTreeMap<String, String>,
}

/// Parse a built-in dataset. The embedded data is fixed at build time and covered by tests, so
/// a parse failure here is a packaging bug, not a user error.
pub fn load(which: BuiltinDataset) -> Builtin {
    match which {
        BuiltinDataset::Gsm8k => gsm8k(),
        BuiltinDataset::Mmlu => mmlu(),
    }
}

/// Names and sizes for `ipw list`.
pub fn describe() -> Vec<(&'static str, String)> {
    vec![
        (
            "gsm8k",
            format!(
                "GSM8K test split, {} grade-school maths problems (MIT)",
                GSM8K.lines().count()
            ),
        ),
        (
            "mmlu",
            format!(
                "MMLU test split, {} subjects, multiple choice (MIT)",
                MMLU_FILES.len()
            ),
        ),
    ]
}

fn gsm8k() -> Builtin {
    #[derive(serde::Deserialize)]
    struct Line {
        question: String,
        answer: String,
    }
    let rows = GSM8K
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let l: Line = serde_json::from_str(line).expect("embedded GSM8K is valid JSONL");
            Row {
                id: i.to_string(),
                question: l.question,
                answers: vec![gsm8k_final_answer(&l.answer)],
                choices: Vec::new(),
                subject: None,
                category: None,
            }
        })
        .collect();
    Builtin {
        rows,
        sha256: hex(&Sha256::digest(GSM8K.as_bytes())),
        categories: BTreeMap::new(),
    }
}

/// The number after `#### ` on a GSM8K solution's last line, without thousands separators.
pub fn gsm8k_final_answer(solution: &str) -> String {
    solution
        .rsplit("####")
        .next()
        .unwrap_or(solution)
        .trim()
        .replace(',', "")
}

fn mmlu() -> Builtin {
    #[derive(serde::Deserialize)]
    struct Meta {
        category: String,
    }
    let meta: BTreeMap<String, Meta> =
        serde_json::from_str(MMLU_SUBJECTS).expect("embedded subjects.json");
    let mut hasher = Sha256::new();
    let mut rows = Vec::new();
    for (subject, bytes) in MMLU_FILES {
        hasher.update(subject.as_bytes());
        hasher.update(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(*bytes);
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.expect("embedded MMLU CSV is valid");
            rows.push(Row {
                id: format!("{subject}-{i}"),
                question: rec[0].to_string(),
                choices: (1..=4).map(|c| rec[c].to_string()).collect(),
                answers: vec![rec[5].trim().to_string()],
                subject: Some(subject.to_string()),
                category: None,
            });
        }
    }
    Builtin {
        rows,
        sha256: hex(&hasher.finalize()),
        categories: meta.into_iter().map(|(k, v)| (k, v.category)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_the_published_sizes() {
        let g = load(BuiltinDataset::Gsm8k);
        assert_eq!(g.rows.len(), 1319);
        assert_eq!(g.rows[0].answers, vec!["18"]);
        let m = load(BuiltinDataset::Mmlu);
        assert_eq!(m.rows.len(), 13116);
        assert!(m
            .rows
            .iter()
            .all(|r| ["A", "B", "C", "D"].contains(&r.answers[0].as_str())));
        assert!(m
            .rows
            .iter()
            .all(|r| m.categories.contains_key(r.subject.as_deref().unwrap())));
    }

    #[test]
    fn gsm8k_answer_strips_commas() {
        assert_eq!(gsm8k_final_answer("blah\n#### 1,234"), "1234");
    }
}
