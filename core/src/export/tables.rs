//! The CSV files beside each study's JSON (`route.csv`, `compare.csv`, `coverage.csv`,
//! `trend.csv`, `report.*.csv`): one line per figure with its 95% interval, written with the
//! `csv` crate so that names with commas, quotes or line breaks stay one field.
//!
//! A figure without a value is an empty field; an interval is two fields, `lo` and `hi`.
//! `compare.csv` holds two tables, each under its own header line.

use crate::analysis::Estimate;
use crate::report::Report;
use crate::routing::{simulate::Figures, RouteReport};
use crate::study::trend::TrendReport;
use crate::study::{CompareReport, CoverageReport};

/// Lines of fields, possibly of different lengths (a file of two tables), as CSV text.
struct Lines(csv::Writer<Vec<u8>>);

impl Lines {
    fn new() -> Self {
        Lines(
            csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(Vec::new()),
        )
    }

    fn line<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(&mut self, fields: I) {
        // Writing to memory has no I/O to fail, and every field is a &str.
        self.0
            .write_record(fields)
            .expect("a CSV line written to memory");
    }

    fn text(self) -> String {
        let bytes = self
            .0
            .into_inner()
            .map_err(|e| e.into_error())
            .expect("a CSV buffer in memory");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }
}

/// An optional number; empty when there is none.
fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Value, low and high end of the 95% interval; three empty fields when there is no estimate.
fn est(e: &Option<Estimate>) -> [String; 3] {
    match e {
        Some(e) => [
            e.value.to_string(),
            e.ci95[0].to_string(),
            e.ci95[1].to_string(),
        ],
        None => Default::default(),
    }
}

/// `route.csv`: one line per router (group `all`), then with `--by` one per router and group;
/// its figures and their intervals.
pub fn route(report: &RouteReport) -> String {
    let mut w = Lines::new();
    w.line([
        "router",
        "group",
        "queries",
        "errors",
        "escalated",
        "accuracy",
        "accuracy_lo",
        "accuracy_hi",
        "accuracy_delta",
        "energy_j",
        "energy_j_lo",
        "energy_j_hi",
        "compute_flops",
        "cost_usd",
        "latency_s",
        "energy_saving",
        "energy_saving_lo",
        "energy_saving_hi",
        "compute_saving",
        "compute_saving_lo",
        "compute_saving_hi",
        "cost_saving",
        "cost_saving_lo",
        "cost_saving_hi",
        "energy_estimated",
        "g_co2e",
        "carbon_saving",
        "carbon_saving_lo",
        "carbon_saving_hi",
    ]);
    let line = |router: &str, group: &str, counts: [usize; 2], x: &Figures, estimated: bool| {
        let v = |e: &Option<Estimate>| num(e.map(|e| e.value));
        let mut f = vec![
            router.to_string(),
            group.to_string(),
            counts[0].to_string(),
            counts[1].to_string(),
            x.escalated.to_string(),
        ];
        f.extend(est(&x.accuracy));
        f.push(v(&x.accuracy_delta));
        f.extend(est(&x.energy_j));
        f.push(v(&x.compute_flops));
        f.push(v(&x.cost_usd));
        f.push(v(&x.latency_s));
        f.extend(est(&x.savings.energy));
        f.extend(est(&x.savings.compute));
        f.extend(est(&x.savings.cost));
        f.push(estimated.to_string());
        f.push(v(&x.g_co2e));
        f.extend(est(&x.savings.carbon));
        f
    };
    for r in &report.routers {
        let counts = [r.queries, r.errors.len()];
        w.line(line(
            &r.router,
            "all",
            counts,
            &r.figures,
            r.energy_estimated,
        ));
    }
    for r in &report.routers {
        for g in &r.groups {
            let counts = [g.queries, g.errors];
            w.line(line(
                &r.router,
                &g.group,
                counts,
                &g.figures,
                r.energy_estimated,
            ));
        }
    }
    w.text()
}

