//! The ipw guest SDK: what a grader, router or classifier author depends on to build a `.wasm`
//! plugin that anyone can share and nobody has to trust. A component is one kind: a grader (the
//! default feature), a router (`default-features = false, features = ["router"]`, then
//! implement `Router` and call `export_router!`) or a classifier (`features = ["classifier"]`,
//! then implement `Classifier` and call `export_classifier!`).
//!
//! Implement [`Grader`] and call [`export_grader!`] once; build with
//! `cargo build --release --target wasm32-wasip2`. The WIT bindings stay private: authors see
//! plain Rust types ([`Query`], [`Grade`]) and the host functions [`log`], [`judge`] and
//! [`regex_captures`] (a pattern the host compiles once, where the plugin would compile it on
//! every call: each call gets a fresh instance).
//!
//! ```ignore
//! struct Exact;
//! impl ipw_guest::Grader for Exact {
//!     fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
//!         let ok = query.answers.iter().any(|a| a.trim() == response.trim());
//!         Ok(Grade::scored(if ok { 1.0 } else { 0.0 }, Some(response)))
//!     }
//! }
//! ipw_guest::export_grader!(Exact);
//! ```

#[cfg(any(
    all(feature = "grader", feature = "router"),
    all(feature = "grader", feature = "classifier"),
    all(feature = "router", feature = "classifier"),
))]
compile_error!(
    "ipw-guest: a component is a grader, a router or a classifier; enable one of the features"
);

#[cfg(feature = "router")]
mod router;
#[cfg(feature = "router")]
pub use router::*;

#[cfg(feature = "classifier")]
mod classifier;
#[cfg(feature = "classifier")]
pub use classifier::*;

#[cfg(feature = "grader")]
pub use grader::*;

pub use serde_json;

/// The version of the WIT package this SDK targets.
pub const WIT_VERSION: &str = "0.1.2";

/// The plugin's parameters: a JSON object from the experiment or command line (empty if none).
pub type Params = serde_json::Map<String, serde_json::Value>;

#[doc(hidden)]
pub fn __parse_params(params: &str) -> Result<Params, String> {
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("params must be a JSON object".into()),
        Err(e) => Err(format!("params are not JSON: {e}")),
    }
}

#[cfg(feature = "grader")]
mod grader {
use super::Params;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "grader",
        pub_export_macro: true,
        export_macro_name: "__export_grader_world",
        default_bindings_module: "ipw_guest::wit",
    });
}

pub use wit::ipw::plugins::types::{Grade, Level, Matches, Query, Span};

/// A grader: scores one response to one query.
pub trait Grader {
    /// Score `response`. `Err` is a grader failure (recorded as such), not a wrong answer.
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String>;
}

impl Grade {
    /// A scored verdict with what was extracted.
    pub fn scored(score: f64, extracted: Option<String>) -> Self {
        Grade { score: Some(score.clamp(0.0, 1.0)), parsed: true, extracted, explanation: None }
    }

    /// Nothing could be extracted: wrong (score 0) but counted as unparsed.
    pub fn unparsed(explanation: impl Into<String>) -> Self {
        Grade { score: Some(0.0), parsed: false, extracted: None, explanation: Some(explanation.into()) }
    }

    /// Leave the query unscored (neither right nor wrong), e.g. an unreadable judge reply.
    pub fn unscored(explanation: impl Into<String>) -> Self {
        Grade { score: None, parsed: false, extracted: None, explanation: Some(explanation.into()) }
    }

    /// Add an explanation.
    pub fn because(mut self, why: impl Into<String>) -> Self {
        self.explanation = Some(why.into());
        self
    }
}

/// Log through the host (tracing).
pub fn log(level: Level, message: &str) {
    wit::ipw::plugins::host::log(level, message)
}

/// Ask the host's judge model; the host makes the call.
pub fn judge(prompt: &str) -> Result<String, String> {
    wit::ipw::plugins::host::judge(prompt)
}

/// Search `text` with `pattern` (Rust `regex` syntax), compiled and kept by the host: each match
/// is its capture groups' byte spans in `text` (group 0 the whole match, `None` a group that
/// took no part). `Err` for an invalid or oversized pattern, a text over 1 MiB or more than
/// 4096 matches.
pub fn regex_captures(pattern: &str, text: &str, which: Matches) -> Result<Vec<Vec<Option<Span>>>, String> {
    wit::ipw::plugins::host::regex_captures(pattern, text, which)
}

/// Export a [`Grader`] implementation as this component's grader.
#[macro_export]
macro_rules! export_grader {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __IpwGraderExport;

        impl $crate::wit::Guest for __IpwGraderExport {
            fn grade(
                query: $crate::Query,
                response: ::std::string::String,
                params: ::std::string::String,
            ) -> ::std::result::Result<$crate::Grade, ::std::string::String> {
                let params = $crate::__parse_params(&params)?;
                <$ty as $crate::Grader>::grade(query, response, params)
            }
        }

        $crate::wit::__export_grader_world!(__IpwGraderExport);
    };
}
}
