//! Coverage where grades are pairwise (open-ended queries with no gold answer): the `pairwise`
//! grader scores a model's response against the reference model's response to the same query
//! (win 1, tie 0.5, loss 0, averaged over both orders), so such a query is covered when the
//! score is at least 0.5 (as good as the reference) minus the tolerance. The reference ties with
//! itself by definition and needs no pairwise grade of its own.

use super::StudyError;
#[cfg(test)]
use crate::joined::{Outcome, Table};
#[cfg(test)]
use crate::records::{Record, RunDir, PAIRWISE_GRADER};
#[cfg(test)]
use std::collections::BTreeSet;

/// A pairwise score meaning "as good as the reference" (a tie in both orders).
pub const TIE: f64 = 0.5;

/// Whether `model` covers a query the reference did as `reference`: its score reaches the
/// reference's (a pairwise grade: a tie) minus `tolerance`.
#[cfg(test)]
pub(crate) fn covered(model: &Outcome, reference: &Outcome, tolerance: f64) -> bool {
    covers(model.score, model.pairwise, reference.score, tolerance)
}

/// [`covered`] from the scores: the model's (`pairwise`: judged against the reference's
/// response) and the reference's.
pub(crate) fn covers(score: f64, pairwise: bool, reference: f64, tolerance: f64) -> bool {
    let bar = if pairwise { TIE } else { reference };
    score >= bar - tolerance - 1e-12
}

/// The datasets in which some model other than the reference was graded pairwise, sorted.
#[cfg(test)]
pub(crate) fn datasets_in_table(t: &Table, locals: &[usize]) -> Vec<String> {
    let set: BTreeSet<&str> = t
        .rows
        .iter()
        .filter(|r| locals.iter().any(|&c| r.outcomes[c].pairwise))
        .map(|r| r.dataset.as_str())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// [`check_reference`] on a joined table and its runs' records (the way before runs were read
/// one at a time), kept to check the new way against.
#[cfg(test)]
pub(crate) fn check_reference_in_table(
    t: &Table,
    records: &[Vec<Record>],
    reference: usize,
    locals: &[usize],
) -> Result<(), StudyError> {
    let judged: Vec<usize> = locals
        .iter()
        .copied()
        .filter(|&c| t.rows.iter().any(|r| r.outcomes[c].pairwise))
        .collect();
    if judged.is_empty() {
        return Ok(());
    }
    let read_err = |path: &std::path::Path, e: crate::records::StoreError| StudyError::Run {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let ref_run = &t.columns[reference].run;
    let ref_model = RunDir::new(ref_run)
        .read_manifest()
        .map_err(|e| read_err(ref_run, e))?
        .model
        .name;
    for c in judged {
        let run = &t.columns[c].run;
        let against = records[c]
            .iter()
            .filter_map(|r| r.grade.as_ref())
            .filter(|g| g.grader == PAIRWISE_GRADER)
            .filter_map(|g| g.params.as_ref()?.get("against_model")?.as_str());
        for model in against {
            if model != ref_model {
                return Err(mismatch(run, model, &ref_model, ref_run));
            }
        }
    }
    Ok(())
}

/// Refuse runs whose pairwise grades were judged against another model than the reference:
/// their scores would say nothing about this reference. Grades that name no reference model
/// (a dataset whose answers hold another model's responses) are taken as they are. `judged`
/// are the runs with a pairwise grade on a joined query; each run's pairwise grades name the
/// models they were judged against (in the order first seen).
pub(crate) fn check_reference(
    scan: &super::scan::Scan,
    reference: usize,
    judged: &[usize],
) -> Result<(), StudyError> {
    let ref_col = &scan.columns[reference];
    for &c in judged {
        let run = &scan.columns[c].run;
        if let Some(model) = scan.against[c].iter().find(|m| **m != ref_col.model) {
            return Err(mismatch(run, model, &ref_col.model, &ref_col.run));
        }
    }
    Ok(())
}

fn mismatch(
    run: &std::path::Path,
    model: &str,
    ref_model: &str,
    ref_run: &std::path::Path,
) -> StudyError {
    StudyError::Input(format!(
        "{}: its pairwise grades were judged against `{model}`, not the reference `{ref_model}` ({}); grade it again with `ipw grade {} --grader pairwise --against {}`",
        run.display(),
        ref_run.display(),
        run.display(),
        ref_run.display()
    ))
}
