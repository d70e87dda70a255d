//! `keywords`: votes for the label whose keywords the prompt contains most often, from a
//! per-label keyword table (shipped for the SOC 2018 major groups, `soc-2018.txt`). A fast
//! offline baseline: no model, a few microseconds a query. Params: `keywords` (an object from a
//! label's code to its keywords, replacing the shipped list of that label) and `shipped`
//! (`false`: start from an empty table). A keyword matches a whole word (case-insensitive,
//! punctuation ignored), several words match in a row, a trailing `*` matches a word's start.
//! Confidence is the winner's share of the votes; a tie goes to the label listed first in the
//! taxonomy (the explanation says so); no vote leaves the query unlabelled.

use ipw_guest::{export_classifier, Classifier, ClassifyQuery, Label, Params, Verdict};
use std::collections::HashMap;

/// The shipped table, for the SOC 2018 major groups.
const SOC_2018: &str = include_str!("../soc-2018.txt");

#[cfg(test)]
mod reference;

/// Characters of a prefix bucket's key: a prefix sits in the bucket of its first `KEY`
/// characters (all of them when shorter), and a word is looked up under its first n characters
/// for each n from the shortest key to `KEY`. Four, not three: many common words share their
/// first three letters with several prefixes (`pro`: `program*`, `profit*`, `prosecut*`...).
const KEY: usize = 4;

/// The end of a list: [`Table`] chains rules and prefixes through indices instead of giving
/// each word a `Vec` of its own, so that setup allocates a few vectors, not one per keyword.
const NONE: u32 = u32::MAX;

/// A normalised word (or prefix key) of the table: where its bytes are in [`Table::bytes`].
#[derive(Clone, Copy)]
struct Span {
    at: u32,
    len: u32,
}

/// A word looked up in an [`Index`]: its bytes and the first item of its list (of [`Rule`]s
/// for a whole word or phrase opener, of [`Prefix`]es for a prefix key).
#[derive(Clone, Copy)]
struct Head {
    word: Span,
    first: u32,
}

/// A keyword that starts with a given word: the word alone when `rest_len` is 0, else a phrase
/// whose following words are `Table::rest[rest..rest + rest_len]`, the last of them a prefix
/// when `last_is_prefix`.
struct Rule {
    label: u32,
    rest: u32,
    rest_len: u32,
    last_is_prefix: bool,
    next: u32,
}

/// A prefix keyword (`medic*`), in the bucket of its first [`KEY`] characters.
struct Prefix {
    word: Span,
    /// Its first [`chunk`]: most words of the bucket differ from it there, and a `u64`
    /// comparison is cheaper than one of bytes.
    head: u64,
    label: u32,
    next: u32,
}

/// A bit per 16-bit [`Filter::bit`] of a hash, set for every whole word and phrase opener and
/// every prefix key. Most words of a prompt have no bit set, and a bit test is cheaper than
/// probing an [`Index`]; it also branches the same way nearly every time.
struct Filter(Box<[u64; 1024]>);

impl Filter {
    /// The word and bit for a hash, from its top 16 bits: they depend on all of its input.
    #[inline]
    fn bit(h: u64) -> (usize, u64) {
        ((h >> 54) as usize, 1 << ((h >> 48) & 63))
    }
    fn set(&mut self, h: u64) {
        let (i, b) = Self::bit(h);
        self.0[i] |= b;
    }
    #[inline]
    fn get(&self, h: u64) -> bool {
        let (i, b) = Self::bit(h);
        self.0[i] & b != 0
    }
}

/// The keyword table of one batch. Per word of the prompt, a hash computed from the prompt's
/// own bytes (see [`Table::votes`]) and a few bit tests in a [`Filter`]; only the few words
/// that pass probe an [`Index`] of whole words and phrase openers, or of prefix keys.
pub struct Table {
    /// The normalised bytes of every word, phrase word and prefix, back to back.
    bytes: Vec<u8>,
    /// Whole words and phrase openers: `words[word_index.find(..)]`.
    word_index: Index,
    words: Vec<Head>,
    /// What each word starts, chained from its [`Head`].
    rules: Vec<Rule>,
    /// The words of phrases after their first.
    rest: Vec<Span>,
    /// Prefixes by their first [`KEY`] characters (all of them when shorter):
    /// `keys[key_index.find(..)]`.
    key_index: Index,
    keys: Vec<Head>,
    prefixes: Vec<Prefix>,
    /// The characters of the shortest prefix key: a word is looked up under its first
    /// `shortest` to [`KEY`] characters.
    shortest: usize,
    filter: Filter,
    /// Keywords per label, for the explanation.
    sizes: Vec<usize>,
}

/// Open addressing from a word's [`hash`] to an id (of a [`Head`]): linear probing over a power
/// of two of slots, each `(hash >> 32) << 32 | (id + 1)`, 0 when free, at most one in
/// [`Index::LOAD`] taken. A word's bytes are compared only when the top 32 bits of the hashes
/// agree. The home slot is the top bits of the hash, so the slots themselves are enough to
/// grow the table.
struct Index {
    slots: Vec<u64>,
    len: usize,
    /// 64 - log2(slots): `hash >> shift` is the home slot.
    shift: u32,
}

