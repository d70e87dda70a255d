//! The learned router's model, shared by the trainer (`ipw route train`, on the host) and the
//! learned-router component (`plugins/routers/learned`, in the sandbox), so a query's features
//! and scores are computed by the same code when the router is trained and when it decides.
//!
//! A model gives, per cheaper candidate, the probability that it answers a query as well as
//! the reference does, from hashed features of what a router may see (the prompt's words, word
//! pairs and character 4-grams, its dataset and subject, its length): one logistic regression
//! per candidate, or a vote of the training queries most like it (nearest neighbours). The router sends a query to the cheapest candidate whose probability
//! reaches a threshold, else to the reference.

mod features;
mod params;

pub use features::{featurize, fnv1a, Feature, FeatureSet};
pub use params::{Body, BodyToWrite, Cheaper, Model, ParamsError, MAGIC};

/// The logistic function.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Whether the query `id` is held out (never trained on) by a split of `fraction` under
/// `seed`: a hash of the id, so the trainer and `ipw route --held-out-of` agree on every query
/// without a list of them.
pub fn held_out(id: &str, fraction: f64, seed: u64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    // A salt, so the split does not line up with the feature hashes of the same seed.
    let h = fnv1a(seed ^ 0x9e37_79b9_7f4a_7c15, id.as_bytes());
    (h % 1_000_000) < (fraction * 1_000_000.0).round() as u64
}
