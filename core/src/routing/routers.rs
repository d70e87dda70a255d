//! Built-in routers. A router sees one query at a time (its row of the table) and decides which
//! models answer it: usually one; a cascade tries a small model first and may escalate, paying
//! for both attempts.
//!
//! Spec strings (`--router`):
//! - `always:<model>`: every query to one model;
//! - `random` (uniform over the models) or `random:<share>` (the reference with probability
//!   `share`, else uniform over the others), seeded per query;
//! - `oracle` / `oracle:energy|compute|cost|carbon`: the cheapest model (by the objective, default
//!   `--by`) whose score is at least the reference's; the upper bound of any router;
//! - `p-accurate:<p>` / `p-accurate:<p>:random`, optionally followed by
//!   `:energy|compute|cost|carbon`: the oracle's choice (by that objective, default `--by`) with
//!   probability `p`, else the reference (as in the study) or a uniformly random model;
//! - `threshold:prompt_tokens:<n>:<model>` (or `prompt_chars`): `model` for prompts up to `n`,
//!   the reference above; `threshold:subject:<a>|<b>|...:<model>`: `model` for queries of
//!   those subjects (or datasets), the reference for the rest;
//! - `cascade:<model>` / `cascade:<model>:<min score>`: ask `model`; when its grade is below
//!   `min score` (default 1, i.e. wrong) ask the reference too; both attempts are paid.
//!
//! An oracle-based router whose objective has no figure in any run (energy on a table of
//! costs) is refused when it is made, naming the objectives that have figures, instead of
//! failing every query.

use crate::joined::{Outcome, Row, Table};
use crate::rng::SplitMix64;

/// What a router decided for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Columns asked, in order; the last one's answer counts. Usually one.
    pub tried: Vec<usize>,
    /// The router's confidence in its choice, if it gives one.
    pub confidence: Option<f64>,
}

impl Decision {
    fn one(col: usize) -> Self {
        Decision {
            tried: vec![col],
            confidence: None,
        }
    }
}

/// What a routing decision minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Joules per query.
    #[default]
    Energy,
    /// FLOPs per query.
    Compute,
    /// US dollars per query.
    Cost,
    /// Grams CO2e per query (from a footprint file: `ipw route --footprint`).
    Carbon,
}

impl Objective {
    /// Parse `energy`, `compute` or `cost`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "energy" => Ok(Objective::Energy),
            "compute" => Ok(Objective::Compute),
            "cost" => Ok(Objective::Cost),
            "carbon" => Ok(Objective::Carbon),
            other => Err(format!("`{other}`: use energy, compute, cost or carbon")),
        }
    }

    /// Every objective, in the order a default is chosen from (see [`Objective::default_for`]).
    pub const ALL: [Objective; 4] = [
        Objective::Energy,
        Objective::Compute,
        Objective::Cost,
        Objective::Carbon,
    ];

    /// Its name, as `--by` and router specs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Energy => "energy",
            Objective::Compute => "compute",
            Objective::Cost => "cost",
            Objective::Carbon => "carbon",
        }
    }

    /// Whether any model has this figure for any query of the table.
    pub fn has_data(self, table: &Table) -> bool {
        table
            .rows
            .iter()
            .any(|r| r.outcomes.iter().any(|o| self.of(o).is_some()))
    }

    /// The objective used when none is chosen: energy, or where no run has energy (a table of
    /// costs, as in the routing literature) the first of compute and cost that has figures;
    /// energy when none has, so that oracle-based routers are refused naming it.
    pub fn default_for(table: &Table) -> Objective {
        Objective::ALL
            .into_iter()
            .find(|o| o.has_data(table))
            .unwrap_or_default()
    }

    /// This objective when the table has figures for it; else why an oracle cannot minimise
    /// it, naming the objectives that have figures.
    pub(crate) fn with_data(self, table: &Table) -> Result<Self, String> {
        if self.has_data(table) {
            return Ok(self);
        }
        let have: Vec<&str> = Objective::ALL
            .into_iter()
            .filter(|o| o.has_data(table))
            .map(Objective::name)
            .collect();
        Err(format!(
            "no run has {} figures, so an oracle cannot minimise it{}; objectives with figures: {} \
             (choose one with --objective, or in the spec, e.g. `oracle:<objective>`)",
            self.name(),
            if self == Objective::Carbon {
                " (carbon comes from a footprint file: --footprint)"
            } else {
                ""
            },
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ))
    }

    /// The figure this objective reads from an outcome.
    pub fn of(self, o: &Outcome) -> Option<f64> {
        match self {
            Objective::Energy => o.energy_j,
            Objective::Compute => o.flops,
            Objective::Cost => o.cost_usd,
            Objective::Carbon => o.g_co2e,
        }
    }
}

