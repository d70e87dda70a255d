//! What one plugin call may use: fuel, wall-clock time, memory, and (for plugins given a judge)
//! the `judge` host call. Each is a separate knob with a safe default; each plugin kind has its
//! own defaults ([`Limits::default`] for graders, [`Limits::router`] for routers).

/// Per-call limits. The field names are the `[grading]` keys of an experiment (`fuel`,
/// `timeout_ms`, `memory_mib`, `judge_timeout_ms`, ...), so they stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Instruction budget per call (wasmtime fuel). Default 1e9.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Wall-clock limit per call, milliseconds, not counting time spent waiting for the
    /// judge. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Memory budget per instance, MiB: every linear memory plus every table element
    /// ([`super::TABLE_ELEMENT_BYTES`] each), together. Default 64.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock limit for one `judge` call, milliseconds; when it passes the guest gets an
    /// error back (`judge timed out after N ms`). Default 120000.
    #[serde(default = "default_judge_timeout_ms")]
    pub judge_timeout_ms: u64,
    /// `judge` calls one call may make; one more ends the call as an error. Default 4.
    #[serde(default = "default_judge_max_calls")]
    pub judge_max_calls: u32,
    /// Prompt bytes one call may send to the judge, all judge calls together; more ends the
    /// call as an error. Default 65536.
    #[serde(default = "default_judge_max_prompt_bytes")]
    pub judge_max_prompt_bytes: u64,
}

fn default_fuel() -> u64 {
    1_000_000_000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_memory_mib() -> u64 {
    64
}
fn default_judge_timeout_ms() -> u64 {
    120_000
}
fn default_judge_max_calls() -> u32 {
    4
}
fn default_judge_max_prompt_bytes() -> u64 {
    65_536
}

/// A router's default deadline, milliseconds. A routing decision is microseconds: the example
/// router makes 37.6k decisions/s on one thread, a fresh instance each (`ipw bench route
/// --wasm`, README), about 27 µs a decision. 50 ms leaves three orders of magnitude for a busy
/// machine's scheduling, while a router that sleeps or loops costs 50 ms a decision instead of
/// a grader's full second.
pub const ROUTER_TIMEOUT_MS: u64 = 50;
/// A router's default fuel: 1e7 instructions, a hundredth of a grader's. 27 µs a decision is
/// on the order of 1e5 instructions (an estimate from its time, not a fuel count), so a real
/// decision fits about a hundred times over, and a loop runs out in milliseconds.
pub const ROUTER_FUEL: u64 = 10_000_000;

impl Default for Limits {
    /// A grader's limits: a grade may parse a long response or wait on a judge.
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
            judge_timeout_ms: default_judge_timeout_ms(),
            judge_max_calls: default_judge_max_calls(),
            judge_max_prompt_bytes: default_judge_max_prompt_bytes(),
        }
    }
}

impl Limits {
    /// A router's limits: a decision is microseconds of arithmetic on a query's metadata, so
    /// the deadline and fuel are far tighter than a grader's. The memory budget is a grader's
    /// (memory costs no time), and routers have no judge, so the judge caps never apply.
    pub fn router() -> Self {
        Self {
            fuel: ROUTER_FUEL,
            timeout_ms: ROUTER_TIMEOUT_MS,
            ..Self::default()
        }
    }
}
