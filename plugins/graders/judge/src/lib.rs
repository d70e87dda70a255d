//! `judge`: asks the host's judge model with a rubric and reads `GRADE: C|P|I` (correct 1,
//! partial 0.5, incorrect 0) from its reply. A reply without a grade leaves the query unscored,
//! not wrong. Params: `rubric` (instructions placed before the question; a default is
//! provided), or `template` (the whole judge prompt, with `{question}`, `{reference}`,
//! `{response}` and `{rubric}` filled in) for judges that follow instructions better at the end.

use ipw_guest::{export_grader, judge, Grade, Grader, Params, Query};

struct Judge;

const DEFAULT_RUBRIC: &str = "You are grading an answer to a question. Compare the response with the reference answer. \
Reply with one line: GRADE: C if the response is correct, GRADE: P if partially correct, GRADE: I if incorrect.";

const DEFAULT_TEMPLATE: &str =
    "{rubric}\n\nQuestion:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n";

/// The last `GRADE: X` in the reply.
fn parse(reply: &str) -> Option<(f64, char)> {
    let upper = reply.to_uppercase();
    let pos = upper.rfind("GRADE")?;
    let rest = upper[pos + 5..].trim_start_matches([':', ' ', '*', '=', '"', '\'']);
    match rest.chars().next()? {
        'C' => Some((1.0, 'C')),
        'P' => Some((0.5, 'P')),
        'I' => Some((0.0, 'I')),
        _ => None,
    }
}

fn text_param<'a>(params: &'a Params, key: &str, default: &'a str) -> Result<&'a str, String> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v.as_str().ok_or_else(|| format!("`{key}` must be a string")),
    }
}

impl Grader for Judge {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let rubric = text_param(&params, "rubric", DEFAULT_RUBRIC)?;
        let template = text_param(&params, "template", DEFAULT_TEMPLATE)?;
        // {response} last: a response that itself contains "{rubric}" must stay as written.
        let prompt = template
            .replace("{rubric}", rubric)
            .replace("{question}", &query.prompt)
            .replace("{reference}", &query.answers.join(" | "))
            .replace("{response}", &response);
        let reply = judge(&prompt)?;
        Ok(match parse(&reply) {
            Some((score, letter)) => Grade {
                score: Some(score),
                parsed: true,
                extracted: Some(letter.to_string()),
                explanation: Some(reply),
            },
            None => Grade::unscored(format!(
                "judge reply has no GRADE: {}",
                reply.chars().take(200).collect::<String>()
            )),
        })
    }
}

export_grader!(Judge);
