//! What the report needs of a run's records, gathered as they stream past: the page draws
//! from these digests, so `ipw report` holds a few numbers per record (its joules, for the
//! histogram) rather than the records, whatever the runs' size.

use crate::records::{Detail, Record, RunDir, StoreError};
use crate::study::QueryEnergies;
use std::collections::BTreeMap;

/// Records per batch as a run streams past.
const BATCH: usize = 8192;

/// One run's records, digested.
#[derive(Debug)]
pub(super) struct RunDigest {
    /// Records read.
    pub records: usize,
    /// Some record has measured (gross) energy. (The query x run table asks this of each
    /// query's last record among the queries every run has; a run's label asks it of the run.)
    pub measured: bool,
    /// Some record's energy is modelled, not measured.
    pub any_estimated: bool,
    /// Some record has energy, and every record's energy comes only from an imported table.
    pub imported_only: bool,
    /// The joules per query the histogram draws (see [`QueryEnergies`]).
    pub energies: Vec<f64>,
    /// Which classifiers labelled the records, into which taxonomies: each distinct source
    /// once, in the order first met.
    pub domains: Vec<DomainSource>,
}

/// Who placed a record in a domain, and by which taxonomy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DomainSource {
    classifier: String,
    wasm_sha256: String,
    taxonomy: String,
    taxonomy_sha256: String,
}

/// Reads `dir`'s records once, in batches.
pub(super) fn digest(dir: &RunDir) -> Result<RunDigest, StoreError> {
    let mut d = Digesting::default();
    dir.for_each_record_with(BATCH, Detail::Full, |batch| {
        for r in &batch {
            d.add(r);
        }
    })?;
    Ok(d.finish())
}

/// A digest being gathered.
struct Digesting {
    records: usize,
    any_energy: bool,
    measured: bool,
    any_estimated: bool,
    all_imported: bool,
    energies: QueryEnergies,
    domains: Vec<DomainSource>,
}

impl Default for Digesting {
    fn default() -> Self {
        Self {
            records: 0,
            any_energy: false,
            measured: false,
            any_estimated: false,
            all_imported: true,
            energies: QueryEnergies::default(),
            domains: Vec::new(),
        }
    }
}

impl Digesting {
    fn add(&mut self, r: &Record) {
        self.records += 1;
        self.energies.add(r);
        if let Some(e) = &r.energy {
            self.any_energy = true;
            self.measured |= e.gross_j.is_some();
            self.any_estimated |= e.estimated;
            // `ipw import` puts a table's joules in one channel with no readings behind it.
            self.all_imported &= e.channels.keys().all(|c| c == "imported/table");
        }
        if let Some(d) = &r.domain {
            let known = self.domains.iter().any(|s| {
                s.classifier == d.classifier
                    && s.wasm_sha256 == d.wasm_sha256
                    && s.taxonomy == d.taxonomy
                    && s.taxonomy_sha256 == d.taxonomy_sha256
            });
            if !known {
                self.domains.push(DomainSource {
                    classifier: d.classifier.clone(),
                    wasm_sha256: d.wasm_sha256.clone(),
                    taxonomy: d.taxonomy.clone(),
                    taxonomy_sha256: d.taxonomy_sha256.clone(),
                });
            }
        }
    }

    fn finish(self) -> RunDigest {
        RunDigest {
            records: self.records,
            measured: self.measured,
            any_estimated: self.any_estimated,
            imported_only: self.any_energy && self.all_imported,
            energies: self.energies.finish(),
            domains: self.domains,
        }
    }
}

/// The query windows (`[start, end]`, seconds on the run's clock) of session `session` of
/// `dir`'s run, in file order: what the power trace marks.
pub(super) fn session_windows(dir: &RunDir, session: usize) -> Result<Vec<[f64; 2]>, StoreError> {
    let mut windows = Vec::new();
    dir.for_each_record_with(BATCH, Detail::Figures, |batch| {
        windows.extend(
            batch
                .iter()
                .filter(|r| r.session == session)
                .map(|r| [r.window.start_s, r.window.end_s]),
        );
    })?;
    Ok(windows)
}

/// Which classifiers labelled the runs' records, into which taxonomies, one line each.
pub(super) fn labelled_by(digests: &[RunDigest]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let short = |h: &str| h.chars().take(12).collect::<String>();
    for d in digests.iter().flat_map(|d| &d.domains) {
        let line = if d.wasm_sha256.is_empty() {
            format!(
                "{} into {} (sha256 {})",
                d.classifier,
                d.taxonomy,
                short(&d.taxonomy_sha256)
            )
        } else {
            format!(
                "{} (sha256 {}) into {} (sha256 {})",
                d.classifier,
                short(&d.wasm_sha256),
                d.taxonomy,
                short(&d.taxonomy_sha256)
            )
        };
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    seen
}

/// Titles of the label codes, from the shipped taxonomy the records name (same labels: same
/// hash); a taxonomy from a file leaves its codes untitled.
pub(super) fn domain_titles(digests: &[RunDigest]) -> BTreeMap<String, String> {
    let mut titles = BTreeMap::new();
    let mut done: Vec<&str> = Vec::new();
    for d in digests.iter().flat_map(|d| &d.domains) {
        if done.contains(&d.taxonomy_sha256.as_str()) {
            continue;
        }
        done.push(&d.taxonomy_sha256);
        if let Ok(t) = crate::classify::Taxonomy::load(&d.taxonomy) {
            if t.sha256 == d.taxonomy_sha256 {
                for l in t.labels {
                    titles.insert(l.code, l.title);
                }
            }
        }
    }
    titles
}
