//! Reading an experiment file: parse (serde + toml, unknown fields rejected), then check the
//! values that serde cannot (which fields a backend needs, model and sampler files that must
//! exist). Checks that need datasets or graders (a dataset path that names no file, a grader
//! that is neither built in nor a file) are made where those are loaded:
//! `ipw_core::run::load_experiment`.

use super::expand::expand_path;
use super::location::{field_path_at, ConfigError};
use super::{BackendKind, LoadedExperiment};
use std::path::{Path, PathBuf};

/// Read, parse and validate an experiment file, as far as the file alone can say (see the
/// module doc).
pub fn read_experiment(file: &Path) -> Result<LoadedExperiment, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_experiment(file, source)
}

/// Parse and validate experiment text that came from `file`.
pub fn parse_experiment(file: &Path, source: String) -> Result<LoadedExperiment, ConfigError> {
    let experiment = toml::from_str(&source).map_err(|e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        let field = field_path_at(&source, span.start);
        ConfigError::at(file, &source, span, &field, e.message().trim().to_string())
    })?;
    let mut loaded = LoadedExperiment {
        file: file.to_path_buf(),
        source,
        experiment,
    };
    validate(&mut loaded)?;
    Ok(loaded)
}

/// Checks across fields, path expansion and resolution, and existence of input files.
fn validate(loaded: &mut LoadedExperiment) -> Result<(), ConfigError> {
    let base = loaded.base_dir().to_path_buf();
    let exp = &loaded.experiment;
    let whole = 0..0;
    if exp.name.trim().is_empty() {
        return Err(loaded.error_at(whole, "name", "must not be empty"));
    }
    if exp.run.concurrency == 0 {
        let span = span_of_key(&loaded.source, "concurrency");
        return Err(loaded.error_at(span, "run.concurrency", "must be at least 1"));
    }
    let t = exp.run.query_timeout_s;
    if !(t > 0.0 && t.is_finite() && t <= 86_400.0) {
        let span = span_of_key(&loaded.source, "query_timeout_s");
        return Err(loaded.error_at(
            span,
            "run.query_timeout_s",
            format!("must be more than 0 and at most 86400 seconds, got {t}"),
        ));
    }
    if !(0.0..=5.0).contains(&exp.generation.temperature) {
        let span = span_of_key(&loaded.source, "temperature");
        return Err(loaded.error_at(span, "generation.temperature", "must be between 0 and 5"));
    }
    if exp.models.is_empty() {
        return Err(loaded.error_at(
            whole.clone(),
            "models",
            "no [[models]] given; add at least one",
        ));
    }
    if exp.datasets.is_empty() {
        return Err(loaded.error_at(whole, "datasets", "no [[datasets]] given; add at least one"));
    }

    let mut resolved_models = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, spanned) in exp.models.iter().enumerate() {
        let span = spanned.span();
        let m = spanned.get_ref();
        let at = |field: &str, msg: String| {
            loaded.error_at(span.clone(), &format!("models[{i}].{field}"), msg)
        };
        if !names.insert(m.name.clone()) {
            return Err(at("name", format!("duplicate model name `{}`", m.name)));
        }
        let model = check_model(m, &base, &at)?;
        resolved_models.push(model);
    }

    let mut resolved_datasets = Vec::new();
    let mut labels = std::collections::HashSet::new();
    for (i, spanned) in exp.datasets.iter().enumerate() {
        let span = spanned.span();
        let d = spanned.get_ref();
        let at = |field: &str, msg: String| {
            loaded.error_at(span.clone(), &format!("datasets[{i}].{field}"), msg)
        };
        if !labels.insert(d.label()) {
            return Err(at(
                "name",
                format!("duplicate dataset name `{}`; set `name`", d.label()),
            ));
        }
        let mut dataset = d.clone();
        match (&d.builtin, &d.path) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "path",
                    "give either `builtin` or `path`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(at(
                    "path",
                    "give `builtin = \"gsm8k\"|\"mmlu\"` or `path`".into(),
                ))
            }
            (Some(_), None) => {
                if d.format.is_some() || d.header.is_some() {
                    return Err(at(
                        "format",
                        "built-in datasets have a fixed format; remove it".into(),
                    ));
                }
            }
            (None, Some(raw)) => {
                let expanded = expand_path(&raw.to_string_lossy()).map_err(|e| at("path", e))?;
                dataset.path = Some(resolve(&base, Path::new(&expanded)));
            }
        }
        if d.keep_all_rows && d.recipe.is_none() {
            return Err(at(
                "keep_all_rows",
                "only a `recipe` skips rows; without one every row is kept".into(),
            ));
        }
        if d.builtin.is_some() && d.recipe.is_some() {
            return Err(at(
                "recipe",
                "a recipe reads a file (`path`); built-in datasets have their own".into(),
            ));
        }
        if d.max_queries == Some(0) {
            return Err(at(
                "max_queries",
                "must be at least 1 (leave it out for all rows)".into(),
            ));
        }
        if d.grader_params.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(at(
                "grader_params",
                "must be a table, e.g. { rel_tol = 0.01 }".into(),
            ));
        }
        resolved_datasets.push(dataset);
    }

    let mut resolved_samplers = Vec::new();
    for (i, spanned) in exp.samplers.iter().enumerate() {
        let span = spanned.span();
        let c = spanned.get_ref();
        let at = |field: &str, msg: String| {
            loaded.error_at(span.clone(), &format!("samplers[{i}].{field}"), msg)
        };
        let mut sampler = c.clone();
        match (&c.plugin, &c.path) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "path",
                    "give either `plugin` or `path`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(at(
                    "plugin",
                    "give `plugin = \"cpu-estimate\"` (or rapl, nvml, replay) or `path`".into(),
                ))
            }
            (None, Some(raw)) => {
                sampler.path =
                    Some(existing_file(&base, raw, "sampler library").map_err(|e| at("path", e))?);
            }
            (Some(_), None) => {}
        }
        if let Some(r) = c.rate_hz {
            if !r.is_finite() || r <= 0.0 || r > 1000.0 {
                return Err(at("rate_hz", "must be in (0, 1000]".into()));
            }
        }
        if !c.config.is_object() {
            return Err(at("config", "must be a table".into()));
        }
        resolved_samplers.push(sampler);
    }
    let judge = match &exp.grading.judge {
        Some(m) => {
            let span = span_of_table(&loaded.source, "grading.judge");
            let at = |field: &str, msg: String| {
                loaded.error_at(span.clone(), &format!("grading.judge.{field}"), msg)
            };
            Some(check_model(m, &base, &at)?)
        }
        None => None,
    };
    if !(0.0..=3600.0).contains(&exp.energy.baseline_s) {
        let span = span_of_key(&loaded.source, "baseline_s");
        return Err(loaded.error_at(
            span,
            "energy.baseline_s",
            "must be between 0 and 3600 seconds",
        ));
    }
    let settle = &exp.energy.settle;
    for (key, value, range) in [
        ("max_wait_s", settle.max_wait_s, 0.0..=86_400.0),
        ("window_s", settle.window_s, 0.1..=3600.0),
        ("power_tolerance", settle.power_tolerance, 0.0..=1.0),
        ("temperature_rise_c", settle.temperature_rise_c, 0.0..=100.0),
    ] {
        if !range.contains(&value) {
            let span = span_of_key(&loaded.source, key);
            return Err(loaded.error_at(
                span,
                &format!("energy.settle.{key}"),
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    const DOMAINS: [&str; 6] = ["gpu", "gpu-memory", "cpu-package", "dram", "soc", "system"];
    if let Some(d) = settle
        .domains
        .iter()
        .find(|d| !DOMAINS.contains(&d.as_str()))
    {
        let span = span_of_key(&loaded.source, "domains");
        return Err(loaded.error_at(
            span,
            "energy.settle.domains",
            format!("unknown domain `{d}`; one of {}", DOMAINS.join(", ")),
        ));
    }

    let classification = match &exp.classification {
        Some(c) => Some(check_classification(loaded, c)?),
        None => None,
    };

    let footprint = match &exp.footprint {
        Some(f) => Some(check_footprint(loaded, f)?),
        None => None,
    };

    let exp = &mut loaded.experiment;
    exp.grading.judge = judge;
    exp.classification = classification;
    exp.footprint = footprint;
    for (slot, sampler) in exp.samplers.iter_mut().zip(resolved_samplers) {
        *slot.get_mut() = sampler;
    }
    for (slot, model) in exp.models.iter_mut().zip(resolved_models) {
        *slot.get_mut() = model;
    }
    for (slot, dataset) in exp.datasets.iter_mut().zip(resolved_datasets) {
        *slot.get_mut() = dataset;
    }
    exp.plugin_dirs = exp.plugin_dirs.iter().map(|p| resolve(&base, p)).collect();
    Ok(())
}

/// Resolve the intensity series `[footprint]` (and its sections) name against the experiment's
/// directory, so each run's manifest names the file wherever the run is read. Whether the rest
/// of the footprint resolves (a region in the table, PUE >= 1, ...) is checked before the first
/// query by `crate::footprint`, which names the field.
fn check_footprint(
    loaded: &LoadedExperiment,
    f: &super::FootprintConfig,
) -> Result<super::FootprintConfig, ConfigError> {
    let mut f = f.clone();
    let at = |field: String, msg: String| {
        loaded.error_at(span_of_table(&loaded.source, "footprint"), &field, msg)
    };
    if let Some(p) = &f.intensity_csv {
        let file = loaded
            .existing_file(p, "intensity series")
            .map_err(|m| at("footprint.intensity_csv".into(), m))?;
        f.intensity_csv = Some(file);
    }
    for (name, section) in f.accelerators.iter_mut() {
        if let Some(p) = &section.intensity_csv {
            let file = loaded
                .existing_file(p, "intensity series")
                .map_err(|m| at(format!("footprint.accelerators.{name}.intensity_csv"), m))?;
            section.intensity_csv = Some(file);
        }
    }
    Ok(f)
}

/// Check `[classification]` and resolve the files it names against the experiment's directory
/// (whether the classifier and taxonomy load is checked when they are loaded, before the first
/// query).
fn check_classification(
    loaded: &LoadedExperiment,
    c: &super::ClassificationConfig,
) -> Result<super::ClassificationConfig, ConfigError> {
    let span = span_of_table(&loaded.source, "classification");
    let at = |field: &str, msg: String| {
        loaded.error_at(span.clone(), &format!("classification.{field}"), msg)
    };
    let mut c = c.clone();
    if c.params.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(at(
            "params",
            "must be a table, e.g. { shipped = false }".into(),
        ));
    }
    if c.batch == Some(0) {
        return Err(at("batch", "must be at least 1".into()));
    }
    if c.classifier.ends_with(".wasm") {
        let file = loaded
            .existing_file(Path::new(&c.classifier), "classifier component")
            .map_err(|m| at("classifier", m))?;
        c.classifier = file.display().to_string();
    }
    if let Some(t) = &c.taxonomy {
        if t.ends_with(".toml") || t.ends_with(".csv") {
            let file = loaded
                .existing_file(Path::new(t), "taxonomy file")
                .map_err(|m| at("taxonomy", m))?;
            c.taxonomy = Some(file.display().to_string());
        }
    }
    Ok(c)
}

/// Check one model's fields against its backend and resolve its file path. Used for
/// `[[models]]` and `[grading.judge]`; `at` builds an error for a field of that table.
pub(super) fn check_model(
    m: &super::ModelConfig,
    base: &Path,
    at: &dyn Fn(&str, String) -> ConfigError,
) -> Result<super::ModelConfig, ConfigError> {
    let embedded_only = [
        ("path", m.path.is_some()),
        ("threads", m.threads.is_some()),
        ("context", m.context.is_some()),
        ("gpu_layers", m.gpu_layers.is_some()),
        ("devices", m.devices.is_some()),
    ];
    let http_only = [
        ("base_url", m.base_url.is_some()),
        ("model", m.model.is_some()),
        ("connect_timeout_s", m.connect_timeout_s.is_some()),
        ("read_timeout_s", m.read_timeout_s.is_some()),
        ("max_retries", m.max_retries.is_some()),
        ("retry_backoff_s", m.retry_backoff_s.is_some()),
    ];
    let openai_only = [
        ("api_key_env", m.api_key_env.is_some()),
        ("include_usage", m.include_usage.is_some()),
        ("prompt_cache", m.prompt_cache.is_some()),
        ("tokenize_url", m.tokenize_url.is_some()),
    ];
    let backend = m.backend.as_str();
    let reject = |fields: &[(&str, bool)]| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err(at(f, format!("not used by backend `{backend}`; remove it"))),
            None => Ok(()),
        }
    };
    let mut model = m.clone();
    match m.backend {
        BackendKind::Embedded => {
            reject(&http_only)?;
            reject(&openai_only)?;
            if m.server.is_some() {
                return Err(at(
                    "server",
                    "the embedded backend runs in ipw and has no server; use backend `openai` or `ollama`".into(),
                ));
            }
            let raw = m.path.as_ref().ok_or_else(|| {
                at(
                    "path",
                    "backend `embedded` needs `path` to a GGUF file".into(),
                )
            })?;
            let path = existing_file(base, raw, "model file").map_err(|e| {
                at(
                    "path",
                    format!("{e} (fetch the test model with scripts/fetch-model.sh)"),
                )
            })?;
            model.path = Some(path);
        }
        BackendKind::Openai | BackendKind::Ollama => {
            reject(&embedded_only)?;
            if m.backend == BackendKind::Ollama {
                reject(&openai_only)?;
            }
            if let Some(server) = &m.server {
                model.server = Some(check_server(server, m, base, at)?);
            } else {
                let raw = m.base_url.as_deref().ok_or_else(|| {
                    at(
                        "base_url",
                        format!("backend `{backend}` needs `base_url` (or a `[models.server]` for ipw to start)"),
                    )
                })?;
                let url = expand_path(raw).map_err(|e| at("base_url", e))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(at("base_url", format!("`{url}` is not an http(s) URL")));
                }
                model.base_url = Some(url);
            }
            // Durations a user types: a negative, zero or endless one would panic deep in the
            // HTTP client or wait forever; say so here, by field.
            let seconds = [
                ("connect_timeout_s", m.connect_timeout_s, false),
                ("read_timeout_s", m.read_timeout_s, false),
                ("retry_backoff_s", m.retry_backoff_s, true),
            ];
            for (field, value, zero_ok) in seconds {
                if let Some(v) = value {
                    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
                    if !(low_ok && v.is_finite() && v <= 86_400.0) {
                        let low = if zero_ok { "0" } else { "more than 0" };
                        return Err(at(
                            field,
                            format!("must be {low} and at most 86400 seconds, got {v}"),
                        ));
                    }
                }
            }
            if let Some(var) = &m.api_key_env {
                if var.is_empty() || var.contains(char::is_whitespace) || var.len() > 100 {
                    return Err(at(
                        "api_key_env",
                        "must be the NAME of an environment variable, never the key itself".into(),
                    ));
                }
            }
        }
    }
    Ok(model)
}

