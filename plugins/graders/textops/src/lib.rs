//! Text normalisation and answer extraction shared by the built-in graders. Plain Rust, tested
//! natively (`cargo test -p textops`), compiled into each grader component.

use serde_json::{Map, Value};

/// Normalisation switches (all on by default): lower-case, strip punctuation, drop English
/// articles (a, an, the), collapse whitespace.
#[derive(Debug, Clone, Copy)]
pub struct Normalize {
    /// Fold case.
    pub case: bool,
    /// Remove punctuation.
    pub punctuation: bool,
    /// Remove a/an/the.
    pub articles: bool,
    /// Collapse whitespace.
    pub whitespace: bool,
}

impl Normalize {
    /// From grader params `case`, `punctuation`, `articles`, `whitespace` (booleans).
    pub fn from_params(p: &Map<String, Value>) -> Self {
        let flag = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(true);
        Self { case: flag("case"), punctuation: flag("punctuation"), articles: flag("articles"), whitespace: flag("whitespace") }
    }

    /// Apply to a string.
    pub fn apply(&self, s: &str) -> String {
        let mut t: String = if self.case { s.to_lowercase() } else { s.to_string() };
        if self.punctuation {
            t = t.chars().map(|c| if c.is_ascii_punctuation() || "“”‘’«»…".contains(c) { ' ' } else { c }).collect();
        }
        let words = t.split_whitespace().filter(|w| !(self.articles && ["a", "an", "the"].contains(&w.to_lowercase().as_str())));
        if self.whitespace {
            words.collect::<Vec<_>>().join(" ")
        } else {
            t.trim().to_string()
        }
    }
}

impl Default for Normalize {
    fn default() -> Self {
        Self { case: true, punctuation: true, articles: true, whitespace: true }
    }
}

/// Parse a number as written in an answer: `$1,234.50`, `45%`, `-3`, `1/2`, `12 apples`.
pub fn parse_number(s: &str) -> Option<f64> {
    let t: String = s.trim().trim_end_matches(['.', ',', ';', ':']).chars().filter(|c| !matches!(c, '$' | ',' | '€' | '£' | '%')).collect();
    let t = t.trim();
    let num_end = t.char_indices().find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || c == '/' || ((c == '-' || c == '+') && i == 0))).map(|(i, _)| i).unwrap_or(t.len());
    let head = &t[..num_end];
    if let Some((a, b)) = head.split_once('/') {
        let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
        return (b != 0.0).then(|| a / b);
    }
    head.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Every number-looking token in `text`, in order (commas inside numbers kept together).
pub fn numbers(text: &str) -> Vec<(usize, f64)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() || (b[i] == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || ((b[i] == b',' || b[i] == b'.' || b[i] == b'/') && i + 1 < b.len() && b[i + 1].is_ascii_digit())) {
            i += 1;
        }
        if let Some(v) = parse_number(&text[start..i]) {
            out.push((start, v));
        }
    }
    out
}

/// The final answer of a maths response: `#### N`, else `\boxed{N}`, else "answer is N", else
/// the last number in the text.
pub fn final_number(text: &str) -> Option<(f64, String)> {
    if let Some(pos) = text.rfind("####") {
        if let Some(&(_, v)) = numbers(&text[pos..]).first() {
            return Some((v, text[pos + 4..].trim().lines().next().unwrap_or("").to_string()));
        }
    }
    if let Some(pos) = text.rfind("\\boxed{") {
        let inner = &text[pos + 7..];
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        if let Some(&(_, v)) = numbers(inner).first() {
            return Some((v, inner.to_string()));
        }
    }
    let lower = text.to_lowercase();
    for cue in ["the answer is", "answer:", "final answer"] {
        if let Some(pos) = lower.rfind(cue) {
            if let Some(&(_, v)) = numbers(&text[pos + cue.len()..]).first() {
                return Some((v, format!("{v}")));
            }
        }
    }
    numbers(text).last().map(|&(_, v)| (v, format!("{v}")))
}

/// Whether `needle` occurs in `hay` as whole words: "rome" is in "in rome." but not in
/// "romeo".
pub fn contains_phrase(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    hay.match_indices(needle).any(|(i, m)| {
        !word(hay[..i].chars().next_back()) && !word(hay[i + m.len()..].chars().next())
    })
}

/// Whether two numbers agree within an absolute or relative tolerance.
pub fn close(a: f64, b: f64, abs_tol: f64, rel_tol: f64) -> bool {
    (a - b).abs() <= abs_tol.max(rel_tol * b.abs())
}