impl Index {
    /// At most one slot in `LOAD` taken (the [`Filter`] keeps most words from probing at all,
    /// and a small table stays in the L1 cache).
    const LOAD: usize = 2;

    /// Room for `n` ids without growing.
    fn with_capacity(n: usize) -> Self {
        let slots = (n * Self::LOAD).next_power_of_two().max(16);
        Index {
            slots: vec![0; slots],
            len: 0,
            shift: 64 - slots.trailing_zeros(),
        }
    }

    /// The id stored under `h` for which `is` holds (it compares the words' bytes).
    #[inline]
    fn find(&self, h: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = (h >> self.shift) as usize;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == h >> 32 {
                let id = (slot as u32 - 1) as usize;
                if is(id) {
                    return Some(id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Store `id` under `h` (the caller has checked that no equal word is there).
    fn insert(&mut self, h: u64, id: usize) {
        let id = u32::try_from(id)
            .ok()
            .filter(|&id| id < u32::MAX)
            .expect("fewer than 2^32 - 1 keywords");
        if (self.len + 1) * Self::LOAD > self.slots.len() {
            let grown = vec![0; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, grown);
            self.shift -= 1;
            for slot in old.into_iter().filter(|&s| s != 0) {
                self.put(slot);
            }
        }
        self.put(((h >> 32) << 32) | u64::from(id + 1));
        self.len += 1;
    }

    /// Store a slot in the first free place from its home.
    fn put(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut i = (slot >> self.shift) as usize;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }
}

/// One step of FxHash (a rotate, an xor and a multiply per 8 bytes): every word of every prompt
/// is hashed, and a fixed table does not face hash flooding (what std's SipHash is built
/// against).
#[inline]
fn mix(h: u64, chunk: u64) -> u64 {
    (h.rotate_left(5) ^ chunk).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// Bytes `at..end` of `bytes`, at most 8 of them, little-endian with bit 5 (0x20) set in each
/// and zeros past `end`. Setting bit 5 lower-cases an ASCII letter and leaves a digit as it is,
/// so a word of an ASCII prompt gives the same chunks as its normalised form in the table:
/// the prompt is hashed as it stands, without a folded copy. (Other bytes change too, the
/// same way on both sides, and equal hashes are always checked on the bytes.)
#[inline]
fn chunk(bytes: &[u8], at: usize, end: usize) -> u64 {
    let n = (end - at).min(8);
    let raw = match bytes.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        // Near the end of the buffer: copy what there is.
        None => {
            let mut b = [0; 8];
            b[..n].copy_from_slice(&bytes[at..at + n]);
            u64::from_le_bytes(b)
        }
    };
    (raw | 0x2020_2020_2020_2020) & keep(n)
}

/// The low `n` bytes of a `u64`, `n` from 1 to 8.
#[inline]
fn keep(n: usize) -> u64 {
    debug_assert!((1..=8).contains(&n));
    u64::MAX >> (64 - 8 * n)
}

/// The hash of the word `bytes[at..end]`, given its first [`chunk`].
#[inline]
fn hash_from(first: u64, bytes: &[u8], at: usize, end: usize) -> u64 {
    let mut h = mix(0, first);
    let mut i = at + 8;
    while i < end {
        h = mix(h, chunk(bytes, i, end));
        i += 8;
    }
    h
}

/// The hash of the word `bytes[at..end]`: the one the table stores it under.
#[inline]
fn hash(bytes: &[u8], at: usize, end: usize) -> u64 {
    hash_from(chunk(bytes, at, end), bytes, at, end)
}

/// The length in bytes of the first `n` characters of the UTF-8 word `w`, or `None` when it
/// has fewer.
fn head_len(w: &[u8], n: usize) -> Option<usize> {
    let mut chars = 0;
    for (i, &b) in w.iter().enumerate() {
        // A byte that is no UTF-8 continuation byte starts a character.
        if b & 0xc0 != 0x80 {
            if chars == n {
                return Some(i);
            }
            chars += 1;
        }
    }
    (chars == n).then_some(w.len())
}

/// The length in bytes of the first `n` characters (`n` at most 8) of a `word` whose first
/// [`chunk`] is `first`, or `None` when it has fewer. When those bytes are ASCII (always in an
/// ASCII prompt, and in most words of others) that is `n`, without reading the word again.
#[inline]
fn head<const ASCII: bool>(word: &[u8], first: u64, n: usize) -> Option<usize> {
    if ASCII || first & keep(n) & 0x8080_8080_8080_8080 == 0 {
        // Past the word's end the chunk is zero: ASCII, and then the word is shorter than n.
        (word.len() >= n).then_some(n)
    } else {
        head_len(word, n)
    }
}

/// The hash of the first `len` bytes of the word at `text[at..]` whose first [`chunk`] is
/// `first`: from the chunk alone when they fit in it.
#[inline]
fn hash_head(first: u64, text: &[u8], at: usize, len: usize) -> u64 {
    if len <= 8 {
        mix(0, first & keep(len))
    } else {
        hash(text, at, at + len)
    }
}

/// Whether a word of the prompt equals a normalised word of the table. An ASCII prompt is
/// compared as it stands: its words are letters and digits, and the table's are lower case.
/// A normalised prompt (`ASCII` false) is lower case already.
#[inline]
fn same<const ASCII: bool>(word: &[u8], table: &[u8]) -> bool {
    if ASCII {
        word.eq_ignore_ascii_case(table)
    } else {
        word == table
    }
}

/// Whether a word of the prompt starts with a normalised prefix of the table (see [`same`]).
#[inline]
fn starts<const ASCII: bool>(word: &[u8], prefix: &[u8]) -> bool {
    word.len() >= prefix.len() && same::<ASCII>(&word[..prefix.len()], prefix)
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
/// are then split on spaces).
fn normalise(text: &str) -> String {
    String::from_utf8(normalise_bytes(text)).expect("UTF-8 in, UTF-8 out")
}

/// [`normalise`], as bytes. ASCII characters go through a table, a byte at a time; others
/// through `char::to_lowercase` (which may give several characters). Non-ASCII prompts are
/// mostly ASCII, and stepping through them by `char` was twice as slow.
fn normalise_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while let Some(&b) = text.as_bytes().get(at) {
        if b.is_ascii() {
            out.push(FOLD[usize::from(b)]);
            at += 1;
            continue;
        }
        let c = text[at..].chars().next().expect("a character starts here");
        at += c.len_utf8();
        if c.is_alphanumeric() {
            for lower in c.to_lowercase() {
                out.extend_from_slice(lower.encode_utf8(&mut [0; 4]).as_bytes());
            }
        } else {
            out.push(b' ');
        }
    }
    out
}

/// The words of `text` as byte ranges, in order: of an ASCII prompt as it stands (`ASCII`:
/// runs of letters and digits), or of a normalised one (split on spaces). The same words
/// either way: a normalised ASCII prompt has the same bytes at the same places, with spaces
/// where the prompt has no letter or digit.
///
/// It works 64 bytes at a time: a mask with a bit per byte of a word ([`word_bits`]), and a
/// word starts or ends at each bit that differs from the one before. Branching per byte on its
/// kind mispredicted at every word boundary and was most of the time.
fn find_words<const ASCII: bool>(text: &[u8], words: &mut Vec<(usize, usize)>) {
    // The start of the word now open, and whether the last byte of the previous block was
    // a word's.
    let mut open = None;
    let mut carry = 0;
    let mut edges = |mask: u64, base: usize, carry: u64| {
        let mut flips = mask ^ ((mask << 1) | carry);
        while flips != 0 {
            let at = base + flips.trailing_zeros() as usize;
            flips &= flips - 1;
            match open.take() {
                Some(start) => words.push((start, at)),
                None => open = Some(at),
            }
        }
    };
    let mut blocks = text.chunks_exact(64);
    let mut base = 0;
    for block in &mut blocks {
        let mask = word_bits::<ASCII>(block.try_into().expect("64 bytes"));
        edges(mask, base, carry);
        carry = mask >> 63;
        base += 64;
    }
    // The last, partial block padded with spaces, which are no word's: a word running to the
    // end of the text ends there.
    let tail = blocks.remainder();
    let mut padded = [b' '; 64];
    padded[..tail.len()].copy_from_slice(tail);
    edges(word_bits::<ASCII>(&padded), base, carry);
}

/// A bit per byte of 64 bytes (bit `i` for byte `i`): whether it is a word's (see
/// [`find_words`]). Eight bytes at a time in a `u64` (SWAR, portable to wasm32 without SIMD):
/// a byte's top bit says whether it is in a range, then one multiply gathers the eight top
/// bits.
#[inline]
fn word_bits<const ASCII: bool>(block: &[u8; 64]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = ONES * 0x80;
    let mut mask = 0;
    for (i, eight) in block.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
        let top = if ASCII {
            // A letter or digit. Each byte is below 0x80, so adding at most 0x80 never
            // carries into the next byte: the sum's top bit says whether it reached the bound.
            let at_least = |x: u64, lo: u8| x + ONES * u64::from(0x80 - lo);
            let above = |x: u64, hi: u8| x + ONES * u64::from(0x7f - hi);
            let lower = x | (ONES * 0x20);
            let letter = at_least(lower, b'a') & !above(lower, b'z');
            let digit = at_least(x, b'0') & !above(x, b'9');
            (letter | digit) & TOPS
        } else {
            // Not a space: a byte of `x ^ spaces` that is not zero. Its low seven bits plus
            // 0x7f reach the top bit without carrying further when any is set.
            let y = x ^ (ONES * u64::from(b' '));
            (((y & !TOPS) + !TOPS) | y) & TOPS
        };
        // Byte k's top bit (bit 8k + 7) lands on bit 56 + k, and no two products overlap.
        mask |= (top.wrapping_mul(0x0002_0408_1020_4081) >> 56) << (8 * i);
    }
    mask
}

impl Table {
    #[cfg(test)]
    fn new(labels: usize) -> Self {
        Self::with_capacity(labels, 0, 0)
    }

    /// A table with room for `keywords` keywords of `bytes` bytes in all, so that setup
    /// allocates each vector once.
    fn with_capacity(labels: usize, keywords: usize, bytes: usize) -> Self {
        Table {
            bytes: Vec::with_capacity(bytes),
            word_index: Index::with_capacity(keywords),
            words: Vec::with_capacity(keywords),
            rules: Vec::with_capacity(keywords),
            rest: Vec::new(),
            key_index: Index::with_capacity(keywords),
            keys: Vec::with_capacity(keywords),
            prefixes: Vec::with_capacity(keywords),
            shortest: KEY,
            filter: Filter(Box::new([0; 1024])),
            sizes: vec![0; labels],
        }
    }

    /// The bytes of a word of the table.
    fn span(&self, s: Span) -> &[u8] {
        &self.bytes[s.at as usize..(s.at + s.len) as usize]
    }

    /// The [`Head`] of `word` in `index`/`heads`, added (with an empty list) when new, and the
    /// word's hash.
    fn head(bytes: &[u8], index: &mut Index, heads: &mut Vec<Head>, word: Span) -> (usize, u64) {
        let (at, end) = (word.at as usize, (word.at + word.len) as usize);
        let h = hash(bytes, at, end);
        let span = |s: Span| &bytes[s.at as usize..(s.at + s.len) as usize];
        if let Some(id) = index.find(h, |id| span(heads[id].word) == span(word)) {
            return (id, h);
        }
        heads.push(Head { word, first: NONE });
        index.insert(h, heads.len() - 1);
        (heads.len() - 1, h)
    }

    /// Add a keyword of `label`: words, a trailing `*` for a prefix (see the module's doc).
    fn add(&mut self, keyword: &str, label: usize) {
        let keyword = keyword.trim();
        let (body, prefix) = match keyword.strip_suffix('*') {
            Some(b) => (b, true),
            None => (keyword, false),
        };
        // The words of the keyword, normalised into `bytes`: an ASCII keyword (all the
        // shipped ones) is split on what is no letter or digit and lower-cased as it stands,
        // which gives what `normalise` does, without a `String`; others go through `normalise`
        // first, and are split on its spaces (it keeps other ASCII bytes but lower-case
        // letters and digits, and all non-ASCII ones).
        let norm = if body.is_ascii() {
            std::borrow::Cow::Borrowed(body)
        } else {
            normalise(body).into()
        };
        let offset = |n: usize| u32::try_from(n).expect("keywords under 4 GiB");
        let rest_from = self.rest.len();
        let mut first = None;
        for word in norm
            .as_bytes()
            .split(|&b| b.is_ascii() && !b.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let at = self.bytes.len();
            self.bytes.extend(word.iter().map(u8::to_ascii_lowercase));
            let word = Span {
                at: offset(at),
                len: offset(word.len()),
            };
            if first.is_none() {
                first = Some(word);
            } else {
                self.rest.push(word);
            }
        }
        let Some(first) = first else { return };
        self.sizes[label] += 1;
        let label = offset(label);
        let rest_len = offset(self.rest.len() - rest_from);
        if prefix && rest_len == 0 {
            // In the bucket of its first KEY characters (all of them when shorter), so that
            // each prefix is looked at under one key only.
            let word = self.span(first);
            let key_len = head_len(word, KEY).unwrap_or(word.len());
            let chars = word[..key_len]
                .iter()
                .filter(|&&b| b & 0xc0 != 0x80)
                .count();
            self.shortest = self.shortest.min(chars);
            let key = Span {
                at: first.at,
                len: offset(key_len),
            };
            let (id, h) = Self::head(&self.bytes, &mut self.key_index, &mut self.keys, key);
            self.filter.set(h);
            let at = first.at as usize;
            let head = chunk(&self.bytes, at, at + first.len as usize);
            self.prefixes.push(Prefix {
                word: first,
                head,
                label,
                next: self.keys[id].first,
            });
            self.keys[id].first = offset(self.prefixes.len() - 1);
            return;
        }
        let (id, h) = Self::head(&self.bytes, &mut self.word_index, &mut self.words, first);
        self.filter.set(h);
        let rule = Rule {
            label,
            rest: offset(rest_from),
            rest_len,
            last_is_prefix: prefix,
            next: self.words[id].first,
        };
        self.rules.push(rule);
        self.words[id].first = offset(self.rules.len() - 1);
    }

    /// Votes per label for `text`'s words. An ASCII prompt (most of them) is read as it
    /// stands: its words found, hashed and compared case-insensitively in place. Any other is
    /// [`normalise`]d first.
    fn votes(&self, text: &str) -> Vec<u32> {
        let mut votes = vec![0u32; self.sizes.len()];
        // Room for the words of most texts (prose has one per five or six bytes).
        let mut words = Vec::with_capacity(text.len() / 4 + 8);
        if text.is_ascii() {
            find_words::<true>(text.as_bytes(), &mut words);
            self.count::<true>(text.as_bytes(), &words, &mut votes);
        } else {
            let norm = normalise_bytes(text);
            find_words::<false>(&norm, &mut words);
            self.count::<false>(&norm, &words, &mut votes);
        }
        votes
    }

    /// Add the votes of `words` (byte ranges of `text`: the prompt itself when `ASCII`, else
    /// its normalised form).
    fn count<const ASCII: bool>(&self, text: &[u8], words: &[(usize, usize)], votes: &mut [u32]) {
        for (i, &(at, end)) in words.iter().enumerate() {
            let word = &text[at..end];
            let first = chunk(text, at, end);
            let h = hash_from(first, text, at, end);
            if self.filter.get(h) {
                let found = self
                    .word_index
                    .find(h, |id| same::<ASCII>(word, self.span(self.words[id].word)));
                if let Some(id) = found {
                    let mut r = self.words[id].first;
                    while r != NONE {
                        let rule = &self.rules[r as usize];
                        if rule.rest_len == 0 || self.follows::<ASCII>(rule, text, &words[i + 1..])
                        {
                            votes[rule.label as usize] += 1;
                        }
                        r = rule.next;
                    }
                }
            }
            // A word whose first KEY bytes are ASCII (all words of an ASCII prompt, most of
            // others), so that its keys are in `first`: the filter tests for all of them first,
            // without a branch between them (which one passes varies from word to word, and a
            // mispredicted branch costs more than a bit test). Past the word's end `first` is
            // zero, so a key longer than the word repeats the test of all of it.
            let ascii_keys = ASCII || first & keep(KEY) & 0x8080_8080_8080_8080 == 0;
            if ascii_keys
                && !(self.shortest..KEY + 1).fold(false, |any, n| {
                    any | self.filter.get(mix(0, first & keep(n)))
                })
            {
                continue;
            }
            for n in self.shortest..KEY + 1 {
                let Some(len) = head::<ASCII>(word, first, n) else {
                    break;
                };
                let h = hash_head(first, text, at, len);
                if !self.filter.get(h) {
                    continue;
                }
                let key = &word[..len];
                let Some(id) = self
                    .key_index
                    .find(h, |id| same::<ASCII>(key, self.span(self.keys[id].word)))
                else {
                    continue;
                };
                let mut p = self.keys[id].first;
                while p != NONE {
                    let prefix = &self.prefixes[p as usize];
                    let len = prefix.word.len as usize;
                    // The chunks decide for an ASCII word and a prefix of at most 8 bytes;
                    // else they only rule out (bit 5 set in non-ASCII bytes may make two
                    // chunks equal), and the bytes decide.
                    if word.len() >= len
                        && (first ^ prefix.head) & keep(len.min(8)) == 0
                        && ((ASCII && len <= 8) || starts::<ASCII>(word, self.span(prefix.word)))
                    {
                        votes[prefix.label as usize] += 1;
                    }
                    p = prefix.next;
                }
            }
        }
    }

    /// Whether the words after a phrase's first (`after`: the prompt's words after the one
    /// that opened it) continue it.
    fn follows<const ASCII: bool>(
        &self,
        rule: &Rule,
        text: &[u8],
        after: &[(usize, usize)],
    ) -> bool {
        let rest = &self.rest[rule.rest as usize..(rule.rest + rule.rest_len) as usize];
        let Some(next) = after.get(..rest.len()) else {
            return false;
        };
        next.iter()
            .zip(rest)
            .enumerate()
            .all(|(j, (&(at, end), &want))| {
                let (word, want) = (&text[at..end], self.span(want));
                if rule.last_is_prefix && j + 1 == rest.len() {
                    starts::<ASCII>(word, want)
                } else {
                    same::<ASCII>(word, want)
                }
            })
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
        let index: HashMap<&str, usize> = taxonomy
            .iter()
            .enumerate()
            .map(|(i, l)| (l.code.as_str(), i))
            .collect();
        // Borrowed from the shipped list and from params: setup runs once per batch, and a
        // `String` per keyword was a good part of it.
        let mut lists: Vec<Vec<&str>> = vec![Vec::new(); taxonomy.len()];
        let shipped = match params.get("shipped") {
            None => true,
            Some(v) => v.as_bool().ok_or("params.shipped must be true or false")?,
        };
        if shipped {
            for (code, kws) in parse_shipped(SOC_2018) {
                if let Some(&i) = index.get(code) {
                    lists[i] = kws;
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
                    .map(|k| k.as_str())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("params.keywords.{code} must be a list of strings"))?;
            }
        }
        if lists.iter().all(Vec::is_empty) {
            return Err("no label of this taxonomy has keywords: give them in params.keywords (the shipped table covers the SOC 2018 major groups)".into());
        }
        let keywords = lists.iter().map(Vec::len).sum();
        let bytes = lists.iter().flatten().map(|k| k.len()).sum();
        let mut table = Table::with_capacity(taxonomy.len(), keywords, bytes);
        for (label, kws) in lists.iter().enumerate() {
            for k in kws {
                table.add(k, label);
            }
        }
        Ok(table)
    }

    fn classify(
        table: &Table,
        taxonomy: &[Label],
        query: ClassifyQuery,
    ) -> Result<Verdict, String> {
        let votes = table.votes(&query.prompt);
        let total: u32 = votes.iter().sum();
        let Some(top) = votes.iter().copied().max().filter(|&t| t > 0) else {
            return Ok(Verdict::unlabelled("no keyword of any label in the prompt"));
        };
        let winners: Vec<usize> = (0..votes.len()).filter(|&i| votes[i] == top).collect();
        let win = winners[0];
        let mut why = format!("{top} of {total} keyword votes for {}", taxonomy[win].code);
        if winners.len() > 1 {
            let tied: Vec<&str> = winners[1..]
                .iter()
                .map(|&i| taxonomy[i].code.as_str())
                .collect();
            why.push_str(&format!(
                " (tied with {}: first listed wins)",
                tied.join(", ")
            ));
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

    /// The shipped table's codes as a taxonomy (titles and descriptions do not matter here).
    pub(super) fn soc_labels() -> Vec<Label> {
        parse_shipped(SOC_2018)
            .map(|(c, _)| Label {
                code: c.to_string(),
                title: String::new(),
                description: String::new(),
            })
            .collect()
    }

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
        assert_eq!(
            t.votes("The board of directors, managers and management"),
            vec![0, 3]
        );
        assert_eq!(t.votes("board directors of"), vec![0, 0]);
        // A short prefix, a word exactly a prefix, non-ASCII letters.
        assert_eq!(t.votes("ab abc a b"), vec![2, 0]);
        assert_eq!(t.votes("My RÉSUMÉ, manag"), vec![0, 2]);
    }

    /// Keywords that reach every corner of the matching rules: prefixes shorter than, equal to
    /// and longer than KEY, words and prefixes of 8 and 16 bytes (a whole number of hash
    /// chunks) and longer, non-ASCII words and prefixes (one that lower-cases to two
    /// characters, one that lower-cases to ASCII, prefix keys of more than 8 bytes), phrases
    /// ending in a prefix or a one-letter word, punctuation inside a keyword, a keyword twice
    /// and under two labels, a word that is also a prefix, keywords that are no words at all.
    const TRICKY: [(&str, usize); 39] = [
        ("court", 0),
        ("court", 0),
        ("court", 1),
        ("law", 0),
        ("law*", 1),
        ("ab*", 0),
        ("a*", 1),
        ("x*", 2),
        ("abc*", 2),
        ("abcd*", 0),
        ("abcdefgh", 1),
        ("abcdefgh*", 2),
        ("abcdefghabcdefgh", 0),
        ("abcdefghabcdefghi*", 1),
        ("internationalization", 2),
        ("electroencephalograph*", 0),
        ("board of directors", 1),
        ("board of direct*", 2),
        ("board", 0),
        ("3d print*", 1),
        ("build a", 2),
        ("e-commerce", 0),
        ("c++", 1),
        ("covid19", 2),
        ("1st", 0),
        ("résumé", 1),
        ("naïve*", 2),
        ("İstanbul", 0),
        ("straße", 1),
        ("\u{212A}elvin", 2),
        ("日本", 0),
        ("日本語*", 1),
        ("日本語の*", 2),
        ("é*", 2),
        ("  Spaced   Out  ", 0),
        ("**", 1),
        ("", 2),
        ("manag*", 1),
        ("end of text*", 2),
    ];

    /// Strings built to trip the new reader: empty and blank, case, punctuation, digits,
    /// non-ASCII (in words and as separators), phrases at the very end, repeated spaces.
    const STRINGS: [&str; 40] = [
        "",
        " ",
        "    ",
        "court",
        "COURT Court court's courts",
        "The Court's ruling",
        "board of directors",
        "board  of   directors, board of DIRECTORATE",
        "board of",
        "Board-Of-Directors!",
        "ab a b abc abcd abcde ABCDEF",
        "ab*",
        "x X xx",
        "abcdefgh abcdefghi ABCDEFGHABCDEFGH abcdefghabcdefghij abcdefghabcdefgh",
        "Internationalization internationalizations ELECTROENCEPHALOGRAPHY electroencephalograp",
        "3d printing 3D-Printer 3dprint 3d",
        "e-commerce ecommerce e commerce E.Commerce",
        "c++ c# C",
        "build a house; build; build a",
        "COVID-19 covid19 1st 2nd 10 100",
        "My RÉSUMÉ, résumé's, resume",
        "naïveté NAÏVE naive",
        "İstanbul ISTANBUL istanbul i̇stanbul",
        "straße STRASSE strasse",
        "\u{212A}elvin kelvin KELVIN",
        "日本 日本語 日本語の本",
        "é É éa e\u{301}",
        "court\tlaw\nlegal\r\nlaws",
        "court\u{a0}law\u{2014}board of directors",
        "👍court👍 law👍",
        "manag managers MANAGEMENT",
        "spaced out SPACED OUT spaced",
        "the end of text",
        "the end of textbooks",
        "the end of",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa court",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa courtabcdefghabcdefghijklmnopqrstuvwxyz law",
        "................................................................court",
        "...............................................................board of directors",
        "Abcdefghabcdefghi abcdefghABCDEFGHI! 0123456789",
    ];

    /// The shipped table, new and old, with label i the i-th line.
    fn shipped() -> (Table, reference::Table) {
        let (mut new, mut old) = (Table::new(22), reference::Table::new(22));
        for (i, (_, kws)) in parse_shipped(SOC_2018).enumerate() {
            for k in kws {
                new.add(k, i);
                old.add(k, i);
            }
        }
        (new, old)
    }

    /// The tricky table, new and old, without the prefixes of fewer than `shortest` characters
    /// (which changes under how many keys a word is looked up, in the old table and the new).
    fn tricky(shortest: usize) -> (Table, reference::Table) {
        let (mut new, mut old) = (Table::new(3), reference::Table::new(3));
        for (k, l) in TRICKY {
            if k.strip_suffix('*')
                .is_none_or(|p| p.chars().count() >= shortest)
            {
                new.add(k, l);
                old.add(k, l);
            }
        }
        assert_eq!(new.shortest, shortest);
        (new, old)
    }

    /// Every line of every file under `core/data/mmlu` (CSV: questions with their choices,
    /// 12% of them not ASCII) and `core/data/gsm8k`, raw and, for JSON lines, their strings.
    fn data_prompts() -> Vec<String> {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../core/data");
        let mut prompts = Vec::new();
        for dir in ["mmlu", "gsm8k"] {
            let mut files: Vec<_> = std::fs::read_dir(data.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines() {
                    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) {
                        prompts.extend(o.values().filter_map(|v| v.as_str()).map(String::from));
                    }
                    prompts.push(line.to_string());
                }
            }
        }
        assert!(
            prompts.len() > 17_000,
            "core/data has {} prompt lines",
            prompts.len()
        );
        prompts
    }

    /// Random strings of fragments (keywords, pieces of them, in several cases, separators
    /// ASCII or not) and of random ASCII bytes (control characters included), with lengths
    /// around the 64-byte blocks of `find_words`. xorshift: no dependency, same every run.
    fn random_prompts(n: usize) -> Vec<String> {
        const PIECES: [&str; 44] = [
            "court",
            "Court",
            "COURTS",
            "law",
            "LAW",
            "ab",
            "a",
            "b",
            "abc",
            "ABCD",
            "x",
            "abcdefgh",
            "abcdefghabcdefgh",
            "i",
            "internationalization",
            "electroencephalograph",
            "board",
            "of",
            "directors",
            "direct",
            "3d",
            "print",
            "e",
            "commerce",
            "c",
            "build",
            "covid19",
            "1st",
            "résumé",
            "RÉSUMÉ",
            "naïve",
            "İ",
            "ß",
            "\u{212A}",
            "日本",
            "語",
            "é",
            "\u{301}",
            "manag",
            "end",
            "text",
            "👍",
            "\u{a0}",
            "Ω",
        ];
        const SEPARATORS: [&str; 8] = [" ", "  ", "-", "'", ", ", "\n", "", "."];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    let len = next(200);
                    (0..len).map(|_| char::from(next(128) as u8)).collect()
                } else {
                    let mut s = String::new();
                    for _ in 0..next(40) {
                        s.push_str(PIECES[next(PIECES.len())]);
                        s.push_str(SEPARATORS[next(SEPARATORS.len())]);
                    }
                    s
                }
            })
            .collect()
    }

