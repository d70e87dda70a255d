//! `ipw compare` and `ipw coverage` as they were before the runs were read one at a time
//! (every record in memory, the joined table built whole): kept to check that the streamed
//! figures are the same figures.

use super::pairwise;
use super::*;
use crate::analysis::quality_grouped;
use crate::joined::{self, Table};
use crate::records::Detail;

fn row_of(
    model: &str,
    accelerator: &str,
    group: &str,
    q: &Quality,
    records: &[&Record],
) -> CompareRow {
    let mut latency: Vec<f64> = records
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| r.measured_latency_s())
        .collect();
    latency.sort_by(f64::total_cmp);
    let energies = query_energies(records);
    CompareRow {
        model: model.into(),
        accelerator: accelerator.into(),
        group: group.into(),
        scored: q.scored,
        accuracy: q.accuracy,
        apj: q.apj,
        apw: q.apw,
        j_per_query: (!energies.is_empty())
            .then(|| energies.iter().sum::<f64>() / energies.len() as f64),
        latency_p50_s: (!latency.is_empty())
            .then(|| crate::analysis::stats::percentile(&latency, 0.5)),
        energy_estimated: q.energy_estimated,
        flagged: records
            .iter()
            .filter(|r| r.energy.as_ref().is_some_and(|e| !e.flags.is_empty()))
            .count(),
    }
}

/// One run's compare rows: `all`, then each group.
fn run_rows(col: &joined::Column, records: &[Record], by: GroupBy, seed: u64) -> Vec<CompareRow> {
    let key = |r: &Record| group_key(by, r);
    let Some((overall, groups)) = quality_grouped(records, seed, key) else {
        return Vec::new();
    };
    let all: Vec<&Record> = records.iter().collect();
    let mut rows = vec![row_of(&col.name, &col.accelerator, "all", &overall, &all)];
    let mut members: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Some(k) = key(r) {
            members.entry(k).or_default().push(r);
        }
    }
    for (g, quality) in &groups {
        let of_group = members.get(g).map_or(&[][..], Vec::as_slice);
        rows.push(row_of(&col.name, &col.accelerator, g, quality, of_group));
    }
    rows
}

/// Compare runs: per run and group, and paired against `baseline` (default: the first run).
pub(crate) fn compare(
    runs: &[PathBuf],
    by: GroupBy,
    baseline: Option<&str>,
    seed: u64,
) -> Result<CompareReport, StudyError> {
    let runs = joined::find_runs(runs)?;
    let (t, per_run) = joined::build_with(&runs, &BTreeMap::new(), Detail::Figures)?;
    // One run's rows on each thread (the runs are independent; their order is kept).
    let rows: Vec<CompareRow> = std::thread::scope(|scope| {
        let per_column: Vec<_> = t
            .columns
            .iter()
            .zip(&per_run)
            .map(|(col, records)| scope.spawn(move || run_rows(col, records, by, seed)))
            .collect();
        per_column
            .into_iter()
            .flat_map(|h| h.join().expect("a run's figures do not panic"))
            .collect()
    });
    let base = match baseline {
        Some(name) => t.column(name)?,
        None => 0,
    };
    let mut paired = Vec::new();
    for c in (0..t.columns.len()).filter(|&c| c != base) {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in t.rows.iter().enumerate() {
            groups.entry("all".into()).or_default().push(i);
            if let Some(k) = group_key(by, r) {
                groups.entry(k).or_default().push(i);
            }
        }
        for (g, idx) in groups {
            paired.push(paired_diff(&t, c, base, &g, &idx, seed));
        }
    }
    Ok(CompareReport {
        group_by: by,
        energy_basis: t.energy_basis,
        rows,
        baseline: t.columns[base].name.clone(),
        paired,
        incomplete: t.incomplete.len(),
    })
}

