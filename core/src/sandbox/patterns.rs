//! Regular expressions the host compiles and keeps for plugins (`host.regex-captures`).
//!
//! A plugin gets a fresh instance per call, so a pattern it compiled itself would be compiled
//! again for every grade: with the `regex` crate inside the guest that was most of a regex
//! grade's cost (5.8k grades/s against 50k+ for the other built-ins). The host compiles each
//! pattern once, with Rust's `regex` (linear-time matching, so no pattern or text can make a
//! search explode), under size limits, and shares it across calls, plugins and threads.
//!
//! What a plugin can ask for is bounded: pattern length, compiled size, text length and the
//! number of matches returned, and the cache holds a fixed number of patterns (past that, a
//! new pattern is compiled per call and not kept: a plugin cannot grow host memory).

use regex::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Longest pattern accepted, bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Longest text searched, bytes (a model's response is far shorter).
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Most matches one call returns.
pub const MAX_MATCHES: usize = 4096;
/// Patterns kept compiled.
const MAX_CACHED: usize = 256;
/// The compiled program's size limit (the `regex` crate's own default is 10 MiB).
const COMPILED_BYTES: usize = 1 << 20;
/// The lazy DFA's cache per search thread.
const DFA_BYTES: usize = 2 << 20;

/// Which matches a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The leftmost.
    First,
    /// The last.
    Last,
    /// All, left to right, up to [`MAX_MATCHES`].
    All,
}

/// One match: each capture group's byte range (group 0 the whole match), `None` for a group
/// that took no part.
pub type Groups = Vec<Option<(u32, u32)>>;

/// Compiled patterns by source text (compile errors are kept too, so a bad pattern costs one
/// compilation, not one per call).
#[derive(Default)]
pub(crate) struct PatternCache {
    /// Behind an `Arc`, never cloned: a cloned `Regex` starts a fresh pool of search caches,
    /// so its lazy DFA would be rebuilt on every call (that halved the grader's rate).
    compiled: Mutex<HashMap<String, Result<Arc<Regex>, String>>>,
}

impl PatternCache {
    fn compile(pattern: &str) -> Result<Arc<Regex>, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern is {} bytes; the host accepts at most {MAX_PATTERN_BYTES}",
                pattern.len()
            ));
        }
        RegexBuilder::new(pattern)
            .size_limit(COMPILED_BYTES)
            .dfa_size_limit(DFA_BYTES)
            .build()
            .map(Arc::new)
            .map_err(|e| format!("bad pattern: {e}"))
    }

    /// The compiled `pattern`.
    pub(crate) fn get(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = compiled.get(pattern) {
            return r.clone();
        }
        let r = Self::compile(pattern);
        if compiled.len() < MAX_CACHED {
            compiled.insert(pattern.to_owned(), r.clone());
        }
        r
    }

    /// Search `text` with `pattern`.
    pub(crate) fn captures(
        &self,
        pattern: &str,
        text: &str,
        which: Which,
    ) -> Result<Vec<Groups>, String> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "text is {} bytes; the host searches at most {MAX_TEXT_BYTES}",
                text.len()
            ));
        }
        let re = self.get(pattern)?;
        // Offsets fit in u32: the text is at most 1 MiB.
        let groups = |c: regex::Captures<'_>| -> Groups {
            c.iter()
                .map(|m| m.map(|m| (m.start() as u32, m.end() as u32)))
                .collect()
        };
        Ok(match which {
            Which::First => re.captures(text).map(groups).into_iter().collect(),
            Which::Last => re
                .captures_iter(text)
                .last()
                .map(groups)
                .into_iter()
                .collect(),
            Which::All => {
                let all: Vec<Groups> = re
                    .captures_iter(text)
                    .take(MAX_MATCHES + 1)
                    .map(groups)
                    .collect();
                if all.len() > MAX_MATCHES {
                    return Err(format!(
                        "more than {MAX_MATCHES} matches; ask for the first or the last"
                    ));
                }
                all
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_last_and_all_give_group_spans() {
        let c = PatternCache::default();
        let t = "a=1 b= c=3";
        let all = c.captures(r"(\w)=(\d)?", t, Which::All).unwrap();
        assert_eq!(
            all,
            vec![
                vec![Some((0, 3)), Some((0, 1)), Some((2, 3))],
                vec![Some((4, 6)), Some((4, 5)), None],
                vec![Some((7, 10)), Some((7, 8)), Some((9, 10))],
            ]
        );
        assert_eq!(
            c.captures(r"(\w)=(\d)?", t, Which::First).unwrap(),
            all[..1]
        );
        assert_eq!(c.captures(r"(\w)=(\d)?", t, Which::Last).unwrap(), all[2..]);
        assert!(c.captures("z", t, Which::Last).unwrap().is_empty());
    }

    #[test]
    fn every_bound_is_an_error_that_says_which() {
        let c = PatternCache::default();
        let e = c.captures("(", "x", Which::First).unwrap_err();
        assert!(e.starts_with("bad pattern"), "{e}");
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(c.get(&long).unwrap_err().contains("at most 4096"));
        // Compiles to far more than the 1 MiB program limit.
        let e = c.get(r"\w{1000}\w{1000}").unwrap_err();
        assert!(e.contains("size limit") || e.contains("exceeds"), "{e}");
        let text = "a".repeat(MAX_TEXT_BYTES + 1);
        assert!(c
            .captures("a", &text, Which::First)
            .unwrap_err()
            .contains("at most 1048576"));
        let many = "a".repeat(MAX_MATCHES + 1);
        assert!(c
            .captures("a", &many, Which::All)
            .unwrap_err()
            .contains("more than 4096"));
        assert_eq!(
            c.captures("a", &many[1..], Which::All).unwrap().len(),
            MAX_MATCHES
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = PatternCache::default();
        for i in 0..MAX_CACHED + 10 {
            c.get(&format!("x{i}")).unwrap();
        }
        assert_eq!(c.compiled.lock().unwrap().len(), MAX_CACHED);
        // Past the bound a pattern still works, compiled per call.
        assert!(c.get("y").unwrap().is_match("y"));
    }
}
