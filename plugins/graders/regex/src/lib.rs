//! `regex`: extract with `pattern` (required) and capture `group` (default 1, or 0 when the
//! pattern has no group); the last match counts; compare normalised (see `exact`) with the
//! references. `parsed = false` when the pattern does not match.

use ipw_guest::{export_grader, Grade, Grader, Params, Query};
use textops::Normalize;

struct Regex;

impl Grader for Regex {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let pattern = params.get("pattern").and_then(|v| v.as_str()).ok_or("regex grader needs params.pattern")?;
        let re = regex::Regex::new(pattern).map_err(|e| format!("bad pattern: {e}"))?;
        let group = params.get("group").and_then(|v| v.as_u64()).map(|g| g as usize).unwrap_or(if re.captures_len() > 1 { 1 } else { 0 });
        let Some(caps) = re.captures_iter(&response).last() else {
            return Ok(Grade::unparsed("pattern did not match"));
        };
        let Some(m) = caps.get(group) else {
            return Ok(Grade::unparsed(format!("group {group} did not participate in the match")));
        };
        let norm = Normalize::from_params(&params);
        let got = norm.apply(m.as_str());
        let hit = query.answers.iter().any(|a| norm.apply(a) == got);
        Ok(Grade::scored(if hit { 1.0 } else { 0.0 }, Some(got)))
    }
}

export_grader!(Regex);
