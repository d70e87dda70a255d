//! Helpers shared by the end-to-end tests: run the `ipw` binary like a user does, find the real
//! test model and llama-server, read run directories.
#![allow(dead_code)]

pub mod fake_powercap;
pub mod fault_server;
pub mod hf;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ipw` binary under test.
pub fn ipw() -> Command {
    ipw_at(Path::new(env!("CARGO_BIN_EXE_ipw")))
}

/// An ipw binary at `path` (another build of it), set up as [`ipw`] is.
pub fn ipw_at(path: &Path) -> Command {
    let mut c = Command::new(path);
    // Tests read the binary's output; logs only when asked for (IPW_TEST_LOG=debug).
    match std::env::var("IPW_TEST_LOG") {
        Ok(level) => c.env("RUST_LOG", level),
        Err(_) => c.env_remove("RUST_LOG"),
    };
    // Every server a test talks to is on loopback; a proxy set for the machine would stand
    // between them (and move the remote backends from their direct client to reqwest).
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        c.env_remove(var);
    }
    c
}

/// Run `ipw` with arguments, returning its output.
pub fn run_ipw(args: &[&str], cwd: &Path) -> Output {
    ipw()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("ipw runs")
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `$IPW_CACHE`, where the scripts put what they fetch and build.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("IPW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/ipw"))
}

/// Something a script fetched or built into the cache: `$var`, else `default` under
/// [`cache_dir`]. Missing = test failure naming the script, not a skip.
pub fn cached(var: &str, default: &str, what: &str, script: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(default));
    assert!(
        p.is_file(),
        "{what} missing at {}: run {script}",
        p.display()
    );
    p
}

/// The real SmolLM2-135M GGUF (fetched by scripts/fetch-model.sh).
pub fn model_path() -> PathBuf {
    cached(
        "IPW_TEST_MODEL",
        "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "test model",
        "scripts/fetch-model.sh",
    )
}

/// The real llama-server (built by scripts/build-llama-server.sh).
pub fn llama_server_path() -> PathBuf {
    cached(
        "IPW_LLAMA_SERVER",
        "llama-server/bin/llama-server",
        "llama-server",
        "scripts/build-llama-server.sh",
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A llama-server child process, killed on drop.
pub struct LlamaServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl LlamaServer {
    /// Start upstream llama-server on the test model and wait until `/health` says ok.
    pub fn start() -> Self {
        let port = free_port();
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("ipw-llama-server-{port}.log")),
        )
        .unwrap();
        let child = Command::new(llama_server_path())
            .args([
                "-m",
                model_path().to_str().unwrap(),
                "-c",
                "4096",
                "-t",
                "2",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string(), "-a", "smollm2"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("llama-server starts");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if http_get(port, "/health").is_some_and(|b| b.contains("ok")) {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("llama-server did not become healthy on port {port}");
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP GET on loopback; the body when the status is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// Write an experiment file into `dir` and return its path.
pub fn write_experiment(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Every record of a run directory, asserting that every line is complete JSON.
pub fn records(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("records.jsonl")).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "records.jsonl ends with a cut-off line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record line {l:?}: {e}")))
        .collect()
}

/// A JSON file of a run directory.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Model run directories of an experiment output directory.
pub fn run_dirs(exp_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(exp_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    v.sort();
    v
}

/// TOML-quote a path.
pub fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Where the sampler plugins were built (beside the `ipw` binary).
pub fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ipw"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A sampler library built in this workspace, by file stem (`ipw_sampler_replay`).
pub fn plugin_lib(stem: &str) -> PathBuf {
    let p = plugin_dir().join(format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        p.is_file(),
        "{} not built: run cargo build --workspace",
        p.display()
    );
    p
}

/// Write `toml` as `<name>.toml` in `dir` and run `ipw profile` on it into `dir/out-<name>`,
/// quietly. Returns the output and the experiment output directory.
pub fn profile(dir: &Path, name: &str, toml: &str) -> (Output, PathBuf) {
    let exp = write_experiment(dir, &format!("{name}.toml"), toml);
    let out = dir.join(format!("out-{name}"));
    (profile_file(&exp, &out, dir), out)
}

/// Run `ipw profile <exp> --resume <out> -q [extra...]` from `cwd`.
pub fn resume_profile(exp: &Path, out: &Path, cwd: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "profile",
        exp.to_str().unwrap(),
        "--resume",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    run_ipw(&args, cwd)
}

/// `ipw profile <exp> --out <out> -q`, to add environment or arguments to before running.
pub fn profile_command(exp: &Path, out: &Path) -> Command {
    let mut c = ipw();
    c.args([
        "profile",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    c
}

/// Run `ipw profile <exp> --out <out> -q` from `cwd`.
pub fn profile_file(exp: &Path, out: &Path, cwd: &Path) -> Output {
    profile_command(exp, out)
        .current_dir(cwd)
        .output()
        .expect("ipw runs")
}

/// [`profile`], asserting success.
pub fn profile_ok(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let (o, out) = profile(dir, name, toml);
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// Build a third-party WASM example (`examples/<crate>`, outside the workspace) for
/// wasm32-wasip2 the way its Cargo.toml says, and return its `.wasm`.
pub fn build_wasm_example(krate: &str) -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(repo.join("examples").join(krate).join("Cargo.toml"))
        // The outer build's settings are not the example's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building examples/{krate}");
    let wasm = repo.join("examples").join(krate).join(format!(
        "target/wasm32-wasip2/release/{}.wasm",
        krate.replace('-', "_")
    ));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

/// Write `csv` as `<dir>/study.csv` and `ipw import` it into `<dir>/runs` (one run directory
/// per model), asserting success. Returns `<dir>/runs`.
pub fn import_table(dir: &Path, csv: &str) -> PathBuf {
    let table = dir.join("study.csv");
    std::fs::write(&table, csv).unwrap();
    let out = dir.join("runs");
    let o = run_ipw(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// Peak resident memory (MiB) of `ipw ARGS` run from `cwd`, as the kernel counted it for the
/// child of a fresh python3 (so no other child of this test process counts).
pub fn peak_rss_mib(args: &[&str], cwd: &std::path::Path) -> (std::process::Output, f64) {
    let script = "import resource, subprocess, sys\n\
                  p = subprocess.run(sys.argv[1:])\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
                  sys.exit(p.returncode)";
    let ipw = ipw().get_program().to_owned();
    let mut all: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), script.as_ref(), ipw.as_os_str()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    let o = std::process::Command::new("python3")
        .args(all)
        .current_dir(cwd)
        .output()
        .expect("python3 runs");
    let kib: f64 = String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak figure: {}", text(&o)));
    (o, kib / 1024.0)
}

/// A Python that imports `module`: `IPW_PYTHON`, else the venv `scripts/install-deps.sh --tests`
/// makes under the cache.
pub fn python_with(module: &str) -> PathBuf {
    let py = std::env::var_os("IPW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("venv/bin/python3"));
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{module} is not importable by {}: run scripts/install-deps.sh --tests",
        py.display()
    );
    py
}

/// Router `name`'s entry in a route.json.
pub fn router<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["router"] == name)
        .unwrap_or_else(|| panic!("no router {name} in {report}"))
}
