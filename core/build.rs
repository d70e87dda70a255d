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
        // Relative to this checkout's core/ at compile time, never an absolute path baked into
        // OUT_DIR: another checkout sharing the target dir must read its own files.
        let name = f.file_name().unwrap().to_string_lossy();
        writeln!(
            code,
            "    ({subject:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/data/mmlu/{name}\"))),"
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("mmlu_files.rs");
    std::fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=data");

    build_wasm_guests(
        Path::new(&manifest_dir)
            .parent()
            .expect("core has a parent"),
    );

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
    // Watched paths are relative to core/ where possible: cargo shares build-script output
    // between checkouts at different paths in one target dir (CI clones afresh beside a cached
    // target), and an absolute path would keep watching the old checkout. scripts/common.sh
    // exports the checkout's path, so moving to another checkout reruns this script too.
    println!("cargo:rerun-if-env-changed=IPW_SOURCE_ROOT");
    if Path::new("../.git").exists() {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        println!("cargo:rerun-if-changed=../.git/index");
    } else if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
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

/// Build the WASM guests with a nested cargo for wasm32-wasip2 (its own target dir, so it never
/// waits on the outer build's lock): the built-in graders, embedded in the binary, and the test
/// fixture graders (hostile ones, and the third-party example), whose paths tests load.
fn build_wasm_guests(root: &Path) {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            out_dir
                .ancestors()
                .nth(4)
                .expect("OUT_DIR is inside a target dir")
                .to_path_buf()
        });
    // One guest target dir per checkout: the nested cargo, like this one, would otherwise take
    // another checkout's guests for fresh.
    let checkout = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        h.finish()
    };
    let wasm_target = target_root.join(format!("wasm-guests-{checkout:016x}"));
    prune_guest_dirs(&target_root, &wasm_target, root);
    for watched in [
        "sdk/wit",
        "sdk/guest/src",
        "sdk/guest/Cargo.toml",
        "plugins/graders",
        "plugins/classifiers",
        "plugins/routers",
        "sdk/router-model",
        "tests/fixtures/graders",
        "tests/fixtures/routers",
        "tests/fixtures/classifiers",
    ] {
        println!("cargo:rerun-if-changed=../{watched}");
    }
    let builds = [
        (
            "plugins/graders/Cargo.toml",
            "builtin_graders.rs",
            "BUILTIN_GRADERS",
            true,
            "ipw_grader_",
        ),
        (
            "plugins/classifiers/Cargo.toml",
            "builtin_classifiers.rs",
            "BUILTIN_CLASSIFIERS",
            true,
            "ipw_classifier_",
        ),
        (
            "plugins/routers/Cargo.toml",
            "builtin_routers.rs",
            "BUILTIN_ROUTERS",
            true,
            "ipw_router_",
        ),
        (
            "tests/fixtures/graders/Cargo.toml",
            "fixture_graders.rs",
            "FIXTURE_GRADERS",
            false,
            "ipw_fixture_grader_",
        ),
        (
            "tests/fixtures/classifiers/Cargo.toml",
            "fixture_classifiers.rs",
            "FIXTURE_CLASSIFIERS",
            false,
            "ipw_fixture_classifier_",
        ),
        (
            "tests/fixtures/routers/Cargo.toml",
            "fixture_routers.rs",
            "FIXTURE_ROUTERS",
            false,
            "ipw_fixture_router_",
        ),
    ];
    for (manifest, generated, constant, embed, prefix) in builds {
        let manifest = root.join(manifest);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&wasm_target)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo for the wasm guests");
        if !output.status.success() {
            panic!(
                "building the WASM plugins ({}) failed. Is the target installed? `rustup target add wasm32-wasip2`\n{}",
                manifest.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let dir = wasm_target.join("wasm32-wasip2/release");
        let mut entries: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
            .expect("wasm output dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_string_lossy().into_owned();
                let name = stem.strip_prefix(prefix)?.replace('_', "-");
                Some((name, p))
            })
            .collect();
        entries.sort();
        let mut code = String::new();
        if embed {
            writeln!(code, "/// (name, component bytes, one-line description) of every built-in plugin of this kind.\npub(crate) static {constant}: &[(&str, &[u8], &str)] = &[").unwrap();
            let plugins = manifest
                .parent()
                .expect("a workspace manifest has a folder");
            for (name, path) in &entries {
                let about = plugin_summary(&plugins.join(name).join("src/lib.rs"));
                writeln!(
                    code,
                    "    ({name:?}, include_bytes!({:?}), {about:?}),",
                    path.display().to_string()
                )
                .unwrap();
            }
        } else {
            writeln!(code, "/// (name, component path) of every test fixture.\npub static {constant}: &[(&str, &str)] = &[").unwrap();
            for (name, path) in &entries {
                writeln!(code, "    ({name:?}, {:?}),", path.display().to_string()).unwrap();
            }
        }
        code.push_str("];\n");
        std::fs::write(out_dir.join(generated), code).unwrap();
    }
}

/// The first sentence of a plugin crate's doc comment, without its "`name`: " prefix: what
/// `ipw list` prints beside the plugin's name.
fn plugin_summary(lib: &Path) -> String {
    let text = std::fs::read_to_string(lib).unwrap_or_default();
    let paragraph: Vec<&str> = text
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let paragraph = paragraph.join(" ");
    let body = match paragraph.split_once("`: ") {
        Some((head, rest)) if head.starts_with('`') => rest,
        _ => paragraph.as_str(),
    };
    let end = body.find(". ").map(|i| i + 1).unwrap_or(body.len());
    body[..end].trim_end_matches('.').to_string()
}

/// Remove the guest target dirs of checkouts that no longer exist (CI clones afresh, ~300 MB
/// each), and note which checkout `mine` belongs to.
fn prune_guest_dirs(target_root: &Path, mine: &Path, root: &Path) {
    let _ = std::fs::create_dir_all(mine);
    let _ = std::fs::write(mine.join("checkout"), root.display().to_string());
    let Ok(entries) = std::fs::read_dir(target_root) else {
        return;
    };
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let is_guest_dir = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("wasm-guests-"));
        if !is_guest_dir || dir == mine {
            continue;
        }
        match std::fs::read_to_string(dir.join("checkout")) {
            Ok(owner) if !Path::new(owner.trim()).exists() => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            _ => {}
        }
    }
}
