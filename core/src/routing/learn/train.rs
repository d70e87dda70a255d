//! Training: one logistic regression per cheaper model, by seeded stochastic gradient descent
//! over the training queries' hashed features, weighted for the objective.

use super::component::{self, ComponentError};
use super::{Features, Holdout, LearnedMeta, TrainedModel, TrainedRun};
use crate::joined::Table;
use crate::routing::routers::Objective;
use ipw_router_model::{featurize, BodyToWrite, FeatureSet, Model};

/// Which model family to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// One logistic regression per cheaper model (fast, small).
    Logistic,
    /// The `vote` training queries most like the query vote, from at most `prototypes` kept
    /// (a seeded sample of the training queries).
    Neighbours {
        /// Nearest prototypes that vote.
        vote: u32,
        /// Training queries kept.
        prototypes: usize,
    },
}

impl Algorithm {
    /// Its name in the router's metadata.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic-regression",
            Algorithm::Neighbours { .. } => "nearest-neighbours",
        }
    }
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The model to route away from.
    pub reference: String,
    /// What "cheaper" means; `None`: energy, else the first objective with figures.
    pub objective: Option<Objective>,
    /// Share of queries held out of training (by a hash of the query id), in [0, 1).
    pub holdout: f64,
    /// Seed of the split and of the training order.
    pub seed: u64,
    /// The features.
    pub features: FeatureSet,
    /// Passes over the training queries; `None`: enough for two million updates, at least
    /// one and at most five ([`auto_epochs`]). Regressions only.
    pub epochs: Option<u32>,
    /// The model family.
    pub algorithm: Algorithm,
}

/// Passes for `n` training queries when none is asked: SGD converges with the number of
/// updates, so a million queries need two passes where a thousand take five.
pub fn auto_epochs(n: usize) -> u32 {
    (2_000_000usize.div_ceil(n.max(1))).clamp(1, 5) as u32
}

/// A trained router.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The `.wasm` file's bytes.
    pub component: Vec<u8>,
    /// What it carries about its training.
    pub meta: LearnedMeta,
}

