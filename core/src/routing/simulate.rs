//! Routing simulation and its metrics: each router decides every query of the table; what the
//! chosen model(s) did on that query in its run is what the router gets. Figures:
//!
//! - accuracy = mean score of the answering model (the last one asked);
//! - energy, compute, cost, latency per query = the sum over every model asked (a cascade pays
//!   for both attempts), as means;
//! - savings vs the reference = 1 − Σ router / Σ all-reference over the same queries, for
//!   energy, compute and cost; `accuracy_delta` = router accuracy − reference accuracy;
//! - every figure with a paired bootstrap 95% interval (queries resampled, both sides
//!   recomputed on the same draw).
//!
//! A router that fails on a query (an error, a hostile WASM router) is recorded as a routing
//! error for that query, which then goes to the reference (as a deployed system would fall
//! back), and the simulation goes on. A WASM router that fails too many decisions in a row is
//! given up on ([`super::give_up`]): its remaining queries are routing errors too, not asked.

use super::give_up::{GivenUp, Patience};
use super::routers::{Decision, Router};
use crate::analysis::bootstrap::bootstrap;
use crate::analysis::quality::mean as mean_of;
use crate::analysis::Estimate;
use crate::joined::Table;
use crate::study::GroupBy;
use std::collections::BTreeMap;

/// One query a router could not route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteFailure {
    /// The query.
    pub query_id: String,
    /// What the router said.
    pub message: String,
}

/// Savings against sending every query to the reference.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Savings {
    /// Energy saved, a share of the reference's (0.643 = 64.3%).
    pub energy: Option<Estimate>,
    /// Compute (FLOPs) saved.
    pub compute: Option<Estimate>,
    /// Cost saved.
    pub cost: Option<Estimate>,
    /// Carbon (g CO2e) saved, with a footprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbon: Option<Estimate>,
}

/// One router's results over the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouterReport {
    /// The router's spec.
    pub router: String,
    /// Queries routed.
    pub queries: usize,
    /// Queries the router failed on (answered by the reference instead), the queries it was
    /// not asked about after it was given up on included.
    pub errors: Vec<RouteFailure>,
    /// Whether the router was given up on after failing too many decisions in a row, and why.
    pub given_up: Option<GivenUp>,
    /// What its decisions keep and save.
    #[serde(flatten)]
    pub figures: Figures,
    /// Some energy behind the figures is declared, not measured.
    pub energy_estimated: bool,
    /// With `--by`: the same figures per group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupRoute>,
}

/// Per query: what the router's decision cost and scored.
#[derive(Debug, Clone, Copy)]
struct Paid {
    score: f64,
    energy: Option<f64>,
    flops: Option<f64>,
    cost: Option<f64>,
    carbon: Option<f64>,
    latency: Option<f64>,
}

fn paid(table: &Table, row: usize, d: &Decision) -> Paid {
    let r = &table.rows[row];
    let sum = |f: &dyn Fn(usize) -> Option<f64>| d.tried.iter().map(|&c| f(c)).sum();
    Paid {
        score: r.outcomes[*d.tried.last().expect("a decision names a model")].score,
        energy: sum(&|c| r.outcomes[c].energy_j),
        flops: sum(&|c| r.outcomes[c].flops),
        cost: sum(&|c| r.outcomes[c].cost_usd),
        carbon: sum(&|c| r.outcomes[c].g_co2e),
        latency: sum(&|c| r.outcomes[c].latency_s),
    }
}