    /// The new table gives exactly the old table's votes: on every prompt of core/data, hand
    /// written strings and random ones, with the shipped table and with tricky ones.
    #[test]
    fn votes_equal_the_old_tables() {
        let mut prompts = data_prompts();
        prompts.extend(STRINGS.iter().map(|s| s.to_string()));
        prompts.extend(random_prompts(20_000));
        let tables = [shipped(), tricky(1), tricky(3), tricky(KEY)];
        for (t, (new, old)) in tables.iter().enumerate() {
            assert_eq!(new.sizes, old.sizes);
            let mut voted = 0;
            for p in &prompts {
                let want = old.votes(p);
                assert_eq!(new.votes(p), want, "table {t}, prompt {p:?}");
                voted += usize::from(want.iter().any(|&v| v > 0));
            }
            // The comparison is worth something only if keywords are found.
            assert!(
                voted > prompts.len() / 4,
                "table {t}: {voted} prompts with votes"
            );
        }
    }

    /// Setup from params builds the same table as before (shipped, replaced, added labels).
    #[test]
    fn setup_equals_the_old_setup() {
        let taxonomy = soc_labels();
        let params = [
            serde_json::json!({}),
            serde_json::json!({"keywords": {"15-0000": ["ab*", "résumé", "board of direct*"], "23-0000": []}}),
            serde_json::json!({"shipped": false, "keywords": {"11-0000": ["court", "a*", "x y"]}}),
        ];
        let mut prompts: Vec<String> = STRINGS.iter().map(|s| s.to_string()).collect();
        prompts.extend(random_prompts(2_000));
        for p in params {
            let params = p.as_object().unwrap();
            let new = Keywords::setup(&taxonomy, params.clone()).unwrap();
            let old = reference::setup(&taxonomy, params.clone()).unwrap();
            assert_eq!(new.sizes, old.sizes, "{p}");
            for s in &prompts {
                assert_eq!(new.votes(s), old.votes(s), "{p}: {s:?}");
            }
        }
    }

