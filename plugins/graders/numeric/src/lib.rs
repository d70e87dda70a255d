//! `numeric`: the final number of the response (`#### N`, `\boxed{N}`, "the answer is N", else
//! the last number; `$`, `,`, `%` and trailing units stripped) equals a reference within
//! `abs_tol` (default 1e-6) or `rel_tol` (default 0).

use ipw_guest::{export_grader, Grade, Grader, Params, Query};

struct Numeric;

impl Grader for Numeric {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let tol = |k: &str, d: f64| params.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
        let (abs_tol, rel_tol) = (tol("abs_tol", 1e-6), tol("rel_tol", 0.0));
        let refs: Vec<f64> = query.answers.iter().filter_map(|a| textops::parse_number(a)).collect();
        if refs.is_empty() {
            return Err(format!("query {}: no numeric reference answer", query.id));
        }
        let Some((value, _)) = textops::final_number(&response) else {
            return Ok(Grade::unparsed("no number in the response"));
        };
        let hit = refs.iter().any(|&r| textops::close(value, r, abs_tol, rel_tol));
        Ok(Grade::scored(if hit { 1.0 } else { 0.0 }, Some(format_number(value))))
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

export_grader!(Numeric);
