//! `includes`: a reference answer appears in the response as whole words (both normalised,
//! see `exact`): "Rome" is in "It is Rome." but not in "Romeo".

use ipw_guest::{export_grader, Grade, Grader, Params, Query};
use textops::{contains_phrase, Normalize};

struct Includes;

impl Grader for Includes {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let norm = Normalize::from_params(&params);
        let got = norm.apply(&response);
        let hit = query.answers.iter().map(|a| norm.apply(a)).find(|a| contains_phrase(&got, a));
        Ok(Grade::scored(if hit.is_some() { 1.0 } else { 0.0 }, hit))
    }
}

export_grader!(Includes);
