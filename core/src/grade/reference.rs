//! The reference run of a pairwise grade (`ipw grade RUN --grader pairwise --against REFRUN`):
//! its responses joined to the graded run's records by query id, each pair checked to have been
//! asked the same prompt.

use crate::records::{Record, RunDir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why the reference run cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference run cannot be read.
    #[error("reference run {}: {message}", path.display())]
    Read {
        /// The reference run directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A query of the run and of the reference run was asked with different prompts.
    #[error("query {query} was asked with different prompts in {} and in the reference run {}: they are not the same query, so their responses cannot be compared", run.display(), reference.display())]
    PromptMismatch {
        /// The run being graded.
        run: PathBuf,
        /// The reference run.
        reference: PathBuf,
        /// The query id.
        query: String,
    },
}

/// The reference run's responses by query id, and what the grades record about it.
pub(crate) struct Reference {
    /// The run directory, made absolute where possible (grades name it).
    dir: PathBuf,
    /// Its model's name.
    model: String,
    records: HashMap<String, Record>,
}

impl Reference {
    /// Read the reference run in `dir` (one run: a directory with a manifest).
    pub(crate) fn load(dir: &Path) -> Result<Self, ReferenceError> {
        let run = RunDir::new(dir);
        let err = |e: crate::records::StoreError| ReferenceError::Read {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let manifest = run.read_manifest().map_err(err)?;
        let read = run.read_records().map_err(err)?;
        // The last record of a query wins, as everywhere runs are joined (a retried failure is
        // appended after it).
        let records = read
            .records
            .into_iter()
            .map(|r| (r.query_id.clone(), r))
            .collect();
        Ok(Self {
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
            model: manifest.model.name,
            records,
        })
    }

    /// Fail on the first query both runs have but asked with different prompts: comparing
    /// responses to different prompts would be meaningless, and nothing has been graded yet.
    pub(crate) fn check_prompts(
        &self,
        run: &Path,
        records: &[Record],
    ) -> Result<(), ReferenceError> {
        for r in records {
            if let Some(other) = self.records.get(&r.query_id) {
                if other.prompt_hash != r.prompt_hash {
                    return Err(ReferenceError::PromptMismatch {
                        run: run.to_path_buf(),
                        reference: self.dir.clone(),
                        query: r.query_id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The reference's response to `r`'s query, or why there is none (the grade's explanation).
    pub(crate) fn response_for(&self, r: &Record) -> Result<&str, String> {
        let Some(other) = self.records.get(&r.query_id) else {
            return Err(format!(
                "unscored: the reference run {} (`{}`) has no record of query {}",
                self.dir.display(),
                self.model,
                r.query_id
            ));
        };
        match (&other.response, &other.error) {
            (Some(text), None) => Ok(text),
            (_, Some(e)) => Err(format!(
                "unscored: the reference run {} (`{}`) failed query {} ({}: {})",
                self.dir.display(),
                self.model,
                r.query_id,
                e.kind,
                e.message
            )),
            (None, None) => Err(format!(
                "unscored: the reference run {} (`{}`) has no response to query {}",
                self.dir.display(),
                self.model,
                r.query_id
            )),
        }
    }

    /// The grader's params with the reference named: `against` (the run directory) and
    /// `against_model`, which every grade then records (and `ipw coverage` checks).
    pub(crate) fn params(&self, user: Option<serde_json::Value>) -> serde_json::Value {
        let mut params = match user {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        params.insert("against".into(), self.dir.display().to_string().into());
        params.insert("against_model".into(), self.model.clone().into());
        serde_json::Value::Object(params)
    }
}