    /// `find_words` finds the words of the normalised text, split on spaces a byte at a time:
    /// in an ASCII text as it stands, and in a normalised one; for each ASCII byte at each place
    /// around a block boundary, and in random strings.
    #[test]
    fn find_words_splits_on_spaces() {
        let split = |text: &str| {
            let norm = normalise(text);
            let mut want = Vec::new();
            let mut start = None;
            for (i, b) in norm.bytes().chain([b' ']).enumerate() {
                match (b == b' ', start) {
                    (true, Some(s)) => {
                        want.push((s, i));
                        start = None;
                    }
                    (false, None) => start = Some(i),
                    _ => {}
                }
            }
            let mut words = Vec::new();
            find_words::<false>(norm.as_bytes(), &mut words);
            assert_eq!(words, want, "{text:?}");
            if text.is_ascii() {
                words.clear();
                find_words::<true>(text.as_bytes(), &mut words);
                assert_eq!(words, want, "{text:?}");
            }
        };
        for b in 0..128u8 {
            for at in [0, 1, 7, 8, 62, 63, 64, 65, 127, 128] {
                for fill in ["a", "Z", "9", " ", "@", "\u{7f}"] {
                    let mut text = fill.repeat(130);
                    text.replace_range(at..at + 1, &char::from(b).to_string());
                    split(&text);
                    split(&text[..at + 1]);
                }
            }
        }
        for fill in ["é", "日", " é", "a\u{a0}"] {
            for n in 0..70 {
                split(&fill.repeat(n));
            }
        }
        for p in random_prompts(2_000) {
            split(&p);
        }
    }
}

