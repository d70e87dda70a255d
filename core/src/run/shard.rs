//! Splitting one experiment into shards that a cluster scheduler runs (a Slurm array, a
//! Kubernetes Indexed Job, or `--shard i/n` by hand), each a normal run directory under
//! `<out>/shards/<i>-of-<n>@<host>/`, joined again by `ipw merge`.
//!
//! The split is a pure function of the plan (query ids, prompt lengths, models, max tokens) and
//! the shard count, so every task computes the same one without talking to the others: whole
//! model x dataset cells when they balance within [`CELL_BALANCE`], else single (model, query)
//! units. Either way each unit goes to exactly one shard, by longest-processing-time-first on
//! the expected work (prompt tokens + max output tokens), so no query is measured by two shards.

use crate::dataset::{hex, Query};
pub use crate::records::{ShardInfo, SplitMethod};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// Whole cells are used only when the busiest shard gets at most this much more than an equal
/// share; otherwise a few big cells would leave most of the array waiting for one task.
pub const CELL_BALANCE: f64 = 1.10;

/// The file in an experiment directory that fixes the full plan every shard splits: one line
/// per query, `<query id>\t<prompt sha256>`, in plan order.
pub const PLAN_FILE: &str = "plan.tsv";
/// The file in an experiment directory that fixes the shard count and split method.
pub const SPLIT_FILE: &str = "shards.json";
/// The folder of an experiment directory that holds the shards' own experiment directories.
pub const SHARDS_DIR: &str = "shards";

/// Which shard this process runs, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardArg {
    /// `--shard i/n`: shard `i` (from 0) of `n`.
    Fixed {
        /// Shard index, from 0.
        index: usize,
        /// Shard count.
        count: usize,
    },
    /// `--shard auto`: from the scheduler's environment.
    Auto,
}

/// A shard argument or environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// `--shard` is not `i/n` or `auto`.
    #[error("--shard {0:?}: expected `i/n` (0 <= i < n, e.g. 3/16) or `auto`")]
    Syntax(String),
    /// `--shard auto` found no scheduler index.
    #[error(
        "--shard auto: no shard index in the environment (SLURM_ARRAY_TASK_ID for a Slurm \
         array, JOB_COMPLETION_INDEX for a Kubernetes Indexed Job); use --shard i/n"
    )]
    NoIndex,
    /// `--shard auto` found an index but no count.
    #[error(
        "--shard auto: shard index {index} from {source_var}, but no shard count: set \
         IPW_SHARD_COUNT (or SLURM_ARRAY_TASK_COUNT inside a Slurm array)"
    )]
    NoCount {
        /// The index found.
        index: usize,
        /// The variable it came from.
        source_var: &'static str,
    },
    /// An environment variable is not a number.
    #[error("--shard auto: {var}={value:?} is not a whole number")]
    BadVar {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The index is not below the count.
    #[error("shard index {index} is not below the shard count {count} (indices start at 0: a Slurm array for {count} shards is --array=0-{last})", last = count.saturating_sub(1))]
    OutOfRange {
        /// Index.
        index: usize,
        /// Count.
        count: usize,
    },
    /// The experiment directory was split another way, or holds another plan.
    #[error("{}: {message}", dir.display())]
    Directory {
        /// The experiment directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// Reading or writing the experiment directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl std::str::FromStr for ShardArg {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        if s == "auto" {
            return Ok(ShardArg::Auto);
        }
        let bad = || ShardError::Syntax(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(ShardArg::Fixed { index, count })
    }
}

/// Where a shard's count came from: an explicit count must match the directory's; a count
/// Slurm derives from the array being submitted (one task when a single index is resubmitted)
/// gives way to the count the directory was split with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountSource {
    /// `--shard i/n` or `IPW_SHARD_COUNT`.
    Explicit,
    /// `SLURM_ARRAY_TASK_COUNT`.
    SlurmArray,
}

/// A shard request resolved against the environment, before the directory is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRequest {
    /// Index, from 0.
    pub index: usize,
    /// Count.
    pub count: usize,
    /// Where the count came from.
    pub count_source: CountSource,
}

