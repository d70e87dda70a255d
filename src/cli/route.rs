//! `ipw route`: simulate routers over runs of several models and print what each keeps and
//! saves; writes route.json and route.csv.

use anyhow::{Context, Result};
use ipw_core::analysis::Estimate;
use ipw_core::routing::{self, routers::Objective, RouteRequest};
use ipw_core::study::GroupBy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command's arguments.
pub struct Args {
    pub runs: Vec<PathBuf>,
    pub reference: String,
    pub routers: Vec<String>,
    pub objective: Option<String>,
    pub by: Option<String>,
    pub weak: Option<String>,
    pub meta: Option<PathBuf>,
    pub seed: u64,
    pub workload: Option<PathBuf>,
    pub footprint: Option<PathBuf>,
    pub held_out_of: Option<PathBuf>,
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let meta = match &a.meta {
        Some(path) => routing::read_meta_file(path)?,
        None => BTreeMap::new(),
    };
    let routers = if a.routers.is_empty() {
        vec![
            "oracle".into(),
            "p-accurate:0.8".into(),
            "random:0.5".into(),
        ]
    } else {
        a.routers.clone()
    };
    // `--by` groups; an objective name there is the older spelling of `--objective`.
    let (mut objective, mut by) = (a.objective.clone(), None);
    if let Some(b) = &a.by {
        match (GroupBy::parse(b), Objective::parse(b)) {
            (Ok(g), _) => by = Some(g),
            (Err(_), Ok(_)) if objective.is_none() => objective = Some(b.clone()),
            (Err(e), _) => anyhow::bail!("--by {e}"),
        }
    }
    // A wrong footprint file is refused before any run is read.
    let footprint =
        ipw_core::footprint::Footprints::given_or_from_runs(a.footprint.as_deref(), &a.runs)?;
    let req = RouteRequest {
        runs: a.runs.clone(),
        reference: a.reference.clone(),
        routers,
        objective: objective
            .as_deref()
            .map(Objective::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--objective {e}"))?,
        seed: a.seed,
        meta,
        weak: a.weak.clone(),
        workload: a.workload.clone(),
        by,
        footprint,
        held_out_of: a.held_out_of.clone(),
    };
    let report = routing::route(&req)?;
    let out = match &a.out {
        Some(d) => d.clone(),
        None => {
            let first = ipw_core::joined::find_runs(&a.runs)?;
            first[0].join("analysis")
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("route.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let csv = out.join("route.csv");
    std::fs::write(&csv, ipw_core::export::tables::route(&report))
        .with_context(|| format!("writing {}", csv.display()))?;
    print(&report);
    println!("written: {}, {}", json.display(), csv.display());
    Ok(ExitCode::SUCCESS)
}

fn est(e: &Option<Estimate>, scale: f64, digits: usize) -> String {
    ipw_core::analysis::estimate_text(e.as_ref().map(|e| e.scaled(scale)).as_ref(), digits)
}

fn print(r: &routing::RouteReport) {
    println!(
        "{} queries routed against `{}` (energy: {}, the oracle minimises {}){}",
        r.queries,
        r.reference,
        r.energy_basis,
        r.objective.name(),
        r.held_out_of
            .as_ref()
            .map(|p| format!(": only those {p} held out of its training"))
            .unwrap_or_default()
    );
    for l in &r.learned {
        if l.in_sample_queries > 0 {
            println!(
                "  NOTE {} was trained on {} of these {} queries: its figures are in-sample, not a test of it (route with --held-out-of its .wasm)",
                l.router, l.in_sample_queries, r.queries
            );
        }
    }
    if !r.incomplete.is_empty() {
        println!(
            "  {} queries are missing from some runs and were not routed (first: {} lacks it in {})",
            r.incomplete.len(),
            r.incomplete[0].0,
            r.incomplete[0].1.join(", ")
        );
    }
    for m in &r.models {
        println!(
            "  model {:<24} {:<20} accuracy {:.3}  {} J/query{}",
            m.name,
            m.accelerator,
            m.aggregates.accuracy,
            m.aggregates
                .energy_j
                .map(|e| format!("{e:.2}"))
                .unwrap_or_else(|| "-".into()),
            match m.energy {
                ipw_core::joined::EnergySource::Declared => " (declared: ESTIMATED)",
                ipw_core::joined::EnergySource::None => " (no energy)",
                ipw_core::joined::EnergySource::Measured => "",
            }
        );
    }
    for x in &r.routers {
        println!(
            "  router {}{}",
            x.router,
            if x.energy_estimated {
                "  (energy partly ESTIMATED)"
            } else {
                ""
            }
        );
        println!(
            "    accuracy {}  (vs reference {})",
            est(&x.figures.accuracy, 1.0, 3),
            est(&x.figures.accuracy_delta, 1.0, 3)
        );
        println!(
            "    per query: energy {} J  compute {} GFLOP  cost {} µ$  latency {} s",
            est(&x.figures.energy_j, 1.0, 2),
            est(&x.figures.compute_flops, 1e-9, 1),
            est(&x.figures.cost_usd, 1e6, 1),
            est(&x.figures.latency_s, 1.0, 2)
        );
        if x.figures.g_co2e.is_some() {
            println!(
                "    carbon: {} g CO2e/query, saving {}% vs reference",
                est(&x.figures.g_co2e, 1.0, 4),
                est(&x.figures.savings.carbon, 100.0, 1)
            );
        }
        println!(
            "    savings vs reference: energy {}%  compute {}%  cost {}%",
            est(&x.figures.savings.energy, 100.0, 1),
            est(&x.figures.savings.compute, 100.0, 1),
            est(&x.figures.savings.cost, 100.0, 1)
        );
        let shares: Vec<String> = x
            .figures
            .answered_by
            .iter()
            .map(|(m, s)| format!("{m} {:.0}%", s * 100.0))
            .collect();
        println!("    answered by: {}", shares.join(", "));
        if x.figures.escalated > 0 {
            println!(
                "    escalated: {} queries asked two models",
                x.figures.escalated
            );
        }
        if let (Some(by), false) = (r.by, x.groups.is_empty()) {
            print_groups(by, &r.reference, &x.groups);
        }
        if !x.errors.is_empty() {
            println!(
                "    ROUTING ERRORS: {} queries (sent to the reference); first: {}: {}",
                x.errors.len(),
                x.errors[0].query_id,
                x.errors[0].message
            );
        }
        if let Some(g) = &x.given_up {
            println!("    GIVEN UP: {g}");
        }
    }
    for w in &r.workload {
        println!(
            "  workload, {} ({} requests): {:.1}% of requests and {:.1}% of tokens off the reference; busiest minute at the reference {} -> {} tokens ({:.1}% lower)",
            w.router,
            w.requests,
            w.offloaded_requests * 100.0,
            w.offloaded_tokens * 100.0,
            w.peak_tokens_per_min_all_reference,
            w.peak_tokens_per_min_routed,
            w.peak_reduction * 100.0
        );
        for h in &w.hours {
            println!(
                "    hour {:>3}: {:>6} requests, {:>5.1}% off the reference ({:.1}% of tokens)",
                h.hour,
                h.requests,
                100.0 * (1.0 - h.to_reference as f64 / h.requests.max(1) as f64),
                100.0 * (1.0 - h.tokens_to_reference as f64 / h.tokens.max(1) as f64)
            );
        }
    }
    if r.pair.is_none() {
        println!(
            "  gap recovery: none (the reference is not more accurate than the weak model, so there is no gap to recover)"
        );
    }
    if let Some((weak, strong)) = &r.pair {
        println!("  gap recovery, {weak} -> {strong}:");
        for g in &r.gap_recovery {
            println!(
                "    {:<14} APGR {:.3}  CPT(50%) {:.1}%  CPT(80%) {:.1}%",
                g.router,
                g.apgr,
                g.cpt50 * 100.0,
                g.cpt80 * 100.0
            );
        }
    }
}

/// One line per group: its queries, accuracy, the change against the reference, the energy
/// saved and how many the reference still answered.
fn print_groups(by: GroupBy, reference: &str, groups: &[routing::simulate::GroupRoute]) {
    println!(
        "    by {}: {:<14} {:>7}  {:<22} {:<22} {:<22} to reference",
        by.name(),
        "group",
        "queries",
        "accuracy",
        "vs reference",
        "energy saved %"
    );
    for g in groups {
        let x = &g.figures;
        let to_reference = x.answered_by.get(reference).copied().unwrap_or(0.0);
        println!(
            "    {:<width$} {:<14} {:>7}  {:<22} {:<22} {:<22} {:.0}%",
            "",
            g.group,
            g.queries,
            est(&x.accuracy, 1.0, 3),
            est(&x.accuracy_delta, 1.0, 3),
            est(&x.savings.energy, 100.0, 1),
            to_reference * 100.0,
            width = by.name().len() + 3,
        );
    }
}

/// `ipw route train`'s arguments.
pub struct TrainArgs {
    pub runs: Vec<PathBuf>,
    pub reference: String,
    pub objective: Option<String>,
    pub holdout: f64,
    pub seed: u64,
    pub dim_log2: u32,
    pub epochs: Option<u32>,
    pub neighbours: Option<u32>,
    pub prototypes: usize,
    pub meta: Option<PathBuf>,
    pub footprint: Option<PathBuf>,
    pub out: PathBuf,
}

/// Train a router, write it, and route the queries it held out against random, a
/// prompt-length threshold and the oracle.
pub fn train(a: TrainArgs) -> Result<ExitCode> {
    use ipw_core::routing::learn;
    let meta = match &a.meta {
        Some(path) => routing::read_meta_file(path)?,
        None => BTreeMap::new(),
    };
    let footprint =
        ipw_core::footprint::Footprints::given_or_from_runs(a.footprint.as_deref(), &a.runs)?;
    let objective = a
        .objective
        .as_deref()
        .map(Objective::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--objective {e}"))?;
    let table = routing::table(&a.runs, &meta, footprint.as_ref())?;
    let started = std::time::Instant::now();
    let trained = learn::train(
        &table,
        &learn::TrainOptions {
            reference: a.reference.clone(),
            objective,
            holdout: a.holdout,
            seed: a.seed,
            features: ipw_router_model::FeatureSet {
                dim_log2: a.dim_log2,
                ..ipw_router_model::FeatureSet::DEFAULT
            },
            epochs: a.epochs,
            algorithm: match a.neighbours {
                None => learn::Algorithm::Logistic,
                Some(vote) => learn::Algorithm::Neighbours {
                    vote,
                    prototypes: a.prototypes,
                },
            },
        },
    )?;
    let took = started.elapsed();
    std::fs::write(&a.out, &trained.component)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let m = &trained.meta;
    println!(
        "trained {} on {} queries ({} held out) in {:.2} s: {} bytes -> {}",
        m.algorithm,
        m.train_queries,
        m.held_out_queries,
        took.as_secs_f64(),
        trained.component.len(),
        a.out.display()
    );
    for model in &m.models {
        println!(
            "  {:<28} {} {:.4}/query  as good as {} on {:.1}% of training queries{}",
            model.name,
            m.objective,
            model.mean_cost,
            m.reference,
            100.0 * model.as_good_share,
            if model.name == m.reference {
                "  (reference)"
            } else if model.routable {
                ""
            } else {
                "  (not cheaper: never chosen)"
            }
        );
    }
    if m.held_out_queries == 0 {
        println!(
            "nothing was held out (--holdout {}), so there are no figures: a router's figures on its own training queries are not a test of it",
            a.holdout
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cheapest = m
        .models
        .iter()
        .find(|x| x.routable)
        .map(|x| x.name.clone())
        .expect("training needs a cheaper model");
    let (feature, sizes) = if table.rows.iter().all(|r| r.prompt_tokens.is_some()) {
        let v: Vec<f64> = table
            .rows
            .iter()
            .filter_map(|r| r.prompt_tokens)
            .map(|t| t as f64)
            .collect();
        ("prompt_tokens", v)
    } else {
        let v = table
            .rows
            .iter()
            .map(|r| r.prompt.chars().count() as f64)
            .collect();
        ("prompt_chars", v)
    };
    let mut sizes = sizes;
    sizes.sort_by(f64::total_cmp);
    // The median prompt: the threshold router sends the shorter half to the cheapest model.
    let median = sizes[sizes.len() / 2];
    let out = a.out.with_extension("held-out");
    println!("routing the {} held-out queries:", m.held_out_queries);
    run(Args {
        runs: a.runs.clone(),
        reference: a.reference.clone(),
        routers: vec![
            a.out.display().to_string(),
            "random:0.5".into(),
            format!("threshold:{feature}:{median}:{cheapest}"),
            format!("oracle:{}", m.objective),
        ],
        objective: Some(m.objective.clone()),
        by: None,
        weak: Some(cheapest),
        meta: a.meta.clone(),
        seed: a.seed,
        workload: None,
        footprint: a.footprint.clone(),
        held_out_of: Some(a.out.clone()),
        out: Some(out),
    })
}
