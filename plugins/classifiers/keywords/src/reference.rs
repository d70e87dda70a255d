//! The keyword table as it was before the filter-and-probe rewrite (commit b4d3cad), verbatim
//! but for visibility: the equivalence test checks the new [`crate::Table`] against it vote for
//! vote, and the speed test measures both. Test-only; never shipped.

use ipw_guest::{Label, Params};
use std::collections::HashMap;

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
pub(crate) struct Table {
    words: FxMap<String, Entry>,
    /// Prefixes (`medic*`) by their first [`KEY`] characters (all of them when shorter).
    prefixes: FxMap<String, Vec<(String, usize)>>,
    /// Whether some prefix is shorter than [`KEY`].
    short_prefixes: bool,
    /// Keywords per label, for the explanation.
    pub(crate) sizes: Vec<usize>,
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
pub(crate) fn sig(w: &[u8]) -> u16 {
    let at = |i: usize| u32::from(w.get(i).copied().unwrap_or(0));
    let last = u32::from(w.last().copied().unwrap_or(0));
    let h = (at(0) << 24 | at(1) << 16 | at(2) << 8 | last)
        .wrapping_add(w.len() as u32)
        .wrapping_mul(0x9e37_79b1);
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
pub(crate) fn normalise(text: &str) -> String {
    if text.is_ascii() {
        let folded: Vec<u8> = text.bytes().map(|b| FOLD[b as usize]).collect();
        return String::from_utf8(folded).expect("ASCII in, ASCII out");
    }
    text.chars()
        .flat_map(|c| {
            let keep = c.is_alphanumeric();
            c.to_lowercase()
                .filter(move |_| keep)
                .chain((!keep).then_some(' '))
        })
        .collect()
}

/// The words of a normalised text (split on spaces, none empty), by a byte loop: `str::split`
/// was a third of the time.
pub(crate) fn split_words(norm: &str) -> Vec<&str> {
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
    normalise(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

impl Table {
    pub(crate) fn new(labels: usize) -> Self {
        Table {
            words: FxMap::default(),
            prefixes: FxMap::default(),
            short_prefixes: false,
            sizes: vec![0; labels],
            word_bits: Bits::new(),
            prefix_bits: Bits::new(),
        }
    }

    pub(crate) fn add(&mut self, keyword: &str, label: usize) {
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
        self.words.entry(first).or_default().phrases.push(Phrase {
            rest: w,
            last_is_prefix: prefix,
            label,
        });
    }

    /// Votes per label for `text`'s words.
    pub(crate) fn votes(&self, text: &str) -> Vec<u32> {
        let mut votes = vec![0u32; self.sizes.len()];
        let norm = normalise(text);
        let w = split_words(&norm);
        for (i, word) in w.iter().enumerate() {
            let entry = if self.word_bits.get(sig(word.as_bytes())) {
                self.words.get(*word)
            } else {
                None
            };
            if let Some(e) = entry {
                e.labels.iter().for_each(|&l| votes[l] += 1);
                for p in &e.phrases {
                    let follows = w.get(i + 1..i + 1 + p.rest.len()).is_some_and(|next| {
                        next.iter().zip(&p.rest).enumerate().all(|(j, (a, b))| {
                            *a == b.as_str()
                                || (p.last_is_prefix
                                    && j + 1 == p.rest.len()
                                    && a.starts_with(b.as_str()))
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
            let keys = if self.short_prefixes {
                1..=KEY
            } else {
                KEY..=KEY
            };
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

/// The old `Classifier::setup`, verbatim but for its name, for the setup timing.
pub(crate) fn setup(taxonomy: &[Label], params: Params) -> Result<Table, String> {
    let index: HashMap<&str, usize> = taxonomy
        .iter()
        .enumerate()
        .map(|(i, l)| (l.code.as_str(), i))
        .collect();
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); taxonomy.len()];
    let shipped = match params.get("shipped") {
        None => true,
        Some(v) => v.as_bool().ok_or("params.shipped must be true or false")?,
    };
    if shipped {
        for (code, kws) in crate::parse_shipped(crate::SOC_2018) {
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
