//! The experiment file: one TOML that names models, datasets and run settings.
//!
//! Every field has a documented default (see `examples/annotated.toml`); unknown fields are
//! errors; every error names the file, line, column and field. Secrets are never written in the
//! file: a backend names the environment variable that holds its key (`api_key_env`).

mod expand;
mod grading_file;
mod load;
pub(crate) mod location;
mod secrets;
pub use secrets::redact_args;

pub use grading_file::load_grading_file;
pub use load::{parse_experiment, read_experiment};
pub use location::ConfigError;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed, validated experiment, with relative paths resolved against the file's directory.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name of the experiment; names the output directory.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed for dataset shuffling/sampling and, unless `generation.seed` is set, for sampling.
    #[serde(default)]
    pub seed: u64,
    /// Where run directories go.
    #[serde(default)]
    pub output: OutputConfig,
    /// Scheduling settings.
    #[serde(default)]
    pub run: RunConfig,
    /// Generation settings shared by every model.
    #[serde(default)]
    pub generation: GenerationConfig,
    /// Extra directories searched for plugins (besides the binary's directory and `IPW_PLUGIN_PATH`).
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// The models to profile: one run per model.
    #[schemars(with = "Vec<ModelConfig>")]
    pub models: Vec<Spanned<ModelConfig>>,
    /// The datasets every model answers.
    #[schemars(with = "Vec<DatasetConfig>")]
    pub datasets: Vec<Spanned<DatasetConfig>>,
    /// Power samplers (native plugins) recording during the run.
    #[serde(default)]
    #[schemars(with = "Vec<SamplerConfig>")]
    pub samplers: Vec<Spanned<SamplerConfig>>,
    /// How energy is attributed to queries.
    #[serde(default)]
    pub energy: EnergyConfig,
    /// Grader limits and the judge model.
    #[serde(default)]
    pub grading: GradingConfig,
    /// Give every query a domain once each model's run is measured and graded (what `ipw
    /// classify` does afterwards), outside every measured window.
    #[serde(default)]
    pub classification: Option<ClassificationConfig>,
    /// Where the energy is drawn: grid intensity, PUE, prices. Each run's manifest carries it,
    /// so `compare`, `route`, `report` and `export` give carbon, water and cost per query
    /// without a `--footprint` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<FootprintConfig>,
}

/// A footprint as written: `ipw compare --footprint FILE` (see `crate::footprint`), or an
/// experiment's `[footprint]`, which each run's manifest then carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FootprintConfig {
    /// A region of the shipped table (ISO 3166 alpha-3 code or country name): its carbon and
    /// water intensity, for what the other fields leave out.
    pub region: Option<String>,
    /// Grid carbon intensity, g CO2e per kWh.
    pub carbon_g_per_kwh: Option<f64>,
    /// Grid water intensity, litres per kWh.
    pub water_l_per_kwh: Option<f64>,
    /// Intensity over time (relative paths: from the footprint file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity_csv: Option<PathBuf>,
    /// Power usage effectiveness of the facility (>= 1).
    pub pue: Option<f64>,
    /// Electricity price per kWh.
    pub price_per_kwh: Option<f64>,
    /// Currency of the prices (a label).
    pub currency: Option<String>,
    /// The hardware's purchase price, amortised over its life.
    pub hardware: Option<HardwareConfig>,
    /// The footprint of runs on named accelerators, over the fields above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accelerators: BTreeMap<String, FootprintConfig>,
}

/// Hardware amortisation as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// Purchase price.
    pub price: f64,
    /// Years of service it is written off over.
    pub lifetime_years: f64,
    /// The share of the machine the runs had (1: all of it).
    #[serde(default = "whole_machine")]
    pub share: f64,
}

fn whole_machine() -> f64 {
    1.0
}