fn paired_diff(
    t: &Table,
    c: usize,
    base: usize,
    group: &str,
    idx: &[usize],
    seed: u64,
) -> PairedDiff {
    let pick = |col: usize, f: &dyn Fn(&joined::Outcome) -> Option<f64>| -> Vec<Option<f64>> {
        idx.iter().map(|&i| f(&t.rows[i].outcomes[col])).collect()
    };
    let (sa, sb) = (pick(c, &|o| Some(o.score)), pick(base, &|o| Some(o.score)));
    let (ea, eb) = (pick(c, &|o| o.energy_j), pick(base, &|o| o.energy_j));
    // A figure needs every value it sums: one query without energy leaves the energy figures
    // out (as on all queries), the accuracy one stands.
    let boot = |salt: u64, cols: &[&Vec<Option<f64>>], stat: fn(&[f64], f64) -> Option<f64>| {
        let cols: Vec<Vec<f64>> = cols.iter().map(|c| complete(c)).collect::<Option<_>>()?;
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        bootstrap(&refs, seed ^ salt, stat)
    };
    PairedDiff {
        model: t.columns[c].name.clone(),
        baseline: t.columns[base].name.clone(),
        group: group.into(),
        shared: idx.len(),
        accuracy_delta: boot(0x41, &[&sa, &sb], |t, n| Some((t[0] - t[1]) / n)),
        energy_ratio: boot(0x42, &[&ea, &eb], |t, _| (t[1] > 0.0).then(|| t[0] / t[1])),
        apj_ratio: boot(0x43, &[&sa, &ea, &sb, &eb], |t, _| {
            let (a_s, a_e, b_s, b_e) = (t[0], t[1], t[2], t[3]);
            (a_e > 0.0 && b_s > 0.0).then(|| (a_s / a_e) / (b_s / b_e))
        }),
    }
}

/// Coverage of every model against `reference`.
pub(crate) fn coverage(
    runs: &[PathBuf],
    reference: &str,
    tolerance: f64,
    by: GroupBy,
    meta: &BTreeMap<String, crate::config::ModelMeta>,
    seed: u64,
) -> Result<CoverageReport, StudyError> {
    let runs = joined::find_runs(runs)?;
    let (t, records) = joined::build_with(&runs, meta, Detail::Figures)?;
    let reference = t.column(reference)?;
    let covered = |i: usize, c: usize| {
        let r = &t.rows[i];
        pairwise::covered(&r.outcomes[c], &r.outcomes[reference], tolerance)
    };
    let locals: Vec<usize> = (0..t.columns.len()).filter(|&c| c != reference).collect();
    pairwise::check_reference_in_table(&t, &records, reference, &locals)?;
    drop(records);
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in t.rows.iter().enumerate() {
        groups.entry("all".into()).or_default().push(i);
        if let Some(k) = group_key(by, r) {
            groups.entry(k).or_default().push(i);
        }
    }
    let share = |hits: Vec<f64>, salt: u64| bootstrap(&[&hits], seed ^ salt, mean);
    let mut rows = Vec::new();
    for (g, idx) in &groups {
        for &c in &locals {
            let hits = idx.iter().map(|&i| covered(i, c) as u8 as f64).collect();
            rows.push(CoverageRow {
                model: t.columns[c].name.clone(),
                group: g.clone(),
                queries: idx.len(),
                coverage: share(hits, c as u64),
            });
        }
        let hits = idx
            .iter()
            .map(|&i| locals.iter().any(|&c| covered(i, c)) as u8 as f64)
            .collect();
        rows.push(CoverageRow {
            model: "best-of-local".into(),
            group: g.clone(),
            queries: idx.len(),
            coverage: share(hits, 0xB0),
        });
    }
    let mut dated: Vec<(String, usize)> = locals
        .iter()
        .filter_map(|&c| Some((t.columns[c].meta.release_date.clone()?, c)))
        .collect();
    dated.sort();
    let mut over_time = Vec::new();
    for (k, (date, _)) in dated.iter().enumerate() {
        if dated.get(k + 1).is_some_and(|(d, _)| d == date) {
            continue; // the last model of a date speaks for all released that day
        }
        let available: Vec<usize> = dated[..=k].iter().map(|(_, c)| *c).collect();
        let n = t.rows.len().max(1) as f64;
        let hits = (0..t.rows.len())
            .filter(|&i| available.iter().any(|&c| covered(i, c)))
            .count() as f64;
        over_time.push(CoverageAtDate {
            date: date.clone(),
            models: available
                .iter()
                .map(|&c| t.columns[c].name.clone())
                .collect(),
            coverage: hits / n,
        });
    }
    Ok(CoverageReport {
        reference: t.columns[reference].name.clone(),
        tolerance,
        queries: t.rows.len(),
        incomplete: t.incomplete.len(),
        pairwise_datasets: pairwise::datasets_in_table(&t, &locals),
        rows,
        over_time,
    })
}

#[cfg(test)]
#[allow(clippy::manual_is_multiple_of)] // `q % k` reads as the pattern it is here
mod tests {
    use crate::study::{GroupBy, StudyError};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// Rewrite a run's records as JSON values.
    fn edit(run: &Path, f: impl Fn(&mut Vec<Value>)) {
        let path = run.join("records.jsonl");
        let mut records: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        f(&mut records);
        let mut w = std::fs::File::create(&path).unwrap();
        for r in &records {
            writeln!(w, "{r}").unwrap();
        }
    }