/// A routing policy.
pub trait Router: Send {
    /// The spec it was made from, for reports.
    fn name(&self) -> String;
    /// Decide for row `row` of `table`; an error becomes a routing error for this query only.
    fn decide(&mut self, row: &Row, table: &Table) -> Result<Decision, String>;
    /// After how many failed decisions in a row the simulation stops asking this router
    /// ([`super::give_up`]); `None`, the default: never. A built-in router's failures are
    /// about the query (a figure it lacks), so it is asked about every query.
    fn give_up_after(&self) -> Option<usize> {
        None
    }
}

/// Why a router spec could not be used.
#[derive(Debug, thiserror::Error)]
#[error("router `{spec}`: {message}")]
pub struct SpecError {
    /// The spec.
    pub spec: String,
    /// What is wrong with it.
    pub message: String,
}

/// Settings every built-in router shares.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The reference model's column.
    pub reference: usize,
    /// Default objective for the oracle.
    pub objective: Objective,
    /// Seed for random choices (each query draws from its own stream).
    pub seed: u64,
}

/// Make a built-in router from its spec.
pub fn builtin(spec: &str, table: &Table, ctx: Context) -> Result<Box<dyn Router>, SpecError> {
    let err = |message: String| SpecError {
        spec: spec.into(),
        message,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let column = |name: &str| table.column(name).map_err(|e| err(e.to_string()));
    let number = |s: &str, what: &str| -> Result<f64, SpecError> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| err(format!("{what} `{s}` is not a number")))
    };
    let share = |s: &str, what: &str| -> Result<f64, SpecError> {
        let v = number(s, what)?;
        (0.0..=1.0)
            .contains(&v)
            .then_some(v)
            .ok_or_else(|| err(format!("{what} {v} is not in [0, 1]")))
    };
    let name = spec.to_string();
    Ok(match parts[..] {
        ["always", model] => Box::new(Always {
            name,
            col: column(model)?,
        }),
        ["random"] => Box::new(Random {
            name,
            share: None,
            ctx,
        }),
        ["random", s] => Box::new(Random {
            name,
            share: Some(share(s, "share")?),
            ctx,
        }),
        ["oracle"] => Box::new(Oracle {
            name,
            objective: ctx.objective.with_data(table).map_err(err)?,
            ctx,
        }),
        ["oracle", by] => Box::new(Oracle {
            name,
            objective: Objective::parse(by)
                .and_then(|o| o.with_data(table))
                .map_err(err)?,
            ctx,
        }),
        ["p-accurate", p, ref rest @ ..] if rest.len() <= 2 => {
            let (mut random_fallback, mut objective) = (false, ctx.objective);
            for part in rest {
                match *part {
                    "reference" => random_fallback = false,
                    "random" => random_fallback = true,
                    by => {
                        objective = Objective::parse(by).map_err(|e| {
                            err(format!("{e}; or the fallback `reference` or `random`"))
                        })?
                    }
                }
            }
            Box::new(PAccurate {
                name,
                p: share(p, "p")?,
                random_fallback,
                objective: objective.with_data(table).map_err(err)?,
                ctx,
            })
        }
        ["threshold", feature @ ("prompt_tokens" | "prompt_chars"), n, model] => {
            Box::new(Threshold {
                name,
                chars: feature == "prompt_chars",
                limit: number(n, "threshold")?,
                small: column(model)?,
                ctx,
            })
        }
        ["threshold", "subject", list, model] => Box::new(BySubject {
            name,
            subjects: list.split('|').map(str::to_string).collect(),
            small: column(model)?,
            ctx,
        }),
        ["cascade", model] => Box::new(Cascade {
            name,
            small: column(model)?,
            min_score: 1.0,
            ctx,
        }),
        ["cascade", model, s] => Box::new(Cascade {
            name,
            small: column(model)?,
            min_score: number(s, "min score")?,
            ctx,
        }),
        _ => {
            return Err(err(
                "unknown router; use always:<model>, random[:<share>], oracle[:energy|compute|cost], \
                 p-accurate:<p>[:reference|random][:energy|compute|cost], threshold:prompt_tokens|prompt_chars:<n>:<model>, \
                 threshold:subject:<a>|<b>:<model>, \
                 cascade:<model>[:<min score>], or a .wasm router"
                    .into(),
            ))
        }
    })
}