/// `[classification]`: the classifier that labels each query with a domain at profile time.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassificationConfig {
    /// A built-in classifier (`mapping`, `keywords`, `judge`) or a path to a `.wasm`
    /// component (relative to the experiment file).
    pub classifier: String,
    /// A shipped taxonomy's name or a `.toml`/`.csv` file (relative to the experiment file).
    /// Default: `soc-2018`.
    #[serde(default)]
    pub taxonomy: Option<String>,
    /// Parameters passed to the classifier as a JSON object.
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// Queries per sandboxed call (default 256; 4 for `judge`).
    #[serde(default)]
    pub batch: Option<usize>,
}

/// `[grading]`: limits for every grader call, and the model the `judge` grader asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GradingConfig {
    /// Instruction budget per grader call (wasmtime fuel). Default 1e9.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Wall-clock limit per grader call, milliseconds. Default 1000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Memory budget per grader instance, MiB: all its linear memories and tables together.
    /// Default 64.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Wall-clock limit for one judge call, milliseconds (judge time does not count against
    /// `timeout_ms`). Default 120000.
    #[serde(default)]
    pub judge_timeout_ms: Option<u64>,
    /// Judge calls one grade may make. Default 4.
    #[serde(default)]
    pub judge_max_calls: Option<u32>,
    /// Prompt bytes one grade may send to the judge, all its calls together. Default 65536.
    #[serde(default)]
    pub judge_max_prompt_bytes: Option<u64>,
    /// Most judge calls in flight at once. Default 1.
    #[serde(default)]
    pub judge_concurrency: Option<usize>,
    /// The judge model (same fields as a `[[models]]` entry), for `grader = "judge"`.
    #[serde(default)]
    pub judge: Option<ModelConfig>,
}

/// `[[samplers]]`: a power sampler plugin and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// Plugin name, found on the plugin search path as `libipw_sampler_<name>.so`
    /// (e.g. `cpu-estimate`, `rapl`, `nvml`, `replay`).
    #[serde(default)]
    pub plugin: Option<String>,
    /// Or an explicit library path, relative to the experiment file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Background sampling rate. Default 20 Hz; never faster than the channels update.
    #[serde(default)]
    pub rate_hz: Option<f64>,
    /// Settings passed to the plugin as JSON (see each plugin's documentation).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// `[energy]`: idle baseline and how overlapping queries share energy.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// Seconds of idle measured before the queries, per session (0 = skip; no net energy).
    /// Default 10.
    #[serde(default = "default_baseline_s")]
    pub baseline_s: f64,
    /// `tokens` (default) or `equal`: how concurrent queries share an interval's energy.
    #[serde(default)]
    pub split: SplitRule,
    /// `warn` (default) or `sum`: what to do when two samplers measure overlapping domains
    /// (a wall meter and a GPU, RAPL and the CPU estimate). Every channel is summed into a
    /// record's total either way; `sum` says that is what you want and silences the warning.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// `[energy.settle]`: wait for the measured devices to settle before the idle baseline and
    /// before the first measured query.
    #[serde(default)]
    pub settle: SettleConfig,
}

/// See [`EnergyConfig::settle`]. The accelerators' energy channels (GPU, GPU memory and SoC
/// domains) are watched, with their samplers' temperatures; `domains` adds others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SettleConfig {
    /// The longest wait, seconds; 0 turns settling off. Default 60.
    pub max_wait_s: f64,
    /// Seconds of readings judged at a time. Default 3.
    pub window_s: f64,
    /// Power is steady when it varies by at most this share of its mean (or 1 W) over the
    /// window. Default 0.05.
    pub power_tolerance: f64,
    /// Temperature is no longer rising when its trend over the window is at most this many
    /// °C. Default 0.5.
    pub temperature_rise_c: f64,
    /// More energy domains to watch (`cpu-package`, `dram`, `system`, ...): the CPU's power on
    /// a machine that runs ipw is rarely still, so they are not watched unless named.
    pub domains: Vec<String>,
}

impl Default for SettleConfig {
    fn default() -> Self {
        Self {
            max_wait_s: 60.0,
            window_s: 3.0,
            power_tolerance: 0.05,
            temperature_rise_c: 0.5,
            domains: Vec::new(),
        }
    }
}

