//! `judge`: asks the host's judge model to pick one label of the taxonomy for the query, and
//! reads its reply strictly: the reply must name exactly one label, by its code or by its exact
//! title. Anything else (no label, several, a code the taxonomy lacks) leaves the query
//! unlabelled with the reason, never guessed. Params: `template` (the whole prompt, with
//! `{labels}` and `{query}` filled in; the default is below) and `max_query_chars` (the query is
//! cut there, default 4000). The host caches replies by prompt and judge model, so classifying
//! again asks nothing.

use ipw_guest::{export_classifier, judge, ClassifyQuery, Classifier, Label, Params, Verdict};

/// The default prompt: every label on one line (code, title, description), then the query.
pub const DEFAULT_TEMPLATE: &str = "Which occupational domain does this request belong to? \
Choose exactly one of these labels:\n{labels}\n\nRequest:\n{query}\n\n\
Reply with the label's code only.\nCode:";

struct Judge;

/// The batch's prompt template and query cut.
pub struct Setup {
    template: String,
    labels: String,
    max_query_chars: usize,
}

/// Whether `needle` occurs in `hay` as a token of its own (no letter, digit or `-` on
/// either side).
fn has_token(hay: &str, needle: &str) -> bool {
    let joins = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
    hay.match_indices(needle)
        .any(|(i, _)| !joins(hay[..i].chars().next_back()) && !joins(hay[i + needle.len()..].chars().next()))
}

/// Something shaped like a code that the taxonomy does not have (`99-9999` for SOC codes),
/// for the explanation.
fn foreign_code(reply: &str, taxonomy: &[Label]) -> Option<String> {
    let shape = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect()
    };
    let shapes: Vec<String> = taxonomy.iter().map(|l| shape(&l.code)).collect();
    reply
        .split(|c: char| c.is_whitespace() || ",.;:()[]*\"'".contains(c))
        .find(|t| !t.is_empty() && shapes.contains(&shape(t)) && !taxonomy.iter().any(|l| l.code == *t))
        .map(String::from)
}

/// The one label a reply names, or why there is none.
pub fn read_reply(reply: &str, taxonomy: &[Label]) -> Result<String, String> {
    let by_code: Vec<&Label> = taxonomy.iter().filter(|l| has_token(reply, &l.code)).collect();
    match by_code.as_slice() {
        [one] => return Ok(one.code.clone()),
        [] => {}
        many => {
            let codes: Vec<&str> = many.iter().map(|l| l.code.as_str()).collect();
            return Err(format!("the judge named several labels ({})", codes.join(", ")));
        }
    }
    let bare = reply.trim().trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
    if let Some(l) = taxonomy.iter().find(|l| l.title.eq_ignore_ascii_case(bare)) {
        return Ok(l.code.clone());
    }
    if let Some(code) = foreign_code(reply, taxonomy) {
        return Err(format!("the judge named `{code}`, which is not a label of the taxonomy"));
    }
    let shown: String = reply.trim().chars().take(120).collect();
    Err(format!("unreadable judge answer: {shown:?}"))
}

impl Classifier for Judge {
    type Setup = Setup;

    fn setup(taxonomy: &[Label], params: Params) -> Result<Setup, String> {
        let template = match params.get("template") {
            None => DEFAULT_TEMPLATE.to_string(),
            Some(t) => t.as_str().ok_or("params.template must be a string")?.to_string(),
        };
        if !template.contains("{query}") {
            return Err("params.template has no `{query}`: the judge would not see the query".into());
        }
        let max_query_chars = match params.get("max_query_chars") {
            None => 4000,
            Some(v) => v.as_u64().ok_or("params.max_query_chars must be a whole number")? as usize,
        };
        let labels = taxonomy
            .iter()
            .map(|l| format!("{} {}: {}", l.code, l.title, l.description))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Setup { template, labels, max_query_chars })
    }

    fn classify(s: &Setup, taxonomy: &[Label], q: ClassifyQuery) -> Result<Verdict, String> {
        let query: String = q.prompt.chars().take(s.max_query_chars).collect();
        let prompt = s.template.replace("{labels}", &s.labels).replace("{query}", &query);
        let reply = judge(&prompt)?;
        Ok(match read_reply(&reply, taxonomy) {
            Ok(code) => Verdict::label(code).because(format!("judge replied {:?}", reply.trim())),
            Err(why) => Verdict::unlabelled(why),
        })
    }
}

export_classifier!(Judge);

#[cfg(test)]
mod tests {
    use super::*;

    fn soc() -> Vec<Label> {
        [("15-0000", "Computer and Mathematical Occupations"), ("23-0000", "Legal Occupations")]
            .iter()
            .map(|(c, t)| Label { code: c.to_string(), title: t.to_string(), description: String::new() })
            .collect()
    }

    #[test]
    fn a_reply_names_one_label_or_none() {
        let t = soc();
        assert_eq!(read_reply(" 23-0000\n", &t).unwrap(), "23-0000");
        assert_eq!(read_reply("Code: 15-0000 (computing)", &t).unwrap(), "15-0000");
        assert_eq!(read_reply("legal occupations.", &t).unwrap(), "23-0000");
        assert!(read_reply("15-0000 or 23-0000", &t).unwrap_err().contains("several"));
        assert!(read_reply("99-9999", &t).unwrap_err().contains("`99-9999`, which is not"));
        assert!(read_reply("115-00001", &t).unwrap_err().contains("unreadable"));
        assert!(read_reply("I think it is about law", &t).unwrap_err().contains("unreadable"));
    }
}
