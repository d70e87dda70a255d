//! `ipw merge`: join the shards of a split experiment (`ipw profile --shard`) back into one run
//! directory per model and accelerator, which every analysis command reads like an unsharded
//! run: the records in plan order with their plan positions, every shard's sessions one after
//! another (records and power readings renumbered to match, so `ipw attribute` works on the
//! merged run), a fresh summary, and each shard's own manifest kept in `shards/`.
//!
//! Before writing anything it checks that the shards belong together (the same plan, count and
//! settings, the same model files) and that together they measured every planned query exactly
//! once; a gap or a doubled query is named, and refused unless `allow_partial`. Each shard run
//! is locked while it is read, so a shard still running is reported, not half-read. Merging
//! again gives the same bytes.
//!
//! The records are not held: the shards are read once to index them (each record's plan
//! position and where its line lies), and their records are read again a batch at a time, in
//! plan order, as they are written. What stays is the plan, the index (a few dozen bytes a
//! record) and, for the summary, each record's figures without its texts or channels
//! ([`ChannelSums::lighten`]).

use super::directory::{parse_shard_dir_name, plan_file_sha256, SplitRecord};
use super::directory::{PLAN_FILE, SHARDS_DIR, SPLIT_FILE};
use crate::analysis::{summarize, ChannelSums};
use crate::identity::{differences, plan_hash, recorded_settings};
use crate::records::{
    read_records_at, run_dirs, sanitize, write_json_atomic, AtomicFile, LineSpan, Manifest,
    MergedPowerLog, MergedShard, Record, RunDir, RunLock, StoreError,
};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Missing or doubled queries listed in a message at most this many at a time.
const SHOWN: usize = 8;

/// Records read back and written at a time (parsed on every core).
const BATCH: usize = 1024;

/// Why shards could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The directory holds no split experiment.
    #[error("{}: not a split experiment directory (no {PLAN_FILE}); shards are written by `ipw profile --shard`", .0.display())]
    NotSplit(PathBuf),
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A run directory could not be read or locked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shards do not belong to one experiment and plan.
    #[error("{}: {message}", dir.display())]
    Mismatch {
        /// The shard run that differs.
        dir: PathBuf,
        /// How.
        message: String,
    },
    /// Queries are missing or measured twice.
    #[error("{0}\nmerge what there is with --allow-partial")]
    Incomplete(String),
    /// An output directory is an ordinary run, not an earlier merge.
    #[error("{}: holds a run that `ipw merge` did not write; move it away first", .0.display())]
    Occupied(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A shard directory found.
#[derive(Debug, Clone)]
pub struct ShardSeen {
    /// Its name (`<i>-of-<n>@<host>`).
    pub name: String,
    /// Index.
    pub index: usize,
    /// Host.
    pub host: String,
    /// Model runs in it.
    pub runs: usize,
    /// Records in them.
    pub records: usize,
    /// Status of each run (`model: status`).
    pub statuses: Vec<String>,
}

/// One merged run written.
#[derive(Debug, Clone)]
pub struct MergedRun {
    /// The directory.
    pub dir: PathBuf,
    /// Model.
    pub model: String,
    /// Accelerator it ran on.
    pub accelerator: String,
    /// Queries in the plan.
    pub planned: usize,
    /// Records merged.
    pub records: usize,
    /// `completed` or `partial`.
    pub status: String,
    /// Shard runs joined.
    pub shards: usize,
}

/// What [`merge`] found and wrote.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Shard count of the split.
    pub count: usize,
    /// Queries in the plan.
    pub planned: usize,
    /// Shard directories, in index order.
    pub shards: Vec<ShardSeen>,
    /// Merged runs, by model.
    pub runs: Vec<MergedRun>,
    /// Gaps and doubles accepted with `allow_partial`, one line each.
    pub problems: Vec<String>,
}

/// One shard's run of one model, indexed and locked.
struct ShardRun {
    shard: String,
    index: usize,
    host: String,
    dir: PathBuf,
    manifest: Manifest,
    /// Its records (the last of each query), in file order, as merging needs them.
    lines: Vec<Line>,
    _lock: RunLock,
}