/// `compare.csv`: the runs' rows, then the paired rows under their own header.
pub fn compare(r: &CompareReport) -> String {
    let mut w = Lines::new();
    w.line([
        "kind",
        "model",
        "accelerator",
        "group",
        "n",
        "accuracy",
        "accuracy_lo",
        "accuracy_hi",
        "apj",
        "apj_lo",
        "apj_hi",
        "apw",
        "apw_lo",
        "apw_hi",
        "j_per_query",
        "latency_p50_s",
        "energy_estimated",
        "flagged",
    ]);
    for row in &r.rows {
        let mut f = vec![
            "run".to_string(),
            row.model.clone(),
            row.accelerator.clone(),
            row.group.clone(),
            row.scored.to_string(),
        ];
        f.extend(est(&row.accuracy));
        f.extend(est(&row.apj));
        f.extend(est(&row.apw));
        f.push(num(row.j_per_query));
        f.push(num(row.latency_p50_s));
        f.push(row.energy_estimated.to_string());
        f.push(row.flagged.to_string());
        w.line(f);
    }
    w.line([
        "kind",
        "model",
        "baseline",
        "group",
        "shared",
        "accuracy_delta",
        "lo",
        "hi",
        "energy_ratio",
        "lo",
        "hi",
        "apj_ratio",
        "lo",
        "hi",
    ]);
    for p in &r.paired {
        let mut f = vec![
            "paired".to_string(),
            p.model.clone(),
            p.baseline.clone(),
            p.group.clone(),
            p.shared.to_string(),
        ];
        f.extend(est(&p.accuracy_delta));
        f.extend(est(&p.energy_ratio));
        f.extend(est(&p.apj_ratio));
        w.line(f);
    }
    w.text()
}

/// `coverage.csv`: one line per model and group.
pub fn coverage(r: &CoverageReport) -> String {
    let mut w = Lines::new();
    w.line(["model", "group", "queries", "coverage", "lo", "hi"]);
    for row in &r.rows {
        let mut f = vec![
            row.model.clone(),
            row.group.clone(),
            row.queries.to_string(),
        ];
        f.extend(est(&row.coverage));
        w.line(f);
    }
    w.text()
}

/// `trend.csv`: the runs, the frontier, the change split into model and hardware, and the
/// cloud/local ratios, each line tagged by its `kind`.
pub fn trend(r: &TrendReport) -> String {
    let mut w = Lines::new();
    w.line([
        "kind",
        "model",
        "accelerator",
        "model_release",
        "accelerator_release",
        "class",
        "records",
        "value",
        "lo",
        "hi",
    ]);
    for p in &r.points {
        let mut f = vec![
            "run".to_string(),
            p.model.clone(),
            p.accelerator.clone(),
            p.model_release.clone().unwrap_or_default(),
            p.accelerator_release.clone().unwrap_or_default(),
            p.class
                .map(|c| format!("{c:?}").to_lowercase())
                .unwrap_or_default(),
            p.records.to_string(),
        ];
        f.extend(est(&p.value));
        w.line(f);
    }
    let blank = String::new;
    for b in &r.frontier {
        let mut f = vec![
            "frontier".to_string(),
            b.model.clone(),
            b.accelerator.clone(),
            b.date.clone(),
            blank(),
            blank(),
            blank(),
        ];
        f.extend(est(&Some(b.value)));
        w.line(f);
    }
    if let Some(c) = &r.change {
        for (kind, e) in [
            ("change_total", Some(c.total)),
            ("change_model", c.model_factor),
            ("change_hardware", c.hardware_factor),
        ] {
            let mut f = vec![
                kind.to_string(),
                c.to.model.clone(),
                c.to.accelerator.clone(),
                c.from.date.clone(),
                c.to.date.clone(),
                blank(),
                blank(),
            ];
            f.extend(est(&e));
            w.line(f);
        }
    }
    for l in &r.local_vs_cloud {
        let mut f = vec![
            "cloud_over_local".to_string(),
            l.model.clone(),
            format!("{} / {}", l.cloud, l.local),
            blank(),
            blank(),
            blank(),
            blank(),
        ];
        f.extend(est(&Some(l.ratio)));
        w.line(f);
    }
    w.text()
}

