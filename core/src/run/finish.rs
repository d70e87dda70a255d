//! Finishing a session: attribute energy to every record of the run from what is on disk
//! (`power.jsonl` and the manifest's sessions), rewrite the records, summarise, and close the
//! manifest with the run's status.

use super::RunError;
use crate::analysis::{summarize, Summary};
use crate::classify::Classifying;
use crate::config::{EnergyConfig, SplitRule};
use crate::grade::DatasetGraders;
use crate::power::{attribute_records, SessionPower};
use crate::records::{Manifest, Record, RunDir, RunLock, StoreError};
use std::path::Path;

/// Grade every answered record that has no grade yet (graded after the queries when they ran
/// concurrently, or left ungraded by a crash), rewriting `records.jsonl` if any was.
pub(super) async fn grade_ungraded(
    run: &RunDir,
    lock: &RunLock,
    graders: &std::sync::Arc<DatasetGraders>,
) -> Result<usize, RunError> {
    if graders.is_empty() {
        return Ok(0);
    }
    let mut records = run.read_records()?.records;
    let todo = |r: &Record| r.response.is_some() && r.error.is_none() && r.grade.is_none();
    let n = records.iter().filter(|r| todo(r)).count();
    if n == 0 {
        return Ok(0);
    }
    let graders = graders.clone();
    let records = tokio::task::spawn_blocking(move || {
        for r in records.iter_mut().filter(|r| todo(r)) {
            graders.grade_record(r);
        }
        records
    })
    .await
    .expect("grading never panics: traps are errors");
    run.rewrite_records(lock, &records)?;
    Ok(n)
}

/// Attribute energy to every record of the run (all sessions) when any session had samplers,
/// rewriting `records.jsonl`. Returns the records as now on disk.
pub(super) fn attribute_run(
    run: &RunDir,
    lock: &RunLock,
    manifest: &Manifest,
    split: SplitRule,
) -> Result<Vec<Record>, RunError> {
    let mut records = run.read_records()?.records;
    if manifest.sessions.iter().any(|s| !s.samplers.is_empty()) {
        let sessions: Vec<SessionPower> = manifest
            .sessions
            .iter()
            .map(|s| SessionPower {
                samplers: &s.samplers,
                baseline: s.baseline,
                flag_other_load: manifest.model.backend == "embedded",
            })
            .collect();
        let power_log = run.power_log_path();
        attribute_records(&mut records, &power_log, &sessions, split).map_err(|source| {
            RunError::Io {
                path: power_log,
                source,
            }
        })?;
        run.rewrite_records(lock, &records)?;
    }
    Ok(records)
}

/// Give a domain to every record without one (on a resumed run, those of this session), then
/// rewrite the records. Runs after the last query, so outside every measured window.
pub(super) async fn classify_unlabelled(
    run: &RunDir,
    lock: &RunLock,
    classifying: &std::sync::Arc<Classifying>,
    mut records: Vec<Record>,
) -> Result<Vec<Record>, RunError> {
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].domain.is_none())
        .collect();
    if todo.is_empty() {
        return Ok(records);
    }
    let mut some: Vec<Record> = todo.iter().map(|&i| records[i].clone()).collect();
    let c = classifying.clone();
    let some = tokio::task::spawn_blocking(move || {
        c.label_records(&mut some);
        some
    })
    .await
    .expect("classifying does not panic: traps are errors");
    let labelled = some
        .iter()
        .filter(|r| r.domain.as_ref().is_some_and(|d| d.label.is_some()))
        .count();
    tracing::info!(
        classifier = %classifying.classifier().id,
        "gave {labelled} of {} queries a domain",
        todo.len()
    );
    for (i, r) in todo.into_iter().zip(some) {
        records[i] = r;
    }
    run.rewrite_records(lock, &records)?;
    Ok(records)
}

/// Summarise `records` into `summary.json`.
pub(super) fn write_summary(
    run: &RunDir,
    lock: &RunLock,
    manifest: &Manifest,
    records: &[Record],
    seed: u64,
) -> Result<Summary, RunError> {
    let summary = summarize(
        &manifest.model.name,
        &manifest.model.backend,
        manifest.planned,
        records,
        seed,
    );
    run.write_summary(lock, &summary)?;
    Ok(summary)
}

/// Close the manifest: `interrupted` unless every planned query has a record.
pub(super) fn close_manifest(
    run: &RunDir,
    lock: &RunLock,
    manifest: &mut Manifest,
    interrupted: bool,
    recorded: usize,
) -> Result<(), RunError> {
    let now = chrono::Utc::now();
    manifest.ended_at = Some(now);
    manifest.status = if interrupted || recorded < manifest.planned {
        "interrupted"
    } else {
        "completed"
    }
    .into();
    if let Some(s) = manifest.sessions.last_mut() {
        s.ended_at = Some(now);
    }
    run.write_manifest(lock, manifest)?;
    Ok(())
}

/// What [`reattribute`] did.
#[derive(Debug, Clone)]
pub struct Reattributed {
    /// Model name.
    pub model: String,
    /// Records in the run.
    pub records: usize,
    /// Records that now carry energy.
    pub with_energy: usize,
    /// Records whose energy figures changed.
    pub changed: usize,
    /// The refreshed summary.
    pub summary: Summary,
}

/// Recompute every record's energy in the run at `dir` from `power.jsonl` and the manifest
/// (after a crash, or after a fix to attribution), then rewrite the records and the summary.
/// Takes the run directory's lock; the split rule and bootstrap seed are the run's own.
pub fn reattribute(dir: &Path) -> Result<Reattributed, RunError> {
    let run = RunDir::new(dir);
    let lock = run.lock()?;
    reattribute_locked(&run, &lock)
}

/// [`reattribute`] with the lock already held.
pub(super) fn reattribute_locked(run: &RunDir, lock: &RunLock) -> Result<Reattributed, RunError> {
    let manifest = run.read_manifest()?;
    let energy: EnergyConfig =
        manifest
            .experiment_section("energy")
            .map_err(|message| StoreError::Parse {
                path: run.manifest_path(),
                message,
            })?;
    let seed = manifest.seed();
    let before = run.read_records()?.records;
    let records = attribute_run(run, lock, &manifest, energy.split)?;
    let changed = before
        .iter()
        .zip(&records)
        .filter(|(a, b)| a.energy != b.energy)
        .count();
    let summary = write_summary(run, lock, &manifest, &records, seed)?;
    Ok(Reattributed {
        model: manifest.model.name.clone(),
        records: records.len(),
        with_energy: records.iter().filter(|r| r.energy.is_some()).count(),
        changed,
        summary,
    })
}