/// A record of a shard run as merging needs it before writing: which planned query it answers
/// and where its line lies. The record itself is read again when it is written, not held.
struct Line {
    place: Place,
    /// The record's prompt hash is the plan's for its query.
    same_prompt: bool,
    span: LineSpan,
}

/// Where a record's query is in the plan.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Place {
    /// At this position.
    Plan(usize),
    /// Not in it (an error when found): the query id.
    Stray(String),
}

/// Merge the shards under `top` (an experiment directory given to `ipw profile --shard --out`).
pub fn merge(top: &Path, allow_partial: bool) -> Result<MergeReport, MergeError> {
    let plan_path = top.join(PLAN_FILE);
    let plan_text = match std::fs::read_to_string(&plan_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MergeError::NotSplit(top.to_path_buf()))
        }
        Err(e) => return Err(io_err(&plan_path)(e)),
    };
    let plan_sha256 = plan_file_sha256(&plan_text);
    let plan: Vec<(&str, &str)> = plan_text
        .lines()
        .map(|l| l.split_once('\t').unwrap_or((l, "")))
        .collect();
    let position: HashMap<&str, usize> = plan.iter().enumerate().map(|(i, p)| (p.0, i)).collect();
    let split_path = top.join(SPLIT_FILE);
    let split: SplitRecord = serde_json::from_slice(
        &std::fs::read(&split_path).map_err(io_err(&split_path))?,
    )
    .map_err(|e| MergeError::Mismatch {
        dir: split_path.clone(),
        message: format!("does not read: {e}"),
    })?;
    let count = split.count;

    let (shards, runs) = read_shards(top, count, &plan_sha256, &plan, &position)?;
    let mut by_model: BTreeMap<String, Vec<ShardRun>> = BTreeMap::new();
    for r in runs {
        by_model
            .entry(r.manifest.model.name.clone())
            .or_default()
            .push(r);
    }
    let absent: Vec<usize> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .collect();

    let mut problems = Vec::new();
    if !absent.is_empty() {
        problems.push(format!(
            "{} of {count} shards have no directory in {}: {}",
            absent.len(),
            top.join(SHARDS_DIR).display(),
            absent
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut chosen: BTreeMap<String, Vec<Vec<usize>>> = BTreeMap::new();
    for (model, runs) in &by_model {
        check_same_experiment(runs)?;
        let (keep, model_problems) = cover(model, runs, &plan)?;
        problems.extend(model_problems);
        chosen.insert(model.clone(), keep);
    }
    if by_model.is_empty() {
        return Err(MergeError::Incomplete(format!(
            "no shard runs under {}",
            top.join(SHARDS_DIR).display()
        )));
    }
    if !problems.is_empty() && !allow_partial {
        return Err(MergeError::Incomplete(problems.join("\n")));
    }

    let mut merged = Vec::new();
    for (model, runs) in &by_model {
        let keep = &chosen[model];
        // One merged run per accelerator the model ran on.
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in runs.iter().enumerate() {
            groups.entry(r.manifest.accelerator()).or_default().push(i);
        }
        let several = groups.len() > 1;
        for (accelerator, members) in groups {
            let name = if several {
                format!("{}@{}", sanitize(model), sanitize(&accelerator))
            } else {
                sanitize(model)
            };
            let out = top.join(name);
            let group: Vec<(&ShardRun, &[usize])> = members
                .iter()
                .map(|&i| (&runs[i], keep[i].as_slice()))
                .collect();
            merged.push(write_merged(&out, &group, &plan, accelerator)?);
        }
    }
    Ok(MergeReport {
        count,
        planned: plan.len(),
        shards,
        runs: merged,
        problems,
    })
}

/// Every shard directory under `top/shards`, checked against the plan and count, with its runs
/// indexed and locked (in directory-name order: index, then host).
fn read_shards(
    top: &Path,
    count: usize,
    plan_sha256: &str,
    plan: &[(&str, &str)],
    position: &HashMap<&str, usize>,
) -> Result<(Vec<ShardSeen>, Vec<ShardRun>), MergeError> {
    let shards_dir = top.join(SHARDS_DIR);
    let mut names: Vec<String> = match std::fs::read_dir(&shards_dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&shards_dir)(e)),
    };
    names.sort();
    let mut seen = Vec::new();
    let mut runs = Vec::new();
    for name in names {
        let dir = shards_dir.join(&name);
        let Some((index, n, host)) = parse_shard_dir_name(&name) else {
            return Err(MergeError::Mismatch {
                dir,
                message: "not a shard directory (expected <index>-of-<count>@<host>)".into(),
            });
        };
        if n != count {
            return Err(MergeError::Mismatch {
                dir,
                message: format!(
                    "a shard of a {n}-way split; this experiment was split {count} ways"
                ),
            });
        }
        let mut shard = ShardSeen {
            name: name.clone(),
            index,
            host: host.clone(),
            runs: 0,
            records: 0,
            statuses: Vec::new(),
        };
        for run_dir in run_dirs(&dir).map_err(io_err(&dir))? {
            let run = RunDir::new(&run_dir);
            let lock = run.lock()?;
            let manifest = run.read_manifest()?;
            let mismatch = |message: String| MergeError::Mismatch {
                dir: run_dir.clone(),
                message,
            };
            let Some(info) = &manifest.shard else {
                return Err(mismatch(
                    "not a shard run (its manifest has no `shard`)".into(),
                ));
            };
            if info.plan_sha256 != plan_sha256 {
                return Err(mismatch(format!(
                    "measured another plan (plan sha256 {} here, {} in {PLAN_FILE}): a shard of a \
                     different experiment or seed",
                    short(&info.plan_sha256),
                    short(plan_sha256)
                )));
            }
            if (info.index, info.count) != (index, count) {
                return Err(mismatch(format!(
                    "its manifest says shard {}/{}, its directory name {index}/{count}",
                    info.index, info.count
                )));
            }
            // The last record of a query wins inside one run (a retried failure comes later).
            let mut last: HashMap<Place, usize> = HashMap::new();
            let mut lines: Vec<Line> = Vec::new();
            let rejected = run.for_each_record_line(|r, span| {
                let place = match position.get(r.query_id.as_str()) {
                    Some(&p) => Place::Plan(p),
                    None => Place::Stray(r.query_id),
                };
                let line = Line {
                    same_prompt: matches!(place, Place::Plan(p) if plan[p].1 == r.prompt_hash),
                    place,
                    span,
                };
                match last.get(&line.place) {
                    Some(&i) => lines[i] = line,
                    None => {
                        last.insert(line.place.clone(), lines.len());
                        lines.push(line);
                    }
                }
            })?;
            if !rejected.is_empty() {
                tracing::warn!(
                    "{}: {} unreadable record lines are not merged (resume the shard to measure them again)",
                    run_dir.display(),
                    rejected.len()
                );
            }
            shard.runs += 1;
            shard.records += lines.len();
            shard
                .statuses
                .push(format!("{}: {}", manifest.model.name, manifest.status));
            runs.push(ShardRun {
                shard: name.clone(),
                index,
                host: host.clone(),
                dir: run_dir,
                manifest,
                lines,
                _lock: lock,
            });
        }
        seen.push(shard);
    }
    Ok((seen, runs))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// One model's shard runs must have measured the same thing: the settings `--resume` guards,
/// and the same model file.
fn check_same_experiment(runs: &[ShardRun]) -> Result<(), MergeError> {
    let first = &runs[0];
    let want = recorded_settings(&first.manifest);
    for r in &runs[1..] {
        let changed = differences(&want, &recorded_settings(&r.manifest));
        if !changed.is_empty() {
            return Err(MergeError::Mismatch {
                dir: r.dir.clone(),
                message: format!(
                    "settings differ from {} (shards of different experiments):\n  {}",
                    first.dir.display(),
                    changed.join("\n  ")
                ),
            });
        }
        let sha = |m: &Manifest| m.model_file.as_ref().map(|f| f.sha256.clone());
        if sha(&r.manifest) != sha(&first.manifest) {
            return Err(MergeError::Mismatch {
                dir: r.dir.clone(),
                message: format!(
                    "measured another model file than {} ({:?} vs {:?})",
                    first.dir.display(),
                    sha(&r.manifest).map(|s| short(&s).to_string()),
                    sha(&first.manifest).map(|s| short(&s).to_string()),
                ),
            });
        }
    }
    Ok(())
}

/// Which records of each run to keep (indices into its records), and what is missing or
/// doubled. A query measured by two runs is kept from the first (directory-name order).
#[allow(clippy::type_complexity)]
fn cover(
    model: &str,
    runs: &[ShardRun],
    plan: &[(&str, &str)],
) -> Result<(Vec<Vec<usize>>, Vec<String>), MergeError> {
    let mut owner: Vec<Option<usize>> = vec![None; plan.len()];
    let mut doubled: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let mut keep = vec![Vec::new(); runs.len()];
    for (ri, run) in runs.iter().enumerate() {
        for (i, line) in run.lines.iter().enumerate() {
            let p = match &line.place {
                Place::Plan(p) => *p,
                Place::Stray(id) => {
                    return Err(MergeError::Mismatch {
                        dir: run.dir.clone(),
                        message: format!(
                            "has a record of `{id}`, which is not in the experiment's plan"
                        ),
                    })
                }
            };
            if !line.same_prompt {
                return Err(MergeError::Mismatch {
                    dir: run.dir.clone(),
                    message: format!(
                        "`{}` was asked with another prompt than the plan's",
                        plan[p].0
                    ),
                });
            }
            match owner[p] {
                None => {
                    owner[p] = Some(ri);
                    keep[ri].push(i);
                }
                Some(first) => {
                    doubled
                        .entry(p)
                        .or_insert_with(|| vec![runs[first].shard.as_str()])
                        .push(run.shard.as_str());
                }
            }
        }
    }
    let missing: Vec<usize> = (0..plan.len()).filter(|&p| owner[p].is_none()).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let unfinished: Vec<String> = runs
            .iter()
            .filter(|r| r.manifest.status != "completed")
            .map(|r| format!("{} is {}", r.shard, r.manifest.status))
            .collect();
        problems.push(format!(
            "{model}: {} of {} planned queries have no record: {}{}",
            missing.len(),
            plan.len(),
            list(missing.iter().map(|&p| plan[p].0.to_string())),
            if unfinished.is_empty() {
                String::new()
            } else {
                format!(" ({})", unfinished.join(", "))
            }
        ));
    }
    if !doubled.is_empty() {
        problems.push(format!(
            "{model}: {} queries were measured by more than one shard run: {}",
            doubled.len(),
            list(doubled.iter().map(|(p, shards)| format!(
                "{} ({})",
                plan[*p].0,
                shards.join(", ")
            )))
        ));
    }
    Ok((keep, problems))
}