/// Why a router could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// A model name is not in the runs.
    #[error(transparent)]
    Table(#[from] crate::joined::TableError),
    /// An option is out of range, or the runs cannot teach what was asked.
    #[error("{0}")]
    Invalid(String),
    /// The component could not be written.
    #[error(transparent)]
    Component(#[from] ComponentError),
}

/// Train on `table`'s queries outside the holdout.
pub fn train(table: &Table, opts: &TrainOptions) -> Result<Trained, LearnError> {
    if !(0.0..1.0).contains(&opts.holdout) {
        return Err(LearnError::Invalid(format!(
            "--holdout {} is not in [0, 1)",
            opts.holdout
        )));
    }
    if !(4..=22).contains(&opts.features.dim_log2) {
        return Err(LearnError::Invalid(format!(
            "--dim-log2 {} is not in 4..=22",
            opts.features.dim_log2
        )));
    }
    let reference = table.column(&opts.reference)?;
    let objective = opts
        .objective
        .unwrap_or_else(|| Objective::default_for(table))
        .with_data(table)
        .map_err(LearnError::Invalid)?;
    let holdout = Holdout {
        fraction: opts.holdout,
        seed: opts.seed,
    };
    let rows: Vec<usize> = (0..table.rows.len())
        .filter(|&i| !holdout.holds_out(&table.rows[i]))
        .collect();
    if rows.is_empty() {
        return Err(LearnError::Invalid(
            "no query is left to train on: the runs share none, or --holdout takes them all".into(),
        ));
    }
    let n = rows.len() as f64;
    let mean_cost = |c: usize| {
        let v: Vec<f64> = rows
            .iter()
            .filter_map(|&i| objective.of(&table.rows[i].outcomes[c]))
            .collect();
        if v.is_empty() {
            f64::INFINITY
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let costs: Vec<f64> = (0..table.columns.len()).map(mean_cost).collect();
    let mut order: Vec<usize> = (0..table.columns.len())
        .filter(|&c| c != reference)
        .collect();
    order.sort_by(|&a, &b| costs[a].total_cmp(&costs[b]).then(a.cmp(&b)));
    let cheaper: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&c| costs[c] < costs[reference])
        .collect();
    if cheaper.is_empty() {
        return Err(LearnError::Invalid(format!(
            "no model is cheaper than {} in {} on the training queries: there is nothing to route to",
            table.columns[reference].name,
            objective.name()
        )));
    }
    let as_good = |i: usize, c: usize| {
        let o = &table.rows[i].outcomes;
        o[c].score >= o[reference].score
    };
    // Class weights: each class balanced to half the total weight (a cheap model that is
    // rarely as good still gets a usable score), the positive class scaled by the model's
    // saving on the objective (routing to a model that saves little is worth little).
    let weights: Vec<(f64, f64, f64)> = cheaper
        .iter()
        .map(|&c| {
            let pos = rows.iter().filter(|&&i| as_good(i, c)).count() as f64;
            let saving = (1.0 - costs[c] / costs[reference]).clamp(0.05, 1.0);
            let w_pos = if pos > 0.0 { n / (2.0 * pos) } else { 1.0 };
            let w_neg = if pos < n { n / (2.0 * (n - pos)) } else { 1.0 };
            (pos / n, saving * w_pos, w_neg)
        })
        .collect();
    let (epochs, biases, body) = match opts.algorithm {
        Algorithm::Logistic => {
            let epochs = opts
                .epochs
                .unwrap_or_else(|| auto_epochs(rows.len()))
                .max(1);
            let (w, b) = fit(table, &rows, &cheaper, reference, &weights, opts, epochs);
            (epochs, b, BodyToWrite::Linear(w))
        }
        Algorithm::Neighbours { vote, prototypes } => {
            if vote == 0 || prototypes == 0 {
                return Err(LearnError::Invalid(
                    "--neighbours and --prototypes must be at least 1".into(),
                ));
            }
            // The prior each vote is shrunk towards: the model's share of training queries
            // where it was as good, as log-odds.
            let biases = weights
                .iter()
                .map(|w| {
                    let p = w.0.clamp(1e-6, 1.0 - 1e-6);
                    (p / (1.0 - p)).ln() as f32
                })
                .collect();
            let body = neighbours(table, &rows, &cheaper, reference, opts, vote, prototypes);
            (0, biases, body)
        }
    };
    let names = |cs: &[usize]| -> Vec<String> {
        cs.iter().map(|&c| table.columns[c].name.clone()).collect()
    };
    let others: Vec<usize> = order
        .iter()
        .copied()
        .filter(|c| !cheaper.contains(c))
        .collect();
    let with_bias: Vec<(String, f32)> = names(&cheaper).into_iter().zip(biases).collect();
    let params = Model::encode(
        &opts.features,
        &table.columns[reference].name,
        &with_bias,
        &names(&others),
        &body,
    );
    let mut models = vec![TrainedModel {
        name: table.columns[reference].name.clone(),
        mean_cost: costs[reference],
        routable: false,
        as_good_share: 1.0,
        positive_weight: 0.0,
        negative_weight: 0.0,
    }];
    for (j, &c) in cheaper.iter().enumerate() {
        models.push(TrainedModel {
            name: table.columns[c].name.clone(),
            mean_cost: costs[c],
            routable: true,
            as_good_share: weights[j].0,
            positive_weight: weights[j].1,
            negative_weight: weights[j].2,
        });
    }
    for &c in &others {
        models.push(TrainedModel {
            name: table.columns[c].name.clone(),
            mean_cost: costs[c],
            routable: false,
            as_good_share: rows.iter().filter(|&&i| as_good(i, c)).count() as f64 / n,
            positive_weight: 0.0,
            negative_weight: 0.0,
        });
    }
    models.sort_by(|a, b| a.mean_cost.total_cmp(&b.mean_cost));
    let runs = table
        .columns
        .iter()
        .map(|c| TrainedRun {
            run: c
                .run
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model: c.name.clone(),
            plan_sha256: crate::records::RunDir::new(&c.run)
                .read_manifest()
                .map(|m| m.plan_sha256)
                .unwrap_or_default(),
        })
        .collect();
    let meta = LearnedMeta {
        format: 1,
        ipw_version: crate::IPW_VERSION.into(),
        ipw_commit: crate::GIT_COMMIT.into(),
        algorithm: opts.algorithm.name().into(),
        reference: table.columns[reference].name.clone(),
        objective: objective.name().into(),
        models,
        features: Features::from(opts.features),
        epochs,
        seed: opts.seed,
        holdout,
        train_queries: rows.len(),
        held_out_queries: table.rows.len() - rows.len(),
        runs,
    };
    let json = serde_json::to_string(&meta).expect("metadata serialises");
    let component = component::embed(super::generic_component(), &params, &json)?;
    Ok(Trained { component, meta })
}

/// Stochastic gradient descent on the weighted logistic loss, every cheaper model at once: a
/// query's features are computed once per pass and each feature reads and updates its bucket's
/// weights for every model side by side. The order of queries is shuffled per pass by the
/// seed, so the same runs and seed give the same weights, bit for bit.
fn fit(
    table: &Table,
    rows: &[usize],
    cheaper: &[usize],
    reference: usize,
    weights: &[(f64, f64, f64)],
    opts: &TrainOptions,
    epochs: u32,
) -> (Vec<f32>, Vec<f32>) {
    let (features, seed) = (&opts.features, opts.seed);
    let k = cheaper.len();
    let mut w = vec![0f32; features.dim() * k];
    let mut b = vec![0f32; k];
    let mut order = rows.to_vec();
    let mut rng = crate::rng::SplitMix64::new(seed);
    let (mut x, mut g) = (Vec::new(), vec![0f32; k]);
    for epoch in 0..epochs {
        rng.shuffle(&mut order);
        let lr = 0.5 / (1.0 + epoch as f32).sqrt();
        for &i in &order {
            let row = &table.rows[i];
            featurize(
                features,
                &row.prompt,
                &row.dataset,
                row.subject.as_deref(),
                row.prompt_tokens,
                &mut x,
            );
            g.copy_from_slice(&b);
            for &(bucket, value) in &x {
                let base = bucket as usize * k;
                for (gj, wj) in g.iter_mut().zip(&w[base..base + k]) {
                    *gj += value * wj;
                }
            }
            for (j, gj) in g.iter_mut().enumerate() {
                let o = &row.outcomes;
                let good = o[cheaper[j]].score >= o[reference].score;
                let (y, cw) = if good {
                    (1.0, weights[j].1)
                } else {
                    (0.0, weights[j].2)
                };
                *gj = lr * cw as f32 * (ipw_router_model::sigmoid(*gj) - y);
                b[j] -= *gj;
            }
            for &(bucket, value) in &x {
                let base = bucket as usize * k;
                for (wj, gj) in w[base..base + k].iter_mut().zip(&g) {
                    *wj -= gj * value;
                }
            }
        }
    }
    (w, b)
}

/// The neighbours body: a seeded sample of at most `prototypes` training queries, their
/// features as postings by bucket (buckets common to more than a quarter of them left out),
/// and per prototype and cheaper model whether it was as good.
fn neighbours(
    table: &Table,
    rows: &[usize],
    cheaper: &[usize],
    reference: usize,
    opts: &TrainOptions,
    vote: u32,
    prototypes: usize,
) -> BodyToWrite {
    let mut sample = rows.to_vec();
    crate::rng::SplitMix64::new(opts.seed).shuffle(&mut sample);
    sample.truncate(prototypes);
    let mut postings = vec![Vec::new(); opts.features.dim()];
    let mut labels = Vec::with_capacity(sample.len() * cheaper.len());
    let mut x = Vec::new();
    for (p, &i) in sample.iter().enumerate() {
        let row = &table.rows[i];
        featurize(
            &opts.features,
            &row.prompt,
            &row.dataset,
            row.subject.as_deref(),
            row.prompt_tokens,
            &mut x,
        );
        // One posting per bucket: a word twice in a prompt is one feature of twice the value.
        x.sort_unstable_by_key(|f| f.0);
        for &(bucket, value) in &x {
            match postings[bucket as usize].last_mut() {
                Some((q, v)) if *q == p as u32 => *v += value,
                _ => postings[bucket as usize].push((p as u32, value)),
            }
        }
        let o = &row.outcomes;
        labels.extend(
            cheaper
                .iter()
                .map(|&c| u8::from(o[c].score >= o[reference].score)),
        );
    }
    // A bucket in more than a quarter of the prototypes (the dataset, a length class, `the `)
    // says little about which are alike and costs a visit to each of them per decision, so it
    // is left out, as a search engine leaves out stop words.
    let common = sample.len() / 4;
    for p in &mut postings {
        if sample.len() >= 8 && p.len() > common {
            p.clear();
        }
    }
    BodyToWrite::Neighbours {
        vote,
        postings,
        labels,
    }
}