impl ShardArg {
    /// Resolve `auto` from the environment `var` reads (the process's, in the CLI).
    pub fn resolve(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ShardRequest, ShardError> {
        let (index, count) = match *self {
            ShardArg::Fixed { index, count } => {
                return Ok(ShardRequest {
                    index,
                    count,
                    count_source: CountSource::Explicit,
                })
            }
            ShardArg::Auto => {
                let number = |name: &'static str| -> Result<Option<usize>, ShardError> {
                    match var(name) {
                        None => Ok(None),
                        Some(v) if v.trim().is_empty() => Ok(None),
                        Some(v) => v.trim().parse().map(Some).map_err(|_| ShardError::BadVar {
                            var: name,
                            value: v,
                        }),
                    }
                };
                let (index, source_var) = if let Some(i) = number("SLURM_ARRAY_TASK_ID")? {
                    (i, "SLURM_ARRAY_TASK_ID")
                } else if let Some(i) = number("JOB_COMPLETION_INDEX")? {
                    (i, "JOB_COMPLETION_INDEX")
                } else {
                    return Err(ShardError::NoIndex);
                };
                let count = if let Some(n) = number("IPW_SHARD_COUNT")? {
                    (n, CountSource::Explicit)
                } else if let (Some(n), "SLURM_ARRAY_TASK_ID") =
                    (number("SLURM_ARRAY_TASK_COUNT")?, source_var)
                {
                    (n, CountSource::SlurmArray)
                } else {
                    return Err(ShardError::NoCount { index, source_var });
                };
                (index, count)
            }
        };
        let (count, count_source) = count;
        if count == 0 || index >= count {
            // A resubmitted single index (`--array=5`) has a count of 1; the directory's count
            // decides later, so only an explicit count is checked here.
            if count_source == CountSource::Explicit {
                return Err(ShardError::OutOfRange { index, count });
            }
        }
        Ok(ShardRequest {
            index,
            count,
            count_source,
        })
    }
}

/// The split of a plan into shards: which shard measures each (model, query).
#[derive(Debug, Clone)]
pub struct Split {
    /// How.
    pub method: SplitMethod,
    /// Shard count.
    pub count: usize,
    /// `shard[m][q]`: the shard of model `m`'s query `q` (plan order).
    shard: Vec<Vec<u32>>,
    /// Expected work per shard (tokens).
    pub work: Vec<f64>,
}

impl Split {
    /// Plan indices of model `m`'s queries in shard `index`, in plan order.
    pub fn queries_of(&self, model: usize, index: usize) -> Vec<usize> {
        self.shard[model]
            .iter()
            .enumerate()
            .filter(|(_, &s)| s as usize == index)
            .map(|(q, _)| q)
            .collect()
    }

    /// How many (model, query) units shard `index` measures.
    pub fn units_of(&self, index: usize) -> usize {
        self.shard
            .iter()
            .map(|m| m.iter().filter(|&&s| s as usize == index).count())
            .sum()
    }
}

/// Expected work of one query: its prompt's tokens (about 4 characters each) plus the most it
/// may generate. Decode dominates on every backend ipw measures, so max tokens carry most of it.
fn work(q: &Query, max_tokens: u32) -> f64 {
    q.prompt.len() as f64 / 4.0 + f64::from(max_tokens)
}

/// Assign weighted items to `count` bins, heaviest first, each to the least-loaded bin (lowest
/// index on a tie). Items of equal weight keep their order, so the result is deterministic.
fn lpt(weights: &[f64], count: usize) -> (Vec<u32>, Vec<f64>) {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    // Loads as integers of 1/1024 token, so the heap orders them exactly.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..count).map(|i| Reverse((0u64, i))).collect();
    let mut bin = vec![0u32; weights.len()];
    let mut load = vec![0.0; count];
    for item in order {
        let Reverse((l, b)) = heap.pop().expect("count > 0");
        bin[item] = b as u32;
        load[b] += weights[item];
        heap.push(Reverse((l + (weights[item] * 1024.0) as u64, b)));
    }
    (bin, load)
}