/// A random stream of its own for each query, so a decision does not depend on the order in
/// which queries are routed or on which other routers ran.
fn query_rng(seed: u64, query_id: &str, salt: u64) -> SplitMix64 {
    // FNV-1a over the id.
    let h = query_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    SplitMix64::new(seed ^ h ^ salt)
}

fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

struct Always {
    name: String,
    col: usize,
}

impl Router for Always {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, _: &Row, _: &Table) -> Result<Decision, String> {
        Ok(Decision::one(self.col))
    }
}

struct Random {
    name: String,
    share: Option<f64>,
    ctx: Context,
}

impl Router for Random {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, table: &Table) -> Result<Decision, String> {
        let mut rng = query_rng(self.ctx.seed, &row.query_id, 0x52414e44);
        let n = table.columns.len();
        Ok(Decision::one(match self.share {
            None => rng.below(n),
            Some(share) => {
                if n == 1 || uniform(&mut rng) < share {
                    self.ctx.reference
                } else {
                    let k = rng.below(n - 1);
                    if k >= self.ctx.reference {
                        k + 1
                    } else {
                        k
                    }
                }
            }
        }))
    }
}

/// The oracle's choice for a row: the cheapest model by `objective` that scores at least as
/// well as the reference (ties: the higher score, then the earlier column).
pub fn oracle_choice(row: &Row, reference: usize, objective: Objective) -> Result<usize, String> {
    let bar = row.outcomes[reference].score;
    let mut best: Option<(usize, f64)> = None;
    for (i, o) in row.outcomes.iter().enumerate() {
        if o.score + 1e-12 < bar {
            continue;
        }
        let Some(c) = objective.of(o) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((b, bc)) => c < bc || (c == bc && o.score > row.outcomes[b].score),
        };
        if better {
            best = Some((i, c));
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| {
        format!(
            "no model that scores at least as well as the reference has a {:?} figure for this query",
            objective
        )
    })
}

struct Oracle {
    name: String,
    objective: Objective,
    ctx: Context,
}

impl Router for Oracle {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, _: &Table) -> Result<Decision, String> {
        oracle_choice(row, self.ctx.reference, self.objective).map(Decision::one)
    }
}

struct PAccurate {
    name: String,
    p: f64,
    random_fallback: bool,
    objective: Objective,
    ctx: Context,
}

impl Router for PAccurate {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, table: &Table) -> Result<Decision, String> {
        let mut rng = query_rng(self.ctx.seed, &row.query_id, 0x50414343);
        if uniform(&mut rng) < self.p {
            return oracle_choice(row, self.ctx.reference, self.objective).map(Decision::one);
        }
        Ok(Decision::one(if self.random_fallback {
            rng.below(table.columns.len())
        } else {
            self.ctx.reference
        }))
    }
}

struct Threshold {
    name: String,
    chars: bool,
    limit: f64,
    small: usize,
    ctx: Context,
}

impl Router for Threshold {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, _: &Table) -> Result<Decision, String> {
        let size = if self.chars {
            row.prompt.chars().count() as f64
        } else {
            row.prompt_tokens
                .ok_or("no model counted this query's prompt tokens")? as f64
        };
        Ok(Decision::one(if size <= self.limit {
            self.small
        } else {
            self.ctx.reference
        }))
    }
}

struct BySubject {
    name: String,
    subjects: Vec<String>,
    small: usize,
    ctx: Context,
}

impl Router for BySubject {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, _: &Table) -> Result<Decision, String> {
        let hit = self
            .subjects
            .iter()
            .any(|s| row.subject.as_deref() == Some(s.as_str()) || row.dataset == *s);
        Ok(Decision::one(if hit {
            self.small
        } else {
            self.ctx.reference
        }))
    }
}

struct Cascade {
    name: String,
    small: usize,
    min_score: f64,
    ctx: Context,
}

impl Router for Cascade {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide(&mut self, row: &Row, _: &Table) -> Result<Decision, String> {
        let first = &row.outcomes[self.small];
        Ok(
            if first.score >= self.min_score || self.small == self.ctx.reference {
                Decision {
                    tried: vec![self.small],
                    confidence: Some(first.score),
                }
            } else {
                Decision {
                    tried: vec![self.small, self.ctx.reference],
                    confidence: Some(first.score),
                }
            },
        )
    }
}
