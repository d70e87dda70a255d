//! `classifier-code-spotter`: queries that contain program code (a fenced block, or a line
//! that reads like a definition or statement in a common language) go to the label named by
//! params `label` (default `15-0000`, SOC's Computer and Mathematical Occupations); every other
//! query is left unlabelled, for another classifier or a person. The pattern runs in the host
//! (`regex_captures`), compiled once for every call.

use ipw_guest::{
    export_classifier, regex_captures, Classifier, ClassifyQuery, Label, Matches, Params, Verdict,
};

const CODE: &str =
    r"(?m)```|^\s*(def |class |fn |function |public static |#include|import \w+|SELECT .+ FROM)";

struct CodeSpotter;

impl Classifier for CodeSpotter {
    /// The label code for queries with code.
    type Setup = String;

    fn setup(taxonomy: &[Label], params: Params) -> Result<String, String> {
        let label = match params.get("label") {
            None => "15-0000".to_string(),
            Some(v) => v
                .as_str()
                .ok_or("params.label must be a label's code")?
                .to_string(),
        };
        if !taxonomy.iter().any(|l| l.code == label) {
            return Err(format!(
                "label `{label}` is not in the taxonomy: name one with params.label"
            ));
        }
        Ok(label)
    }

    fn classify(label: &String, _: &[Label], q: ClassifyQuery) -> Result<Verdict, String> {
        let found = regex_captures(CODE, &q.prompt, Matches::First)?;
        Ok(match found.first().and_then(|groups| groups[0].as_ref()) {
            Some(span) => {
                let what = &q.prompt[span.start as usize..span.end as usize];
                Verdict::label(label.clone())
                    .with_confidence(0.9)
                    .because(format!("code: {:?}", what.trim()))
            }
            None => Verdict::unlabelled("no code in the query"),
        })
    }
}

export_classifier!(CodeSpotter);
