//! Routers that learn (`ipw route train`): from runs of several models on the same queries,
//! learn which queries a cheaper model answers as well as the reference, from what a router may
//! see; write the result as one `.wasm` router ([`component`]) that runs in the sandbox like
//! any other; and say which queries it never saw, so its figures can be honest ([`held_out`]).

pub mod component;
mod train;

pub use train::{auto_epochs, train, Algorithm, LearnError, TrainOptions, Trained};

use crate::joined::Row;
use ipw_router_model::FeatureSet;

include!(concat!(env!("OUT_DIR"), "/builtin_routers.rs"));

/// The generic learned router (`plugins/routers/learned`), untrained: what a trained router is
/// built from.
pub fn generic_component() -> &'static [u8] {
    BUILTIN_ROUTERS
        .iter()
        .find(|(n, _, _)| *n == "learned")
        .map(|(_, b, _)| *b)
        .expect("the build script embeds the learned router")
}

/// What a trained router carries about its training, in its custom section
/// ([`component::METADATA_SECTION`]) as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedMeta {
    /// Format of this record.
    pub format: u32,
    /// The ipw that trained it, and its commit.
    pub ipw_version: String,
    pub ipw_commit: String,
    /// `logistic-regression` or `nearest-neighbours`.
    pub algorithm: String,
    /// The model it routes away from.
    pub reference: String,
    /// What the cheaper models are cheaper in: `energy`, `compute`, `cost` or `carbon`.
    pub objective: String,
    /// Every model, cheapest first on the training queries.
    pub models: Vec<TrainedModel>,
    /// The features.
    pub features: Features,
    /// Passes over the training queries (0 for nearest neighbours, which make none).
    pub epochs: u32,
    /// Seed of the training order.
    pub seed: u64,
    /// Which queries were held out of training.
    pub holdout: Holdout,
    /// Queries trained on, and held out.
    pub train_queries: usize,
    pub held_out_queries: usize,
    /// The runs it learned from.
    pub runs: Vec<TrainedRun>,
}

/// A model as the trainer saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedModel {
    /// Its name in the runs.
    pub name: String,
    /// Mean of the objective per training query.
    pub mean_cost: f64,
    /// Whether the router may send queries to it (cheaper than the reference).
    pub routable: bool,
    /// Share of training queries it answered as well as the reference.
    pub as_good_share: f64,
    /// The weight of its queries where it was as good (its saving on the objective, balanced
    /// against how rare such queries are), and where it was not.
    pub positive_weight: f64,
    pub negative_weight: f64,
}

/// The features, as [`FeatureSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Hash buckets, log2.
    pub dim_log2: u32,
    /// Word n-grams up to this length.
    pub word_n: u32,
    /// Character n-gram length (0: none).
    pub char_n: u32,
}

impl From<FeatureSet> for Features {
    fn from(f: FeatureSet) -> Self {
        Features {
            dim_log2: f.dim_log2,
            word_n: f.word_n,
            char_n: f.char_n,
        }
    }
}

/// A split of queries by a hash of their id ([`ipw_router_model::held_out`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Share held out, in [0, 1).
    pub fraction: f64,
    /// Seed of the split.
    pub seed: u64,
}

impl Holdout {
    /// Whether `row` was held out of training.
    pub fn holds_out(&self, row: &Row) -> bool {
        ipw_router_model::held_out(&row.query_id, self.fraction, self.seed)
    }
}

/// A run a router learned from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedRun {
    /// The run directory's name.
    pub run: String,
    /// The model in it.
    pub model: String,
    /// Its plan's hash (queries and prompts).
    pub plan_sha256: String,
}

/// A trained router read from its `.wasm`: its metadata and parameters.
#[derive(Debug, Clone)]
pub struct LearnedRouter {
    /// What it was trained on.
    pub meta: LearnedMeta,
    /// Its parameters ([`ipw_router_model::Model::decode`] reads them).
    pub params: Vec<u8>,
}

impl LearnedRouter {
    /// The trained router in `bytes`; `Ok(None)` for a component that is not one (any other
    /// router), an error for one whose metadata cannot be read.
    pub fn from_component(bytes: &[u8]) -> Result<Option<Self>, String> {
        let Some((json, params)) = component::read(bytes) else {
            return Ok(None);
        };
        let meta = serde_json::from_str(&json)
            .map_err(|e| format!("its training metadata cannot be read: {e}"))?;
        ipw_router_model::Model::decode(&params)
            .and_then(|m| m.validate())
            .map_err(|e| e.to_string())?;
        Ok(Some(LearnedRouter { meta, params }))
    }

    /// The model its parameters hold.
    pub fn model(&self) -> ipw_router_model::Model<'_> {
        ipw_router_model::Model::decode(&self.params).expect("checked when read")
    }

    /// Its log-odds for `row`, per cheaper model (as the component computes them: the same
    /// code).
    pub fn logits(&self, row: &Row) -> Vec<f32> {
        let model = self.model();
        let mut x = Vec::new();
        ipw_router_model::featurize(
            &model.features,
            &row.prompt,
            &row.dataset,
            row.subject.as_deref(),
            row.prompt_tokens,
            &mut x,
        );
        model.logits(&x)
    }

    /// Why it cannot route a table of `columns`: the models it was trained on that the table
    /// lacks, and those it adds.
    pub fn check_models(&self, columns: &[&str]) -> Result<(), String> {
        let trained: Vec<&str> = self.meta.models.iter().map(|m| m.name.as_str()).collect();
        let lack: Vec<&str> = trained
            .iter()
            .copied()
            .filter(|m| !columns.contains(m))
            .collect();
        let add: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| !trained.contains(c))
            .collect();
        if lack.is_empty() && add.is_empty() {
            return Ok(());
        }
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        Err(format!(
            "it was trained on {}; these runs lack {} and add {}: train it on these models",
            trained.join(", "),
            list(&lack),
            list(&add)
        ))
    }
}

#[cfg(test)]
mod tests;
