//! `f1`: token F1 between the normalised response and each reference; the best one counts.

use ipw_guest::{export_grader, Grade, Grader, Params, Query};
use textops::{token_f1, Normalize};

struct F1;

impl Grader for F1 {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let norm = Normalize::from_params(&params);
        let got = norm.apply(&response);
        let best = query.answers.iter().map(|a| token_f1(&got, &norm.apply(a))).fold(0.0, f64::max);
        Ok(Grade::scored(best, Some(got)))
    }
}

export_grader!(F1);
