//! `ipw validate`: everything `profile` checks before it sends a query.

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let loaded = ipw_core::run::load_experiment(file)?;
    let (queries, datasets) = ipw_core::run::plan_queries(&loaded)
        .with_context(|| format!("{}: loading datasets", file.display()))?;
    let exp = &loaded.experiment;
    // Compile every grader now (cached on disk), so a broken component is found before a run.
    let graders = ipw_core::grade::DatasetGraders::load(exp, loaded.base_dir(), None)
        .with_context(|| format!("{}: loading graders", file.display()))?;
    println!("{}: ok", file.display());
    println!("  experiment  {}", exp.name);
    for m in &exp.models {
        let m = m.get_ref();
        let target = match (&m.path, &m.base_url, &m.server) {
            (Some(p), _, _) => p.display().to_string(),
            (_, Some(u), _) => u.clone(),
            (_, _, Some(s)) => format!("{} server, started by ipw", s.kind.as_str()),
            _ => String::new(),
        };
        println!("  model       {} ({}) {target}", m.name, m.backend.as_str());
        if m.backend == ipw_core::config::BackendKind::Embedded {
            let placed = ipw_core::backend::place(m)
                .with_context(|| format!("{}: model `{}`", file.display(), m.name))?;
            let on = if placed.devices.is_empty() {
                "CPU".to_string()
            } else {
                placed
                    .devices
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.description))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("              runs on {on}: {}", placed.rule);
        }
    }
    for d in &datasets {
        let shards = match d.shards.len() {
            0 => String::new(),
            n => format!(", {n} shards"),
        };
        println!(
            "  dataset     {}: {} of {} rows ({}{shards})",
            d.name, d.selected, d.rows, d.source
        );
    }
    for g in graders.describe() {
        println!(
            "  grader      {}: {} (sha256 {}…)",
            g.dataset,
            g.grader,
            &g.wasm_sha256[..12]
        );
    }
    if let Some(c) = &exp.classification {
        // Loaded as profile loads it, without connecting a judge: a broken component or
        // taxonomy is found here.
        let taxonomy = ipw_core::classify::Taxonomy::load_or_default(c.taxonomy.as_deref())
            .with_context(|| format!("{}: classification.taxonomy", file.display()))?;
        let host = ipw_core::sandbox::Host::new(ipw_core::sandbox::Host::default_cache_dir())?;
        let classifier = ipw_core::classify::apply::load_classifier(
            &host,
            &c.classifier,
            exp.grading.limits(),
            None,
        )
        .with_context(|| format!("{}: classification.classifier", file.display()))?;
        println!(
            "  classifier  {} (sha256 {}…) over {} ({} labels)",
            classifier.id,
            &classifier.sha256[..12],
            taxonomy.name,
            taxonomy.labels.len()
        );
    }
    if let Some(f) = &exp.footprint {
        let resolved = ipw_core::footprint::Footprints::resolve(f, loaded.base_dir())
            .map_err(|m| anyhow::anyhow!("{}: [footprint] {m}", file.display()))?;
        if let Some(d) = &resolved.default {
            let i = &d.inputs;
            println!(
                "  footprint   PUE {}; carbon: {}",
                i.pue,
                i.carbon.as_deref().unwrap_or("-")
            );
        }
    }
    println!(
        "  plan        {} queries x {} models, concurrency {}, {} warm-up",
        queries.len(),
        exp.models.len(),
        exp.run.concurrency,
        exp.run.warmup_queries
    );
    Ok(ExitCode::SUCCESS)
}
