//! `exact`: the response equals a reference answer after normalisation. Params: `case`,
//! `punctuation`, `articles`, `whitespace` (booleans, default true = normalise).

use ipw_guest::{export_grader, Grade, Grader, Params, Query};
use textops::Normalize;

struct Exact;

impl Grader for Exact {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let norm = Normalize::from_params(&params);
        let got = norm.apply(&response);
        let hit = query.answers.iter().any(|a| norm.apply(a) == got);
        Ok(Grade::scored(if hit { 1.0 } else { 0.0 }, Some(got)))
    }
}

export_grader!(Exact);
