//! `concise`: a response is right when it names a reference answer *and* says it briefly.
//!
//! A scoring rule a team might share: small models often bury a right answer in a page of
//! text, which costs energy for nothing. Score 1 when a reference answer appears as whole
//! words (case-insensitive) within at most `max_words` words (param, default 30); 0 otherwise.
//! `parsed` says whether a reference answer appeared at all, so "right but rambling" shows up
//! as parsed with score 0.

use ipw_guest::{export_grader, log, Grade, Grader, Level, Params, Query};

struct Concise;

/// Lower-cased words (letters and digits), so "Paris." and "paris" compare equal.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Whether `needle` occurs in `hay` as a run of whole words.
fn contains_words(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

impl Grader for Concise {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let max_words = match params.get("max_words") {
            None => 30,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("max_words must be a positive integer, got {v}"))?,
        };
        let said = words(&response);
        let found = query
            .answers
            .iter()
            .find(|a| contains_words(&said, &words(a)));
        let Some(answer) = found else {
            return Ok(Grade::unparsed("no reference answer in the response"));
        };
        let brief = said.len() as u64 <= max_words;
        if !brief {
            log(Level::Debug, &format!("{}: right but {} words", query.id, said.len()));
        }
        Ok(Grade::scored(if brief { 1.0 } else { 0.0 }, Some(answer.clone()))
            .because(format!("{} words (limit {max_words})", said.len())))
    }
}

export_grader!(Concise);