/// Split `models` models x `queries` into `count` shards (see the module doc).
pub fn split(queries: &[Query], models: usize, max_tokens: u32, count: usize) -> Split {
    assert!(count > 0, "a split needs at least one shard");
    let weights: Vec<f64> = queries.iter().map(|q| work(q, max_tokens)).collect();
    let total: f64 = weights.iter().sum::<f64>() * models as f64;
    // Cells: (model, dataset) in plan order; a dataset's queries are contiguous in the plan.
    let mut datasets: Vec<(usize, usize)> = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        match datasets.last_mut() {
            Some((start, end)) if queries[*start].dataset == q.dataset => *end = i + 1,
            _ => datasets.push((i, i + 1)),
        }
    }
    let cells: Vec<(usize, usize, usize)> = (0..models)
        .flat_map(|m| datasets.iter().map(move |&(s, e)| (m, s, e)))
        .collect();
    let cell_work: Vec<f64> = cells
        .iter()
        .map(|&(_, s, e)| weights[s..e].iter().sum())
        .collect();
    if cells.len() >= count {
        let (bin, load) = lpt(&cell_work, count);
        let fair = total / count as f64;
        let busiest = load.iter().copied().fold(0.0, f64::max);
        if load.iter().all(|&l| l > 0.0) && busiest <= fair * CELL_BALANCE {
            let mut shard = vec![vec![0u32; queries.len()]; models];
            for (c, &(m, s, e)) in cells.iter().enumerate() {
                shard[m][s..e].fill(bin[c]);
            }
            return Split {
                method: SplitMethod::Cells,
                count,
                shard,
                work: load,
            };
        }
    }
    let unit_weights: Vec<f64> = (0..models).flat_map(|_| weights.iter().copied()).collect();
    let (bin, load) = lpt(&unit_weights, count);
    let shard = bin
        .chunks(queries.len().max(1))
        .map(<[u32]>::to_vec)
        .collect();
    Split {
        method: SplitMethod::Queries,
        count,
        shard: if queries.is_empty() {
            vec![Vec::new(); models]
        } else {
            shard
        },
        work: load,
    }
}

/// The full plan as [`PLAN_FILE`] keeps it.
pub fn plan_file_text(queries: &[Query]) -> String {
    let mut out = String::with_capacity(queries.len() * 96);
    for q in queries {
        out.push_str(&q.id);
        out.push('\t');
        out.push_str(&q.prompt_hash());
        out.push('\n');
    }
    out
}

/// sha256 of a plan file's text.
pub fn plan_file_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// What [`SPLIT_FILE`] holds: the count every shard of the directory must use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitRecord {
    /// Shard count.
    pub count: usize,
    /// sha256 of [`PLAN_FILE`].
    pub plan_sha256: String,
}

/// A shard's name: `<index>-of-<count>@<host>`, the index padded so names sort in index order.
pub fn shard_dir_name(index: usize, count: usize, host: &str) -> String {
    let width = count.saturating_sub(1).to_string().len();
    format!("{index:0width$}-of-{count}@{host}")
}

/// `(index, count, host)` from a shard directory's name.
pub fn parse_shard_dir_name(name: &str) -> Option<(usize, usize, String)> {
    let (ic, host) = name.split_once('@')?;
    let (i, n) = ic.split_once("-of-")?;
    Some((i.parse().ok()?, n.parse().ok()?, host.to_string()))
}

/// This host's name as a directory name component.
pub fn host_label() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    super::sanitize(&name)
}