/// Decide every row; a failed decision (or one naming no known column) goes to the reference,
/// as does every row after the router was given up on.
fn decide_all(
    router: &mut dyn Router,
    table: &Table,
    reference: usize,
) -> (Vec<Decision>, Vec<RouteFailure>, Option<GivenUp>) {
    let mut errors = Vec::new();
    let mut patience = Patience::new(router);
    let decisions = table
        .rows
        .iter()
        .map(|row| {
            let d = patience.decide(router, row, table, |d| {
                if d.tried.is_empty() {
                    Err("the router chose no model".to_string())
                } else if let Some(bad) = d.tried.iter().find(|&&c| c >= table.columns.len()) {
                    Err(format!(
                        "the router chose model #{bad}, which is not a candidate"
                    ))
                } else {
                    Ok(d)
                }
            });
            d.unwrap_or_else(|message| {
                errors.push(RouteFailure {
                    query_id: row.query_id.clone(),
                    message,
                });
                Decision {
                    tried: vec![reference],
                    confidence: None,
                }
            })
        })
        .collect();
    let given_up = patience.given_up();
    if let Some(g) = &given_up {
        tracing::warn!("{g}");
    }
    (decisions, errors, given_up)
}

/// One router's figures over one group of queries (`ipw route --by domain`): the router decided
/// every query of the table once; these are its figures over the group's queries alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupRoute {
    /// The group (a domain label, `unlabelled`, a dataset, a subject or a category).
    pub group: String,
    /// Queries in the group.
    pub queries: usize,
    /// Of them, queries the router failed on (answered by the reference).
    pub errors: usize,
    /// The figures, as for the whole table.
    #[serde(flatten)]
    pub figures: Figures,
}

/// What a router's decisions over a set of queries keep and save.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// Mean score.
    pub accuracy: Option<Estimate>,
    /// Router accuracy minus the reference's, paired.
    pub accuracy_delta: Option<Estimate>,
    /// Mean joules per query (the table's energy basis).
    pub energy_j: Option<Estimate>,
    /// Mean FLOPs per query.
    pub compute_flops: Option<Estimate>,
    /// Mean US dollars per query.
    pub cost_usd: Option<Estimate>,
    /// Mean grams CO2e per query, with a footprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub g_co2e: Option<Estimate>,
    /// Mean seconds per query (summed over attempts).
    pub latency_s: Option<Estimate>,
    /// Against the all-reference baseline.
    pub savings: Savings,
    /// Share of queries each model answered.
    pub answered_by: BTreeMap<String, f64>,
    /// Queries where more than one model was asked.
    pub escalated: usize,
}

/// The figures of `decisions` (one per row of `table`) over the rows `rows`.
fn figures(
    table: &Table,
    decisions: &[Decision],
    rows: &[usize],
    reference: usize,
    seed: u64,
) -> Figures {
    let all_ref = Decision {
        tried: vec![reference],
        confidence: None,
    };
    let ours: Vec<Paid> = rows
        .iter()
        .map(|&i| paid(table, i, &decisions[i]))
        .collect();
    let base: Vec<Paid> = rows.iter().map(|&i| paid(table, i, &all_ref)).collect();
    let n = ours.len();
    // A column with a missing value (a model without energy, price or FLOPs) has no figure.
    let col =
        |v: &[Paid], f: fn(&Paid) -> Option<f64>| -> Option<Vec<f64>> { v.iter().map(f).collect() };
    let boot = |salt: u64, cols: &[&[f64]], stat: fn(&[f64], f64) -> Option<f64>| {
        bootstrap(cols, seed ^ salt, stat)
    };
    let saving = |f: fn(&Paid) -> Option<f64>, salt: u64| {
        let (a, b) = (col(&ours, f)?, col(&base, f)?);
        boot(salt, &[&a, &b], |t, _| {
            (t[1] > 0.0).then(|| 1.0 - t[0] / t[1])
        })
    };
    let mean = |f: fn(&Paid) -> Option<f64>, salt: u64| boot(salt, &[&col(&ours, f)?], mean_of);
    let scores: Vec<f64> = ours.iter().map(|p| p.score).collect();
    let ref_scores: Vec<f64> = base.iter().map(|p| p.score).collect();
    let mut answered_by: BTreeMap<String, f64> = BTreeMap::new();
    for &i in rows {
        let name = &table.columns[*decisions[i].tried.last().expect("non-empty")].name;
        *answered_by.entry(name.clone()).or_default() += 1.0 / n.max(1) as f64;
    }
    Figures {
        accuracy: mean(|p| Some(p.score), 1),
        accuracy_delta: boot(2, &[&scores, &ref_scores], |t, n| Some((t[0] - t[1]) / n)),
        energy_j: mean(|p| p.energy, 3),
        compute_flops: mean(|p| p.flops, 4),
        cost_usd: mean(|p| p.cost, 5),
        g_co2e: mean(|p| p.carbon, 10),
        latency_s: mean(|p| p.latency, 6),
        savings: Savings {
            energy: saving(|p| p.energy, 7),
            compute: saving(|p| p.flops, 8),
            cost: saving(|p| p.cost, 9),
            carbon: saving(|p| p.carbon, 11),
        },
        answered_by,
        escalated: rows
            .iter()
            .filter(|&&i| decisions[i].tried.len() > 1)
            .count(),
    }
}

