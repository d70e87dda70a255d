//! `ipw bench graders`: what grading costs. For each built-in grader: cold compile time, load
//! time from the disk cache, instantiation time (paid by every call), and grades per second
//! on one thread (one core) over a representative response.

use super::{builtin, Query, WasmGrader};
use crate::sandbox::{Host, JudgeFn, JudgeFuture, Limits, SandboxError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Figures for one grader.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraderBench {
    /// Built-in name.
    pub grader: String,
    /// Component size, bytes.
    pub wasm_bytes: usize,
    /// Compiling the component with no cache.
    pub compile_ms: f64,
    /// Loading the same component from a warm disk cache.
    pub cache_load_ms: f64,
    /// Creating one fresh instance (median of the timed instantiations).
    pub instantiate_us: f64,
    /// Grades completed per second on one thread.
    pub grades_per_s: f64,
    /// Grade calls timed.
    pub calls: usize,
}

/// A query and response each grader is timed on (its own kind of input).
fn workload(name: &str) -> (Query, &'static str, &'static str) {
    let q = |answers: &[&str], choices: &[&str]| {
        Query {
        id: "bench/1".into(),
        prompt: "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?".into(),
        answers: answers.iter().map(|s| s.to_string()).collect(),
        choices: choices.iter().map(|s| s.to_string()).collect(),
        subject: Some("bench".into()),
    }
    };
    let gsm = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72";
    match name {
        "choice" => (
            q(&["C"], &["Paris", "London", "Berlin", "Madrid"]),
            "Let me think step by step. Paris is in France, London in England. The capital of Germany is Berlin.\nAnswer: C",
            "{}",
        ),
        "regex" => (q(&["72"], &[]), gsm, "{\"pattern\": \"#### (\\\\d+)\"}"),
        _ => (q(&["72"], &[]), gsm, "{}"),
    }
}

/// Benchmark every built-in grader for about `seconds` each. The `judge` and `pairwise` graders
/// are timed with an in-process judge that answers at once, so the figure is the grader's own cost, not a
/// model's.
pub fn bench_builtin_graders(seconds: f64) -> Result<Vec<GraderBench>, SandboxError> {
    let cache = std::env::temp_dir().join(format!("ipw-grader-bench-{}", std::process::id()));
    let cold = Host::new(None)?;
    let warm = Host::new(Some(cache.clone()))?;
    let judge: JudgeFn = Arc::new(|_: String| -> JudgeFuture {
        Box::pin(std::future::ready(Ok(
            // Read by `judge` (the GRADE line) and by `pairwise` (the VERDICT line) alike.
            "The response matches the reference.\nGRADE: C\nVERDICT: TIE".to_string(),
        )))
    });
    let mut out = Vec::new();
    for name in builtin::names() {
        let bytes = builtin::wasm(name).expect("listed built-in");
        let limits = Limits::default();
        let started = Instant::now();
        WasmGrader::load(&cold, name, bytes, limits, None)?;
        let compile = started.elapsed();
        WasmGrader::load(&warm, name, bytes, limits, None)?; // fills the cache
        let started = Instant::now();
        let grader = WasmGrader::load(&warm, name, bytes, limits, Some(judge.clone()))?;
        let cache_load = started.elapsed();
        assert!(grader.from_cache, "second load comes from the cache");

        let mut inst = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            grader.instantiate()?;
            inst.push(t.elapsed());
        }
        inst.sort();

        let (query, response, params) = workload(name);
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut calls = 0;
        while started.elapsed() < budget || calls < 10 {
            let g = grader.grade(&query, response, params)?;
            debug_assert!(g.score.is_some(), "{name}: {g:?}");
            calls += 1;
        }
        let wall = started.elapsed().as_secs_f64();
        out.push(GraderBench {
            grader: name.to_string(),
            wasm_bytes: bytes.len(),
            compile_ms: compile.as_secs_f64() * 1e3,
            cache_load_ms: cache_load.as_secs_f64() * 1e3,
            instantiate_us: inst[inst.len() / 2].as_secs_f64() * 1e6,
            grades_per_s: calls as f64 / wall,
            calls,
        });
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(out)
}
