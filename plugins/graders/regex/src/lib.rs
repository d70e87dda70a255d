//! `regex`: extract with `pattern` (required) and capture `group` (default 1, or 0 when the
//! pattern has no group); the last match counts; compare normalised (see `exact`) with the
//! references. `parsed = false` when the pattern does not match. The host compiles the pattern
//! (once, not per call) and searches; the grader only picks the group and compares.

use ipw_guest::{export_grader, regex_captures, Grade, Grader, Matches, Params, Query};
use textops::Normalize;

struct Regex;

impl Grader for Regex {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let pattern = params.get("pattern").and_then(|v| v.as_str()).ok_or("regex grader needs params.pattern")?;
        let last = regex_captures(pattern, &response, Matches::Last)?.pop();
        let Some(groups) = last else {
            return Ok(Grade::unparsed("pattern did not match"));
        };
        let group = params.get("group").and_then(|v| v.as_u64()).map(|g| g as usize).unwrap_or(if groups.len() > 1 { 1 } else { 0 });
        let Some(Some(span)) = groups.get(group) else {
            return Ok(Grade::unparsed(format!("group {group} did not participate in the match")));
        };
        let Some(text) = response.get(span.start as usize..span.end as usize) else {
            return Err(format!("host returned span {}..{} outside the response", span.start, span.end));
        };
        let norm = Normalize::from_params(&params);
        let got = norm.apply(text);
        let hit = query.answers.iter().any(|a| norm.apply(a) == got);
        Ok(Grade::scored(if hit { 1.0 } else { 0.0 }, Some(got)))
    }
}

export_grader!(Regex);
