//! Classifiers: place a query in one label of a taxonomy (its domain).

use super::Params;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "classifier",
        pub_export_macro: true,
        export_macro_name: "__export_classifier_world",
        default_bindings_module: "ipw_guest::wit",
    });
}

pub use wit::ipw::plugins::classifying::{ClassifyQuery, Label, Verdict};
pub use wit::ipw::plugins::types::{Level, Matches, Span};

/// A classifier: names the label of `taxonomy` a query belongs to. It sees the query's text and
/// where it comes from, never a response or a grade. The host calls it with a batch of
/// queries; [`Classifier::setup`] runs once per batch, [`Classifier::classify`] once per query.
pub trait Classifier {
    /// What one batch shares: tables read from the params or the classifier's own data, built
    /// once per batch rather than once per query. `Err` fails every query of the batch.
    type Setup;

    /// Prepare for a batch classified into `taxonomy` with `params`.
    fn setup(taxonomy: &[Label], params: Params) -> Result<Self::Setup, String>;

    /// Classify one query. `Err` is a failure for this query (recorded as such), not a label;
    /// a query the classifier cannot place is `Ok(Verdict::unlabelled(..))`.
    fn classify(setup: &Self::Setup, taxonomy: &[Label], query: ClassifyQuery) -> Result<Verdict, String>;
}

impl Verdict {
    /// The label with code `code`, no confidence figure.
    pub fn label(code: impl Into<String>) -> Self {
        Verdict { label: Some(code.into()), confidence: None, explanation: None }
    }

    /// No label: the query stays unlabelled, with why.
    pub fn unlabelled(why: impl Into<String>) -> Self {
        Verdict { label: None, confidence: None, explanation: Some(why.into()) }
    }

    /// Add a confidence in [0, 1].
    pub fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = Some(confidence.clamp(0.0, 1.0));
        self
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

/// Ask the host's judge model; the host makes the call (and may answer a prompt it has seen
/// before from its cache).
pub fn judge(prompt: &str) -> Result<String, String> {
    wit::ipw::plugins::host::judge(prompt)
}

/// Search `text` with `pattern`, compiled and kept by the host (see the grader SDK's
/// `regex_captures`).
pub fn regex_captures(pattern: &str, text: &str, which: Matches) -> Result<Vec<Vec<Option<Span>>>, String> {
    wit::ipw::plugins::host::regex_captures(pattern, text, which)
}

#[doc(hidden)]
pub fn __classify_batch<C: Classifier>(
    queries: Vec<ClassifyQuery>,
    taxonomy: Vec<Label>,
    params: String,
) -> Vec<Result<Verdict, String>> {
    let setup = super::__parse_params(&params).and_then(|p| C::setup(&taxonomy, p));
    match setup {
        Ok(setup) => queries.into_iter().map(|q| C::classify(&setup, &taxonomy, q)).collect(),
        Err(e) => queries.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// Export a [`Classifier`] implementation as this component's classifier.
#[macro_export]
macro_rules! export_classifier {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __IpwClassifierExport;

        impl $crate::wit::Guest for __IpwClassifierExport {
            fn classify(
                queries: ::std::vec::Vec<$crate::ClassifyQuery>,
                taxonomy: ::std::vec::Vec<$crate::Label>,
                params: ::std::string::String,
            ) -> ::std::vec::Vec<::std::result::Result<$crate::Verdict, ::std::string::String>> {
                $crate::__classify_batch::<$ty>(queries, taxonomy, params)
            }
        }

        $crate::wit::__export_classifier_world!(__IpwClassifierExport);
    };
}
