//! `ipw bench embedded`: the embedded backend against llama.cpp's own server on the same GGUF,
//! threads and context, in one process and one run. Queries alternate between the two one by
//! one (the order flips every query), so that drift on a shared machine (other builds, thermal
//! state) hits both sides alike; each round uses fresh prompts.

use anyhow::{bail, Context};
use ipw_core::backend::{Backend, GenRequest, Generation, Message};
use ipw_core::config::{DatasetConfig, ModelConfig};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of `ipw bench embedded`.
pub struct Settings {
    pub model: PathBuf,
    pub server: PathBuf,
    pub threads: u32,
    pub context: u32,
    pub queries: usize,
    pub rounds: usize,
    pub max_tokens: u32,
}

/// A llama-server child, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(s: &Settings, log: &std::path::Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(log)?;
    let child = Command::new(&s.server)
        .args(["-m".as_ref(), s.model.as_os_str()])
        .args(["-c", &s.context.to_string()])
        .args(["-t", &s.threads.to_string(), "-tb", &s.threads.to_string()])
        .args(["-np", "1", "--host", "127.0.0.1", "-a", "bench"])
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", s.server.display()))?;
    let server = Server { child, port };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if health(port) {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("llama-server did not answer /health within 120 s")
}

/// `GET /health` answered 200 (a plain socket: the CLI has no HTTP client of its own).
fn health(port: u16) -> bool {
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// One query's figures.
#[derive(Clone, Copy)]
struct Timed {
    ttft_s: f64,
    decode_tps: Option<f64>,
    tokens: u64,
}

async fn timed(backend: &Arc<dyn Backend>, req: &GenRequest) -> anyhow::Result<Timed> {
    let start = Instant::now();
    let g: Generation = backend
        .generate(req)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind.as_str(), e.message))?;
    let first = g.first_token_at.context("no token generated")?;
    let ttft_s = (first - start).as_secs_f64();
    let tokens = g.output_tokens.unwrap_or(0);
    let decode = (g.finished_at - first).as_secs_f64();
    Ok(Timed {
        ttft_s,
        decode_tps: (tokens > 1 && decode > 0.0).then(|| (tokens - 1) as f64 / decode),
        tokens,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Run the benchmark and print its figures.
pub fn run(s: Settings) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("ipw-bench-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = start_server(&s, &dir.join("server.log"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(compare(&s, server.port));
    drop(server);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("llama-server's log: {}", dir.join("server.log").display());
    }
    result
}

async fn compare(s: &Settings, port: u16) -> anyhow::Result<ExitCode> {
    let model: ModelConfig = serde_json::from_value(serde_json::json!({
        "name": "embedded", "backend": "embedded", "path": s.model,
        "threads": s.threads, "context": s.context,
    }))?;
    let remote: ModelConfig = serde_json::from_value(serde_json::json!({
        "name": "server", "backend": "openai",
        "base_url": format!("http://127.0.0.1:{port}/v1"), "model": "bench",
    }))?;
    let dataset: DatasetConfig = serde_json::from_value(serde_json::json!({
        "builtin": "gsm8k", "shuffle": true, "max_queries": s.queries * s.rounds + 2,
    }))?;
    let (queries, _) = ipw_core::dataset::load_dataset(&dataset, 13)?;
    let embedded = ipw_core::backend::connect(&model, 1).await?;
    let server = ipw_core::backend::connect(&remote, 1).await?;
    let request = |prompt: &str| GenRequest {
        messages: vec![Message {
            role: "user".into(),
            content: prompt.to_string(),
        }],
        max_tokens: s.max_tokens,
        temperature: 0.0,
        seed: 13,
        stop: Vec::new(),
    };
    println!(
        "embedded backend vs llama-server: {}, {} threads, context {}, {} GSM8K queries x {} \
         rounds (fresh prompts each round), max_tokens {}; alternating query by query",
        s.model.file_name().unwrap_or_default().to_string_lossy(),
        s.threads,
        s.context,
        s.queries,
        s.rounds,
        s.max_tokens
    );
    // Warm both up (first-touch of the mapped weights, thread pools) on prompts not measured.
    for q in &queries[..2] {
        timed(&embedded, &request(&q.prompt)).await?;
        timed(&server, &request(&q.prompt)).await?;
    }
    println!(
        "{:<6} {:>12} {:>12} {:>9} {:>10} {:>10} {:>9} {:>12}",
        "round", "emb tok/s", "srv tok/s", "ratio", "emb TTFT", "srv TTFT", "ratio", "tokens e/s"
    );
    let (mut all_e, mut all_s) = (Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for r in 0..s.rounds {
        let (mut e, mut sv) = (Vec::new(), Vec::new());
        for (i, q) in queries[2 + r * s.queries..2 + (r + 1) * s.queries]
            .iter()
            .enumerate()
        {
            let req = request(&q.prompt);
            if (i + r) % 2 == 0 {
                e.push(timed(&embedded, &req).await?);
                sv.push(timed(&server, &req).await?);
            } else {
                sv.push(timed(&server, &req).await?);
                e.push(timed(&embedded, &req).await?);
            }
        }
        let tps = |v: &[Timed]| median(v.iter().filter_map(|t| t.decode_tps).collect());
        let ttft = |v: &[Timed]| median(v.iter().map(|t| t.ttft_s).collect());
        let tokens = |v: &[Timed]| v.iter().map(|t| t.tokens).sum::<u64>();
        let row = (tps(&e), tps(&sv), ttft(&e), ttft(&sv));
        println!(
            "{:<6} {:>12.1} {:>12.1} {:>9.3} {:>10.3} {:>10.3} {:>9.3} {:>12}",
            r + 1,
            row.0,
            row.1,
            row.0 / row.1,
            row.2,
            row.3,
            row.2 / row.3,
            format!("{}/{}", tokens(&e), tokens(&sv))
        );
        rounds.push(row);
        all_e.extend(e);
        all_s.extend(sv);
    }
    let col = |f: fn(&(f64, f64, f64, f64)) -> f64| rounds.iter().map(f).collect::<Vec<_>>();
    let (et, st, ef, sf) = (col(|r| r.0), col(|r| r.1), col(|r| r.2), col(|r| r.3));
    println!();
    println!(
        "p50 decode tok/s over rounds: embedded min {:.1} / median {:.1}; server min {:.1} / median {:.1}",
        min(&et), median(et.clone()), min(&st), median(st.clone())
    );
    println!(
        "p50 TTFT s over rounds:       embedded min {:.3} / median {:.3}; server min {:.3} / median {:.3}",
        min(&ef), median(ef.clone()), min(&sf), median(sf.clone())
    );
    // Per-query pairs: the same prompt on both sides moments apart.
    let pair_tps: Vec<f64> = all_e
        .iter()
        .zip(&all_s)
        .filter_map(|(e, s)| Some(e.decode_tps? / s.decode_tps?))
        .collect();
    let pair_ttft: Vec<f64> = all_e
        .iter()
        .zip(&all_s)
        .map(|(e, s)| e.ttft_s / s.ttft_s)
        .collect();
    println!(
        "embedded / server: decode {:.3}x, TTFT {:.3}x (median of rounds' p50s); paired per \
         query: decode {:.3}x, TTFT {:.3}x (median)",
        median(et) / median(st),
        median(ef) / median(sf),
        median(pair_tps),
        median(pair_ttft)
    );
    println!("target: decode >= 0.95x and TTFT <= 1.05x of llama-server");
    Ok(ExitCode::SUCCESS)
}
