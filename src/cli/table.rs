//! The summary table printed after a profile.

use ipw_core::analysis::Distribution;
use ipw_core::run::RunOutcome;

fn p50(d: &Option<Distribution>, scale: f64, digits: usize) -> String {
    d.as_ref()
        .map(|d| format!("{:.digits$}", d.p50 * scale))
        .unwrap_or_else(|| "-".into())
}

fn d4(d: &Option<Distribution>) -> String {
    d.as_ref()
        .map(|d| format!("{:.4}", d.p50))
        .unwrap_or_else(|| "-".into())
}

pub fn print(outcomes: &[RunOutcome]) {
    println!(
        "{:<24} {:>8} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9} {:>8}",
        "model",
        "queries",
        "errors",
        "q/s",
        "p50 lat s",
        "p50 TTFT",
        "decode t/s",
        "out tok",
        "est tok"
    );
    for o in outcomes {
        let s = &o.summary;
        println!(
            "{:<24} {:>8} {:>6} {:>7.2} {:>10} {:>10} {:>10} {:>9} {:>8}",
            s.model,
            format!("{}/{}", s.recorded, s.planned),
            s.errors,
            s.queries_per_s,
            p50(&s.latency_s, 1.0, 3),
            p50(&s.ttft_s, 1.0, 3),
            p50(&s.decode_tps, 1.0, 1),
            s.output_tokens
                .as_ref()
                .map(|d| format!("{:.0}", d.mean * d.n as f64))
                .unwrap_or_else(|| "-".into()),
            s.tokens_estimated,
        );
        if s.prompt_cache_hits > 0 {
            println!(
                "    WARNING: the server served {} prompts partly from its prompt cache (see cached_prompt_tokens): cheaper and faster than cold queries",
                s.prompt_cache_hits
            );
        }
        for (kind, n) in &s.errors_by_kind {
            println!("    {n} x {kind}");
        }
        if let Some(q) = &s.quality {
            print_quality(q);
        }
        if let Some(e) = &s.energy {
            print_energy(e);
        }
    }
}

/// The energy lines of a summary.
pub fn print_energy(e: &ipw_core::analysis::EnergySummary) {
    let label = if e.estimated {
        " (ESTIMATED: modelled power, not measured)"
    } else {
        ""
    };
    let p50 = |d: &Option<Distribution>| {
        d.as_ref()
            .map(|d| format!("{:.2}", d.p50))
            .unwrap_or_else(|| "-".into())
    };
    println!("    energy{label}: {} queries", e.queries);
    if e.without_energy > 0 {
        println!(
            "      WARNING: {} answered queries have no energy figure and are left out of every energy figure",
            e.without_energy
        );
    }
    println!(
        "      gross J/query mean {}\n      net J/query mean {}\n      p50 power {} W  net J/output token p50 {}",
        est(&e.gross_j_mean, 2),
        est(&e.net_j_mean, 2),
        p50(&e.mean_power_w),
        d4(&e.j_per_output_token)
    );
    if e.prefill_j.is_some() {
        println!(
            "      per phase (gross, p50): prefill {} J  decode {} J  decode J/output token {}",
            p50(&e.prefill_j),
            p50(&e.decode_j),
            d4(&e.decode_j_per_output_token)
        );
    }
    if !e.flags.is_empty() {
        let flags: Vec<String> = e.flags.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("      flags: {}", flags.join(", "));
    }
}

/// `value [95% CI]`, and for energy figures the instruments' bound and both together.
fn est(e: &Option<ipw_core::analysis::Estimate>, digits: usize) -> String {
    let range = |r: [f64; 2]| format!("[{:.digits$}, {:.digits$}]", r[0], r[1]);
    let mut s = ipw_core::analysis::estimate_text(e.as_ref(), digits);
    if let Some((m, c)) = e.as_ref().and_then(|e| e.measurement.zip(e.combined)) {
        s += &format!(" (sampling; instruments {}, both {})", range(m), range(c));
    }
    s
}

pub fn print_quality(q: &ipw_core::analysis::QualitySummary) {
    let o = &q.overall;
    let label = if o.energy_estimated {
        " (energy ESTIMATED)"
    } else {
        ""
    };
    println!(
        "    accuracy {} (95% CI), {} scored, {:.0}% unparsed, {} grader errors; graders: {}",
        est(&o.accuracy, 3),
        o.scored,
        o.unparsed_rate * 100.0,
        o.grader_errors,
        q.graders.join(", ")
    );
    if o.failed > 0 {
        println!(
            "    accuracy with the {} failed queries counted wrong: {}",
            o.failed,
            est(&o.accuracy_with_failures, 3)
        );
    }
    if o.apj.is_some() || o.apw.is_some() {
        println!(
            "    APJ {} per {} J   APW {} per W of mean {} power while busy{label}",
            est(&o.apj, 5),
            o.apj_energy.as_deref().unwrap_or("-"),
            est(&o.apw, 5),
            o.apj_energy.as_deref().unwrap_or("-")
        );
    }
    for (name, d) in &q.by_dataset {
        println!(
            "      {name:<10} accuracy {}  ({} scored)",
            est(&d.accuracy, 3),
            d.scored
        );
    }
    // Labelled by `[classification]` or `ipw classify`: the per-domain figures summary.json
    // holds.
    for (name, d) in &q.by_domain {
        println!(
            "      domain {name:<10} accuracy {}  APJ {}  ({} scored)",
            est(&d.accuracy, 3),
            est(&d.apj, 5),
            d.scored
        );
    }
}
