//! The built-in classifiers (`plugins/classifiers`), compiled to wasm32-wasip2 by the build
//! script and embedded here.

include!(concat!(env!("OUT_DIR"), "/builtin_classifiers.rs"));

/// The bytes of built-in classifier `name` (`keywords`, `mapping`, `judge`).
pub fn wasm(name: &str) -> Option<&'static [u8]> {
    BUILTIN_CLASSIFIERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, b, _)| *b)
}

/// Every built-in classifier with one line saying how it labels (its crate's doc comment).
pub fn describe() -> Vec<(&'static str, &'static str)> {
    BUILTIN_CLASSIFIERS
        .iter()
        .map(|(n, _, d)| (*n, *d))
        .collect()
}