    fn q(r: &Value) -> usize {
        r["query_id"].as_str().unwrap()[2..].parse().unwrap()
    }

    fn domain(label: &str) -> Value {
        json!({"label": label, "classifier": "k", "wasm_sha256": "x", "taxonomy": "t",
               "taxonomy_sha256": "y"})
    }

    /// Four runs (`mid` on two accelerators) over 1,500 queries, with what the join must get
    /// right: queries one run lacks, retried queries (the last record wins the join, every
    /// record counts in the run's own figures), failures, unmeasured latencies, flags, domain
    /// labels in some runs only, categories, pairwise grades, and (`gross_only`) a run with
    /// gross energy only on some queries.
    fn runs(dir: &Path, gross_only: bool) -> PathBuf {
        let table = dir.join("t.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&table).unwrap());
        writeln!(w, "query_id,model,accelerator,dataset,subject,score,energy_j,net_energy_j,latency_s,input_tokens,output_tokens").unwrap();
        let mut rng = crate::rng::SplitMix64::new(3);
        let mut unit = move || rng.next_u64() as f64 / 2f64.powi(64);
        let models = [("ref", "a"), ("small", "a"), ("mid", "a"), ("mid", "b")];
        for (m, (model, acc)) in models.iter().enumerate() {
            for q in 0..1500 {
                if m == 2 && q % 37 == 0 {
                    continue;
                }
                let score = u8::from(unit() < 0.5 + 0.1 * m as f64);
                // Heavy-tailed energies on a few queries keep exact resampling in play.
                let j = if q % 101 == 0 {
                    500.0
                } else {
                    1.0 + 3.0 * unit()
                } * (1 + m) as f64;
                let net = if gross_only && m == 1 && q % 5 == 0 {
                    String::new()
                } else {
                    format!("{}", j * 0.7)
                };
                let latency = if q % 11 == 0 { 0.0 } else { 0.1 + unit() };
                let subject = if q % 13 == 0 {
                    String::new()
                } else {
                    format!("s{}", q % 7)
                };
                let dataset = if q % 3 == 0 { "mmlu" } else { "gsm8k" };
                writeln!(
                    w,
                    "d/{q},{model},{acc},{dataset},{subject},{score},{j},{net},{latency},{},{}",
                    50 + q % 40,
                    10 + q % 90
                )
                .unwrap();
            }
        }
        drop(w);
        let out = dir.join("runs");
        let imported = crate::import::import(&table, &out, &BTreeMap::new()).unwrap();
        let run = |model: &str, acc: &str| -> PathBuf {
            imported
                .runs
                .iter()
                .map(|(_, d, _)| d.clone())
                .find(|d| {
                    let m = crate::records::RunDir::new(d).read_manifest().unwrap();
                    m.model.name == model
                        && (m.host.accelerator() == acc
                            || m.model.settings["meta"]["accelerator"] == acc)
                })
                .unwrap()
        };
        edit(&run("ref", "a"), |rs| {
            for r in rs.iter_mut() {
                let i = q(r);
                if i % 4 != 0 {
                    r["domain"] = domain(["15-0000", "23-0000"][i % 2]);
                }
                if i % 3 == 0 {
                    r["category"] = json!("stem");
                }
            }
        });
        edit(&run("small", "a"), |rs| {
            let mut again = Vec::new();
            for r in rs.iter_mut() {
                let i = q(r);
                if i % 3 == 0 {
                    r["domain"] = domain("11-0000");
                }
                if i % 9 == 0 {
                    r["energy"]["flags"] = json!(["missing_samples"]);
                }
                if i % 23 == 0 {
                    r["error"] = json!({"kind": "timeout", "message": "slow"});
                    r["grade"] = Value::Null;
                }
                if i % 17 == 0 {
                    let mut retried = r.clone();
                    let s = r["grade"]["score"].as_f64().unwrap_or(0.0);
                    retried["grade"]["score"] = json!(1.0 - s);
                    retried["error"] = Value::Null;
                    // The retry's label (or none) is the run's, not the first try's.
                    retried["domain"] = if i % 2 == 0 {
                        Value::Null
                    } else {
                        domain("13-0000")
                    };
                    again.push(retried);
                }
            }
            rs.extend(again);
        });
        edit(&run("mid", "a"), |rs| {
            for (k, r) in rs.iter_mut().enumerate() {
                if r["dataset"] == "mmlu" {
                    r["grade"]["grader"] = json!(crate::records::PAIRWISE_GRADER);
                    r["grade"]["score"] = json!([0.0, 0.5, 1.0][k % 3]);
                    r["grade"]["params"] = json!({"against_model": "ref"});
                }
            }
        });
        out
    }

    fn same<T: serde::Serialize>(old: T, new: T, what: &str) {
        let (old, new) = (
            serde_json::to_value(old).unwrap(),
            serde_json::to_value(new).unwrap(),
        );
        assert!(
            old == new,
            "{what}: the table way gave\n{old:#}\nrun by run gave\n{new:#}"
        );
    }

    #[test]
    fn the_table_built_run_by_run_is_the_table_built_whole() {
        for gross_only in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let runs = crate::joined::find_runs(&[runs(dir.path(), gross_only)]).unwrap();
            // Every run asks its own way: the first run's prompts must be the rows'.
            for (k, run) in runs.iter().enumerate() {
                edit(run, |rs| {
                    for r in rs.iter_mut() {
                        r["prompt"] = format!("{k}: {}", r["query_id"]).into();
                    }
                });
            }
            // Declared energy, prices and parameters: cells completed by the metadata.
            let meta: BTreeMap<String, crate::config::ModelMeta> = serde_json::from_value(json!({
                "ref": {"energy_model": {"j_per_input_token": 0.01, "j_per_output_token": 0.1}},
                "small": {"params_b": 1.5, "price_in_per_mtok": 0.2, "price_out_per_mtok": 0.6}
            }))
            .unwrap();
            let streamed = crate::joined::build(&runs, &meta).unwrap();
            let (whole, _) =
                crate::joined::build_with(&runs, &meta, crate::records::Detail::Full).unwrap();
            assert_eq!(format!("{streamed:#?}"), format!("{whole:#?}"));
            assert!(streamed.rows.len() > 1000 && !streamed.incomplete.is_empty());
            assert!(streamed.rows[7].prompt.starts_with("0: "));
            assert_eq!(
                streamed.energy_basis,
                if gross_only { "gross" } else { "net" }
            );
        }
    }

