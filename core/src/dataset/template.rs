//! Prompt templates: how a [`Row`] becomes the user message.

use super::Row;
use crate::config::TemplateName;

/// A prompt template, built in or user-written.
#[derive(Debug, Clone)]
pub enum Template {
    /// One of the built-in templates.
    Builtin(TemplateName),
    /// User text with `{question}`, `{choices}` and `{subject}` placeholders.
    Custom(String),
}

const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Template {
    /// The template a dataset config asks for (`template_text` wins; default `raw`).
    pub fn from_config(name: Option<TemplateName>, text: Option<&str>) -> Self {
        match text {
            Some(t) => Template::Custom(t.to_string()),
            None => Template::Builtin(name.unwrap_or(TemplateName::Raw)),
        }
    }

    /// Render the prompt for a row.
    pub fn render(&self, row: &Row) -> String {
        let choices = lettered(&row.choices);
        let subject = row.subject.as_deref().unwrap_or("").replace('_', " ");
        match self {
            Template::Builtin(TemplateName::Raw) => {
                if choices.is_empty() {
                    row.question.clone()
                } else {
                    format!("{}\n{choices}", row.question)
                }
            }
            Template::Builtin(TemplateName::Gsm8k) => format!(
                "Solve this math problem step by step. On the last line, write the final answer as \"#### <number>\".\n\nQuestion: {}",
                row.question
            ),
            Template::Builtin(TemplateName::Mmlu) => {
                let about = if subject.is_empty() { String::new() } else { format!(" about {subject}") };
                format!(
                    "The following is a multiple choice question{about}. Reply with the letter of the correct option, as \"Answer: X\".\n\n{}\n{choices}\nAnswer:",
                    row.question
                )
            }
            Template::Custom(t) => t
                .replace("{question}", &row.question)
                .replace("{choices}", &choices)
                .replace("{subject}", &subject),
        }
    }
}

fn lettered(choices: &[String]) -> String {
    choices
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}. {c}", LETTERS[i % LETTERS.len()] as char))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmlu_template_letters_choices() {
        let row = Row {
            id: "1".into(),
            question: "2+3?".into(),
            answers: vec!["B".into()],
            choices: vec!["4".into(), "5".into()],
            subject: Some("elementary_mathematics".into()),
            category: None,
        };
        let p = Template::Builtin(TemplateName::Mmlu).render(&row);
        assert!(p.contains("about elementary mathematics"));
        assert!(p.contains("A. 4\nB. 5"));
        let c = Template::Custom("Q: {question}\n{choices}".into()).render(&row);
        assert_eq!(c, "Q: 2+3?\nA. 4\nB. 5");
    }
}
