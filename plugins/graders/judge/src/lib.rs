//! `judge`: asks the host's judge model with a rubric and reads `GRADE: C|P|I` (correct 1,
//! partial 0.5, incorrect 0) from its reply. A reply without a grade leaves the query unscored,
//! not wrong. Params: `rubric` (instructions placed before the question; a default is
//! provided), or `template` (the whole judge prompt, with `{question}`, `{reference}`,
//! `{response}` and `{rubric}` filled in) for judges that follow instructions better at the end.
//! Small judges do best with a template that ends in `GRADE:`; a reply that then opens with
//! the bare letter is read too.

use ipw_guest::{export_grader, judge, Grade, Grader, Params, Query};

struct Judge;

const DEFAULT_RUBRIC: &str = "You are grading an answer to a question. Compare the response with the reference answer. \
Reply with one line: GRADE: C if the response is correct, GRADE: P if partially correct, GRADE: I if incorrect.";

const DEFAULT_TEMPLATE: &str =
    "{rubric}\n\nQuestion:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n";

fn letter(c: char) -> Option<(f64, char)> {
    match c {
        'C' => Some((1.0, 'C')),
        'P' => Some((0.5, 'P')),
        'I' => Some((0.0, 'I')),
        _ => None,
    }
}

/// The grade in a reply: the last `GRADE: X`; or, when the prompt itself ends with `GRADE:`
/// (a prompt that hands the judge the start of its line), a reply that opens with the letter
/// alone (`C`, `I.`, `P - partly`).
fn parse(reply: &str, prompt: &str) -> Option<(f64, char)> {
    if let Some(found) = last_grade(reply) {
        return Some(found);
    }
    if !prompt.trim_end().to_uppercase().ends_with("GRADE:") {
        return None;
    }
    let line = reply.trim_start().lines().next()?.trim_end();
    let mut chars = line.trim_start_matches(['*', '"', '\'']).chars();
    let first = letter(chars.next()?.to_ascii_uppercase())?;
    // Only the letter, or the letter and punctuation: "Correct" and "I think" are words.
    match chars.next() {
        None => Some(first),
        Some(c) if ".,:;)-!*\"'".contains(c) => Some(first),
        Some(_) => None,
    }
}

/// The last `GRADE: X` in the reply.
fn last_grade(reply: &str) -> Option<(f64, char)> {
    let upper = reply.to_uppercase();
    let pos = upper.rfind("GRADE")?;
    let rest = upper[pos + 5..].trim_start_matches([':', ' ', '*', '=', '"', '\'']);
    letter(rest.chars().next()?)
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
        Ok(match parse(&reply, &prompt) {
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
