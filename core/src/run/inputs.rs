//! Loading an experiment for a run: the file's own checks ([`crate::config`]), then the inputs
//! it names that only datasets and graders can judge. Each dataset `path` (a file, a directory
//! of shards or a glob) must name at least one file; each `grader` must be a built-in or a
//! component file, which is made absolute so the manifest names it wherever `ipw grade` runs.
//! Errors point at the dataset's entry in the file, with its field, as `config`'s do.

use crate::config::{read_experiment, ConfigError, LoadedExperiment, NO_GRADER};
use std::path::Path;

/// Read an experiment file and check it and the datasets and graders it names: what
/// `ipw validate` and `ipw profile` run from.
pub fn load_experiment(file: &Path) -> Result<LoadedExperiment, ConfigError> {
    let mut loaded = read_experiment(file)?;
    check_inputs(&mut loaded)?;
    Ok(loaded)
}

/// Check that every dataset path names a file and resolve every grader component (see the
/// module doc); the first problem is the error.
pub fn check_inputs(loaded: &mut LoadedExperiment) -> Result<(), ConfigError> {
    let mut components = Vec::with_capacity(loaded.experiment.datasets.len());
    for (i, spanned) in loaded.experiment.datasets.iter().enumerate() {
        let d = spanned.get_ref();
        let at = |field: &str, msg: String| {
            loaded.error_at(spanned.span(), &format!("datasets[{i}].{field}"), msg)
        };
        if let Some(path) = &d.path {
            crate::dataset::shards::resolve(path, d.format).map_err(|e| at("path", e))?;
        }
        let component = match &d.grader {
            Some(g) if g != NO_GRADER && crate::grade::builtin::wasm(g).is_none() => {
                let path = loaded
                    .existing_file(Path::new(g), "grader component")
                    .map_err(|e| {
                        at(
                            "grader",
                            format!(
                                "not a built-in grader ({}) and {e}",
                                crate::grade::builtin::names().join(", ")
                            ),
                        )
                    })?;
                Some(std::fs::canonicalize(&path).unwrap_or(path))
            }
            _ => None,
        };
        components.push(component);
    }
    for (slot, component) in loaded.experiment.datasets.iter_mut().zip(components) {
        if let Some(path) = component {
            slot.get_mut().grader = Some(path.display().to_string());
        }
    }
    Ok(())
}