/// See [`EnergyConfig::split`]: how overlapping query windows share energy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SplitRule {
    /// In proportion to tokens processed per second (prompt during TTFT, output after).
    #[default]
    Tokens,
    /// Equally between the queries in flight.
    Equal,
}

/// See [`EnergyConfig::overlap`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OverlapPolicy {
    /// Warn that totals double-count.
    #[default]
    Warn,
    /// Sum them: the user says the domains are disjoint or wants the sum.
    Sum,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            baseline_s: default_baseline_s(),
            split: Default::default(),
            overlap: Default::default(),
            settle: Default::default(),
        }
    }
}

fn default_baseline_s() -> f64 {
    10.0
}

/// `[output]`: where results are written.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Root directory for run directories, relative to the working directory. Default `runs`.
    #[serde(default = "default_output_dir")]
    pub dir: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: default_output_dir(),
        }
    }
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// `[run]`: how queries are scheduled.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Queries in flight at once. Default 1 (clean per-query energy windows).
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Queries sent before measurement starts and not recorded (caches, clocks). Default 1.
    #[serde(default = "one")]
    pub warmup_queries: usize,
    /// Longest a query may take from request to last byte, retries included, in seconds; past
    /// it the query is an error record (`timeout`) and the run goes on. Default 600.
    #[serde(default = "default_query_timeout_s")]
    pub query_timeout_s: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            warmup_queries: 1,
            query_timeout_s: default_query_timeout_s(),
        }
    }
}

fn default_query_timeout_s() -> f64 {
    600.0
}

fn one() -> usize {
    1
}

/// `[generation]`: decoding settings shared by every model.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Maximum new tokens per query. Default 256.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy. Default 0.
    #[serde(default)]
    pub temperature: f32,
    /// Sampling seed; defaults to the experiment seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Generation stops at the first of these strings (not included in the response).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Optional system message sent before every prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_tokens: default_max_tokens(),
            temperature: 0.0,
            seed: None,
            stop: Vec::new(),
            system_prompt: None,
        }
    }
}

fn default_max_tokens() -> u32 {
    256
}

/// Which code talks to the model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// llama.cpp in-process (GGUF file); needs no server. The default.
    #[default]
    Embedded,
    /// Any OpenAI-compatible chat completions server (vLLM, llama.cpp, SGLang, Ollama /v1, cloud).
    Openai,
    /// Ollama's native `/api/chat`.
    Ollama,
}

impl BackendKind {
    /// Every backend, for `ipw list`.
    pub const ALL: [BackendKind; 3] = [Self::Embedded, Self::Openai, Self::Ollama];

    /// The name used in experiment files and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Openai => "openai",
            Self::Ollama => "ollama",
        }
    }

    /// One line for `ipw list`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Embedded => "llama.cpp in-process from a GGUF file (default; no server)",
            Self::Openai => "OpenAI-compatible streaming chat: vLLM, llama.cpp server, SGLang, Ollama /v1, cloud",
            Self::Ollama => "Ollama native /api/chat streaming (NDJSON, eval counts)",
        }
    }
}

