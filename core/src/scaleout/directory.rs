//! The experiment directory of a split run, shared by every shard: [`PLAN_FILE`] (the full
//! plan every shard splits), [`SPLIT_FILE`] (the count), and under [`SHARDS_DIR`] one
//! experiment directory per shard and host, `<i>-of-<n>@<host>/`, each holding a normal run
//! directory per model. Settled by the first task to arrive; every other one must agree.

use super::shard::{CountSource, ShardError, ShardRequest};
use crate::dataset::{hex, Query};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The file in an experiment directory that fixes the full plan every shard splits: one line
/// per query, `<query id>\t<prompt sha256>`, in plan order.
pub const PLAN_FILE: &str = "plan.tsv";
/// The file in an experiment directory that fixes the shard count and split method.
pub const SPLIT_FILE: &str = "shards.json";
/// The folder of an experiment directory that holds the shards' own experiment directories.
pub const SHARDS_DIR: &str = "shards";

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
    crate::records::sanitize(&name)
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
    use crate::scaleout::test_plans::plan;

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