/// Check a `[models.server]` table against its model: the backend its kind speaks, the
/// fields its kind uses, durations in range; resolve its files.
fn check_server(
    s: &super::ServerConfig,
    m: &super::ModelConfig,
    base: &Path,
    at: &dyn Fn(&str, String) -> ConfigError,
) -> Result<super::ServerConfig, ConfigError> {
    use super::ServerKind;
    let kind = s.kind.as_str();
    if m.base_url.is_some() {
        return Err(at(
            "base_url",
            "ipw chooses the address of a server it starts; remove `base_url` or `[models.server]`"
                .into(),
        ));
    }
    let speaks = match s.kind {
        ServerKind::Ollama => Some(BackendKind::Ollama),
        ServerKind::Command => None,
        _ => Some(BackendKind::Openai),
    };
    if let Some(b) = speaks.filter(|b| *b != m.backend) {
        return Err(at(
            "server.kind",
            format!(
                "a `{kind}` server speaks backend `{}`, not `{}`",
                b.as_str(),
                m.backend.as_str()
            ),
        ));
    }
    let mut out = s.clone();
    match s.kind {
        ServerKind::Command if s.program.is_none() => {
            return Err(at(
                "server.program",
                "a `command` server needs `program`".into(),
            ))
        }
        ServerKind::LlamaServer | ServerKind::Vllm | ServerKind::Sglang
            if s.model_path.is_none() =>
        {
            return Err(at(
                "server.model_path",
                format!("a `{kind}` server needs `model_path` (what it serves)"),
            ))
        }
        ServerKind::Ollama | ServerKind::Command if s.model_path.is_some() => {
            return Err(at(
                "server.model_path",
                format!("not used by a `{kind}` server; remove it"),
            ))
        }
        _ => {}
    }
    // `${VAR}` in arguments and environment: how a token reaches the server without being
    // written in the experiment file (which is copied into the run directory). Only where the
    // braced form appears, so a shell script's `$i` is left to the shell.
    let braced = |v: &str| match v.contains("${") {
        true => expand_path(v),
        false => Ok(v.to_string()),
    };
    for (i, a) in s.args.iter().enumerate() {
        out.args[i] = braced(a).map_err(|e| at("server.args", e))?;
    }
    for (k, v) in &s.env {
        let value = braced(v).map_err(|e| at(&format!("server.env.{k}"), e))?;
        out.env.insert(k.clone(), value);
    }
    if s.kind == ServerKind::LlamaServer {
        let raw = Path::new(s.model_path.as_deref().unwrap_or_default());
        let path =
            existing_file(base, raw, "model file").map_err(|e| at("server.model_path", e))?;
        out.model_path = Some(path.to_string_lossy().into_owned());
    }
    if let Some(p) = &s.program {
        // A bare name is looked up on PATH when the server starts; a path is resolved here.
        if p.components().count() > 1 {
            let path =
                existing_file(base, p, "server program").map_err(|e| at("server.program", e))?;
            out.program = Some(path);
        }
    }
    for (field, value) in [
        ("server.ready_timeout_s", s.ready_timeout_s),
        ("server.stop_grace_s", s.stop_grace_s),
    ] {
        if let Some(v) = value {
            if !(v > 0.0 && v.is_finite() && v <= 86_400.0) {
                return Err(at(
                    field,
                    format!("must be more than 0 and at most 86400 seconds, got {v}"),
                ));
            }
        }
    }
    if s.port == Some(0) {
        return Err(at(
            "server.port",
            "0 is not a port; leave `port` out for ipw to pick a free one".into(),
        ));
    }
    Ok(out)
}

/// Expand and resolve a configured file path and check the file exists; the error says what
/// kind of file was missing (`what`) and where it was looked for.
pub(super) fn existing_file(base: &Path, raw: &Path, what: &str) -> Result<PathBuf, String> {
    let expanded = expand_path(&raw.to_string_lossy())?;
    let path = resolve(base, Path::new(&expanded));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{what} not found: {}", path.display()))
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Span of a `[table]` header, for errors about a table that serde does not span.
fn span_of_table(source: &str, table: &str) -> std::ops::Range<usize> {
    let header = format!("[{table}]");
    source
        .find(&header)
        .map(|i| i..i + header.len())
        .unwrap_or(0..0)
}

/// Span of the first `key =` in the file, for errors about scalar settings.
fn span_of_key(source: &str, key: &str) -> std::ops::Range<usize> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
        {
            let start = offset + (line.len() - t.len());
            return start..start + key.len();
        }
        offset += line.len();
    }
    0..0
}