/// Route every query of `table` with `router`; `reference` is the baseline column.
pub fn simulate(
    router: &mut dyn Router,
    table: &Table,
    reference: usize,
    seed: u64,
) -> RouterReport {
    simulate_grouped(router, table, reference, seed, None)
}

/// [`simulate`], with the figures also per group of `by` (every query in one group: queries
/// without a label are the `unlabelled` group). The router decides each query once, so the
/// groups' figures are parts of the whole one.
pub fn simulate_grouped(
    router: &mut dyn Router,
    table: &Table,
    reference: usize,
    seed: u64,
    by: Option<GroupBy>,
) -> RouterReport {
    let (decisions, errors, given_up) = decide_all(router, table, reference);
    let all: Vec<usize> = (0..table.rows.len()).collect();
    let f = figures(table, &decisions, &all, reference, seed);
    let energy_estimated = decisions.iter().any(|d| {
        d.tried
            .iter()
            .any(|&c| table.columns[c].energy == crate::joined::EnergySource::Declared)
    });
    let groups = by.map_or_else(Vec::new, |by| {
        // As in `compare`: a query without a subject (category) is in no subject group; by
        // domain every query has one.
        let mut members: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, row) in table.rows.iter().enumerate() {
            if let Some(key) = crate::study::group_key(by, row) {
                members.entry(key).or_default().push(i);
            }
        }
        let failed: std::collections::HashSet<&str> =
            errors.iter().map(|e| e.query_id.as_str()).collect();
        members
            .into_iter()
            .map(|(group, rows)| GroupRoute {
                errors: rows
                    .iter()
                    .filter(|&&i| failed.contains(table.rows[i].query_id.as_str()))
                    .count(),
                queries: rows.len(),
                figures: figures(table, &decisions, &rows, reference, seed),
                group,
            })
            .collect()
    });
    RouterReport {
        router: router.name(),
        queries: table.rows.len(),
        figures: f,
        energy_estimated,
        errors,
        given_up,
        groups,
    }
}

/// Point figures only (no intervals): for sweeping a router's parameter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    /// The parameter value.
    pub param: f64,
    /// Mean score.
    pub accuracy: f64,
    /// Mean joules per query, if known.
    pub energy_j: Option<f64>,
    /// Mean US dollars per query, if priced.
    pub cost_usd: Option<f64>,
    /// Mean FLOPs per query, if known.
    pub compute_flops: Option<f64>,
    /// Mean grams CO2e per query, with a footprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub g_co2e: Option<f64>,
    /// Share of queries the reference answered.
    pub reference_share: f64,
}