/// The report's tables as `(suffix, CSV text)`: `summary`, `coverage`, `energy` and `trace`,
/// each where the report has that figure (`report.<suffix>.csv` beside the page).
pub fn report(r: &Report) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(rows) = &r.summary.data {
        let mut w = Lines::new();
        w.line([
            "run",
            "accelerator",
            "path",
            "scored",
            "accuracy",
            "accuracy_lo",
            "accuracy_hi",
            "apj",
            "apj_lo",
            "apj_hi",
            "apw",
            "apw_lo",
            "apw_hi",
            "j_per_query",
            "latency_p50_s",
            "energy",
            "energy_estimated",
            "flagged",
            "pareto_frontier",
        ]);
        for row in rows {
            let info = r.runs.iter().find(|x| x.name == row.model);
            let frontier = r
                .pareto
                .data
                .iter()
                .flatten()
                .find(|p| p.run == row.model)
                .map(|p| p.frontier.to_string())
                .unwrap_or_default();
            let mut f = vec![
                row.model.clone(),
                row.accelerator.clone(),
                info.map(|i| i.path.display().to_string())
                    .unwrap_or_default(),
                row.scored.to_string(),
            ];
            f.extend(est(&row.accuracy));
            f.extend(est(&row.apj));
            f.extend(est(&row.apw));
            f.push(num(row.j_per_query));
            f.push(num(row.latency_p50_s));
            f.push(info.map(|i| i.energy.label()).unwrap_or_default().into());
            f.push(row.energy_estimated.to_string());
            f.push(row.flagged.to_string());
            f.push(frontier);
            w.line(f);
        }
        out.push(("summary", w.text()));
    }
    if let Some(cov) = &r.coverage.data {
        let mut w = Lines::new();
        w.line([
            "reference",
            "model",
            "group",
            "queries",
            "coverage",
            "lo",
            "hi",
        ]);
        for row in &cov.report.rows {
            let mut f = vec![
                cov.report.reference.clone(),
                row.model.clone(),
                row.group.clone(),
                row.queries.to_string(),
            ];
            f.extend(est(&row.coverage));
            w.line(f);
        }
        out.push(("coverage", w.text()));
    }
    if let Some(h) = &r.energy.data {
        let mut w = Lines::new();
        w.line(["run", "bin_lo_j", "bin_hi_j", "count"]);
        for run in h {
            for b in &run.bins {
                w.line([
                    run.run.clone(),
                    b.lo.to_string(),
                    b.hi.to_string(),
                    b.count.to_string(),
                ]);
            }
        }
        out.push(("energy", w.text()));
    }
    if let Some(f) = &r.footprint.data {
        out.push(("footprint", f.to_csv()));
    }
    if let Some(t) = &r.trace.data {
        let mut w = Lines::new();
        w.line(["run", "session", "channel", "t_s", "power_w"]);
        for ch in &t.channels {
            for p in &ch.points {
                w.line([
                    t.run.clone(),
                    t.session.to_string(),
                    ch.name.clone(),
                    p[0].to_string(),
                    p[1].to_string(),
                ]);
            }
        }
        out.push(("trace", w.text()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_commas_quotes_and_line_breaks_stay_one_field() {
        let mut w = Lines::new();
        w.line(["a,b", "say \"hi\"", "two\nlines", "plain"]);
        w.line(["short"]);
        let text = w.text();
        assert_eq!(
            text,
            "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",plain\nshort\n"
        );
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let first = r.records().next().unwrap().unwrap();
        assert_eq!(&first[0], "a,b");
        assert_eq!(&first[1], "say \"hi\"");
        assert_eq!(&first[2], "two\nlines");
    }

    #[test]
    fn a_missing_estimate_is_three_empty_fields() {
        assert_eq!(est(&None), [String::new(), String::new(), String::new()]);
        let e = Estimate {
            value: 0.5,
            ci95: [0.25, 0.75],
            dropped_draws: 0,
            measurement: None,
            combined: None,
        };
        assert_eq!(est(&Some(e)), ["0.5", "0.25", "0.75"].map(String::from));
    }
}