/// `[[models]]`: one model to profile. Fields that a backend does not use are rejected.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Label used in records and directory names.
    pub name: String,
    /// Default `embedded`.
    #[serde(default)]
    pub backend: BackendKind,
    /// embedded: path to the GGUF file (`~` and `${VAR}` / `${VAR:-default}` are expanded).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// embedded: CPU threads. Default: all cores.
    #[serde(default)]
    pub threads: Option<u32>,
    /// embedded: context length in tokens. Default 4096.
    #[serde(default)]
    pub context: Option<u32>,
    /// embedded: layers offloaded to a GPU: a count or `"all"`. Default: all when this build has
    /// a GPU backend and it sees a device, else 0 (CPU). Asking for layers on a build or machine
    /// without a GPU is refused before anything is measured.
    #[serde(default)]
    pub gpu_layers: Option<GpuLayers>,
    /// embedded: which compute devices hold the offloaded layers, by llama.cpp's device name
    /// (`Vulkan0`, `CUDA1`: `ipw doctor` lists them) or PCI bus id. Default: every GPU seen.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// openai/ollama: server base URL, e.g. `http://127.0.0.1:8080/v1` or `http://127.0.0.1:11434`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// openai/ollama: model id sent to the server. Default: `name`.
    #[serde(default)]
    pub model: Option<String>,
    /// openai: name of the environment variable that holds the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// openai: ask for usage in the stream (`stream_options.include_usage`). Default true.
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// openai: let the server reuse cached prompt prefixes. Default false: ipw sends
    /// `cache_prompt: false` (llama.cpp), so a repeated prompt costs what it costs. Set true for
    /// servers that reject unknown fields (api.openai.com); cached tokens are recorded anyway.
    #[serde(default)]
    pub prompt_cache: Option<bool>,
    /// openai: when the stream carries no usage, count tokens with this tokenizer endpoint
    /// (llama.cpp's `/tokenize`). Default: `<server root>/tokenize`, tried once.
    #[serde(default)]
    pub tokenize_url: Option<String>,
    /// HTTP: seconds to establish a connection. Default 10.
    #[serde(default)]
    pub connect_timeout_s: Option<f64>,
    /// HTTP: longest silence between two stream chunks, in seconds. Default 120.
    #[serde(default)]
    pub read_timeout_s: Option<f64>,
    /// HTTP: retries on connect errors, 429 and 5xx (before any data arrived). Default 3.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// HTTP: first backoff in seconds, doubled per retry (a Retry-After header wins). Default 0.5.
    #[serde(default)]
    pub retry_backoff_s: Option<f64>,
    /// What the model is, for routing and the study (size, price, accelerator, release date,
    /// a declared energy model); not part of what a run measures, so `--resume` ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ModelMeta>,
    /// openai/ollama: ipw starts the model's server itself, just before the model's session,
    /// and stops it after (`base_url` is then chosen by ipw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerConfig>,
}

/// `[models.server]`: how ipw starts a model's inference server (see the README's "Managed
/// servers").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Which server: its measurement-safe settings and command line follow from it.
    pub kind: ServerKind,
    /// The executable. Default: `llama-server`, `vllm`, `python3` (SGLang, run as
    /// `-m sglang.launch_server`), `ollama` on `PATH`; required for `command`.
    #[serde(default)]
    pub program: Option<PathBuf>,
    /// What to serve: a GGUF file (llama-server), a model id or directory (vLLM, SGLang).
    /// Unused by `ollama` (the model is pulled) and `command` (put it in `args`).
    #[serde(default)]
    pub model_path: Option<String>,
    /// Arguments after ipw's own. For `command`, all of them; `{port}` and `{host}` are
    /// replaced by the address ipw chose.
    #[serde(default, serialize_with = "secrets::args")]
    pub args: Vec<String>,
    /// Environment variables for the server (values are never written to the run directory:
    /// they may hold tokens). `{port}` and `{host}` are replaced.
    #[serde(default, serialize_with = "secrets::env")]
    pub env: std::collections::BTreeMap<String, String>,
    /// TCP port. Default: a free one picked by ipw.
    #[serde(default)]
    pub port: Option<u16>,
    /// Seconds to wait for the server to answer a first token. Default 300.
    #[serde(default)]
    pub ready_timeout_s: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when stopping it. Default 10.
    #[serde(default)]
    pub stop_grace_s: Option<f64>,
}

/// A kind of managed server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// llama.cpp's `llama-server` (OpenAI API).
    LlamaServer,
    /// vLLM's `vllm serve` (OpenAI API).
    Vllm,
    /// SGLang's `launch_server` (OpenAI API).
    Sglang,
    /// `ollama serve` (native API).
    Ollama,
    /// Any command that serves the model's backend API on `{port}`.
    Command,
}

impl ServerKind {
    /// The name used in experiment files and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LlamaServer => "llama-server",
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
            Self::Ollama => "ollama",
            Self::Command => "command",
        }
    }
}

