//! Scale-out: one experiment measured by many machines and joined back into one run per model.
//!
//! A cluster scheduler (a Slurm array, a Kubernetes Indexed Job, or `--shard i/n` by hand)
//! starts the same `ipw profile --shard` on every machine. Each task finds its index
//! ([`shard`]: `i/n`, or `auto` from `SLURM_ARRAY_TASK_ID` / `JOB_COMPLETION_INDEX`), computes
//! the same split of the plan as every other task without talking to them ([`split`]), settles
//! the shared experiment directory (the plan and the count, fixed by the first task to arrive)
//! and measures its part into `<out>/shards/<i>-of-<n>@<host>/` ([`directory`]), a normal run
//! directory per model. `ipw merge` ([`mod@merge`]) then joins the shards into one run directory
//! per model and accelerator, which every analysis command reads like an unsharded run.
//!
//! (Shards of a *dataset*, Parquet files in parts, are another thing: [`crate::dataset`].)

pub mod directory;
pub mod merge;
pub mod shard;
pub mod split;

pub use directory::{PLAN_FILE, SHARDS_DIR, SPLIT_FILE};
pub use merge::{merge, MergeError};
pub use shard::{ShardArg, ShardError, ShardRequest};
pub use split::Split;

/// Plans for the tests of the split and the directory.
#[cfg(test)]
mod test_plans {
    use crate::dataset::Query;

    fn q(dataset: &str, i: usize, len: usize) -> Query {
        Query {
            id: format!("{dataset}/{i}"),
            dataset: dataset.into(),
            subject: None,
            category: None,
            prompt: "x".repeat(len),
            answers: Vec::new(),
            choices: Vec::new(),
        }
    }

    pub(super) fn plan(datasets: &[(&str, usize)]) -> Vec<Query> {
        datasets
            .iter()
            .flat_map(|&(d, n)| (0..n).map(move |i| q(d, i, 40 + (i * 37) % 400)))
            .collect()
    }
}
