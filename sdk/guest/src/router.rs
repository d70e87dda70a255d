//! Routers: pick the model that answers a query.

use super::Params;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "__export_router_world",
        default_bindings_module: "ipw_guest::wit",
    });
}

pub use wit::ipw::plugins::routing::{Candidate, Choice, RouteQuery};
pub use wit::ipw::plugins::types::{Level, Matches, Span};

/// A router: decides which candidate answers a query. It sees the query and every candidate's
/// metadata and aggregates over the runs, never a candidate's outcome on this query.
pub trait Router {
    /// Choose a candidate. `Err` is a routing error for this query (it goes to the reference).
    fn route(query: RouteQuery, candidates: Vec<Candidate>, params: Params) -> Result<Choice, String>;
}

impl Choice {
    /// Candidate `index`, with no confidence figure.
    pub fn model(index: usize) -> Self {
        Choice { model: index as u32, confidence: None }
    }

    /// Add a confidence in [0, 1].
    pub fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = Some(confidence.clamp(0.0, 1.0));
        self
    }
}

/// Log through the host (tracing).
pub fn log(level: Level, message: &str) {
    wit::ipw::plugins::host::log(level, message)
}

/// Search `text` with `pattern`, compiled and kept by the host (see the grader SDK's
/// `regex_captures`).
pub fn regex_captures(pattern: &str, text: &str, which: Matches) -> Result<Vec<Vec<Option<Span>>>, String> {
    wit::ipw::plugins::host::regex_captures(pattern, text, which)
}

/// Export a [`Router`] implementation as this component's router.
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __IpwRouterExport;

        impl $crate::wit::Guest for __IpwRouterExport {
            fn route(
                query: $crate::RouteQuery,
                candidates: ::std::vec::Vec<$crate::Candidate>,
                params: ::std::string::String,
            ) -> ::std::result::Result<$crate::Choice, ::std::string::String> {
                let params = $crate::__parse_params(&params)?;
                <$ty as $crate::Router>::route(query, candidates, params)
            }
        }

        $crate::wit::__export_router_world!(__IpwRouterExport);
    };
}
