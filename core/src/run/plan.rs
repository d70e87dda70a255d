//! The plan of a run: which queries, in which order, and the identity of the model file that
//! `--resume` checks (the plan's own is [`crate::identity::plan_hash`]).

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
