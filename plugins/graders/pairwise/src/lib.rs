//! `pairwise`: asks the host's judge model whether the model's response or a reference model's
//! response to the same query is better, once in each order, and scores the model by its mean
//! result (win 1, tie 0.5, loss 0). For open-ended queries with no gold answer; `ipw grade RUN
//! --grader pairwise --against REFRUN` puts the reference model's response in
//! `query.answers[0]`. Asking in both orders cancels a judge's position bias: a judge that always
//! prefers the first response scores every model 0.5. A reply without a readable `VERDICT: A|B|TIE`
//! in either order leaves the query unscored, naming that order. Params: `template` (the whole
//! judge prompt, with `{question}`, `{a}` and `{b}` filled in; the default is [`DEFAULT_TEMPLATE`]);
//! `against` and `against_model` (the reference run and its model, set by `ipw grade`; named in
//! the explanation). A template ending in `VERDICT:` also accepts a reply that opens with the bare
//! verdict.

use ipw_guest::{export_grader, judge, Grade, Grader, Params, Query};

struct Pairwise;

/// The judge prompt unless params give a `template`. Ends with the verdict line's own start,
/// which small judges complete more reliably than they follow an instruction placed earlier.
pub const DEFAULT_TEMPLATE: &str = "You are comparing two responses to the same user request. \
Decide which response answers the request better: more helpful, correct and relevant. \
Judge the content only; the order of the responses and their length do not matter.\n\n\
[User request]\n{question}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n\
Reply with one line: VERDICT: A if response A is better, VERDICT: B if response B is better, \
VERDICT: TIE if they are equally good.\nVERDICT:";

/// What the judge said in one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The response shown as A is better.
    A,
    /// The response shown as B is better.
    B,
    /// Equally good.
    Tie,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::A => "A",
            Verdict::B => "B",
            Verdict::Tie => "TIE",
        }
    }

    /// The model's points when it was shown as `model_is_a` (A) or B.
    fn points(self, model_is_a: bool) -> f64 {
        match (self, model_is_a) {
            (Verdict::Tie, _) => 0.5,
            (Verdict::A, true) | (Verdict::B, false) => 1.0,
            _ => 0.0,
        }
    }
}

/// The verdict word at the start of `text` (`A`, `B` or `TIE`, upper case, as a whole word).
fn word_at(text: &str) -> Option<Verdict> {
    let word: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    match word.as_str() {
        "A" => Some(Verdict::A),
        "B" => Some(Verdict::B),
        "TIE" => Some(Verdict::Tie),
        _ => None,
    }
}

/// The verdict in a reply: the last `VERDICT: X`; or, when the prompt itself ends with
/// `VERDICT:`, a reply whose first line is the verdict alone (`A`, `tie.`, `**B**`).
pub fn parse(reply: &str, prompt: &str) -> Option<Verdict> {
    let upper = reply.to_uppercase();
    if let Some(pos) = upper.rfind("VERDICT") {
        let rest =
            upper[pos + "VERDICT".len()..].trim_start_matches([':', ' ', '*', '=', '"', '\'']);
        if let Some(v) = word_at(rest) {
            return Some(v);
        }
    }
    if !prompt.trim_end().to_uppercase().ends_with("VERDICT:") {
        return None;
    }
    let line = upper.trim_start().lines().next()?.trim();
    let rest = line.trim_start_matches(['*', '"', '\'', '[']);
    let v = word_at(rest)?;
    // Only the verdict and punctuation: "A is better" reads as a sentence, not a verdict line.
    let after = rest[v.word().len()..].trim();
    after
        .chars()
        .all(|c| ".,:;)]!*\"'".contains(c))
        .then_some(v)
}

/// `template` with `{question}`, `{a}` and `{b}` filled in, in one pass: a response that itself
/// contains `{b}` stays as written.
pub fn fill(template: &str, question: &str, a: &str, b: &str) -> String {
    let mut out = String::with_capacity(template.len() + question.len() + a.len() + b.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let (value, len) = if tail.starts_with("{question}") {
            (question, "{question}".len())
        } else if tail.starts_with("{a}") {
            (a, 3)
        } else if tail.starts_with("{b}") {
            (b, 3)
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

fn text_param<'a>(params: &'a Params, key: &str) -> Result<Option<&'a str>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a string")),
    }
}

