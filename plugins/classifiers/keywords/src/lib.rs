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

/// One keyword of several words: the last may match as a prefix.
struct Phrase {
    rest: Vec<String>,
    last_is_prefix: bool,
    label: usize,
}

/// FxHash: the table is looked up once or twice per word of every prompt, and SipHash (std's
/// default, built against hash flooding, which a fixed table does not face) was most of the
/// time.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// What a word starts: the labels it is a keyword of, and the phrases it opens.
#[derive(Default)]
struct Entry {
    labels: Vec<usize>,
    phrases: Vec<Phrase>,
}

/// Characters of a prefix bucket's key: a word is looked up by its first `KEY` characters and
/// checked against the few prefixes there.
const KEY: usize = 3;

/// The keyword table of one batch: one hash lookup per word of the prompt (whole words and
/// phrase openers), one more for prefixes.
pub struct Table {
    words: FxMap<String, Entry>,
    /// Prefixes (`medic*`) by their first [`KEY`] characters (all of them when shorter).
    prefixes: FxMap<String, Vec<(String, usize)>>,
    /// Whether some prefix is shorter than [`KEY`].
    short_prefixes: bool,
    /// Keywords per label, for the explanation.
    sizes: Vec<usize>,
    /// A bit per [`sig`] of every whole word and phrase opener, and of every prefix key: most
    /// words of a prompt are no keyword, and one bit test is much cheaper than a hash lookup.
    word_bits: Bits,
    prefix_bits: Bits,
}

/// 2^16 bits.
struct Bits(Vec<u64>);

impl Bits {
    fn new() -> Self {
        Bits(vec![0; 1 << 10])
    }
    fn set(&mut self, s: u16) {
        self.0[usize::from(s >> 6)] |= 1 << (s & 63);
    }
    fn get(&self, s: u16) -> bool {
        self.0[usize::from(s >> 6)] & (1 << (s & 63)) != 0
    }
}

/// A 16-bit signature of a word from its length and its first, second, third and last bytes:
/// equal words have equal signatures.
fn sig(w: &[u8]) -> u16 {
    let at = |i: usize| u32::from(w.get(i).copied().unwrap_or(0));
    let last = u32::from(w.last().copied().unwrap_or(0));
    let h = (at(0) << 24 | at(1) << 16 | at(2) << 8 | last).wrapping_add(w.len() as u32).wrapping_mul(0x9e37_79b1);
    (h >> 16) as u16
}

/// The first `n` characters of `w` (all of it when shorter).
fn head(w: &str, n: usize) -> &str {
    w.char_indices().nth(n).map_or(w, |(i, _)| &w[..i])
}

