//! Classifiers as WASM components of the `classifier` world (`sdk/wit`): loaded through the
//! sandbox ([`crate::sandbox`]) and called a batch at a time in a fresh instance, under a
//! grader's limits times the batch's size. A batch that fails as a whole (a trap, a limit) is
//! tried again one query at a time, so one hostile input costs only its own label.

use super::taxonomy::Taxonomy;
use crate::sandbox::{cut, CallState, Host, JudgeFn, Limits, Sandbox, SandboxError};
use wasmtime::component::HasSelf;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "classifier",
        exports: { default: async },
        // What the host lends (log, judge, regex) is the sandbox's, for every plugin kind.
        with: {
            "ipw:plugins/types": crate::sandbox::host_calls::bindings::ipw::plugins::types,
            "ipw:plugins/host": crate::sandbox::host_calls::bindings::ipw::plugins::host,
        },
    });
}

pub use bindings::ipw::plugins::classifying::ClassifyQuery;
use bindings::ipw::plugins::classifying::Label;

impl bindings::ipw::plugins::classifying::Host for CallState {}

/// What a classifier said about one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// A code of the taxonomy (checked by the host); `None` = unlabelled.
    pub label: Option<String>,
    /// In [0, 1], if given.
    pub confidence: Option<f64>,
    /// Why, for humans.
    pub explanation: Option<String>,
}

/// A loaded classifier, ready to call from any thread.
#[derive(Clone)]
pub struct WasmClassifier {
    /// Classifier id (built-in name or file name).
    pub id: String,
    /// sha256 of the component bytes.
    pub sha256: String,
    pre: bindings::ClassifierPre<CallState>,
    sandbox: Sandbox,
}

impl WasmClassifier {
    /// Load a classifier from component bytes through `host` under `limits` (one query's; a
    /// batch gets them times its size). `judge` backs the `judge` host call.
    pub fn load(
        host: &Host,
        id: &str,
        bytes: &[u8],
        limits: Limits,
        judge: Option<JudgeFn>,
    ) -> Result<Self, SandboxError> {
        let loaded = host.load("classifier", id, bytes, limits, judge, |linker| {
            bindings::Classifier::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        })?;
        let pre = bindings::ClassifierPre::new(loaded.pre).map_err(|e| SandboxError::Load {
            kind: "classifier",
            id: id.into(),
            message: format!("does not export `classify`: {e:#}"),
        })?;
        Ok(Self {
            id: id.into(),
            sha256: loaded.sha256,
            pre,
            sandbox: loaded.sandbox,
        })
    }

    /// Sandboxed calls made so far (a batch is one; a failed batch's retries one each).
    pub fn calls(&self) -> u64 {
        self.sandbox.calls()
    }

    /// Classify `queries` into `taxonomy` with `params` (a JSON object's text): one result per
    /// query, in order. Blocking: call it from a thread where blocking is fine.
    pub fn classify(
        &self,
        queries: &[ClassifyQuery],
        taxonomy: &Taxonomy,
        params: &str,
    ) -> Vec<Result<Verdict, String>> {
        let labels: Vec<Label> = taxonomy
            .labels
            .iter()
            .map(|l| Label {
                code: l.code.clone(),
                title: l.title.clone(),
                description: l.description.clone(),
            })
            .collect();
        match self.call(queries, &labels, params) {
            Ok(results) => results
                .into_iter()
                .map(|r| r.and_then(|v| checked(v, taxonomy)))
                .collect(),
            // A batch of one has nothing to split; a larger one is tried query by query.
            Err(e) if queries.len() <= 1 => vec![Err(e.to_string()); queries.len()],
            Err(_) => queries
                .iter()
                .flat_map(|q| self.classify(std::slice::from_ref(q), taxonomy, params))
                .collect(),
        }
    }

    fn call(
        &self,
        queries: &[ClassifyQuery],
        labels: &[Label],
        params: &str,
    ) -> Result<Vec<Result<Verdict, String>>, SandboxError> {
        let pre = &self.pre;
        let results = self.sandbox.run_batch(queries.len(), async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_classify(store, queries, labels, params).await
        })?;
        if results.len() != queries.len() {
            return Err(SandboxError::Call(format!(
                "classifier returned {} results for {} queries",
                results.len(),
                queries.len()
            )));
        }
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(v) => Ok(Verdict {
                    label: v.label,
                    confidence: v.confidence,
                    explanation: cut(v.explanation),
                }),
                Err(message) => Err(format!(
                    "classifier error: {}",
                    cut(Some(message)).unwrap_or_default()
                )),
            })
            .collect())
    }
}

/// A verdict naming a label the taxonomy lacks, or a confidence outside [0, 1], is the
/// classifier's error, not a label.
fn checked(v: Verdict, taxonomy: &Taxonomy) -> Result<Verdict, String> {
    if let Some(label) = &v.label {
        if taxonomy.index(label).is_none() {
            let shown: String = label.chars().take(64).collect();
            return Err(format!(
                "the classifier gave label `{shown}`, which is not in taxonomy {}",
                taxonomy.name
            ));
        }
    }
    match v.confidence {
        Some(c) if !(0.0..=1.0).contains(&c) || c.is_nan() => Err(format!(
            "the classifier gave confidence {c}, outside [0, 1]"
        )),
        _ => Ok(v),
    }
}
