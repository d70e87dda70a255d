//! `router-short-prompts`: short prompts go to the most frugal model, long ones to the
//! reference. "Short" is at most `max_tokens` prompt tokens (parameter, default 200; the prompt's
//! characters / 4 when no model counted its tokens); "frugal" is the lowest mean energy per
//! query over the runs (the fewest active parameters when no model has energy). The confidence
//! is how far the prompt is from the threshold.

use ipw_guest::{export_router, Candidate, Choice, Params, RouteQuery, Router};

struct ShortPrompts;

impl Router for ShortPrompts {
    fn route(query: RouteQuery, candidates: Vec<Candidate>, params: Params) -> Result<Choice, String> {
        let limit = match params.get("max_tokens") {
            None => 200.0,
            Some(v) => v.as_f64().filter(|v| *v >= 0.0).ok_or("max_tokens must be a number >= 0")?,
        };
        let reference = candidates
            .iter()
            .position(|c| c.reference)
            .ok_or("no reference among the candidates")?;
        let tokens = query
            .prompt_tokens
            .map(|t| t as f64)
            .unwrap_or(query.prompt.chars().count() as f64 / 4.0);
        let cost = |c: &Candidate| c.energy_j.or(c.active_params_b).unwrap_or(f64::INFINITY);
        let frugal = (0..candidates.len())
            .min_by(|&a, &b| cost(&candidates[a]).total_cmp(&cost(&candidates[b])))
            .unwrap_or(reference);
        let distance = ((tokens - limit).abs() / limit.max(1.0)).min(1.0);
        Ok(if tokens <= limit {
            Choice::model(frugal)
        } else {
            Choice::model(reference)
        }
        .with_confidence(distance))
    }
}

export_router!(ShortPrompts);