/// ASCII bytes mapped to their lower case when a letter or digit, else to a space.
const FOLD: [u8; 128] = {
    let mut t = [b' '; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Lower-case `text` with every character other than a letter or digit made a space (words
/// are then split on spaces). ASCII text (most prompts) goes through a table, byte for byte,
/// without a branch per byte.
fn normalise(text: &str) -> String {
    if text.is_ascii() {
        let folded: Vec<u8> = text.bytes().map(|b| FOLD[b as usize]).collect();
        return String::from_utf8(folded).expect("ASCII in, ASCII out");
    }
    text.chars()
        .flat_map(|c| {
            let keep = c.is_alphanumeric();
            c.to_lowercase().filter(move |_| keep).chain((!keep).then_some(' '))
        })
        .collect()
}

/// The words of a normalised text (split on spaces, none empty), by a byte loop: `str::split`
/// was a third of the time.
fn split_words(norm: &str) -> Vec<&str> {
    let bytes = norm.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 5);
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (b == b' ', start) {
            (true, Some(s)) => {
                out.push(&norm[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&norm[s..]);
    }
    out
}

/// Lower-case words of letters and digits (everything else separates).
fn words(text: &str) -> Vec<String> {
    normalise(text).split(' ').filter(|w| !w.is_empty()).map(String::from).collect()
}

impl Table {
    fn new(labels: usize) -> Self {
        Table {
            words: FxMap::default(),
            prefixes: FxMap::default(),
            short_prefixes: false,
            sizes: vec![0; labels],
            word_bits: Bits::new(),
            prefix_bits: Bits::new(),
        }
    }

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
                self.short_prefixes |= word.chars().count() < KEY;
                let key = head(&word, KEY).to_string();
                self.prefix_bits.set(sig(key.as_bytes()));
                self.prefixes.entry(key).or_default().push((word, label));
            } else {
                self.word_bits.set(sig(word.as_bytes()));
                self.words.entry(word).or_default().labels.push(label);
            }
            return;
        }
        let first = w.remove(0);
        self.word_bits.set(sig(first.as_bytes()));
        self.words.entry(first).or_default().phrases.push(Phrase { rest: w, last_is_prefix: prefix, label });
    }

    /// Votes per label for `text`'s words.
    fn votes(&self, text: &str) -> Vec<u32> {
        let mut votes = vec![0u32; self.sizes.len()];
        let norm = normalise(text);
        let w = split_words(&norm);
        for (i, word) in w.iter().enumerate() {
            let entry = if self.word_bits.get(sig(word.as_bytes())) { self.words.get(*word) } else { None };
            if let Some(e) = entry {
                e.labels.iter().for_each(|&l| votes[l] += 1);
                for p in &e.phrases {
                    let follows = w.get(i + 1..i + 1 + p.rest.len()).is_some_and(|next| {
                        next.iter().zip(&p.rest).enumerate().all(|(j, (a, b))| {
                            *a == b.as_str() || (p.last_is_prefix && j + 1 == p.rest.len() && a.starts_with(b.as_str()))
                        })
                    });
                    if follows {
                        votes[p.label] += 1;
                    }
                }
            }
            // A prefix sits in the bucket of its first KEY characters (all of them when
            // shorter), so each is looked at under one key only.
            if self.prefixes.is_empty() || (word.len() < KEY && !self.short_prefixes) {
                continue;
            }
            if word.is_ascii() && !self.short_prefixes {
                let key = &word[..KEY];
                if !self.prefix_bits.get(sig(key.as_bytes())) {
                    continue;
                }
                for (prefix, l) in self.prefixes.get(key).into_iter().flatten() {
                    if word.starts_with(prefix.as_str()) {
                        votes[*l] += 1;
                    }
                }
                continue;
            }
            let len = word.chars().count();
            let keys = if self.short_prefixes { 1..=KEY } else { KEY..=KEY };
            for n in keys.take_while(|&n| n <= len) {
                for (prefix, l) in self.prefixes.get(head(word, n)).into_iter().flatten() {
                    if word.starts_with(prefix.as_str()) {
                        votes[*l] += 1;
                    }
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
        let mut table = Table::new(taxonomy.len());
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
        let mut t = Table::new(2);
        t.add("court", 0);
        t.add("board of directors", 1);
        t.add("manag*", 1);
        t.add("ab*", 0);
        t.add("résumé", 1);
        assert_eq!(t.votes("The Court's ruling"), vec![1, 0]);
        assert_eq!(t.votes("The board of directors, managers and management"), vec![0, 3]);
        assert_eq!(t.votes("board directors of"), vec![0, 0]);
        // A short prefix, a word exactly a prefix, non-ASCII letters.
        assert_eq!(t.votes("ab abc a b"), vec![2, 0]);
        assert_eq!(t.votes("My RÉSUMÉ, manag"), vec![0, 2]);
    }
}

#[cfg(test)]
mod speed {
    /// `cargo test --release -p ipw-classifier-keywords native_speed -- --ignored --nocapture`:
    /// the table's own cost on long prompts, without the sandbox.
    #[test]
    #[ignore]
    fn native_speed() {
        let mut t = super::Table::new(22);
        for (i, (_, kws)) in super::parse_shipped(super::SOC_2018).enumerate() {
            for k in kws {
                t.add(k, i);
            }
        }
        let text = std::fs::read_to_string("../../../core/data/mmlu/professional_law_test.csv").unwrap();
        let prompts: Vec<&str> = text.lines().take(2000).collect();
        let bytes: usize = prompts.iter().map(|p| p.len()).sum();
        let c = std::time::Instant::now();
        let mut n = 0usize;
        for p in &prompts {
            n += std::hint::black_box(p.bytes().filter(|&b| b == b'a').count());
        }
        eprintln!("{} bytes/prompt; counting one byte: {:.2} ns/byte ({n})", bytes / prompts.len(), c.elapsed().as_secs_f64() * 1e9 / bytes as f64);
        let n2 = std::time::Instant::now();
        for p in &prompts {
            std::hint::black_box(super::normalise(p));
        }
        eprintln!("normalise {:.2} ns/byte", n2.elapsed().as_secs_f64() * 1e9 / bytes as f64);
        let sp = std::time::Instant::now();
        let mut words = 0;
        for p in &prompts {
            let n = super::normalise(p);
            let w = super::split_words(&n);
            let mut k = 0u32;
            for x in &w {
                k = k.wrapping_add(u32::from(super::sig(x.as_bytes())));
            }
            words += w.len();
            std::hint::black_box(k);
        }
        eprintln!("normalise+split+sig {:.2} us/query, {} words/query", sp.elapsed().as_secs_f64() * 1e6 / prompts.len() as f64, words / prompts.len());
        let start = std::time::Instant::now();
        for p in &prompts {
            std::hint::black_box(t.votes(p));
        }
        eprintln!("{:.2} us/query native", start.elapsed().as_secs_f64() * 1e6 / prompts.len() as f64);
    }
}
