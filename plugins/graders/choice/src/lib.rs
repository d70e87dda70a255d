//! `choice`: the letter of a multiple-choice response (last "Answer: X", bold, "(C)", "C)", a
//! lone letter, or the text of exactly one option) against the reference letter.
//! `parsed = false` when no letter can be found.

use ipw_guest::{export_grader, Grade, Grader, Params, Query};

struct Choice;

impl Grader for Choice {
    fn grade(query: Query, response: String, _params: Params) -> Result<Grade, String> {
        let want = query.answers.first().map(|a| a.trim().to_uppercase()).ok_or_else(|| format!("query {}: no reference letter", query.id))?;
        match textops::choice_letter(&response, &query.choices) {
            Some(c) => Ok(Grade::scored(if want == c.to_string() { 1.0 } else { 0.0 }, Some(c.to_string()))),
            None => Ok(Grade::unparsed("no option letter found")),
        }
    }
}

export_grader!(Choice);
