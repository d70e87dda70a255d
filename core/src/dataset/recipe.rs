//! Recipes: the field mapping, template and row filter of a dataset as the Hugging Face hub
//! stores it, so `recipe = "mmlu-pro"` and a `path` are the whole entry. (A recipe's grader is
//! [`DatasetRecipe::default_grader`], beside the experiment file's types that ask for it.) The
//! README has a table per recipe; the columns here are the hub's own names.

use crate::config::{ChoicesRef, DatasetRecipe, FieldMap, FieldRef, TemplateName};

/// Which rows a recipe leaves out unless `keep_all_rows = true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Keep every row.
    Nothing,
    /// Rows where any of these boolean columns is true (WildChat's `toxic`, `redacted`).
    Flagged(&'static [&'static str]),
    /// Rows without a reference answer (NaturalReasoning's empty or null `reference_answer`).
    Unanswered,
}

/// What a recipe presets.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Default field mapping; an entry's own `fields.*` win field by field.
    pub fields: FieldMap,
    /// Default template.
    pub template: Option<TemplateName>,
    /// Whether every row must carry an answer (multiple choice: a missing letter is an error).
    pub answer_required: bool,
    /// Rows left out by default.
    pub skip: Skip,
    /// Rows whose prompt is empty are left out (always: there is nothing to send).
    pub skip_empty_prompt: bool,
}

fn name(key: &str) -> Option<FieldRef> {
    Some(FieldRef::Name(key.to_string()))
}

/// The preset of a recipe.
pub fn preset(recipe: DatasetRecipe) -> Preset {
    match recipe {
        DatasetRecipe::MmluPro => Preset {
            fields: FieldMap {
                id: name("question_id"),
                prompt: name("question"),
                answer: name("answer"),
                choices: Some(ChoicesRef::Field(FieldRef::Name("options".into()))),
                subject: name("category"),
                category: None,
            },
            template: Some(TemplateName::Mmlu),
            answer_required: true,
            skip: Skip::Nothing,
            skip_empty_prompt: false,
        },
        DatasetRecipe::Supergpqa => Preset {
            fields: FieldMap {
                id: name("uuid"),
                prompt: name("question"),
                answer: name("answer_letter"),
                choices: Some(ChoicesRef::Field(FieldRef::Name("options".into()))),
                subject: name("field"),
                category: name("discipline"),
            },
            template: Some(TemplateName::Mmlu),
            answer_required: true,
            skip: Skip::Nothing,
            skip_empty_prompt: false,
        },
        DatasetRecipe::NaturalReasoning => Preset {
            fields: FieldMap {
                // No id column: the row's position in the concatenated shards.
                id: None,
                prompt: name("question"),
                answer: name("reference_answer"),
                choices: None,
                subject: None,
                category: None,
            },
            template: Some(TemplateName::Raw),
            answer_required: false,
            skip: Skip::Unanswered,
            skip_empty_prompt: false,
        },
        DatasetRecipe::Wildchat => Preset {
            fields: FieldMap {
                id: name("conversation_hash"),
                // A list of turns: the prompt is its first `user` turn's `content`.
                prompt: name("conversation"),
                // No gold answer; `answer` is no WildChat column, so answers stay empty.
                answer: None,
                choices: None,
                subject: name("language"),
                category: None,
            },
            template: Some(TemplateName::Raw),
            answer_required: false,
            skip: Skip::Flagged(&["toxic", "redacted"]),
            skip_empty_prompt: true,
        },
    }
}

/// `explicit` with every unset field taken from `preset`.
pub fn merge_fields(explicit: &FieldMap, preset: &FieldMap) -> FieldMap {
    FieldMap {
        id: explicit.id.clone().or_else(|| preset.id.clone()),
        prompt: explicit.prompt.clone().or_else(|| preset.prompt.clone()),
        answer: explicit.answer.clone().or_else(|| preset.answer.clone()),
        choices: explicit.choices.clone().or_else(|| preset.choices.clone()),
        subject: explicit.subject.clone().or_else(|| preset.subject.clone()),
        category: explicit
            .category
            .clone()
            .or_else(|| preset.category.clone()),
    }
}
