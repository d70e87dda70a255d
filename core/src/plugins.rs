//! Where plugins are looked for, and what is there: native sampler libraries (`.so`, `.dylib`,
//! `.dll`) and WASM components (`.wasm`). Search order: the directory of the `ipw` binary (and
//! its `plugins/` subdirectory), the experiment's `plugin_dirs`, then `IPW_PLUGIN_PATH`.

use std::path::{Path, PathBuf};

/// A plugin file found on the search path.
#[derive(Debug, Clone)]
pub struct FoundPlugin {
    /// `sampler` (native library) or `wasm` (grader/router component).
    pub kind: &'static str,
    /// The file.
    pub path: PathBuf,
}

/// The plugin search path, in order, without duplicates.
pub fn search_path(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir.join("plugins"));
        dirs.push(dir);
    }
    dirs.extend(extra.iter().cloned());
    if let Some(var) = std::env::var_os("IPW_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&var));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Whether a file name is a sampler library's (`libipw_sampler_<name>.so` and the platform's
/// equivalents): the naming [`crate::power::loader::find`] looks for, so what `ipw list` shows
/// is what an experiment can name. Test fixtures are named otherwise and never show up.
fn is_sampler_file(name: &str) -> bool {
    let prefix = format!("{}ipw_sampler_", std::env::consts::DLL_PREFIX);
    name.starts_with(&prefix) && name.ends_with(std::env::consts::DLL_SUFFIX)
}

/// Plugin files in the search path. Only sampler libraries named as [`is_sampler_file`] says, or
/// files that end in `.wasm`, count, so the binary's directory full of build artefacts is not
/// noise.
pub fn discover(extra: &[PathBuf]) -> Vec<FoundPlugin> {
    let mut found = Vec::new();
    for dir in search_path(extra) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let kind = match ext {
                "so" | "dylib" | "dll" if is_sampler_file(&name) => "sampler",
                "wasm" => "wasm",
                _ => continue,
            };
            found.push(FoundPlugin { kind, path });
        }
    }
    found
}