/// `[models.meta]`: facts about a model that measurements cannot give.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Total parameters, billions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_b: Option<f64>,
    /// Parameters active per token, billions (mixture-of-experts); default `params_b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_params_b: Option<f64>,
    /// US dollars per million prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_in_per_mtok: Option<f64>,
    /// US dollars per million generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_out_per_mtok: Option<f64>,
    /// Where it ran, e.g. `H100-SXM`, `M4 Max`, `laptop CPU`; default: from the run's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// Release date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_date: Option<String>,
    /// The accelerator's release date, `YYYY-MM-DD` (the hardware side of `ipw trend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_release_date: Option<String>,
    /// `local` (laptop, workstation, edge device) or `cloud` (datacenter): `ipw trend` compares
    /// the two on the same model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_class: Option<AcceleratorClass>,
    /// For a model whose energy cannot be measured (a cloud API): joules per token, declared.
    /// Every figure built on it is labelled estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_model: Option<EnergyModel>,
}

impl ModelMeta {
    /// Active parameters, billions: `active_params_b`, else `params_b`.
    pub fn active_params_b(&self) -> Option<f64> {
        self.active_params_b.or(self.params_b)
    }
}

/// Where an accelerator sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorClass {
    /// A laptop, workstation or edge device.
    Local,
    /// A datacenter accelerator.
    Cloud,
}

/// A declared energy model: joules per prompt token and per generated token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnergyModel {
    /// Joules per prompt token.
    pub j_per_input_token: f64,
    /// Joules per generated token.
    pub j_per_output_token: f64,
}

impl ModelConfig {
    /// The model id sent to a server.
    pub fn server_model(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.name)
    }
}

/// A dataset that ships inside the `ipw` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinDataset {
    /// GSM8K test split (1,319 grade-school maths problems; MIT).
    Gsm8k,
    /// MMLU test split, 51 subjects (13,116 multiple-choice questions; MIT).
    Mmlu,
}

/// File format of a user dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values, with or without a header row.
    Csv,
    /// Apache Parquet (how the Hugging Face hub stores datasets), read row group by row group.
    Parquet,
}

/// A preset for a dataset as the Hugging Face hub stores it: the field mapping, template and
/// grader of that schema (an entry's own `fields.*`, `template` and `grader` still win).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetRecipe {
    /// TIGER-Lab/MMLU-Pro: 10-option multiple choice, graded `choice`.
    MmluPro,
    /// m-a-p/SuperGPQA: multiple choice over 285 graduate disciplines, graded `choice`.
    Supergpqa,
    /// facebook/natural_reasoning: open questions with a reference answer, graded `judge`.
    NaturalReasoning,
    /// allenai/WildChat-1M: real user conversations; the first user turn, ungraded.
    Wildchat,
}

impl DatasetRecipe {
    /// The name used in experiment files (and the dataset's default label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MmluPro => "mmlu-pro",
            Self::Supergpqa => "supergpqa",
            Self::NaturalReasoning => "natural-reasoning",
            Self::Wildchat => "wildchat",
        }
    }

    /// The grader (a built-in name) of a dataset read with this recipe when its entry names
    /// none, if the schema has something to grade against.
    pub fn default_grader(self) -> Option<&'static str> {
        match self {
            Self::MmluPro | Self::Supergpqa => Some("choice"),
            Self::NaturalReasoning => Some("judge"),
            Self::Wildchat => None,
        }
    }
}

/// A built-in prompt template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateName {
    /// The question as-is.
    Raw,
    /// Step-by-step maths with a final `#### <number>` line (GSM8K style).
    Gsm8k,
    /// Multiple choice with lettered options and `Answer: <letter>` (MMLU style).
    Mmlu,
}