/// The first [`SHOWN`] items, then how many more.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let mut shown: Vec<String> = items.take(SHOWN).collect();
    if n > SHOWN {
        shown.push(format!("and {} more", n - SHOWN));
    }
    shown.join(", ")
}

/// Write one merged run to `out` from `group` (shard runs, each with the records it keeps).
fn write_merged(
    out: &Path,
    group: &[(&ShardRun, &[usize])],
    plan: &[(&str, &str)],
    accelerator: String,
) -> Result<MergedRun, MergeError> {
    let run = RunDir::new(out);
    if run.exists() {
        let existing = run.read_manifest()?;
        if existing.merged_from.is_empty() {
            return Err(MergeError::Occupied(out.to_path_buf()));
        }
    }
    let lock = run.lock()?;
    let first = &group[0].0.manifest;
    let mut manifest = first.clone();
    manifest.sessions = Vec::new();
    manifest.merged_from = Vec::new();
    manifest.shard = None;
    manifest.error = None;
    // Every kept record as (plan position, member of the group, its line), and each member's
    // first session in the merged run.
    let mut order: Vec<(usize, usize, LineSpan)> = Vec::new();
    let mut first_session = Vec::with_capacity(group.len());
    let kept_dir = out.join(SHARDS_DIR);
    std::fs::create_dir_all(&kept_dir).map_err(io_err(&kept_dir))?;
    let mut power = MergedPowerLog::create(&run.power_log_path())?;
    let top = out.parent().unwrap_or(Path::new("."));
    for (member, (shard_run, keep)) in group.iter().enumerate() {
        let m = &shard_run.manifest;
        let offset = manifest.sessions.len();
        first_session.push(offset);
        manifest.sessions.extend(m.sessions.iter().cloned());
        for &i in *keep {
            let line = &shard_run.lines[i];
            let Place::Plan(p) = line.place else {
                unreachable!("cover keeps planned queries only")
            };
            order.push((p, member, line.span));
        }
        power
            .append_renumbered(&RunDir::new(&shard_run.dir).power_log_path(), offset)
            .map_err(io_err(&shard_run.dir))?;
        manifest.started_at = manifest.started_at.min(m.started_at);
        manifest.ended_at = manifest.ended_at.max(m.ended_at);
        let rel = shard_run
            .dir
            .strip_prefix(top)
            .unwrap_or(&shard_run.dir)
            .display()
            .to_string();
        manifest.merged_from.push(MergedShard {
            dir: rel,
            index: shard_run.index,
            count: m.shard.as_ref().map_or(0, |s| s.count),
            host: shard_run.host.clone(),
            status: m.status.clone(),
            records: keep.len(),
            first_session: offset,
            sessions: m.sessions.len(),
        });
        let copy = kept_dir.join(format!("{}.manifest.json", shard_run.shard));
        write_json_atomic(&copy, m).map_err(io_err(&copy))?;
    }
    power.finish()?;
    order.sort_unstable_by_key(|&(p, _, _)| p);
    manifest.planned = plan.len();
    manifest.plan_sha256 = plan_hash(plan.iter().copied());
    let complete =
        order.len() == plan.len() && group.iter().all(|(r, _)| r.manifest.status == "completed");
    manifest.status = if complete { "completed" } else { "partial" }.into();
    let (records, sums) = write_records(&run, group, &order, &first_session)?;
    let mut summary = summarize(
        &manifest.model.name,
        &manifest.model.backend,
        manifest.planned,
        &records,
        manifest.seed(),
    );
    sums.into_summary(&mut summary);
    run.write_summary(&lock, &summary)?;
    run.write_manifest(&lock, &manifest)?;
    Ok(MergedRun {
        dir: out.to_path_buf(),
        model: manifest.model.name.clone(),
        accelerator,
        planned: manifest.planned,
        records: records.len(),
        status: manifest.status.clone(),
        shards: group.len(),
    })
}

