//! The report as one self-contained HTML page: inline CSS, inline SVG charts, no fetches (a
//! Content-Security-Policy forbids any), so it works offline and as an e-mail attachment.
//!
//! Every string that comes from runs (model names, paths, groups, routers) is escaped. Numbers
//! are printed with three significant digits (accuracy with three decimals); the JSON beside
//! the page has every digit. Charts are `<svg>` with a viewBox at 100% width (they shrink with
//! a narrow window), a `<title>` and `<desc>`, and Okabe-Ito colours, one per run across every
//! chart. Each mark carries the class `mark`: a small inline script counts them per chart into
//! `data-marks`, and sets `data-ok="yes"` on `<body>` when every chart has marks and no script
//! error or policy violation happened, which a headless browser can check from the DOM.

use super::svg::{self, colour, esc, fmt_sig, px, Frame, Scale};
use super::{Figure, Histogram, ParetoPoint, Provenance, Report, Trace};
use crate::analysis::Estimate;
use crate::study::CompareRow;
use std::fmt::Write;

const STYLE: &str = r#"
:root{--fg:#1a1a1a;--muted:#5a5a5a;--grid:#e6e6e6}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff;margin:0 auto;max-width:1080px;padding:0 16px 48px}
h1{font-size:1.6em;margin:.8em 0 .2em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin:2em 0 .6em}
figure{margin:1em 0 1.6em}
figure>h3{font-size:1em;margin:0 0 .4em}
figcaption,.prov{font-size:.78em;color:var(--muted);margin-top:.4em}
figcaption ul{margin:.2em 0;padding-left:1.2em}
figcaption summary{cursor:pointer}
svg{display:block;max-width:100%;height:auto;font-size:13px}
svg text{fill:#333}
svg .label{font-weight:600}
.grid{stroke:var(--grid)}
.frame{stroke:#888}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:.88em;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.path,th.path{text-align:left}
th{font-weight:600;border-bottom:1px solid #bbb}
.swatch{display:inline-block;width:.75em;height:.75em;border-radius:50%;margin-right:.4em}
.note{color:var(--muted)}
.empty{color:var(--muted);font-style:italic}
code{font-size:.85em;overflow-wrap:anywhere}
@media (max-width:600px){body{font-size:14px;padding:0 8px 32px} th,td{padding:3px 4px} svg{font-size:15px}}
"#;

/// Counts the page's errors from before anything else runs: a script error, or any load the
/// Content-Security-Policy refused (a fetch the page must not make). Policy violations are
/// reported asynchronously, possibly after the check below ran: one arriving later turns its
/// `data-ok` back to `no`.
const EARLY_SCRIPT: &str = r#"window.__ipwErrors=0;function __ipwError(){window.__ipwErrors++;document.documentElement.setAttribute('data-errors',String(window.__ipwErrors));if(document.body&&document.body.hasAttribute('data-ok'))document.body.setAttribute('data-ok','no');}window.addEventListener('error',__ipwError,true);document.addEventListener('securitypolicyviolation',__ipwError);"#;

/// Counts each chart's marks and checks it has a size; `data-ok` on `<body>` sums it up.
const CHECK_SCRIPT: &str = r#"(function(){var figs=document.querySelectorAll('figure.chart'),ok=figs.length>0;for(var i=0;i<figs.length;i++){var s=figs[i].querySelector('svg'),n=s?s.querySelectorAll('.mark').length:0,b=s?s.getBoundingClientRect():null;figs[i].setAttribute('data-marks',String(n));if(!n||!b||b.width<1||b.height<1)ok=false;}document.body.setAttribute('data-charts',String(figs.length));document.body.setAttribute('data-ok',ok&&!window.__ipwErrors?'yes':'no');})();"#;

fn est_cell(e: &Option<Estimate>, digits: Option<usize>) -> String {
    let f = |v: f64| match digits {
        Some(d) => format!("{v:.d$}"),
        None => fmt_sig(v),
    };
    match e {
        Some(e) => format!(
            "{} <span class=\"note\">[{}, {}]</span>",
            f(e.value),
            f(e.ci95[0]),
            f(e.ci95[1])
        ),
        None => "-".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(fmt_sig).unwrap_or_else(|| "-".into())
}

/// Shorten a label to `n` characters for a chart (the full text is in the mark's title).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

struct Page<'a> {
    r: &'a Report,
    out: String,
}

impl<'a> Page<'a> {
    /// A section's heading, then its figure's data, or its note (why it is empty) and `None`.
    fn section<T>(&mut self, id: &str, heading: &str, f: &'a Figure<T>) -> Option<&'a T> {
        let _ = write!(self.out, r#"<h2 id="{id}">{heading}</h2>"#);
        if f.data.is_none() {
            self.empty(f);
        }
        f.data.as_ref()
    }

    fn run_index(&self, name: &str) -> usize {
        self.r.runs.iter().position(|x| x.name == name).unwrap_or(0)
    }

    fn colour_of(&self, name: &str) -> &'static str {
        colour(self.run_index(name))
    }

    /// A figure's provenance: one line that says which runs, whose energy is what, and which
    /// ipw drew it; the paths and the command line one click away (they are long).
    fn provenance(&mut self, p: &Provenance) {
        let r = self.r;
        let runs: Vec<&super::RunInfo> = p
            .runs
            .iter()
            .filter_map(|n| r.runs.iter().find(|x| &x.name == n))
            .collect();
        let mut kinds: Vec<super::EnergyKind> = Vec::new();
        for run in &runs {
            if !kinds.contains(&run.energy) {
                kinds.push(run.energy);
            }
        }
        let energy = match kinds[..] {
            [] => String::new(),
            [one] => format!("; energy {} for all", one.label()),
            _ => {
                let parts: Vec<String> = kinds
                    .iter()
                    .map(|k| {
                        let who: Vec<String> = runs
                            .iter()
                            .filter(|x| x.energy == *k)
                            .map(|x| esc(&x.name))
                            .collect();
                        format!("{} for {}", k.label(), who.join(", "))
                    })
                    .collect();
                format!("; energy {}", parts.join("; "))
            }
        };
        let mut s = format!(
            "<figcaption><details><summary>Provenance: {} run{}{energy}; ipw {}</summary><ul>",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            esc(&r.ipw_version)
        );
        for run in &runs {
            let _ = write!(
                s,
                "<li>{} ({}): <code>{}</code>; energy {}; measured with ipw {}</li>",
                esc(&run.name),
                esc(&run.accelerator),
                esc(&run.path.display().to_string()),
                run.energy.label(),
                esc(&run.ipw_version)
            );
        }
        if let Some(f) = &p.file {
            let _ = write!(
                s,
                "<li>from <code>{}</code></li>",
                esc(&f.display().to_string())
            );
        }
        let _ = write!(
            s,
            "<li>report by ipw {} ({}): <code>{}</code></li></ul></details></figcaption>",
            esc(&r.ipw_version),
            esc(&r.git_commit),
            esc(&r.command.join(" "))
        );
        self.out.push_str(&s);
    }

    /// A chart figure: heading, note, the SVG `body` draws, provenance.
    fn chart(&mut self, id: &str, heading: &str, note: &str, p: &Provenance, body: String) {
        let _ = write!(
            self.out,
            r#"<figure class="chart" id="fig-{id}" data-chart="{id}"><h3>{}</h3><p class="note">{}</p>{body}"#,
            esc(heading),
            esc(note)
        );
        self.provenance(p);
        self.out.push_str("</figure>");
    }

    fn empty<T>(&mut self, f: &Figure<T>) {
        let _ = write!(self.out, r#"<p class="empty">{}</p>"#, esc(&f.note));
    }

    fn header(&mut self) {
        let r = self.r;
        let measured = r
            .runs
            .iter()
            .filter(|x| x.energy == super::EnergyKind::Measured)
            .count();
        let _ = write!(
            self.out,
            r#"<h1>ipw report</h1><p class="note">{} runs ({} with measured energy); energy basis {}; made by ipw {}.</p>"#,
            r.runs.len(),
            measured,
            esc(r.energy_basis),
            esc(&r.ipw_version)
        );
    }

    fn summary(&mut self) {
        let r = self.r;
        let Some(rows) = self.section("summary", "Summary", &r.summary) else {
            return;
        };
        let mut s = String::from(
            r#"<figure class="table" id="fig-summary"><div class="table-wrap"><table><thead><tr><th>Run</th><th>Accelerator</th><th>Scored</th><th>Accuracy [95%]</th><th>APJ (1/J) [95%]</th><th>APW (1/W) [95%]</th><th>J/query</th><th>p50 latency (s)</th><th>Energy</th></tr></thead><tbody>"#,
        );
        for row in rows {
            let info = r.runs.iter().find(|x| x.name == row.model);
            let mut marks = String::new();
            if row.energy_estimated
                || info.is_some_and(|i| {
                    matches!(
                        i.energy,
                        super::EnergyKind::Declared | super::EnergyKind::Imported
                    )
                })
            {
                marks.push_str(" *");
            }
            if row.flagged > 0 {
                let _ = write!(marks, " !{}", row.flagged);
            }
            let _ = write!(
                s,
                r#"<tr><td><span class="swatch" style="background:{}"></span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>"#,
                self.colour_of(&row.model),
                esc(&row.model),
                esc(&row.accelerator),
                row.scored,
                est_cell(&row.accuracy, Some(3)),
                est_cell(&row.apj, None),
                est_cell(&row.apw, None),
                opt(row.j_per_query),
                opt(row.latency_p50_s),
                info.map(|i| i.energy.short()).unwrap_or("-"),
                esc(&marks)
            );
        }
        s.push_str("</tbody></table></div>");
        let _ = write!(
            s,
            r#"<p class="note">{}. Intervals: bootstrap 95%. * energy not measured by samplers (estimated, declared or imported); !N: N records carry energy quality flags.</p>"#,
            esc(&r.summary.note)
        );
        self.out.push_str(&s);
        self.provenance(&r.summary.provenance);
        self.out.push_str("</figure>");
    }

    fn pareto(&mut self) {
        let r = self.r;
        let Some(points) = self.section("pareto", "Accuracy and energy per query", &r.pareto)
        else {
            return;
        };
        let body = scatter(self, points);
        self.chart(
            "pareto",
            "Accuracy vs energy per query, with the Pareto frontier",
            &r.pareto.note,
            &r.pareto.provenance,
            body,
        );
    }

    fn intervals(&mut self) {
        let r = self.r;
        let Some(rows) = self.section("efficiency", "Accuracy per joule and per watt", &r.summary)
        else {
            return;
        };
        for (id, title, unit, pick) in [
            (
                "apj",
                "APJ: accuracy per joule",
                "APJ (1/J)",
                (|x: &CompareRow| x.apj) as fn(&CompareRow) -> Option<Estimate>,
            ),
            (
                "apw",
                "APW: accuracy per watt",
                "APW (1/W)",
                (|x: &CompareRow| x.apw) as fn(&CompareRow) -> Option<Estimate>,
            ),
        ] {
            let bars: Vec<Bar> = rows
                .iter()
                .filter_map(|x| {
                    Some(Bar {
                        label: x.model.clone(),
                        colour: self.colour_of(&x.model),
                        e: pick(x)?,
                        extra: String::new(),
                    })
                })
                .collect();
            if bars.is_empty() {
                let _ = write!(
                    self.out,
                    r#"<p class="empty">{}: no run has graded records with energy.</p>"#,
                    esc(title)
                );
                continue;
            }
            let body = interval_chart(id, title, unit, &bars, 1.0);
            self.chart(
                id,
                title,
                "bars: point estimate; whiskers: bootstrap 95% interval",
                &r.summary.provenance,
                body,
            );
        }
    }

    fn coverage(&mut self) {
        let r = self.r;
        let Some(c) = self.section("coverage", "Coverage", &r.coverage) else {
            return;
        };
        if !c.labelled_by.is_empty() {
            let note = format!(
                "Best-of-local coverage per domain, highest first, with 95% intervals and each domain's query count; queries without a label are the `unlabelled` group. Labelled by {}.",
                c.labelled_by.join("; ")
            );
            let body = domain_chart(c);
            self.chart(
                "coverage-domains",
                "Which domains stay local",
                &note,
                &r.coverage.provenance,
                body,
            );
        }
        let body = coverage_chart(self, c);
        let note = format!(
            "{}. Reference: {}. {} queries in every run{}.",
            r.coverage.note,
            c.reference_chosen,
            c.report.queries,
            if c.report.incomplete > 0 {
                format!("; {} missing from some runs, left out", c.report.incomplete)
            } else {
                String::new()
            }
        );
        self.chart(
            "coverage",
            "Share of queries answered as well as the reference",
            &note,
            &r.coverage.provenance,
            body,
        );
    }

    fn trace(&mut self) {
        let r = self.r;
        let Some(t) = self.section("trace", "Power trace", &r.trace) else {
            return;
        };
        let body = trace_chart(t);
        let mut note = r.trace.note.clone();
        if t.windows_coarsened {
            note += "; query windows closer than the drawing resolves are drawn merged";
        }
        if !t.undescribed.is_empty() {
            note += &format!(
                "; not drawn (no sampler describes them): {}",
                t.undescribed.join(", ")
            );
        }
        self.chart(
            "trace",
            &format!("Power of {} over time", t.run),
            &note,
            &r.trace.provenance,
            body,
        );
    }

    fn energy(&mut self) {
        let r = self.r;
        let Some(h) = self.section("energy", "Energy per query distribution", &r.energy) else {
            return;
        };
        let body = histograms(self, h);
        self.chart(
            "energy",
            "Joules per query, per run",
            &r.energy.note,
            &r.energy.provenance,
            body,
        );
    }

    fn routing(&mut self) {
        let r = self.r;
        let Some(routing) = self.section("routing", "Routing", &r.routing) else {
            return;
        };
        let route = &routing.route;
        // One chart per figure some router saves: runs of costs only (as in the routing
        // literature) have cost savings and no energy ones. Energy keeps the chart id it had.
        type Saving = fn(&super::RouteSavings) -> Option<Estimate>;
        let kinds: [(&str, &str, Saving); 4] = [
            ("route-savings", "Energy", |s| s.energy),
            ("route-savings-compute", "Compute", |s| s.compute),
            ("route-savings-cost", "Cost", |s| s.cost),
            ("route-savings-carbon", "Carbon", |s| s.carbon),
        ];
        let mut charts = 0;
        for (id, what, saving) in kinds {
            let bars: Vec<Bar> = route
                .routers
                .iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    Some(Bar {
                        label: x.router.clone(),
                        colour: colour(i),
                        e: saving(&x.savings)?,
                        extra: x
                            .accuracy_delta
                            .map(|d| format!("Δacc {:+.3}", d.value))
                            .unwrap_or_default(),
                    })
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            charts += 1;
            let body = interval_chart(
                id,
                &format!("{what} saved against the reference"),
                &format!("{} saved (% of the reference's)", what.to_lowercase()),
                &bars,
                100.0,
            );
            self.chart(
                id,
                &format!(
                    "{what} saved against sending every query to {}",
                    route.reference
                ),
                &format!(
                    "{}; whiskers: bootstrap 95% interval; Δacc: accuracy minus the reference's",
                    r.routing.note
                ),
                &r.routing.provenance,
                body,
            );
        }
        if charts == 0 {
            let _ = write!(
                self.out,
                r#"<p class="empty">no router has energy, compute or cost savings in {}</p>"#,
                esc(&routing.path.display().to_string())
            );
        }
        let curves: Vec<(&String, &Vec<super::RouteCurvePoint>)> = route
            .curves
            .iter()
            .filter(|(_, v)| v.iter().any(|p| p.energy_j.is_some()))
            .collect();
        if curves.is_empty() {
            self.out.push_str(
                r#"<p class="empty">no router curves (no sweepable router, or no energy)</p>"#,
            );
        } else {
            let body = route_curves(self, &route.routers, &curves);
            self.chart(
                "route-curves",
                "Routers' accuracy and energy over their parameter",
                "each line: one router swept over its parameter; grey dots: the runs themselves",
                &r.routing.provenance,
                body,
            );
        }
    }

    fn footprint(&mut self) {
        let r = self.r;
        let Some(f) = self.section(
            "footprint",
            "Carbon, water and cost per query",
            &r.footprint,
        ) else {
            return;
        };
        let currency = f.currency().unwrap_or("");
        let mut s = format!(
            r#"<figure class="table" id="fig-footprint"><div class="table-wrap"><table><thead><tr><th>Run</th><th>Accelerator</th><th>With energy</th><th>Energy</th><th>kWh/query (facility)</th><th>g CO2e/query</th><th>Water L/query</th><th>Electricity {c}/query</th><th>Hardware {c}/query</th><th>Cost {c}/query</th></tr></thead><tbody>"#,
            c = esc(currency)
        );
        for row in &f.rows {
            let _ = write!(
                s,
                r#"<tr><td><span class="swatch" style="background:{}"></span>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                self.colour_of(&row.model),
                esc(&row.model),
                esc(&row.accelerator),
                row.with_energy,
                row.records,
                row.energy_basis,
                opt(row.kwh_per_query),
                opt(row.g_co2e_per_query),
                opt(row.water_l_per_query),
                opt(row.energy_cost_per_query),
                opt(row.hardware_cost_per_query),
                opt(row.cost_per_query),
            );
        }
        s.push_str("</tbody></table></div><ul class=\"note\">");
        for (whose, i) in f.labelled_inputs() {
            let mut parts = vec![format!("PUE {}", i.pue)];
            for (what, input) in [
                ("carbon", &i.carbon),
                ("water", &i.water),
                ("hardware", &i.hardware),
            ] {
                if let Some(input) = input {
                    parts.push(format!("{what}: {input}"));
                }
            }
            if let Some(p) = i.price_per_kwh {
                parts.push(format!("electricity {p} {currency}/kWh"));
            }
            let _ = write!(s, "<li>{}: {}</li>", esc(&whose), esc(&parts.join("; ")));
        }
        let _ = write!(s, r#"</ul><p class="note">{}.</p>"#, esc(&r.footprint.note));
        self.out.push_str(&s);
        self.provenance(&r.footprint.provenance);
        self.out.push_str("</figure>");
    }

    fn provenance_section(&mut self) {
        let r = self.r;
        let mut s = String::from(
            r#"<h2 id="provenance">Provenance</h2><div class="table-wrap"><table><thead><tr><th>Run</th><th class="path">Directory</th><th>Records</th><th>Status</th><th>Energy</th><th>ipw</th></tr></thead><tbody>"#,
        );
        for run in &r.runs {
            let _ = write!(
                s,
                r#"<tr><td><span class="swatch" style="background:{}"></span>{}</td><td class="path"><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td></tr>"#,
                self.colour_of(&run.name),
                esc(&run.name),
                esc(&run.path.display().to_string()),
                run.records,
                esc(&run.status),
                run.energy.label(),
                esc(&run.ipw_version),
                esc(&short(&run.git_commit, 12))
            );
        }
        let _ = write!(
            s,
            r#"</tbody></table></div><p class="prov">Made by ipw {} ({}) with <code>{}</code>. The numbers behind every figure are in the JSON and CSV files written beside this page.</p>"#,
            esc(&r.ipw_version),
            esc(&r.git_commit),
            esc(&r.command.join(" "))
        );
        self.out.push_str(&s);
    }
}

/// One horizontal bar with its interval.
struct Bar {
    label: String,
    colour: &'static str,
    e: Estimate,
    extra: String,
}

/// Horizontal bars with interval whiskers; values are multiplied by `scale` for display.
fn interval_chart(id: &str, title: &str, unit: &str, bars: &[Bar], scale: f64) -> String {
    let row = 30.0;
    // Room on the right for the longest value label (as the legend estimates text width).
    let label = bars
        .iter()
        .map(|b| fmt_sig(b.e.value * scale).len() + b.extra.chars().count() + 3)
        .max()
        .unwrap_or(0);
    let f = Frame {
        w: 640.0,
        h: 40.0 + 44.0 + row * bars.len() as f64,
        left: 160.0,
        right: (12.0 + 8.8 * label as f64).clamp(60.0, 240.0),
        top: 16.0,
        bottom: 44.0,
    };
    let lo = bars
        .iter()
        .map(|b| b.e.ci95[0].min(b.e.value) * scale)
        .fold(0.0, f64::min);
    let hi = bars
        .iter()
        .map(|b| b.e.ci95[1].max(b.e.value) * scale)
        .fold(0.0, f64::max);
    let x = Scale::linear(lo, hi, f.left, f.w - f.right);
    let mut s = String::new();
    let desc = bars
        .iter()
        .map(|b| format!("{}: {}", b.label, fmt_sig(b.e.value * scale)))
        .collect::<Vec<_>>()
        .join("; ");
    svg::open(&mut s, id, &f, title, &desc);
    // No y numbers: one row per bar.
    svg::axes(&mut s, &f, &x, None, unit, "");
    let zero = x.at(0.0);
    for (i, b) in bars.iter().enumerate() {
        let cy = f.top + 12.0 + row * (i as f64 + 0.5);
        let (v, l, h) = (b.e.value * scale, b.e.ci95[0] * scale, b.e.ci95[1] * scale);
        let (x0, x1) = (zero.min(x.at(v)), zero.max(x.at(v)));
        let tip = format!(
            "{}: {} [{}, {}]",
            b.label,
            fmt_sig(v),
            fmt_sig(l),
            fmt_sig(h)
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" dy="0.32em" text-anchor="end">{}</text><rect class="mark bar" x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="0.75"><title>{}</title></rect>"#,
            px(f.left - 8.0),
            px(cy),
            esc(&short(&b.label, 20)),
            px(x0),
            px(cy - 9.0),
            px((x1 - x0).max(0.5)),
            px(18.0),
            b.colour,
            esc(&tip)
        );
        let (wl, wh) = (x.at(l), x.at(h));
        let _ = write!(
            s,
            r##"<path class="mark ci" d="M{} {}H{}M{} {}V{}M{} {}V{}" stroke="#222" stroke-width="1.5" fill="none"><title>{}</title></path><text x="{}" y="{}" dy="0.32em">{}{}</text>"##,
            px(wl),
            px(cy),
            px(wh),
            px(wl),
            px(cy - 6.0),
            px(cy + 6.0),
            px(wh),
            px(cy - 6.0),
            px(cy + 6.0),
            esc(&tip),
            px(wh.max(x1) + 6.0),
            px(cy),
            fmt_sig(v),
            if b.extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&b.extra))
            }
        );
    }
    s.push_str("</svg>");
    s
}

fn scatter(page: &Page, points: &[ParetoPoint]) -> String {
    let f = Frame {
        w: 640.0,
        h: 420.0,
        left: 64.0,
        right: 28.0,
        top: 20.0,
        bottom: 46.0,
    };
    let (jmin, jmax) = points.iter().fold((f64::INFINITY, 0f64), |(a, b), p| {
        (a.min(p.j_per_query), b.max(p.j_per_query))
    });
    let x = Scale::auto(jmin, jmax, f.left, f.w - f.right);
    let y = Scale::linear(0.0, 1.0, f.h - f.bottom, f.top);
    let mut s = String::new();
    let desc = points
        .iter()
        .map(|p| {
            format!(
                "{}: accuracy {:.3}, {} J per query{}",
                p.run,
                p.accuracy,
                fmt_sig(p.j_per_query),
                if p.frontier { ", on the frontier" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    svg::open(
        &mut s,
        "pareto-svg",
        &f,
        "Accuracy against energy per query",
        &desc,
    );
    svg::axes(
        &mut s,
        &f,
        &x,
        Some(&y),
        &format!(
            "joules per query{}",
            if x.log { " (log scale)" } else { "" }
        ),
        "accuracy",
    );
    // The frontier as a staircase: the best accuracy available for at most x joules.
    let mut front: Vec<&ParetoPoint> = points.iter().filter(|p| p.frontier).collect();
    front.sort_by(|a, b| a.j_per_query.total_cmp(&b.j_per_query));
    if let Some(first) = front.first() {
        let mut d = format!(
            "M{} {}",
            px(x.at(first.j_per_query)),
            px(y.at(first.accuracy))
        );
        for p in &front[1..] {
            let _ = write!(d, "H{}V{}", px(x.at(p.j_per_query)), px(y.at(p.accuracy)));
        }
        let _ = write!(d, "H{}", px(f.w - f.right));
        let _ = write!(
            s,
            r##"<path class="mark pareto" d="{d}" fill="none" stroke="#555" stroke-width="2" stroke-dasharray="6 4"><title>Pareto frontier: {}</title></path>"##,
            esc(&front
                .iter()
                .map(|p| p.run.as_str())
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
    for p in points {
        let (cx, cy) = (x.at(p.j_per_query), y.at(p.accuracy));
        let right = cx < f.w - 180.0;
        let _ = write!(
            s,
            r#"<circle class="mark point" cx="{}" cy="{}" r="7" fill="{}" stroke="{}" stroke-width="2"><title>{}: accuracy {:.3}, {} J/query</title></circle><text x="{}" y="{}" text-anchor="{}">{}</text>"#,
            px(cx),
            px(cy),
            page.colour_of(&p.run),
            if p.frontier { "#000" } else { "#fff" },
            esc(&p.run),
            p.accuracy,
            fmt_sig(p.j_per_query),
            px(if right { cx + 11.0 } else { cx - 11.0 }),
            px(cy - 9.0),
            if right { "start" } else { "end" },
            esc(&short(&p.run, 28))
        );
    }
    let _ = write!(
        s,
        r##"<g class="legend"><path d="M{} {}h28" stroke="#555" stroke-width="2" stroke-dasharray="6 4"/><text x="{}" y="{}" dy="0.32em">Pareto frontier (outlined dots are on it)</text></g></svg>"##,
        px(f.left + 12.0),
        px(f.top + 10.0),
        px(f.left + 46.0),
        px(f.top + 10.0)
    );
    s
}

/// Best-of-local coverage per domain as horizontal bars, sorted from most to least covered,
/// each with its interval and query count: the study's "which domains stay local" figure.
fn domain_chart(c: &super::Coverage) -> String {
    let mut rows: Vec<&crate::study::CoverageRow> = c
        .report
        .rows
        .iter()
        .filter(|r| r.model == "best-of-local" && r.group != "all")
        .collect();
    let value = |r: &crate::study::CoverageRow| r.coverage.map_or(-1.0, |e| e.value);
    rows.sort_by(|a, b| value(b).total_cmp(&value(a)).then(a.group.cmp(&b.group)));
    let (left, top, rowh, right) = (300.0, 28.0, 22.0, 110.0);
    let w = 900.0;
    let h = top + rowh * rows.len().max(1) as f64 + 40.0;
    let f = Frame {
        w,
        h,
        left,
        right,
        top,
        bottom: 40.0,
    };
    let x = Scale::exact(0.0, 1.0, left, w - right);
    let mut s = String::new();
    svg::open(
        &mut s,
        "coverage-domains-svg",
        &f,
        "Coverage per domain",
        "Share of each domain's queries some local model answers as well as the reference, sorted",
    );
    svg::axes(&mut s, &f, &x, None, "best-of-local coverage", "");
    for (i, r) in rows.iter().enumerate() {
        let y = top + rowh * i as f64;
        let title = c.domain_titles.get(&r.group);
        let label = match title {
            Some(t) => format!("{} {}", r.group, t.trim_end_matches(" Occupations")),
            None => r.group.clone(),
        };
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" dy="0.32em" text-anchor="end">{}<title>{}</title></text>"#,
            px(left - 8.0),
            px(y + rowh / 2.0),
            esc(&short(&label, 40)),
            esc(&label)
        );
        let Some(e) = r.coverage else {
            continue;
        };
        let _ = write!(
            s,
            r##"<rect class="mark bar" x="{}" y="{}" width="{}" height="{}" fill="#0072b2"><title>{}: {:.1}% [{:.1}%, {:.1}%] of {} queries</title></rect>"##,
            px(left),
            px(y + 3.0),
            px(x.at(e.value) - left),
            px(rowh - 6.0),
            esc(&label),
            e.value * 100.0,
            e.ci95[0] * 100.0,
            e.ci95[1] * 100.0,
            r.queries
        );
        let (lo, hi) = (x.at(e.ci95[0]), x.at(e.ci95[1]));
        let mid = y + rowh / 2.0;
        let _ = write!(
            s,
            r##"<path d="M{} {}H{}M{} {}V{}M{} {}V{}" stroke="#222" fill="none"/><text x="{}" y="{}" dy="0.32em">{:.0}% (n={})</text>"##,
            px(lo),
            px(mid),
            px(hi),
            px(lo),
            px(mid - 4.0),
            px(mid + 4.0),
            px(hi),
            px(mid - 4.0),
            px(mid + 4.0),
            px(w - right + 6.0),
            px(mid),
            e.value * 100.0,
            r.queries
        );
    }
    s.push_str("</svg>");
    s
}

fn coverage_chart(page: &Page, c: &super::Coverage) -> String {
    let rep = &c.report;
    let mut groups: Vec<&str> = vec!["all"];
    for row in &rep.rows {
        if !groups.contains(&row.group.as_str()) {
            groups.push(&row.group);
        }
    }
    let mut models: Vec<&str> = Vec::new();
    for row in &rep.rows {
        if !models.contains(&row.model.as_str()) {
            models.push(&row.model);
        }
    }
    let (left, top, rowh) = (150.0, 52.0, 28.0);
    let w = 640.0;
    let cellw = ((w - left - 16.0) / models.len().max(1) as f64).min(140.0);
    let h = top + rowh * groups.len() as f64 + 16.0;
    let f = Frame {
        w,
        h,
        left,
        right: 16.0,
        top,
        bottom: 16.0,
    };
    let mut s = String::new();
    svg::open(
        &mut s,
        "coverage-svg",
        &f,
        &format!("Coverage against {}", rep.reference),
        &format!(
            "Share of queries each run answers at least as well as {}, per group; darker is more",
            rep.reference
        ),
    );
    for (j, m) in models.iter().enumerate() {
        let cx = left + cellw * (j as f64 + 0.5);
        let is_run = page.r.runs.iter().any(|x| x.name == *m);
        let _ = write!(
            s,
            r#"<text class="label" x="{}" y="{}" text-anchor="middle" fill="{}">{}<title>{}</title></text>"#,
            px(cx),
            px(top - 12.0),
            if is_run { page.colour_of(m) } else { "#333" },
            esc(&short(m, (cellw / 7.5) as usize)),
            esc(m)
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let y0 = top + rowh * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" dy="0.32em" text-anchor="end">{}<title>{}</title></text>"#,
            px(left - 8.0),
            px(y0 + rowh / 2.0),
            esc(&short(g, 20)),
            esc(g)
        );
        for (j, m) in models.iter().enumerate() {
            let Some(row) = rep.rows.iter().find(|r| r.group == *g && r.model == *m) else {
                continue;
            };
            let v = row.coverage.map(|e| e.value);
            let share = v.unwrap_or(0.0).clamp(0.0, 1.0);
            // White to Okabe-Ito blue.
            let mix = |a: f64, b: f64| (a + (b - a) * share).round() as u8;
            let fill = format!(
                "#{:02x}{:02x}{:02x}",
                mix(255.0, 0.0),
                mix(255.0, 114.0),
                mix(255.0, 178.0)
            );
            let tip = format!(
                "{} on {}: {} of {} queries{}",
                m,
                g,
                v.map(|v| format!("{:.1}%", v * 100.0))
                    .unwrap_or_else(|| "-".into()),
                row.queries,
                row.coverage
                    .map(|e| format!(" [{:.1}%, {:.1}%]", e.ci95[0] * 100.0, e.ci95[1] * 100.0))
                    .unwrap_or_default()
            );
            let x0 = left + cellw * j as f64;
            let _ = write!(
                s,
                r##"<rect class="mark cell" x="{}" y="{}" width="{}" height="{}" fill="{fill}" stroke="#fff"><title>{}</title></rect><text x="{}" y="{}" dy="0.32em" text-anchor="middle" fill="{}">{}</text>"##,
                px(x0),
                px(y0),
                px(cellw),
                px(rowh),
                esc(&tip),
                px(x0 + cellw / 2.0),
                px(y0 + rowh / 2.0),
                if share > 0.55 { "#fff" } else { "#222" },
                v.map(|v| format!("{:.0}%", v * 100.0))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn trace_chart(t: &Trace) -> String {
    // Channels get the palette after orange, which the windows use.
    let channel_colour = |i: usize| colour(if i == 0 { 0 } else { i + 1 });
    let mut items: Vec<svg::LegendItem> = t
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| svg::LegendItem {
            colour: channel_colour(i),
            swatch: svg::Swatch::Line,
            label: format!(
                "{}{}",
                short(&c.name, 24),
                c.idle_w
                    .map(|w| format!(" (idle {} W, dashed)", fmt_sig(w)))
                    .unwrap_or_default()
            ),
        })
        .collect();
    items.push(svg::LegendItem {
        colour: "#E69F00",
        swatch: svg::Swatch::Box,
        label: "query windows".into(),
    });
    if t.baseline.is_some() {
        items.push(svg::LegendItem {
            colour: "#999",
            swatch: svg::Swatch::Box,
            label: "idle baseline".into(),
        });
    }
    let (legend, legend_h) = svg::legend(&items, 64.0, 620.0, 8.0);
    let f = Frame {
        w: 640.0,
        h: 300.0 + legend_h,
        left: 64.0,
        right: 20.0,
        top: legend_h + 14.0,
        bottom: 46.0,
    };
    let pmax = t
        .channels
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p[1]).chain(c.idle_w))
        .fold(0.0, f64::max);
    let pmin = t
        .channels
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p[1]))
        .fold(0.0, f64::min);
    let x = Scale::exact(t.span[0], t.span[1], f.left, f.w - f.right);
    let y = Scale::linear(pmin, pmax, f.h - f.bottom, f.top);
    let mut s = String::new();
    svg::open(
        &mut s,
        "trace-svg",
        &f,
        &format!("Power of {} over time", t.run),
        &format!(
            "{} channels over {} s; {} query windows shaded; idle baseline {}",
            t.channels.len(),
            fmt_sig(t.span[1] - t.span[0]),
            t.windows.len(),
            if t.baseline.is_some() {
                "shaded grey, idle power dashed"
            } else {
                "not measured"
            }
        ),
    );
    let (ytop, ybot) = (f.top, f.h - f.bottom);
    if let Some([a, b]) = t.baseline {
        let _ = write!(
            s,
            r##"<rect class="mark baseline" x="{}" y="{}" width="{}" height="{}" fill="#999" fill-opacity="0.18"><title>idle baseline {} s to {} s</title></rect>"##,
            px(x.at(a)),
            px(ytop),
            px((x.at(b) - x.at(a)).max(1.0)),
            px(ybot - ytop),
            fmt_sig(a),
            fmt_sig(b)
        );
    }
    for w in &t.windows {
        let _ = write!(
            s,
            r##"<rect class="mark window" x="{}" y="{}" width="{}" height="{}" fill="#E69F00" fill-opacity="0.16"><title>query window {} s to {} s</title></rect>"##,
            px(x.at(w[0])),
            px(ytop),
            px((x.at(w[1]) - x.at(w[0])).max(0.6)),
            px(ybot - ytop),
            fmt_sig(w[0]),
            fmt_sig(w[1])
        );
    }
    svg::axes(&mut s, &f, &x, Some(&y), "run clock (s)", "power (W)");
    for (i, c) in t.channels.iter().enumerate() {
        let mut d = String::new();
        for (k, p) in c.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if k == 0 { "M" } else { "L" },
                px(x.at(p[0])),
                px(y.at(p[1]))
            );
        }
        let _ = write!(
            s,
            r#"<path class="mark line" d="{d}" fill="none" stroke="{}" stroke-width="1.6" stroke-linejoin="round"><title>{} ({}{}): {} points from {} readings</title></path>"#,
            channel_colour(i),
            esc(&c.name),
            esc(&c.domain),
            if c.estimated { ", estimated" } else { "" },
            c.points.len(),
            c.readings
        );
        if let Some(idle) = c.idle_w {
            let _ = write!(
                s,
                r#"<path class="mark idle" d="M{} {}H{}" stroke="{}" stroke-width="1.4" stroke-dasharray="5 4"><title>{}: idle {} W</title></path>"#,
                px(f.left),
                px(y.at(idle)),
                px(f.w - f.right),
                channel_colour(i),
                esc(&c.name),
                fmt_sig(idle)
            );
        }
    }
    s.push_str(&legend);
    s.push_str("</svg>");
    s
}

fn histograms(page: &Page, hists: &[Histogram]) -> String {
    let ph = 150.0;
    let w = 640.0;
    let total = ph * hists.len() as f64;
    let f = Frame {
        w,
        h: total,
        left: 64.0,
        right: 20.0,
        top: 0.0,
        bottom: 0.0,
    };
    let mut s = String::new();
    svg::open(
        &mut s,
        "energy-svg",
        &f,
        "Distribution of joules per query",
        &hists
            .iter()
            .map(|h| format!("{}: {} queries, mean {} J", h.run, h.n, fmt_sig(h.mean)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    for (k, h) in hists.iter().enumerate() {
        let pf = Frame {
            w,
            h: ph,
            left: 64.0,
            right: 20.0,
            top: 26.0,
            bottom: 40.0,
        };
        let (lo, hi) = (
            h.bins.first().map(|b| b.lo).unwrap_or(0.0),
            h.bins.last().map(|b| b.hi).unwrap_or(1.0),
        );
        let x = Scale::linear(lo, hi, pf.left, pf.w - pf.right);
        let cmax = h.bins.iter().map(|b| b.count).max().unwrap_or(1) as f64;
        let y = Scale::linear(0.0, cmax, pf.h - pf.bottom, pf.top);
        let col = page.colour_of(&h.run);
        let _ = write!(
            s,
            r#"<g transform="translate(0 {})"><text class="label" x="{}" y="14" fill="{col}">{}</text><text x="{}" y="14" text-anchor="end">n = {}, mean {} J</text>"#,
            px(ph * k as f64),
            px(pf.left),
            esc(&short(&h.run, 40)),
            px(pf.w - pf.right),
            h.n,
            fmt_sig(h.mean)
        );
        svg::axes(&mut s, &pf, &x, Some(&y), "joules per query", "queries");
        for b in &h.bins {
            // A single-valued run has one zero-width bin: draw it as a thin bar.
            let (x0, x1) = (x.at(b.lo), x.at(b.hi));
            let (x0, x1) = if x1 - x0 < 3.0 {
                ((x0 + x1) / 2.0 - 3.0, (x0 + x1) / 2.0 + 3.0)
            } else {
                (x0 + 0.5, x1 - 0.5)
            };
            let _ = write!(
                s,
                r#"<rect class="mark bar" x="{}" y="{}" width="{}" height="{}" fill="{col}" fill-opacity="0.8"><title>{} to {} J: {} queries</title></rect>"#,
                px(x0),
                px(y.at(b.count as f64)),
                px(x1 - x0),
                px(y.at(0.0) - y.at(b.count as f64)),
                fmt_sig(b.lo),
                fmt_sig(b.hi),
                b.count
            );
        }
        let mx = x.at(h.mean);
        let _ = write!(
            s,
            r##"<path class="mark mean" d="M{} {}V{}" stroke="#000" stroke-width="1.5" stroke-dasharray="3 3"><title>mean {} J</title></path></g>"##,
            px(mx),
            px(pf.top),
            px(pf.h - pf.bottom),
            fmt_sig(h.mean)
        );
    }
    s.push_str("</svg>");
    s
}

fn route_curves(
    page: &Page,
    routers: &[super::RouterSummary],
    curves: &[(&String, &Vec<super::RouteCurvePoint>)],
) -> String {
    let f = Frame {
        w: 640.0,
        h: 400.0,
        left: 64.0,
        right: 28.0,
        top: 20.0,
        bottom: 46.0,
    };
    let runs: Vec<&ParetoPoint> = page
        .r
        .pareto
        .data
        .as_deref()
        .unwrap_or_default()
        .iter()
        .collect();
    let energies = curves
        .iter()
        .flat_map(|(_, v)| v.iter().filter_map(|p| p.energy_j))
        .chain(runs.iter().map(|p| p.j_per_query))
        .filter(|v| *v > 0.0);
    let (jmin, jmax) = energies.fold((f64::INFINITY, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    let x = Scale::auto(jmin, jmax, f.left, f.w - f.right);
    let y = Scale::linear(0.0, 1.0, f.h - f.bottom, f.top);
    let mut s = String::new();
    svg::open(
        &mut s,
        "route-curves-svg",
        &f,
        "Routers' accuracy against energy per query",
        &curves
            .iter()
            .map(|(name, v)| format!("{name}: {} settings", v.len()))
            .collect::<Vec<_>>()
            .join("; "),
    );
    svg::axes(
        &mut s,
        &f,
        &x,
        Some(&y),
        &format!(
            "joules per query{}",
            if x.log { " (log scale)" } else { "" }
        ),
        "accuracy",
    );
    for p in &runs {
        let _ = write!(
            s,
            r##"<circle class="mark run" cx="{}" cy="{}" r="5" fill="#bbb"><title>{}: run</title></circle><text x="{}" y="{}" fill="#777">{}</text>"##,
            px(x.at(p.j_per_query)),
            px(y.at(p.accuracy)),
            esc(&p.run),
            px(x.at(p.j_per_query) + 4.0),
            px(y.at(p.accuracy) + 18.0),
            esc(&short(&p.run, 20))
        );
    }
    let mut ly = f.top + 10.0;
    for (i, (name, pts)) in curves.iter().enumerate() {
        // The colour the router has in the savings chart.
        let col = colour(
            routers
                .iter()
                .position(|r| r.router == **name)
                .unwrap_or(routers.len() + i),
        );
        let mut d = String::new();
        for p in pts.iter().filter(|p| p.energy_j.is_some()) {
            let _ = write!(
                d,
                "{}{} {}",
                if d.is_empty() { "M" } else { "L" },
                px(x.at(p.energy_j.unwrap_or_default())),
                px(y.at(p.accuracy))
            );
        }
        let _ = write!(
            s,
            r#"<path class="mark curve" d="{d}" fill="none" stroke="{col}" stroke-width="2"><title>{}</title></path>"#,
            esc(name)
        );
        for p in pts.iter() {
            if let Some(e) = p.energy_j {
                let _ = write!(
                    s,
                    r#"<circle class="mark" cx="{}" cy="{}" r="3" fill="{col}"><title>{} at {}: accuracy {:.3}, {} J/query</title></circle>"#,
                    px(x.at(e)),
                    px(y.at(p.accuracy)),
                    esc(name),
                    fmt_sig(p.param),
                    p.accuracy,
                    fmt_sig(e)
                );
            }
        }
        let _ = write!(
            s,
            r#"<path d="M{} {}h20" stroke="{col}" stroke-width="2"/><text x="{}" y="{}" dy="0.32em">{}</text>"#,
            px(f.w - f.right - 200.0),
            px(ly),
            px(f.w - f.right - 176.0),
            px(ly),
            esc(&short(name, 26))
        );
        ly += 16.0;
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut p = Page {
        r,
        out: String::new(),
    };
    let title = format!(
        "ipw report: {}",
        r.runs
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = write!(
        p.out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"><meta name="generator" content="ipw {}"><title>{}</title><style>{STYLE}</style><script>{EARLY_SCRIPT}</script></head><body>"#,
        esc(&r.ipw_version),
        esc(&title)
    );
    p.header();
    p.out.push_str(r##"<nav class="note"><a href="#summary">Summary</a> · <a href="#pareto">Accuracy vs energy</a> · <a href="#efficiency">APJ/APW</a> · <a href="#coverage">Coverage</a> · <a href="#trace">Power trace</a> · <a href="#energy">Energy distribution</a> · <a href="#routing">Routing</a> · <a href="#footprint">Footprint</a> · <a href="#provenance">Provenance</a></nav>"##);
    p.summary();
    p.pareto();
    p.intervals();
    p.coverage();
    p.trace();
    p.energy();
    p.routing();
    p.footprint();
    p.provenance_section();
    let _ = writeln!(p.out, "<script>{CHECK_SCRIPT}</script></body></html>");
    p.out
}
