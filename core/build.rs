//! Build script: embeds the built-in datasets (one include per MMLU subject file) and stamps the
//! git commit ipw was built from.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let mmlu = Path::new(&manifest_dir).join("data/mmlu");
    let mut files: Vec<_> = std::fs::read_dir(&mmlu)
        .expect("core/data/mmlu exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut code = String::from("/// (subject, CSV bytes) for every built-in MMLU subject.\npub(crate) static MMLU_FILES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy();
        let subject = stem.strip_suffix("_test").unwrap_or(&stem);
        writeln!(
            code,
            "    ({subject:?}, include_bytes!({:?})),",
            f.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("mmlu_files.rs");
    std::fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=data");

    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let stamp = if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=IPW_GIT_COMMIT={stamp}");
    // Re-stamp when HEAD moves or the index changes (a commit, a checkout).
    let git_dir = git(&["rev-parse", "--absolute-git-dir"]);
    if let Some(dir) = git_dir {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