/// Token-level F1 between two normalised strings (SQuAD style).
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let p: Vec<&str> = prediction.split_whitespace().collect();
    let r: Vec<&str> = reference.split_whitespace().collect();
    if p.is_empty() || r.is_empty() {
        return if p.is_empty() && r.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts = std::collections::HashMap::new();
    for w in &r {
        *counts.entry(*w).or_insert(0i32) += 1;
    }
    let mut common = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The letter of a multiple-choice response, or `None` when none can be found. Tried in order:
/// the last explicit "answer is X" / "Answer: X" (also bold/parenthesised), a bold `**X**`, a
/// parenthesised `(X)`, a line starting `X)` / `X.` / `X:`, a lone letter, then the text of
/// exactly one option appearing in the response.
pub fn choice_letter(response: &str, choices: &[String]) -> Option<char> {
    let n = choices.len().clamp(2, 26);
    let valid = |c: char| c.is_ascii_uppercase() && ((c as u8 - b'A') as usize) < n;
    let text = response.replace("**", " ** ");
    let chars: Vec<char> = text.chars().collect();
    // A letter standing alone: not inside a word.
    let alone = |i: usize| {
        let before = i == 0 || !chars[i - 1].is_alphanumeric();
        let after = i + 1 >= chars.len() || !chars[i + 1].is_alphanumeric();
        before && after
    };
    let letter_after = |from: usize| -> Option<char> {
        let mut i = from;
        while i < chars.len() && (chars[i].is_whitespace() || matches!(chars[i], ':' | '*' | '(' | '[' | '"' | '\'' | '-' | '=')) {
            i += 1;
        }
        // After an explicit cue a lower-case label counts too ("answer: (d)").
        let c = chars.get(i)?.to_ascii_uppercase();
        (valid(c) && alone(i)).then_some(c)
    };
    let lower: Vec<char> = text.to_lowercase().chars().collect();
    let lower_s: String = lower.iter().collect();
    let mut best: Option<(usize, char)> = None;
    for cue in ["answer is", "answer:", "answer =", "correct option is", "correct answer is", "option", "choice is"] {
        let mut start = 0;
        while let Some(pos) = lower_s[start..].find(cue) {
            let at = start + pos;
            let char_at = lower_s[..at].chars().count() + cue.chars().count();
            if let Some(c) = letter_after(char_at) {
                if best.is_none_or(|(p, _)| at > p) {
                    best = Some((at, c));
                }
            }
            start = at + cue.len();
        }
    }
    if let Some((_, c)) = best {
        return Some(c);
    }
    // **X**
    for i in 0..chars.len() {
        if valid(chars[i]) && alone(i) {
            let prev = chars[..i].iter().rev().find(|c| !c.is_whitespace());
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if prev == Some(&'*') && next == Some(&'*') {
                return Some(chars[i]);
            }
        }
    }
    // (X), also (x)
    for i in 1..chars.len().saturating_sub(1) {
        let c = chars[i].to_ascii_uppercase();
        if chars[i - 1] == '(' && valid(c) && chars[i + 1] == ')' {
            return Some(c);
        }
    }
    // Line starting with X) / X. / X: (or x) )
    for line in response.lines() {
        let t = line.trim_start();
        let mut it = t.chars();
        if let (Some(c), Some(p)) = (it.next(), it.next()) {
            let upper = c.to_ascii_uppercase();
            if (valid(c) && matches!(p, ')' | '.' | ':')) || (c.is_ascii_lowercase() && valid(upper) && p == ')') {
                return Some(upper);
            }
        }
    }
    let trimmed = response.trim().trim_end_matches(['.', ')']);
    if trimmed.len() == 1 && trimmed.chars().all(valid) {
        return trimmed.chars().next();
    }
    // A lone capital letter anywhere, if exactly one distinct one stands alone. "A" followed
    // by a lower-case word is the article, not an option.
    let article = |i: usize| chars[i] == 'A' && chars.get(i + 1) == Some(&' ') && chars.get(i + 2).is_some_and(|c| c.is_lowercase());
    let lone: std::collections::BTreeSet<char> =
        (0..chars.len()).filter(|&i| valid(chars[i]) && alone(i) && !article(i)).map(|i| chars[i]).collect();
    if lone.len() == 1 {
        return lone.into_iter().next();
    }
    // Option text: exactly one option's text appears.
    let norm = Normalize::default();
    let resp = norm.apply(response);
    let hits: Vec<usize> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let c = norm.apply(c);
            contains_phrase(&resp, &c)
        })
        .map(|(i, _)| i)
        .collect();
    (hits.len() == 1).then(|| (b'A' + hits[0] as u8) as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_final_answers() {
        assert_eq!(parse_number("$1,234.50"), Some(1234.5));
        assert_eq!(parse_number("45%"), Some(45.0));
        assert_eq!(parse_number("12 apples"), Some(12.0));
        assert_eq!(parse_number("1/4"), Some(0.25));
        assert_eq!(final_number("so 3+4=7\n#### 7").unwrap().0, 7.0);
        assert_eq!(final_number("The result is \\boxed{1,000}.").unwrap().0, 1000.0);
        assert_eq!(final_number("First 5, then 10. The answer is $18.").unwrap().0, 18.0);
        assert_eq!(final_number("x = -3").unwrap().0, -3.0);
        assert!(final_number("no digits here").is_none());
    }

    #[test]
    fn f1_matches_squad() {
        assert!((token_f1("the cat sat", "cat sat down") - 0.6666666).abs() < 1e-6);
        assert_eq!(token_f1("paris", "paris"), 1.0);
    }
}
