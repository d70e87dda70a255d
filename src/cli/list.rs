//! `ipw list`: backends, built-in datasets, and plugins found.

use ipw_core::config::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(extra: &[PathBuf]) -> anyhow::Result<ExitCode> {
    println!("backends:");
    for b in BackendKind::ALL {
        let note = if b == BackendKind::Embedded && !cfg!(feature = "embedded") {
            " [not built in]"
        } else {
            ""
        };
        println!("  {:<10} {}{note}", b.as_str(), b.describe());
    }
    super::compute::print();
    println!("datasets (built in):");
    for (name, what) in ipw_core::dataset::builtin::describe() {
        println!("  {name:<10} {what}");
    }
    println!("graders (built in, sandboxed WASM):");
    for (name, what) in ipw_core::grade::builtin::describe() {
        println!("  {name:<10} {what}");
    }
    println!("classifiers (built in, sandboxed WASM; `ipw classify`):");
    for (name, what) in ipw_core::classify::builtin::describe() {
        println!("  {name:<10} {what}");
    }
    println!("taxonomies (shipped; or a .toml / .csv file):");
    for name in ipw_core::classify::taxonomy::builtin_names() {
        let t = ipw_core::classify::Taxonomy::load(name)?;
        println!(
            "  {name:<10} {} labels: {}",
            t.labels.len(),
            t.source.as_deref().unwrap_or("")
        );
    }
    println!("plugin search path:");
    for dir in ipw_core::plugins::search_path(extra) {
        println!("  {}", dir.display());
    }
    let found = ipw_core::plugins::discover(extra);
    println!(
        "plugins found: {}",
        if found.is_empty() { "none" } else { "" }
    );
    for p in found {
        println!("  {:<8} {}", p.kind, p.path.display());
    }
    Ok(ExitCode::SUCCESS)
}
