//! The built-in graders (`plugins/graders`), compiled to wasm32-wasip2 by the build script and
//! embedded here, so they need no extra step.

include!(concat!(env!("OUT_DIR"), "/builtin_graders.rs"));

/// The bytes of built-in grader `name` (`exact`, `choice`, `numeric`, `regex`, `includes`,
/// `f1`, `judge`, `pairwise`).
pub fn wasm(name: &str) -> Option<&'static [u8]> {
    BUILTIN_GRADERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, b, _)| *b)
}

/// Names of the built-in graders.
pub fn names() -> Vec<&'static str> {
    BUILTIN_GRADERS.iter().map(|(n, _, _)| *n).collect()
}

/// Every built-in grader with one line saying what it scores (from its crate's doc comment).
pub fn describe() -> Vec<(&'static str, &'static str)> {
    BUILTIN_GRADERS.iter().map(|(n, _, d)| (*n, *d)).collect()
}
