//! `mapping`: labels a query from where it comes from, by a table from dataset, subject or
//! category to a label's code (shipped: 55 of MMLU's 57 subjects to SOC 2018 major groups,
//! `mmlu-soc-2018.txt`, with the rule it follows). Params: `table` (an object from a key to a
//! code, replacing the shipped table) and `shipped` (`false`: no shipped table). Keys are looked
//! up in this order, case-insensitively: `dataset/subject`, `subject`, `category`, `dataset`;
//! the first found wins (confidence 1). A query whose keys are all missing stays unlabelled.

use ipw_guest::{export_classifier, ClassifyQuery, Classifier, Label, Params, Verdict};
use std::collections::HashMap;

/// The shipped table: MMLU subjects to SOC 2018 major groups.
const MMLU_SOC_2018: &str = include_str!("../mmlu-soc-2018.txt");

struct Mapping;

impl Classifier for Mapping {
    /// Lower-case key -> code.
    type Setup = HashMap<String, String>;

    fn setup(taxonomy: &[Label], params: Params) -> Result<Self::Setup, String> {
        let shipped = match params.get("shipped") {
            None => true,
            Some(v) => v.as_bool().ok_or("params.shipped must be true or false")?,
        };
        let mut table = HashMap::new();
        match params.get("table") {
            Some(t) => {
                let t = t.as_object().ok_or("params.table must be an object from a key to a label's code")?;
                for (key, code) in t {
                    let code = code
                        .as_str()
                        .ok_or_else(|| format!("params.table.{key} must be a label's code (a string)"))?;
                    if !taxonomy.iter().any(|l| l.code == code) {
                        return Err(format!(
                            "params.table maps `{key}` to `{code}`, which is not a label of the taxonomy"
                        ));
                    }
                    table.insert(key.to_lowercase(), code.to_string());
                }
            }
            None if shipped => {
                let lines = MMLU_SOC_2018.lines().map(str::trim);
                for (key, code) in lines.filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(':')) {
                    let code = code.trim();
                    // The shipped table is for SOC: against another taxonomy only its codes that
                    // exist there apply.
                    if taxonomy.iter().any(|l| l.code == code) {
                        table.insert(key.trim().to_lowercase(), code.to_string());
                    }
                }
            }
            None => {}
        }
        if table.is_empty() {
            return Err("the mapping table is empty for this taxonomy: give params.table (the shipped table maps MMLU subjects to SOC 2018 major groups)".into());
        }
        Ok(table)
    }

    fn classify(table: &Self::Setup, _taxonomy: &[Label], q: ClassifyQuery) -> Result<Verdict, String> {
        let mut keys: Vec<(&str, String)> = Vec::with_capacity(4);
        if let Some(s) = &q.subject {
            keys.push(("dataset/subject", format!("{}/{}", q.dataset, s)));
            keys.push(("subject", s.clone()));
        }
        if let Some(c) = &q.category {
            keys.push(("category", c.clone()));
        }
        keys.push(("dataset", q.dataset.clone()));
        for (what, key) in keys {
            if let Some(code) = table.get(&key.to_lowercase()) {
                return Ok(Verdict::label(code.clone())
                    .with_confidence(1.0)
                    .because(format!("{what} `{key}` maps to {code}")));
            }
        }
        Ok(Verdict::unlabelled("no table entry for its dataset, subject or category"))
    }
}

export_classifier!(Mapping);