#[cfg(test)]
mod speed {
    use super::{
        find_words, normalise_bytes, parse_shipped, reference, tests::soc_labels, Classifier,
        Keywords, Table, SOC_2018,
    };
    use std::hint::black_box;
    use std::time::Instant;

    /// The best of eleven runs of `f`, in microseconds per `n`: the best run is the one least
    /// disturbed by whatever else the machine does.
    fn best(n: usize, mut f: impl FnMut()) -> f64 {
        (0..11)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// `cargo test --release -p ipw-classifier-keywords native_speed -- --ignored --nocapture`:
    /// the table's own cost, old (`reference`) and new, without the sandbox: on long prompts
    /// (professional law), on a mix of every MMLU subject (ASCII and not), and to set up (once
    /// per batch).
    #[test]
    #[ignore]
    fn native_speed() {
        let lists: Vec<Vec<&str>> = parse_shipped(SOC_2018).map(|(_, kws)| kws).collect();
        let (mut new, mut old) = (Table::new(22), reference::Table::new(22));
        for (i, kws) in lists.iter().enumerate() {
            for k in kws {
                new.add(k, i);
                old.add(k, i);
            }
        }

        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../core/data/mmlu");
        let law = std::fs::read_to_string(data.join("professional_law_test.csv")).unwrap();
        let law: Vec<&str> = law.lines().take(2000).collect();
        let mut files: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.retain(|f| f.extension().is_some_and(|e| e == "csv"));
        files.sort();
        let texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let mix: Vec<&str> = texts.iter().flat_map(|t| t.lines()).collect();
        let (ascii, other): (Vec<&str>, Vec<&str>) = mix.iter().partition(|p| p.is_ascii());
        let sets = [
            ("professional law", &law),
            ("MMLU mix, all subjects", &mix),
            ("  its ASCII prompts", &ascii),
            ("  its other prompts", &other),
        ];
        for (name, prompts) in sets {
            let n = prompts.len();
            let bytes: usize = prompts.iter().map(|p| p.len()).sum();
            let mut words = Vec::new();
            let split = best(n, || {
                for p in prompts.iter() {
                    words.clear();
                    if p.is_ascii() {
                        find_words::<true>(p.as_bytes(), &mut words);
                    } else {
                        find_words::<false>(&normalise_bytes(p), &mut words);
                    }
                    black_box(&words);
                }
            });
            let before = best(n, || {
                prompts.iter().for_each(|p| drop(black_box(old.votes(p))))
            });
            let after = best(n, || {
                prompts.iter().for_each(|p| drop(black_box(new.votes(p))))
            });
            eprintln!(
                "{name}: {n} prompts of {} bytes: votes old {before:.2} us/query, new {after:.2} us/query ({:.1}x); finding the words {split:.2} us/query",
                bytes / n,
                before / after
            );
        }

        let parse = best(100, || {
            (0..100).for_each(|_| drop(black_box(parse_shipped(SOC_2018).collect::<Vec<_>>())))
        });
        let build_old = best(100, || {
            for _ in 0..100 {
                let mut t = reference::Table::new(22);
                lists
                    .iter()
                    .enumerate()
                    .for_each(|(i, kws)| kws.iter().for_each(|k| t.add(k, i)));
                black_box(t);
            }
        });
        let (keywords, bytes) = (
            lists.iter().map(Vec::len).sum(),
            lists.iter().flatten().map(|k| k.len()).sum(),
        );
        let build_new = best(100, || {
            for _ in 0..100 {
                let mut t = Table::with_capacity(22, keywords, bytes);
                lists
                    .iter()
                    .enumerate()
                    .for_each(|(i, kws)| kws.iter().for_each(|k| t.add(k, i)));
                black_box(t);
            }
        });
        let taxonomy = soc_labels();
        let setup_old = best(100, || {
            (0..100).for_each(|_| drop(black_box(reference::setup(&taxonomy, Default::default()))))
        });
        let setup_new = best(100, || {
            (0..100).for_each(|_| drop(black_box(Keywords::setup(&taxonomy, Default::default()))))
        });
        eprintln!("shipped list ({keywords} keywords): parsing {parse:.1} us; building the table old {build_old:.1} us, new {build_new:.1} us");
        eprintln!("setup (SOC 2018 taxonomy, default params): old {setup_old:.1} us, new {setup_new:.1} us");
    }
}
