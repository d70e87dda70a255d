//! `ipw bench route`: how fast routing runs. A synthetic table (queries x models, scores and
//! energies from a seeded generator) is routed by every built-in router (decisions and point
//! figures, then the full report with bootstrap intervals on a slice), and a WASM router is
//! timed on one thread, a fresh sandboxed instance per decision.

use super::routers::{self, Context, Objective};
use super::simulate;
use crate::config::ModelMeta;
use crate::joined::{Aggregates, Column, EnergySource, Outcome, Row, Table};
use crate::rng::SplitMix64;
use std::time::Instant;

/// Figures for one router.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteBench {
    /// The router.
    pub router: String,
    /// Queries routed.
    pub queries: usize,
    /// Seconds for decisions and point figures over every query.
    pub seconds: f64,
    /// Decisions per second (one thread).
    pub per_s: f64,
}

/// A synthetic table: model k (of `models`) has accuracy rising and energy rising with k, the
/// last model is the reference.
pub fn synthetic_table(queries: usize, models: usize, seed: u64) -> Table {
    let mut rng = SplitMix64::new(seed);
    let columns = (0..models)
        .map(|k| Column {
            name: format!("m{k:02}"),
            meta: ModelMeta {
                params_b: Some(0.5 * (k + 1) as f64),
                price_in_per_mtok: Some(0.1 * (k + 1) as f64),
                price_out_per_mtok: Some(0.4 * (k + 1) as f64),
                ..ModelMeta::default()
            },
            accelerator: "synthetic".into(),
            run: "/nonexistent".into(),
            energy: EnergySource::Measured,
            aggregates: Aggregates::default(),
        })
        .collect();
    let rows = (0..queries)
        .map(|q| {
            let tokens = 20 + rng.below(400) as u64;
            Row {
                query_id: format!("q{q}"),
                dataset: "synthetic".into(),
                subject: None,
                category: None,
                domain: None,
                prompt: String::new(),
                prompt_tokens: Some(tokens),
                outcomes: (0..models)
                    .map(|k| {
                        let p = 0.3 + 0.6 * k as f64 / models.max(2) as f64;
                        let right = (rng.next_u64() % 10_000) as f64 / 10_000.0 < p;
                        let e = (k + 1) as f64 * (5.0 + rng.below(100) as f64 / 10.0);
                        Outcome {
                            score: if right { 1.0 } else { 0.0 },
                            failed: false,
                            unscored: false,
                            pairwise: false,
                            energy_j: Some(e),
                            latency_s: Some(e / 50.0),
                            input_tokens: Some(tokens),
                            output_tokens: Some(100),
                            flops: Some(2.0 * 0.5e9 * (k + 1) as f64 * (tokens + 100) as f64),
                            cost_usd: Some(1e-6 * (k + 1) as f64),
                            g_co2e: None,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Table {
        columns,
        rows,
        incomplete: Vec::new(),
        energy_basis: "net",
    }
}

/// Route `table` with every built-in router (decisions and point figures, no intervals).
pub fn bench_builtin(table: &Table) -> Vec<RouteBench> {
    let reference = table.columns.len() - 1;
    let ctx = Context {
        reference,
        objective: Objective::Energy,
        seed: 1,
    };
    [
        "always:m00".to_string(),
        "random:0.5".into(),
        "oracle".into(),
        "p-accurate:0.8".into(),
        "threshold:prompt_tokens:200:m00".into(),
        "cascade:m00".into(),
    ]
    .into_iter()
    .map(|spec| {
        let mut r = routers::builtin(&spec, table, ctx).expect("built-in spec");
        let started = Instant::now();
        let p = simulate::point(r.as_mut(), table, reference, 0.0);
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(p);
        RouteBench {
            router: spec,
            queries: table.rows.len(),
            seconds,
            per_s: table.rows.len() as f64 / seconds,
        }
    })
    .collect()
}

/// The full report (paired bootstrap intervals, 1000 resamples) for the oracle: seconds.
pub fn bench_full_report(table: &Table) -> f64 {
    let reference = table.columns.len() - 1;
    let ctx = Context {
        reference,
        objective: Objective::Energy,
        seed: 1,
    };
    let mut r = routers::builtin("oracle", table, ctx).expect("built-in spec");
    let started = Instant::now();
    std::hint::black_box(simulate::simulate(r.as_mut(), table, reference, 1));
    started.elapsed().as_secs_f64()
}

/// Decisions per second of a WASM router on one thread over `table`'s first rows for about
/// `seconds`.
pub fn bench_wasm(
    path: &std::path::Path,
    table: &Table,
    seconds: f64,
) -> Result<RouteBench, crate::sandbox::SandboxError> {
    use super::routers::Router;
    let reference = table.columns.len() - 1;
    let mut r = super::wasm::WasmRouter::load(
        &path.display().to_string(),
        path,
        "{}",
        crate::sandbox::Limits::router(),
        reference,
    )?;
    let started = Instant::now();
    let mut n = 0;
    let mut errors = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let row = &table.rows[n % table.rows.len()];
        if r.decide(row, table).is_err() {
            errors += 1;
        }
        n += 1;
    }
    let took = started.elapsed().as_secs_f64();
    if errors > 0 {
        tracing::warn!("{errors} of {n} WASM decisions were errors");
    }
    Ok(RouteBench {
        router: path.display().to_string(),
        queries: n,
        seconds: took,
        per_s: n as f64 / took,
    })
}

/// Give every row of `table` a prompt of 20 to 60 words drawn from a vocabulary of 5000, the
/// dataset's label and (one in four) the word that says the cheapest model is as good: text
/// for a learned router to featurize, of the length of a typical benchmark question.
pub fn add_prompts(table: &mut Table, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for row in &mut table.rows {
        let n = 20 + rng.below(41);
        let mut prompt = String::with_capacity(n * 8);
        for i in 0..n {
            if i > 0 {
                prompt.push(' ');
            }
            prompt.push_str(&format!("w{}", rng.below(5000)));
        }
        if row.outcomes[0].score >= row.outcomes[row.outcomes.len() - 1].score && rng.below(4) == 0
        {
            prompt.push_str(" easy");
        }
        row.prompt = prompt;
    }
}

/// `ipw route train` on `table` (its last model the reference, energy the objective, 20% held
/// out) with `epochs` passes (`None`: as `ipw route train` chooses): seconds to train and the router's bytes.
pub fn bench_train(
    table: &Table,
    epochs: Option<u32>,
) -> Result<(f64, super::learn::Trained), super::learn::LearnError> {
    let started = Instant::now();
    let trained = super::learn::train(
        table,
        &super::learn::TrainOptions {
            reference: table.columns[table.columns.len() - 1].name.clone(),
            objective: Some(Objective::Energy),
            holdout: 0.2,
            seed: 1,
            features: ipw_router_model::FeatureSet::DEFAULT,
            epochs,
            algorithm: super::learn::Algorithm::Logistic,
        },
    )?;
    Ok((started.elapsed().as_secs_f64(), trained))
}