/// Write the merged `records.jsonl` (replacing it whole: the file is new or an earlier
/// merge's) from the kept records in `order`, renumbered: each record's plan position and its
/// sessions counted from its member's `first_session`. Hands back the records lightened for
/// the summary ([`ChannelSums::lighten`]) and their channel sums.
fn write_records(
    run: &RunDir,
    group: &[(&ShardRun, &[usize])],
    order: &[(usize, usize, LineSpan)],
    first_session: &[usize],
) -> Result<(Vec<Record>, ChannelSums), MergeError> {
    let paths: Vec<PathBuf> = group
        .iter()
        .map(|(r, _)| RunDir::new(&r.dir).records_path())
        .collect();
    let files = paths
        .iter()
        .map(|p| std::fs::File::open(p).map_err(io_err(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let path = run.records_path();
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        AtomicFile::create(&path).map_err(io_err(&path))?,
    );
    let mut light = Vec::with_capacity(order.len());
    let mut sums = ChannelSums::default();
    for batch in order.chunks(BATCH) {
        let lines: Vec<_> = batch
            .iter()
            .map(|&(_, m, span)| (&files[m], paths[m].as_path(), span))
            .collect();
        for (mut r, &(p, m, _)) in read_records_at(&lines)?.into_iter().zip(batch) {
            r.session += first_session[m];
            r.index = p;
            serde_json::to_writer(&mut out, &r).map_err(|e| io_err(&path)(e.into()))?;
            out.write_all(b"\n").map_err(io_err(&path))?;
            sums.add(&r);
            ChannelSums::lighten(&mut r);
            light.push(r);
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| io_err(&path)(e.into_error()))?;
    file.commit().map_err(io_err(&path))?;
    Ok((light, sums))
}
