//! Hashed features of a query: what a router may see, never its outcome.

/// One nonzero feature: its hash bucket and its value.
pub type Feature = (u32, f32);

/// Which features a model uses. Recorded in its parameters, so the router computes exactly the
/// features it was trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSet {
    /// log2 of the number of hash buckets (weights per candidate).
    pub dim_log2: u32,
    /// Word n-grams up to this length: 1 words, 2 words and adjacent pairs.
    pub word_n: u32,
    /// Character n-gram length; 0 for none.
    pub char_n: u32,
}

impl FeatureSet {
    /// 2^14 buckets, words and word pairs, character 4-grams.
    pub const DEFAULT: FeatureSet = FeatureSet {
        dim_log2: 14,
        word_n: 2,
        char_n: 4,
    };

    /// Hash buckets.
    pub fn dim(&self) -> usize {
        1 << self.dim_log2
    }
}

/// FNV-1a over `bytes`, starting from a `seed`ed basis, then mixed (splitmix64's finaliser) so
/// the low bits a bucket takes are as good as the high ones.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = Fnv::new(seed);
    h.write(bytes);
    h.finish()
}

struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Self {
        Fnv(0xcbf2_9ce4_8422_2325 ^ seed)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A feature of kind `tag` (one byte, so a word and a dataset of the same name differ) over
/// `parts`: its bucket, and a sign from another bit of the hash (signed hashing: collisions
/// cancel on average instead of adding up).
fn hashed(fs: &FeatureSet, tag: u8, parts: &[&[u8]]) -> (u32, f32) {
    let mut h = Fnv::new(0);
    h.write(&[tag]);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.write(&[0]);
        }
        h.write(p);
    }
    let h = h.finish();
    let bucket = (h as u32) & ((1u32 << fs.dim_log2) - 1);
    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
    (bucket, sign)
}

/// log2 size class of a count: 0, 1, 2-3, 4-7, ...
fn size_class(n: u64) -> u8 {
    (64 - n.leading_zeros()) as u8
}

/// The features of a query into `out` (cleared first; a bucket may occur more than once, and
/// its values add up): the prompt's words, word pairs and character n-grams (lower-cased,
/// their block scaled to unit length), plus one feature each for its dataset, its subject,
/// the size class of its length in characters and, when counted, in tokens.
pub fn featurize(
    fs: &FeatureSet,
    prompt: &str,
    dataset: &str,
    subject: Option<&str>,
    prompt_tokens: Option<u64>,
    out: &mut Vec<Feature>,
) {
    out.clear();
    // Most prompts are ASCII: lower-casing and finding characters is then byte work.
    let ascii = prompt.is_ascii();
    let lower: String = if ascii {
        prompt.to_ascii_lowercase()
    } else {
        prompt.chars().flat_map(char::to_lowercase).collect()
    };
    let mut previous: Option<&str> = None;
    for w in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.push(hashed(fs, b'w', &[w.as_bytes()]));
        if fs.word_n >= 2 {
            if let Some(p) = previous {
                out.push(hashed(fs, b'p', &[p.as_bytes(), w.as_bytes()]));
            }
        }
        previous = Some(w);
    }
    if fs.char_n > 0 {
        let n = fs.char_n as usize;
        let bytes = lower.as_bytes();
        if ascii {
            for w in bytes.windows(n) {
                out.push(hashed(fs, b'c', &[w]));
            }
        } else {
            let starts: Vec<usize> = lower
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(lower.len()))
                .collect();
            for w in starts.windows(n + 1) {
                out.push(hashed(fs, b'c', &[&bytes[w[0]..w[n]]]));
            }
        }
    }
    // Scaled so the text block has unit length when no two of its features share a bucket:
    // a long prompt weighs as much as a short one. (Not the merged vector's exact norm: that
    // needs a sort, which cost more than everything else here together.)
    if !out.is_empty() {
        let scale = 1.0 / (out.len() as f32).sqrt();
        for f in out.iter_mut() {
            f.1 *= scale;
        }
    }
    out.push(hashed(fs, b'd', &[dataset.as_bytes()]));
    if let Some(s) = subject {
        out.push(hashed(fs, b's', &[s.as_bytes()]));
    }
    let chars = prompt.chars().count() as u64;
    out.push(hashed(fs, b'l', &[&[size_class(chars)]]));
    if let Some(t) = prompt_tokens {
        out.push(hashed(fs, b't', &[&[size_class(t)]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_query_same_features_and_text_block_has_unit_length() {
        let fs = FeatureSet::DEFAULT;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        featurize(&fs, "What is 2 + 2?", "gsm8k", None, Some(7), &mut a);
        featurize(&fs, "What is 2 + 2?", "gsm8k", None, Some(7), &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|f| (f.0 as usize) < fs.dim()));
        // 4 words, 3 pairs, 11 character 4-grams of "what is 2 + 2?": 18 features of ±1/√18,
        // then three meta features (dataset, length in characters and in tokens; no subject)
        // of ±1.
        assert_eq!(a.len(), 18 + 3);
        let sq: f32 = a.iter().map(|f| f.1 * f.1).sum();
        assert!((sq - 4.0).abs() < 1e-4, "{sq}");
    }

    #[test]
    fn case_does_not_matter_but_words_do() {
        let fs = FeatureSet::DEFAULT;
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        featurize(&fs, "Paris is in FRANCE", "d", None, None, &mut a);
        featurize(&fs, "paris is in france", "d", None, None, &mut b);
        featurize(&fs, "paris is in spain", "d", None, None, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