/// Settle the experiment directory `top` for shard `request` of the plan whose
/// [`PLAN_FILE`] text is `plan_text`: the first shard to arrive writes the plan and the count;
/// every other one must find the same plan, and an explicit count must match. Each file is
/// written whole by one rename, so shards starting at once on a shared file system cannot tear
/// it; when two race, both wrote the same bytes. Returns the shard count to use.
pub fn settle_directory(
    top: &Path,
    plan_text: &str,
    request: ShardRequest,
) -> Result<usize, ShardError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShardError::Io { path, source }
    };
    let dir_err = |message: String| ShardError::Directory {
        dir: top.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(top.join(SHARDS_DIR)).map_err(io(top))?;
    let plan_path = top.join(PLAN_FILE);
    let plan_sha256 = plan_file_sha256(plan_text);
    match std::fs::read_to_string(&plan_path) {
        Ok(existing) if plan_file_sha256(&existing) != plan_sha256 => {
            let ours: std::collections::HashSet<&str> = plan_text.lines().collect();
            let theirs: std::collections::HashSet<&str> = existing.lines().collect();
            return Err(dir_err(format!(
                "holds shards of another plan ({} queries there, {} here, {} in common): \
                 use another --out, or the same experiment file and seed",
                theirs.len(),
                ours.len(),
                ours.intersection(&theirs).count()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::records::write_atomic(&plan_path, plan_text.as_bytes())
                .map_err(io(&plan_path))?;
        }
        Err(e) => return Err(io(&plan_path)(e)),
    }
    let split_path = top.join(SPLIT_FILE);
    let recorded: Option<SplitRecord> = match std::fs::read(&split_path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            dir_err(format!(
                "{SPLIT_FILE} does not read ({e}); it is written by ipw"
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&split_path)(e)),
    };
    let count = match (&recorded, request.count_source) {
        (Some(r), CountSource::Explicit) if r.count != request.count => {
            return Err(dir_err(format!(
                "was split into {} shards; this task asks for {} (resubmit with the same count)",
                r.count, request.count
            )))
        }
        (Some(r), CountSource::SlurmArray) if r.count != request.count => {
            tracing::info!(
                "Slurm says {} tasks in this array (a resubmission?); the directory was split \
                 into {}: using {}",
                request.count,
                r.count,
                r.count
            );
            r.count
        }
        (Some(r), _) => r.count,
        (None, _) => request.count,
    };
    if request.index >= count {
        return Err(ShardError::OutOfRange {
            index: request.index,
            count,
        });
    }
    if recorded.is_none() {
        let record = SplitRecord { count, plan_sha256 };
        crate::records::write_json_atomic(&split_path, &record).map_err(io(&split_path))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn plan(datasets: &[(&str, usize)]) -> Vec<Query> {
        datasets
            .iter()
            .flat_map(|&(d, n)| (0..n).map(move |i| q(d, i, 40 + (i * 37) % 400)))
            .collect()
    }

    /// Every (model, query) lands in exactly one shard, whatever the method.
    fn assert_partition(s: &Split, queries: usize, models: usize) {
        let mut seen = vec![vec![0; queries]; models];
        for i in 0..s.count {
            for (m, counts) in seen.iter_mut().enumerate() {
                for q in s.queries_of(m, i) {
                    counts[q] += 1;
                }
            }
        }
        assert!(seen.iter().flatten().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn shard_arguments_parse_and_refuse_with_the_reason() {
        assert_eq!(
            "3/16".parse::<ShardArg>().unwrap(),
            ShardArg::Fixed {
                index: 3,
                count: 16
            }
        );
        assert_eq!("auto".parse::<ShardArg>().unwrap(), ShardArg::Auto);
        for bad in ["3", "a/4", "1/0", "-1/4", ""] {
            assert!(
                matches!(bad.parse::<ShardArg>(), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        let e = "4/4".parse::<ShardArg>().unwrap_err().to_string();
        assert!(e.contains("--array=0-3"), "{e}");
    }

    #[test]
    fn auto_reads_slurm_then_kubernetes_and_needs_a_count() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let r = ShardArg::Auto
            .resolve(env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]))
            .unwrap();
        assert_eq!(
            (r.index, r.count, r.count_source),
            (2, 4, CountSource::SlurmArray)
        );
        // A resubmitted single index: Slurm says 1 task; the directory's count decides later.
        let r = ShardArg::Auto
            .resolve(env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "1"),
            ]))
            .unwrap();
        assert_eq!((r.index, r.count), (2, 1));
        let r = ShardArg::Auto
            .resolve(env(&[
                ("JOB_COMPLETION_INDEX", "3"),
                ("IPW_SHARD_COUNT", "4"),
            ]))
            .unwrap();
        assert_eq!(
            (r.index, r.count, r.count_source),
            (3, 4, CountSource::Explicit)
        );
        assert_eq!(
            r,
            ShardArg::Fixed { index: 3, count: 4 }
                .resolve(|_| None)
                .unwrap()
        );
        assert!(matches!(
            ShardArg::Auto.resolve(env(&[("JOB_COMPLETION_INDEX", "3")])),
            Err(ShardError::NoCount { index: 3, .. })
        ));
        assert!(matches!(
            ShardArg::Auto.resolve(|_| None),
            Err(ShardError::NoIndex)
        ));
        assert!(matches!(
            ShardArg::Auto.resolve(env(&[("JOB_COMPLETION_INDEX", "x")])),
            Err(ShardError::BadVar { .. })
        ));
        assert!(matches!(
            ShardArg::Auto.resolve(env(&[
                ("JOB_COMPLETION_INDEX", "4"),
                ("IPW_SHARD_COUNT", "4")
            ])),
            Err(ShardError::OutOfRange { index: 4, count: 4 })
        ));
    }

    #[test]
    fn many_even_cells_split_by_cell_and_balance() {
        let queries = plan(&[("a", 50), ("b", 50), ("c", 50), ("d", 50)]);
        let s = split(&queries, 4, 128, 4);
        assert_eq!(s.method, SplitMethod::Cells);
        assert_partition(&s, queries.len(), 4);
        let fair = s.work.iter().sum::<f64>() / 4.0;
        assert!(
            s.work.iter().all(|&w| w <= fair * CELL_BALANCE),
            "{:?}",
            s.work
        );
        // A cell is never cut: each (model, dataset) has one shard.
        for m in 0..4 {
            for d in 0..4 {
                let shards: std::collections::HashSet<usize> = (0..4)
                    .filter(|&i| s.queries_of(m, i).iter().any(|&q| q / 50 == d))
                    .collect();
                assert_eq!(shards.len(), 1);
            }
        }
    }

    #[test]
    fn few_or_uneven_cells_split_by_query_balanced_by_work() {
        // One model, one dataset: one cell cannot feed four shards.
        let queries = plan(&[("a", 101)]);
        let s = split(&queries, 1, 64, 4);
        assert_eq!(s.method, SplitMethod::Queries);
        assert_partition(&s, queries.len(), 1);
        let fair = s.work.iter().sum::<f64>() / 4.0;
        let max_item = queries.iter().map(|q| work(q, 64)).fold(0.0, f64::max);
        for &w in &s.work {
            assert!((w - fair).abs() <= max_item, "{:?} fair {fair}", s.work);
        }
        // Enough cells but one dwarfs the rest: cells would not balance, so by query.
        let queries = plan(&[("big", 300), ("s1", 5), ("s2", 5), ("s3", 5)]);
        let s = split(&queries, 1, 64, 4);
        assert_eq!(s.method, SplitMethod::Queries);
        assert_partition(&s, queries.len(), 1);
    }

    #[test]
    fn the_split_is_the_same_every_time() {
        let queries = plan(&[("a", 37), ("b", 11)]);
        let a = split(&queries, 3, 128, 5);
        let b = split(&queries, 3, 128, 5);
        assert_eq!(a.shard, b.shard);
        assert_eq!(split(&queries, 3, 128, 1).units_of(0), 48 * 3);
    }

    #[test]
    fn shard_names_sort_by_index_and_read_back() {
        assert_eq!(shard_dir_name(3, 16, "node-1"), "03-of-16@node-1");
        assert_eq!(shard_dir_name(0, 4, "h"), "0-of-4@h");
        assert_eq!(
            parse_shard_dir_name("03-of-16@node-1"),
            Some((3, 16, "node-1".into()))
        );
        assert_eq!(parse_shard_dir_name("merged"), None);
    }

    #[test]
    fn a_directory_keeps_its_plan_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let text = plan_file_text(&plan(&[("a", 3)]));
        let req = |index, count, count_source| ShardRequest {
            index,
            count,
            count_source,
        };
        assert_eq!(
            settle_directory(dir.path(), &text, req(1, 4, CountSource::Explicit)).unwrap(),
            4
        );
        // A resubmitted Slurm index sees 1 task; the directory says 4.
        assert_eq!(
            settle_directory(dir.path(), &text, req(2, 1, CountSource::SlurmArray)).unwrap(),
            4
        );
        let e = settle_directory(dir.path(), &text, req(1, 8, CountSource::Explicit))
            .unwrap_err()
            .to_string();
        assert!(e.contains("split into 4 shards"), "{e}");
        let other = plan_file_text(&plan(&[("b", 3)]));
        let e = settle_directory(dir.path(), &other, req(1, 4, CountSource::Explicit))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another plan"), "{e}");
    }
}
