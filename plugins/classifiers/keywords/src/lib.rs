//! `keywords`: votes for the label whose keywords the prompt contains most often, from a
//! per-label keyword table (shipped for the SOC 2018 major groups, `soc-2018.txt`). A fast
//! offline baseline: no model, a few microseconds a query. Params: `keywords` (an object from a
//! label's code to its keywords, replacing the shipped list of that label) and `shipped`
//! (`false`: start from an empty table). A keyword matches a whole word (case-insensitive,
//! punctuation ignored), several words match in a row, a trailing `*` matches a word's start.
//! Confidence is the winner's share of the votes; a tie goes to the label listed first in the
//! taxonomy (the explanation says so); no vote leaves the query unlabelled.

use ipw_guest::{export_classifier, ClassifyQuery, Classifier, Label, Params, Verdict};
use std::collections::HashMap;

/// The shipped table, for the SOC 2018 major groups.
const SOC_2018: &str = include_str!("../soc-2018.txt");

/// One keyword as words: the last may match as a prefix.
struct Pattern {
    rest: Vec<String>,
    last_is_prefix: bool,
    label: usize,
}

/// The keyword table of one batch, indexed by a keyword's first word.
#[derive(Default)]
pub struct Table {
    /// Single whole words.
    words: HashMap<String, Vec<usize>>,
    /// Single-word prefixes, by length, so a word is looked up once per distinct length.
    prefixes: HashMap<String, Vec<usize>>,
    prefix_lens: Vec<usize>,
    /// Several words, by their first.
    phrases: HashMap<String, Vec<Pattern>>,
    /// Keywords per label, for the explanation.
    sizes: Vec<usize>,
}

/// Split text into lower-case words of letters and digits (everything else separates).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Table {
    fn add(&mut self, keyword: &str, label: usize) {
        let keyword = keyword.trim();
        let (body, prefix) = match keyword.strip_suffix('*') {
            Some(b) => (b, true),
            None => (keyword, false),
        };
        let mut w = words(body);
        if w.is_empty() {
            return;
        }
        self.sizes[label] += 1;
        if w.len() == 1 {
            let word = w.pop().expect("one word");
            if prefix {
                if !self.prefix_lens.contains(&word.chars().count()) {
                    self.prefix_lens.push(word.chars().count());
                }
                self.prefixes.entry(word).or_default().push(label);
            } else {
                self.words.entry(word).or_default().push(label);
            }
            return;
        }
        let first = w.remove(0);
        self.phrases.entry(first).or_default().push(Pattern {
            rest: w,
            last_is_prefix: prefix,
            label,
        });
    }

    /// Votes per label for `text`'s words.
    fn votes(&self, text: &str) -> Vec<u32> {
        let mut votes = vec![0u32; self.sizes.len()];
        let w = words(text);
        for (i, word) in w.iter().enumerate() {
            for &l in self.words.get(word).into_iter().flatten() {
                votes[l] += 1;
            }
            for &len in &self.prefix_lens {
                if let Some((cut, _)) = word.char_indices().nth(len) {
                    if let Some(ls) = self.prefixes.get(&word[..cut]) {
                        ls.iter().for_each(|&l| votes[l] += 1);
                    }
                } else if word.chars().count() == len {
                    if let Some(ls) = self.prefixes.get(word) {
                        ls.iter().for_each(|&l| votes[l] += 1);
                    }
                }
            }
            for p in self.phrases.get(word).into_iter().flatten() {
                let follows = w.get(i + 1..i + 1 + p.rest.len()).is_some_and(|next| {
                    next.iter().zip(&p.rest).enumerate().all(|(j, (a, b))| {
                        a == b || (p.last_is_prefix && j + 1 == p.rest.len() && a.starts_with(b.as_str()))
                    })
                });
                if follows {
                    votes[p.label] += 1;
                }
            }
        }
        votes
    }
}

/// Lines `CODE: kw, kw, ...` (comments `#`) as (code, keywords).
fn parse_shipped(text: &str) -> impl Iterator<Item = (&str, Vec<&str>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(code, kws)| (code.trim(), kws.split(',').map(str::trim).collect()))
}

struct Keywords;

impl Classifier for Keywords {
    type Setup = Table;

    fn setup(taxonomy: &[Label], params: Params) -> Result<Table, String> {
        let index: HashMap<&str, usize> =
            taxonomy.iter().enumerate().map(|(i, l)| (l.code.as_str(), i)).collect();
        let mut lists: Vec<Vec<String>> = vec![Vec::new(); taxonomy.len()];
        let shipped = match params.get("shipped") {
            None => true,
            Some(v) => v.as_bool().ok_or("params.shipped must be true or false")?,
        };
        if shipped {
            for (code, kws) in parse_shipped(SOC_2018) {
                if let Some(&i) = index.get(code) {
                    lists[i] = kws.into_iter().map(String::from).collect();
                }
            }
        }
        if let Some(table) = params.get("keywords") {
            let table = table
                .as_object()
                .ok_or("params.keywords must be an object from a label's code to its keywords")?;
            for (code, kws) in table {
                let i = *index.get(code.as_str()).ok_or_else(|| {
                    format!("params.keywords names `{code}`, which is not a label of the taxonomy")
                })?;
                let kws = kws
                    .as_array()
                    .ok_or_else(|| format!("params.keywords.{code} must be a list of strings"))?;
                lists[i] = kws
                    .iter()
                    .map(|k| k.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("params.keywords.{code} must be a list of strings"))?;
            }
        }
        if lists.iter().all(Vec::is_empty) {
            return Err("no label of this taxonomy has keywords: give them in params.keywords (the shipped table covers the SOC 2018 major groups)".into());
        }
        let mut table = Table { sizes: vec![0; taxonomy.len()], ..Table::default() };
        for (label, kws) in lists.iter().enumerate() {
            for k in kws {
                table.add(k, label);
            }
        }
        Ok(table)
    }

    fn classify(table: &Table, taxonomy: &[Label], query: ClassifyQuery) -> Result<Verdict, String> {
        let votes = table.votes(&query.prompt);
        let total: u32 = votes.iter().sum();
        let Some(top) = votes.iter().copied().max().filter(|&t| t > 0) else {
            return Ok(Verdict::unlabelled("no keyword of any label in the prompt"));
        };
        let winners: Vec<usize> = (0..votes.len()).filter(|&i| votes[i] == top).collect();
        let win = winners[0];
        let mut why = format!("{top} of {total} keyword votes for {}", taxonomy[win].code);
        if winners.len() > 1 {
            let tied: Vec<&str> = winners[1..].iter().map(|&i| taxonomy[i].code.as_str()).collect();
            why.push_str(&format!(" (tied with {}: first listed wins)", tied.join(", ")));
        }
        Ok(Verdict::label(taxonomy[win].code.clone())
            .with_confidence(f64::from(top) / f64::from(total))
            .because(why))
    }
}

export_classifier!(Keywords);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_names_every_soc_group_once() {
        let codes: Vec<&str> = parse_shipped(SOC_2018).map(|(c, _)| c).collect();
        assert_eq!(codes.len(), 22);
        let mut sorted = codes.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 22);
    }

    #[test]
    fn words_phrases_and_prefixes_vote() {
        let mut t = Table { sizes: vec![0; 2], ..Table::default() };
        t.add("court", 0);
        t.add("board of directors", 1);
        t.add("manag*", 1);
        assert_eq!(t.votes("The Court's ruling"), vec![1, 0]);
        assert_eq!(t.votes("The board of directors, managers and management"), vec![0, 3]);
        assert_eq!(t.votes("board directors of"), vec![0, 0]);
    }
}