    #[test]
    fn compare_and_coverage_run_by_run_equal_the_table_built_whole() {
        for gross_only in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = vec![runs(dir.path(), gross_only)];
            for by in [
                GroupBy::Dataset,
                GroupBy::Subject,
                GroupBy::Category,
                GroupBy::Domain,
            ] {
                for baseline in [None, Some("small"), Some("mid@b")] {
                    let old = super::compare(&root, by, baseline, 11).unwrap();
                    assert!(old.incomplete > 0 && old.paired.len() >= 3, "{old:?}");
                    assert_eq!(old.energy_basis, if gross_only { "gross" } else { "net" });
                    let new = crate::study::compare(&root, by, baseline, 11).unwrap();
                    same(old, new, &format!("compare by {by:?} against {baseline:?}"));
                }
                let mut meta: BTreeMap<String, crate::config::ModelMeta> = BTreeMap::new();
                for (model, date) in [("small", "2025-01-01"), ("mid", "2025-06-01")] {
                    meta.entry(model.into()).or_default().release_date = Some(date.into());
                }
                for (reference, tolerance) in [("ref", 0.0), ("ref", 0.25), ("mid@a", 0.0)] {
                    let old = super::coverage(&root, reference, tolerance, by, &meta, 5).unwrap();
                    assert!(!old.over_time.is_empty());
                    let new =
                        crate::study::coverage(&root, reference, tolerance, by, &meta, 5).unwrap();
                    same(
                        old,
                        new,
                        &format!("coverage by {by:?} of {reference} ({tolerance})"),
                    );
                }
            }
            // The same runs exported to Parquet and read from there (only the columns figures
            // need are decoded): the same figures.
            let pq = dir.path().join("parquet");
            crate::export::parquet::export(
                &root,
                &crate::export::parquet::Destination::Under(pq.clone()),
            )
            .unwrap();
            let pq = vec![pq];
            for by in [GroupBy::Domain, GroupBy::Category] {
                same(
                    crate::study::compare(&root, by, None, 11).unwrap(),
                    crate::study::compare(&pq, by, None, 11).unwrap(),
                    &format!("compare by {by:?}, JSONL and Parquet"),
                );
                same(
                    crate::study::coverage(&root, "ref", 0.0, by, &BTreeMap::new(), 5).unwrap(),
                    crate::study::coverage(&pq, "ref", 0.0, by, &BTreeMap::new(), 5).unwrap(),
                    &format!("coverage by {by:?}, JSONL and Parquet"),
                );
            }
            // Pairwise grades judged against another model than the reference: the same
            // refusal both ways.
            let by = GroupBy::Dataset;
            let old = super::coverage(&root, "small", 0.0, by, &BTreeMap::new(), 5).unwrap_err();
            let new =
                crate::study::coverage(&root, "small", 0.0, by, &BTreeMap::new(), 5).unwrap_err();
            assert!(matches!(new, StudyError::Input(_)), "{new}");
            assert_eq!(old.to_string(), new.to_string());
        }
    }

    /// The run directories under `root` whose manifest names `model`.
    fn runs_of(root: &Path, model: &str) -> Vec<PathBuf> {
        crate::records::run_dirs(root)
            .unwrap()
            .into_iter()
            .filter(|d| {
                crate::records::RunDir::new(d)
                    .read_manifest()
                    .unwrap()
                    .model
                    .name
                    == model
            })
            .collect()
    }

    #[test]
    fn parts_made_run_by_run_and_combined_give_what_the_runs_give() {
        for gross_only in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = runs(dir.path(), gross_only);
            // Declared energy where none was measured: applied when the parts are combined,
            // from the token counts a part keeps.
            let small = runs_of(&root, "small").remove(0);
            let manifest = small.join("manifest.json");
            let mut m: Value =
                serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
            m["model"]["meta"]["energy_model"] =
                json!({"j_per_input_token": 0.013, "j_per_output_token": 0.29});
            std::fs::write(&manifest, m.to_string()).unwrap();
            edit(&small, |rs| {
                for r in rs.iter_mut().filter(|r| q(r) % 19 == 0) {
                    r["energy"] = Value::Null;
                }
            });
            let parts = dir.path().join("parts");
            std::fs::create_dir(&parts).unwrap();
            let dirs = crate::records::run_dirs(&root).unwrap();
            for (k, run) in dirs.iter().enumerate() {
                let out = parts.join(format!("{k}.part.parquet"));
                let made = crate::study::part::write_part(run, &out, 11).unwrap();
                assert!(
                    made.queries > 1000 && made.records >= made.queries,
                    "{made:?}"
                );
            }
            let (runs, parts) = (vec![root.clone()], vec![parts]);
            let mut mixed = vec![dirs[0].clone()];
            mixed.extend((1..dirs.len()).map(|k| parts[0].join(format!("{k}.part.parquet"))));
            for by in GroupBy::ALL {
                for baseline in [None, Some("small"), Some("mid@b")] {
                    let whole = crate::study::compare(&runs, by, baseline, 11).unwrap();
                    assert!(
                        baseline == Some("small")
                            || whole
                                .paired
                                .iter()
                                .any(|p| p.model == "small" && p.energy_ratio.is_some()),
                        "declared energy fills the gaps: {whole:?}"
                    );
                    for (inputs, what) in [(&parts, "parts"), (&mixed, "a run and parts")] {
                        same(
                            &whole,
                            &crate::study::compare(inputs, by, baseline, 11).unwrap(),
                            &format!("compare by {by:?} against {baseline:?} from {what}"),
                        );
                    }
                }
                let mut meta: BTreeMap<String, crate::config::ModelMeta> = BTreeMap::new();
                for (model, date) in [("small", "2025-01-01"), ("mid", "2025-06-01")] {
                    meta.entry(model.into()).or_default().release_date = Some(date.into());
                }
                for (reference, tolerance) in [("ref", 0.25), ("mid@a", 0.0)] {
                    same(
                        crate::study::coverage(&runs, reference, tolerance, by, &meta, 5).unwrap(),
                        crate::study::coverage(&parts, reference, tolerance, by, &meta, 5).unwrap(),
                        &format!("coverage by {by:?} of {reference} from parts"),
                    );
                }
            }
            // Intervals drawn with another seed than the parts' are refused, naming the part.
            let e = crate::study::compare(&parts, GroupBy::Dataset, None, 12).unwrap_err();
            assert!(
                matches!(e, StudyError::Input(_)) && e.to_string().contains("seed 11"),
                "{e}"
            );
            // A Parquet file that is not a part is named as such.
            let not = dir.path().join("not.parquet");
            std::fs::write(&not, b"PAR1 nothing").unwrap();
            let e = crate::study::compare(&[not], GroupBy::Dataset, None, 11).unwrap_err();
            assert!(e.to_string().contains("not.parquet"), "{e}");
        }
    }
}