/// `[[datasets]]`: where queries come from and how they are turned into prompts.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Label in records. Default: the built-in name or the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// A dataset shipped in the binary (`gsm8k`, `mmlu`); exclusive with `path`.
    #[serde(default)]
    pub builtin: Option<BuiltinDataset>,
    /// A JSONL, CSV or Parquet file, a directory of shards, or a glob in the file name
    /// (`data/train-*.parquet`), relative to the experiment file. Shards are read in file-name
    /// order.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Default: from the file extension.
    #[serde(default)]
    pub format: Option<DatasetFormat>,
    /// A Hugging Face dataset schema whose field mapping, template and grader to use:
    /// `mmlu-pro`, `supergpqa`, `natural-reasoning` or `wildchat`.
    #[serde(default)]
    pub recipe: Option<DatasetRecipe>,
    /// Keep the rows a recipe skips by default (WildChat: conversations flagged `toxic` or
    /// `redacted`; NaturalReasoning: questions without a reference answer). Default false.
    #[serde(default)]
    pub keep_all_rows: bool,
    /// CSV: whether the first row names the columns. Default true.
    #[serde(default)]
    pub header: Option<bool>,
    /// Which fields (JSONL keys, CSV column names or 0-based indexes) hold what.
    #[serde(default)]
    pub fields: FieldMap,
    /// Prompt template. Default: the built-in dataset's own, else `raw`.
    #[serde(default)]
    pub template: Option<TemplateName>,
    /// A custom template with `{question}`, `{choices}`, `{subject}` placeholders; wins over `template`.
    #[serde(default)]
    pub template_text: Option<String>,
    /// Keep only these subjects.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// subject -> category, for per-category breakdowns of user datasets.
    #[serde(default)]
    pub categories: BTreeMap<String, String>,
    /// Take at most this many queries (after shuffling/stratifying). Default: all.
    #[serde(default)]
    pub max_queries: Option<usize>,
    /// Shuffle with the experiment seed before taking `max_queries`. Default false.
    #[serde(default)]
    pub shuffle: bool,
    /// Sample `max_queries` proportionally from each subject (seeded). Default false.
    #[serde(default)]
    pub stratify: bool,
    /// Grader: a built-in name (`exact`, `choice`, `numeric`, `regex`, `includes`, `f1`,
    /// `judge`), a path to a `.wasm` component, or `none`. Default: `numeric` for gsm8k,
    /// `choice` for mmlu, the recipe's grader, none otherwise.
    #[serde(default)]
    pub grader: Option<String>,
    /// Parameters passed to the grader as a JSON object.
    #[serde(default)]
    pub grader_params: Option<serde_json::Value>,
}

/// `grader = "none"`: no grader, even where a recipe or built-in dataset has one.
pub const NO_GRADER: &str = "none";

impl DatasetConfig {
    /// The grader this dataset uses, if any.
    pub fn grader_name(&self) -> Option<String> {
        if self.grader.as_deref() == Some(NO_GRADER) {
            return None;
        }
        self.grader.clone().or(match (self.builtin, self.recipe) {
            (Some(BuiltinDataset::Gsm8k), _) => Some("numeric".into()),
            (Some(BuiltinDataset::Mmlu), _) => Some("choice".into()),
            (None, Some(recipe)) => recipe.default_grader().map(str::to_string),
            (None, None) => None,
        })
    }
}

impl DatasetConfig {
    /// The label records carry.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (self.builtin, &self.path) {
            (Some(BuiltinDataset::Gsm8k), _) => "gsm8k".into(),
            (Some(BuiltinDataset::Mmlu), _) => "mmlu".into(),
            (None, _) if self.recipe.is_some() => self
                .recipe
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            (None, Some(p)) => p
                .file_stem()
                .map(|s| {
                    // A glob's stem (`train-*`) without its wildcards: `train`.
                    let s = s.to_string_lossy().replace(['*', '?', '[', ']'], "");
                    s.trim_end_matches(['-', '_', '.']).to_string()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "dataset".into()),
            (None, None) => "dataset".into(),
        }
    }
}

/// `gpu_layers`: how many of the model's layers the embedded backend puts on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    /// Every layer, the output layer included.
    All,
    /// The first N repeating layers (llama.cpp's `n_gpu_layers`).
    Count(u32),
}