/// One order's outcome: the verdict, or why the reply could not be read.
fn ask(
    template: &str,
    question: &str,
    a: &str,
    b: &str,
) -> Result<Result<Verdict, String>, String> {
    let prompt = fill(template, question, a, b);
    let reply = judge(&prompt)?;
    Ok(parse(&reply, &prompt).ok_or_else(|| {
        format!(
            "judge reply has no VERDICT: {}",
            reply.chars().take(200).collect::<String>()
        )
    }))
}

impl Grader for Pairwise {
    fn grade(query: Query, response: String, params: Params) -> Result<Grade, String> {
        let template = text_param(&params, "template")?.unwrap_or(DEFAULT_TEMPLATE);
        let against = match text_param(&params, "against_model")? {
            Some(m) => format!(" `{m}`"),
            None => String::new(),
        };
        let Some(reference) = query.answers.first() else {
            return Err(
                "pairwise needs the reference model's response in answers[0]: \
                        grade with `ipw grade RUN --grader pairwise --against REFRUN`"
                    .into(),
            );
        };
        // Both orders are always asked, so every graded query costs the same two calls and an
        // unreadable first reply still shows what the second order said.
        let model_first = ask(template, &query.prompt, &response, reference)?;
        let reference_first = ask(template, &query.prompt, reference, &response)?;
        let shown = |v: &Result<Verdict, String>| match v {
            Ok(v) => v.word(),
            Err(_) => "?",
        };
        let extracted = format!(
            "model-first: {}, reference-first: {}",
            shown(&model_first),
            shown(&reference_first)
        );
        let (first, second) = match (&model_first, &reference_first) {
            (Ok(first), Ok(second)) => (*first, *second),
            _ => {
                let mut why = Vec::new();
                if let Err(e) = &model_first {
                    why.push(format!("model-first order (model as A): {e}"));
                }
                if let Err(e) = &reference_first {
                    why.push(format!("reference-first order (model as B): {e}"));
                }
                let mut g = Grade::unscored(why.join("; "));
                g.extracted = Some(extracted);
                return Ok(g);
            }
        };
        let (p1, p2) = (first.points(true), second.points(false));
        let score = (p1 + p2) / 2.0;
        Ok(Grade::scored(score, Some(extracted)).because(format!(
            "model vs reference{against}: model-first order {} (model {p1}), reference-first order {} (model {p2}); mean {score}",
            first.word(),
            second.word()
        )))
    }
}

export_grader!(Pairwise);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines_are_read_and_sentences_are_not() {
        let p = "... reply with VERDICT: A|B|TIE";
        assert_eq!(parse("Reasoning.\nVERDICT: B", p), Some(Verdict::B));
        assert_eq!(parse("verdict: tie", p), Some(Verdict::Tie));
        assert_eq!(parse("**VERDICT:** A", p), Some(Verdict::A));
        // The last verdict line wins; a word starting with a verdict letter is not one.
        assert_eq!(
            parse("VERDICT: A\nno wait, VERDICT: B", p),
            Some(Verdict::B)
        );
        assert_eq!(parse("VERDICT: Both are fine", p), None);
        assert_eq!(parse("A", p), None);
        // A prompt that ends with `VERDICT:` lets the reply open with the bare verdict.
        let open = DEFAULT_TEMPLATE;
        assert_eq!(parse(" A", open), Some(Verdict::A));
        assert_eq!(parse("tie.\nBoth fine.", open), Some(Verdict::Tie));
        assert_eq!(parse("A is better", open), None);
        assert_eq!(parse("Both are good", open), None);
    }

    #[test]
    fn placeholders_are_filled_once() {
        assert_eq!(
            fill("{question}|{a}|{b}|{x}", "q", "{b}", "B"),
            "q|{b}|B|{x}"
        );
    }

    #[test]
    fn points_follow_the_models_position() {
        assert_eq!(Verdict::A.points(true), 1.0);
        assert_eq!(Verdict::A.points(false), 0.0);
        assert_eq!(Verdict::B.points(false), 1.0);
        assert_eq!(Verdict::Tie.points(false), 0.5);
    }
}
