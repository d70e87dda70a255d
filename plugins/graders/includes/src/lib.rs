//! `includes`: a reference answer appears in the response (both normalised, see `exact`).

use ipw_guest::{export_grader, Grade, Grader, Params, Query};
use textops::Normalize;

struct Includes;

impl Grader for Includes {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let norm = Normalize::from_params(&params);
        let got = norm.apply(&response);
        let hit = query.answers.iter().map(|a| norm.apply(a)).find(|a| !a.is_empty() && got.contains(a.as_str()));
        Ok(Grade::scored(if hit.is_some() { 1.0 } else { 0.0 }, hit))
    }
}

export_grader!(Includes);