/// Figures of one router without intervals: one pass, no per-query storage (what a sweep
/// over a parameter, and the 1M-query benchmark, run).
pub fn point(router: &mut dyn Router, table: &Table, reference: usize, param: f64) -> CurvePoint {
    let n = table.rows.len();
    let (mut score, mut to_reference) = (0.0, 0usize);
    let (mut energy, mut cost, mut flops, mut carbon) =
        (Some(0.0), Some(0.0), Some(0.0), Some(0.0));
    let add = |acc: &mut Option<f64>, v: Option<f64>| {
        *acc = acc.zip(v).map(|(a, b)| a + b);
    };
    for row in &table.rows {
        let d = match router.decide(row, table) {
            Ok(d) if !d.tried.is_empty() && d.tried.iter().all(|&c| c < table.columns.len()) => d,
            _ => Decision {
                tried: vec![reference],
                confidence: None,
            },
        };
        let last = *d.tried.last().expect("non-empty");
        score += row.outcomes[last].score;
        if last == reference {
            to_reference += 1;
        }
        for &c in &d.tried {
            let o = &row.outcomes[c];
            add(&mut energy, o.energy_j);
            add(&mut cost, o.cost_usd);
            add(&mut flops, o.flops);
            add(&mut carbon, o.g_co2e);
        }
    }
    let per = |v: Option<f64>| v.filter(|_| n > 0).map(|v| v / n as f64);
    CurvePoint {
        param,
        accuracy: if n > 0 { score / n as f64 } else { 0.0 },
        energy_j: per(energy),
        cost_usd: per(cost),
        compute_flops: per(flops),
        g_co2e: per(carbon),
        reference_share: to_reference as f64 / n.max(1) as f64,
    }
}

/// RouteLLM's figures for a weak/strong pair: the performance gap recovered (PGR) as a function
/// of the share of calls to the strong model, its area (APGR), and the smallest call share that
/// recovers 50% and 80% of the gap (CPT).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GapRecovery {
    /// What orders the queries (`random` is exact: PGR(c) = c).
    pub router: String,
    /// Area under PGR over call share in [0, 1].
    pub apgr: f64,
    /// Smallest share of strong calls with PGR >= 0.5.
    pub cpt50: f64,
    /// Smallest share of strong calls with PGR >= 0.8.
    pub cpt80: f64,
    /// (call share, PGR) at every step.
    pub curve: Vec<(f64, f64)>,
}

/// PGR curve when the `k` highest-`priority` queries go to the strong model, for k = 0..n.
/// `None` when the strong model is not more accurate than the weak one (no gap to recover).
pub fn gap_recovery(
    table: &Table,
    weak: usize,
    strong: usize,
    router: &str,
    priority: &[f64],
) -> Option<GapRecovery> {
    let n = table.rows.len();
    if n == 0 {
        return None;
    }
    let (sw, ss): (Vec<f64>, Vec<f64>) = table
        .rows
        .iter()
        .map(|r| (r.outcomes[weak].score, r.outcomes[strong].score))
        .unzip();
    let (acc_w, acc_s) = (
        sw.iter().sum::<f64>() / n as f64,
        ss.iter().sum::<f64>() / n as f64,
    );
    let gap = acc_s - acc_w;
    if gap < 1e-12 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Highest priority first; ties in row order, so the curve is reproducible.
    order.sort_by(|&a, &b| priority[b].total_cmp(&priority[a]).then(a.cmp(&b)));
    let mut curve = vec![(0.0, 0.0)];
    let mut acc = acc_w;
    for (k, &i) in order.iter().enumerate() {
        acc += (ss[i] - sw[i]) / n as f64;
        curve.push(((k + 1) as f64 / n as f64, (acc - acc_w) / gap));
    }
    Some(summarise_curve(router, curve))
}

/// The random router's PGR curve in closed form: with a share c of calls to the strong model,
/// expected accuracy is (1 − c) acc_weak + c acc_strong, so PGR(c) = c and APGR = 0.5.
pub fn random_gap_recovery(steps: usize) -> GapRecovery {
    let curve = (0..=steps)
        .map(|k| (k as f64 / steps as f64, k as f64 / steps as f64))
        .collect();
    summarise_curve("random", curve)
}

fn summarise_curve(router: &str, curve: Vec<(f64, f64)>) -> GapRecovery {
    let apgr = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    let cpt = |x: f64| {
        curve
            .iter()
            .find(|(_, p)| *p >= x - 1e-12)
            .map(|(c, _)| *c)
            .unwrap_or(1.0)
    };
    GapRecovery {
        router: router.into(),
        apgr,
        cpt50: cpt(0.5),
        cpt80: cpt(0.8),
        curve,
    }
}
