//! The plan of a run: which queries, in which order, where results go, and the identity of the
//! plan and the model file that `--resume` checks.

use super::RunError;
use crate::config::{BackendKind, LoadedExperiment, ModelConfig};
use crate::dataset::{hex, load_dataset, DatasetError, DatasetInfo, Query};
use crate::records::ModelFile;
use sha2::{Digest, Sha256};

/// The queries of an experiment, in order, and what each dataset contributed.
pub fn plan_queries(
    loaded: &LoadedExperiment,
) -> Result<(Vec<Query>, Vec<DatasetInfo>), DatasetError> {
    let exp = &loaded.experiment;
    let mut queries = Vec::new();
    let mut infos = Vec::new();
    for d in &exp.datasets {
        let (q, info) = load_dataset(d.get_ref(), exp.seed)?;
        queries.extend(q);
        infos.push(info);
    }
    Ok((queries, infos))
}

/// A file-system-safe version of a name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// sha256 over the plan's `(query id, prompt sha256)` pairs, in order: the same for a run and
/// for the merge of its shards.
pub(crate) fn plan_hash<A: AsRef<str>, B: AsRef<str>>(
    entries: impl IntoIterator<Item = (A, B)>,
) -> String {
    let mut h = Sha256::new();
    for (id, prompt) in entries {
        h.update(id.as_ref().as_bytes());
        h.update([0]);
        h.update(prompt.as_ref().as_bytes());
        h.update([b'\n']);
    }
    hex(&h.finalize())
}

/// The model file of an in-process backend, hashed (off the async workers: it can be GBs).
pub(super) async fn model_file(model: &ModelConfig) -> Result<Option<ModelFile>, RunError> {
    let (BackendKind::Embedded, Some(path)) = (model.backend, model.path.clone()) else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        let io = |source| RunError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let mut h = Sha256::new();
        let size = std::io::copy(&mut file, &mut h).map_err(io)?;
        Ok(Some(ModelFile {
            path: path.display().to_string(),
            size_bytes: size,
            sha256: hex(&h.finalize()),
        }))
    })
    .await
    .expect("hashing task does not panic")
}