impl GpuLayers {
    /// The count llama.cpp takes: `All` is larger than any model's layer count.
    pub fn as_llama(self) -> u32 {
        match self {
            GpuLayers::All => i32::MAX as u32,
            GpuLayers::Count(n) => n,
        }
    }
}

impl Serialize for GpuLayers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuLayers::All => s.serialize_str("all"),
            GpuLayers::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for GpuLayers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = GpuLayers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a layer count (0 = CPU only) or "all""#)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<GpuLayers, E> {
                u32::try_from(n)
                    .map(GpuLayers::Count)
                    .map_err(|_| E::custom(format!("{n} layers is more than any model has")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<GpuLayers, E> {
                u64::try_from(n)
                    .map_err(|_| {
                        E::custom(format!(
                            r#"{n} is not a layer count; use "all" for every layer"#
                        ))
                    })
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GpuLayers, E> {
                match v {
                    "all" => Ok(GpuLayers::All),
                    _ => Err(E::custom(format!(
                        r#"`{v}` is not a layer count; expected a number or "all""#
                    ))),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

impl schemars::JsonSchema for GpuLayers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GpuLayers".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A layer count (0 = CPU only) or \"all\".",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "const": "all" }
            ]
        })
    }
}

/// Where a record field comes from: a JSONL key / CSV column name, or a 0-based CSV column index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum FieldRef {
    /// Column index (CSV without header).
    Index(usize),
    /// Key or column name.
    Name(String),
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldRef::Index(i) => write!(f, "column {i}"),
            FieldRef::Name(n) => write!(f, "`{n}`"),
        }
    }
}

/// Choices live either in one field holding a list, or in several columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ChoicesRef {
    /// One column per option (CSV), in order A, B, C, ...
    Columns(Vec<FieldRef>),
    /// One field holding a JSON list of options.
    Field(FieldRef),
}

/// `fields = { ... }`: the mapping from dataset columns to query parts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// Query id. Default: `id` when present, else the row number.
    #[serde(default)]
    pub id: Option<FieldRef>,
    /// The question text. Default `question`, then `prompt`.
    #[serde(default)]
    pub prompt: Option<FieldRef>,
    /// Reference answer; a JSON list means several acceptable answers. Default `answer`.
    #[serde(default)]
    pub answer: Option<FieldRef>,
    /// Multiple-choice options.
    #[serde(default)]
    pub choices: Option<ChoicesRef>,
    /// Subject label for per-domain breakdowns.
    #[serde(default)]
    pub subject: Option<FieldRef>,
    /// Category of the subject (a coarser label, e.g. SuperGPQA's discipline); an entry in
    /// `categories` for the subject wins.
    #[serde(default)]
    pub category: Option<FieldRef>,
}

/// A JSON Schema (draft 2020-12) of the experiment file, derived from the types that read it,
/// so editors (Taplo, Even Better TOML, VS Code) validate and complete experiment files with
/// the same fields, defaults and documentation ipw itself uses.
pub fn experiment_schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Experiment)).expect("a schema serialises");
    schema["title"] = "ipw experiment".into();
    schema
}

/// Everything `ipw validate` and `ipw profile` need from one experiment file (read by
/// [`read_experiment`]; `ipw_core::run::load_experiment` also checks the datasets and graders it
/// names).
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    /// The file it came from.
    pub file: PathBuf,
    /// Its raw text (for error locations and hashing).
    pub source: String,
    /// The parsed experiment, with paths resolved.
    pub experiment: Experiment,
}

impl LoadedExperiment {
    /// The directory relative paths in the experiment are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// A file the experiment names (`~` and `${VAR}` expanded, relative to [`Self::base_dir`]),
    /// if it exists; else why not, saying what kind of file (`what`) was looked for where.
    pub fn existing_file(&self, raw: &Path, what: &str) -> Result<PathBuf, String> {
        load::existing_file(self.base_dir(), raw, what)
    }

    /// An error pointing at `span` in this file, about `field`.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(&self.file, &self.source, span, field, message)
    }
}
