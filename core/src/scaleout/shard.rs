//! Which shard this process measures: `--shard i/n` as given, or `--shard auto` resolved from
//! the scheduler's environment (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_COUNT` in a Slurm
//! array, `JOB_COMPLETION_INDEX` in a Kubernetes Indexed Job, `IPW_SHARD_COUNT` for the count
//! where the scheduler gives none).

use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
