//! A trained model's parameters as bytes: what the learned-router component carries.
//!
//! Layout, little-endian: the magic; the algorithm (u32: 0 a logistic regression per cheaper
//! candidate, 1 nearest neighbours); `dim_log2`, `word_n`, `char_n`, the number of cheaper
//! candidates `k` (u32 each); the reference's name; per cheaper candidate (cheapest first) its
//! name and bias (f32); the number of other candidates (u32: models it was trained beside but
//! never sends a query to, as they cost the reference's or more) and their names; zero padding
//! to a multiple of 4; then the body. A regression's body is `2^dim_log2 x k` f32 weights,
//! bucket-major (a bucket's `k` weights side by side, so a feature reads one place for every
//! candidate); its biases are the intercepts. A neighbours body is the neighbours that vote
//! (u32) and the prototypes `m` (u32); per bucket the start of its postings (`2^dim_log2 + 1`
//! u32); the postings (prototype u32, value f32); and per prototype `k` labels (one byte each:
//! 1 where that candidate was as good as the reference); its biases are the log-odds of each
//! candidate's share of such queries (the prior a vote is shrunk towards). A name is a u32
//! byte length and UTF-8.

use crate::features::{Feature, FeatureSet};

/// The first bytes of a learned router's parameters (the last byte is the format version).
pub const MAGIC: [u8; 8] = *b"ipwlrnr\x02";

/// How a model scores a query, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<T> {
    /// Logistic regression: `dim x k` weights, bucket-major.
    Linear(T),
    /// Nearest neighbours over the same features.
    Neighbours {
        /// How many nearest prototypes vote.
        vote: u32,
        /// Prototypes.
        prototypes: u32,
        /// `dim + 1` offsets into `postings`.
        offsets: T,
        /// (prototype, value) per feature of each prototype, by bucket.
        postings: T,
        /// `prototypes x k` labels.
        labels: T,
    },
}

/// A body to write: weights, or neighbours' postings and labels.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyToWrite {
    /// `dim x k` weights, bucket-major.
    Linear(Vec<f32>),
    /// Per bucket, its (prototype, value) postings; per prototype, `k` labels (0 or 1).
    Neighbours {
        /// How many nearest prototypes vote.
        vote: u32,
        /// Per bucket, (prototype, value).
        postings: Vec<Vec<(u32, f32)>>,
        /// `prototypes x k`, prototype-major.
        labels: Vec<u8>,
    },
}

/// Why parameters could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError(pub String);

impl std::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "learned router parameters: {}", self.0)
    }
}

impl std::error::Error for ParamsError {}

/// A candidate the router may send a query to instead of the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Cheaper<'a> {
    /// Model name, as in the runs it was trained on.
    pub name: &'a str,
    /// Intercept of its logistic regression.
    pub bias: f32,
}

/// A trained model, read in place from its bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    /// The features it was trained on.
    pub features: FeatureSet,
    /// The model it routes away from.
    pub reference: &'a str,
    /// The cheaper candidates, cheapest first.
    pub cheaper: Vec<Cheaper<'a>>,
    /// The other models it was trained beside (no cheaper than the reference): candidates it
    /// expects, never chooses.
    pub others: Vec<&'a str>,
    body: Body<&'a [u8]>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParamsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| ParamsError(format!("cut short at byte {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, ParamsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32(&mut self) -> Result<f32, ParamsError> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn name(&mut self) -> Result<&'a str, ParamsError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| ParamsError("a name is not UTF-8".into()))
    }
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    let b = &bytes[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

impl<'a> Model<'a> {
    /// Read parameters written by [`Model::encode`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ParamsError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(ParamsError(
                "not a learned router's parameters (wrong magic or version)".into(),
            ));
        }
        let algorithm = r.u32()?;
        let features = FeatureSet {
            dim_log2: r.u32()?,
            word_n: r.u32()?,
            char_n: r.u32()?,
        };
        if !(1..=24).contains(&features.dim_log2) {
            return Err(ParamsError(format!(
                "dim_log2 {} is not in 1..=24",
                features.dim_log2
            )));
        }
        let k = r.u32()? as usize;
        let reference = r.name()?;
        let mut cheaper = Vec::new();
        for _ in 0..k {
            let name = r.name()?;
            cheaper.push(Cheaper {
                name,
                bias: r.f32()?,
            });
        }
        let others = (0..r.u32()?)
            .map(|_| r.name())
            .collect::<Result<Vec<_>, _>>()?;
        r.take((4 - r.at % 4) % 4)?;
        let body = match algorithm {
            0 => Body::Linear(r.take(features.dim() * k * 4)?),
            1 => {
                let vote = r.u32()?;
                let prototypes = r.u32()?;
                let offsets = r.take((features.dim() + 1) * 4)?;
                let total = u32_at(offsets, features.dim()) as usize;
                let postings = r.take(
                    total
                        .checked_mul(8)
                        .ok_or_else(|| ParamsError("too many postings".into()))?,
                )?;
                let labels = r.take(prototypes as usize * k)?;
                if vote == 0 {
                    return Err(ParamsError("no neighbour votes".into()));
                }
                Body::Neighbours {
                    vote,
                    prototypes,
                    offsets,
                    postings,
                    labels,
                }
            }
            other => return Err(ParamsError(format!("algorithm {other} is unknown"))),
        };
        if r.at != bytes.len() {
            return Err(ParamsError(format!(
                "{} bytes after the parameters",
                bytes.len() - r.at
            )));
        }
        Ok(Model {
            features,
            reference,
            cheaper,
            others,
            body,
        })
    }

    /// The bytes of a model: `cheaper` cheapest first with its bias, `others` the models it
    /// expects beside them and never chooses, and its body.
    pub fn encode(
        features: &FeatureSet,
        reference: &str,
        cheaper: &[(String, f32)],
        others: &[String],
        body: &BodyToWrite,
    ) -> Vec<u8> {
        let k = cheaper.len();
        let mut out = MAGIC.to_vec();
        let algorithm = match body {
            BodyToWrite::Linear(_) => 0u32,
            BodyToWrite::Neighbours { .. } => 1,
        };
        for v in [
            algorithm,
            features.dim_log2,
            features.word_n,
            features.char_n,
            k as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_name(&mut out, reference);
        for (name, bias) in cheaper {
            put_name(&mut out, name);
            out.extend_from_slice(&bias.to_bits().to_le_bytes());
        }
        out.extend_from_slice(&(others.len() as u32).to_le_bytes());
        for name in others {
            put_name(&mut out, name);
        }
        out.resize(out.len().div_ceil(4) * 4, 0);
        let mut put = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        match body {
            BodyToWrite::Linear(weights) => {
                assert_eq!(
                    weights.len(),
                    features.dim() * k,
                    "one weight per bucket and candidate"
                );
                for w in weights {
                    put(w.to_bits());
                }
            }
            BodyToWrite::Neighbours {
                vote,
                postings,
                labels,
            } => {
                assert_eq!(postings.len(), features.dim(), "postings per bucket");
                assert_eq!(labels.len() % k.max(1), 0, "k labels per prototype");
                put(*vote);
                put((labels.len() / k.max(1)) as u32);
                let mut at = 0u32;
                put(0);
                for p in postings {
                    at += p.len() as u32;
                    put(at);
                }
                for p in postings {
                    for &(proto, value) in p {
                        put(proto);
                        put(value.to_bits());
                    }
                }
                out.extend_from_slice(labels);
            }
        }
        out
    }

    /// Check what [`Model::decode`] leaves to the decisions (which read only the postings of
    /// a query's buckets): that every bucket's postings lie in order within the postings and
    /// name a prototype. A host reading a router it did not train calls this once.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let Body::Neighbours {
            prototypes,
            offsets,
            postings,
            ..
        } = self.body
        else {
            return Ok(());
        };
        let total = postings.len() / 8;
        let mut previous = 0;
        for b in 0..=self.features.dim() {
            let o = u32_at(offsets, b) as usize;
            if o < previous || o > total {
                return Err(ParamsError(format!("posting offset {b} out of order")));
            }
            previous = o;
        }
        if (0..total).any(|i| u32_at(postings, 2 * i) >= prototypes) {
            return Err(ParamsError("a posting names no prototype".into()));
        }
        Ok(())
    }

    /// Every model it was trained on: the reference, the cheaper ones, the others.
    pub fn models(&self) -> Vec<&'a str> {
        std::iter::once(self.reference)
            .chain(self.cheaper.iter().map(|c| c.name))
            .chain(self.others.iter().copied())
            .collect()
    }

    /// Per cheaper candidate (in [`Model::cheaper`]'s order), the log-odds that it answers a
    /// query with features `x` as well as the reference does.
    pub fn logits(&self, x: &[Feature]) -> Vec<f32> {
        let k = self.cheaper.len();
        let mut z: Vec<f32> = self.cheaper.iter().map(|c| c.bias).collect();
        match self.body {
            Body::Linear(weights) => {
                let row = 4 * k;
                for &(bucket, value) in x {
                    // One bounds check per feature, then plain loads: this loop is the decision.
                    let at = bucket as usize * row;
                    let weights = &weights[at..at + row];
                    for (zj, w) in z.iter_mut().zip(weights.chunks_exact(4)) {
                        *zj += value * f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                    }
                }
            }
            Body::Neighbours {
                vote,
                prototypes,
                offsets,
                postings,
                labels,
            } => {
                // Similarity (dot product of features) to every prototype, through the postings
                // of the query's buckets only.
                let mut sim = vec![0f32; prototypes as usize];
                // Each bucket once: a query's repeated word or n-gram walks its postings once.
                let mut x = x.to_vec();
                x.sort_unstable_by_key(|f| f.0);
                x.dedup_by(|b, a| {
                    let same = a.0 == b.0;
                    if same {
                        a.1 += b.1;
                    }
                    same
                });
                for &(bucket, value) in &x {
                    let (from, to) = (
                        u32_at(offsets, bucket as usize) as usize,
                        u32_at(offsets, bucket as usize + 1) as usize,
                    );
                    for i in from..to {
                        let p = u32_at(postings, 2 * i) as usize;
                        sim[p] += value * f32::from_bits(u32_at(postings, 2 * i + 1));
                    }
                }
                // The `vote` most similar (ties to the earlier prototype), each one vote;
                // shrunk towards the prior by one pseudo-vote.
                let mut order: Vec<u32> = (0..prototypes).collect();
                let n = (vote as usize).min(order.len());
                let by =
                    |a: &u32, b: &u32| sim[*b as usize].total_cmp(&sim[*a as usize]).then(a.cmp(b));
                if n > 0 && n < order.len() {
                    order.select_nth_unstable_by(n - 1, by);
                }
                for (j, zj) in z.iter_mut().enumerate() {
                    let prior = crate::sigmoid(*zj);
                    let votes: f32 = order[..n]
                        .iter()
                        .map(|&p| f32::from(labels[p as usize * k + j]))
                        .sum();
                    let p = ((votes + prior) / (n as f32 + 1.0)).clamp(1e-6, 1.0 - 1e-6);
                    *zj = (p / (1.0 - p)).ln();
                }
            }
        }
        z
    }

    /// [`Model::logits`] as probabilities.
    pub fn probabilities(&self, x: &[Feature]) -> Vec<f32> {
        self.logits(x).into_iter().map(crate::sigmoid).collect()
    }

    /// The route for log-odds `z` at `threshold`: the index of the cheapest candidate whose
    /// probability reaches it, with that probability; `None` for the reference. Compared as
    /// log-odds (one logarithm, not an exponential per candidate): a threshold of 0 takes the
    /// cheapest, 1 always the reference.
    pub fn choose(&self, z: &[f32], threshold: f32) -> Option<(usize, f32)> {
        let cut = if threshold <= 0.0 {
            f32::NEG_INFINITY
        } else if threshold >= 1.0 {
            f32::INFINITY
        } else {
            (threshold / (1.0 - threshold)).ln()
        };
        z.iter()
            .position(|&zj| zj >= cut)
            .map(|j| (j, crate::sigmoid(z[j])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_scores() {
        let fs = FeatureSet {
            dim_log2: 3,
            word_n: 1,
            char_n: 0,
        };
        let cheaper = vec![("small".to_string(), 0.5f32), ("mid".to_string(), -1.0)];
        let weights: Vec<f32> = (0..16).map(|i| i as f32 / 10.0).collect();
        let bytes = Model::encode(
            &fs,
            "large",
            &cheaper,
            &["huge".into()],
            &BodyToWrite::Linear(weights),
        );
        assert_eq!(
            Model::decode(&bytes).unwrap().models(),
            ["large", "small", "mid", "huge"]
        );
        let m = Model::decode(&bytes).unwrap();
        assert_eq!(m.features, fs);
        assert_eq!(m.reference, "large");
        assert_eq!(
            m.cheaper[1],
            Cheaper {
                name: "mid",
                bias: -1.0
            }
        );
        // Bucket 2 with value 1: small reads weights[4], mid weights[5].
        let p = m.probabilities(&[(2, 1.0)]);
        assert!((p[0] - crate::sigmoid(0.5 + 0.4)).abs() < 1e-7);
        assert!((p[1] - crate::sigmoid(-1.0 + 0.5)).abs() < 1e-7);
        let z = m.logits(&[(2, 1.0)]);
        assert_eq!(m.choose(&z, 0.5), Some((0, p[0])));
        assert_eq!(m.choose(&z, 0.99), None);
        assert_eq!(m.choose(&z, 0.0), Some((0, p[0])));
        // mid's probability is sigmoid(-0.5) = 0.378: taken below it, not above.
        assert_eq!(m.choose(&z[1..], 0.37).map(|c| c.0), Some(0));
        assert_eq!(m.choose(&z[1..], 0.38), None);
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let fs = FeatureSet {
            dim_log2: 2,
            word_n: 1,
            char_n: 0,
        };
        let bytes = Model::encode(
            &fs,
            "r",
            &[("a".into(), 0.0)],
            &[],
            &BodyToWrite::Linear(vec![0.0; 4]),
        );
        for cut in 0..bytes.len() {
            assert!(Model::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Model::decode(&long).is_err());
        let mut wrong = bytes;
        wrong[7] = 9;
        assert!(Model::decode(&wrong).unwrap_err().0.contains("magic"));
    }

    #[test]
    fn neighbours_vote_by_similarity_and_shrink_towards_the_prior() {
        let fs = FeatureSet {
            dim_log2: 2,
            word_n: 1,
            char_n: 0,
        };
        // Three prototypes: 0 and 1 in bucket 1, 2 in bucket 3; candidate a is as good on 0
        // and 1, not on 2. The prior is 1/2 (bias 0).
        let body = BodyToWrite::Neighbours {
            vote: 2,
            postings: vec![vec![], vec![(0, 1.0), (1, 0.5)], vec![], vec![(2, 1.0)]],
            labels: vec![1, 1, 0],
        };
        let bytes = Model::encode(&fs, "r", &[("a".into(), 0.0)], &[], &body);
        let m = Model::decode(&bytes).unwrap();
        // Near 0 and 1: two votes of 1 and the prior's half: (2 + 0.5) / 3.
        let p = m.probabilities(&[(1, 1.0)]);
        assert!((p[0] - 2.5 / 3.0).abs() < 1e-5, "{p:?}");
        // Near 2 first, then 0 (ties to the earlier prototype): (0 + 1 + 0.5) / 3.
        let p = m.probabilities(&[(3, 1.0)]);
        assert!((p[0] - 1.5 / 3.0).abs() < 1e-5, "{p:?}");
        m.validate().unwrap();
        for cut in 0..bytes.len() {
            assert!(Model::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A posting that names no prototype: decoded (decisions read only what they need),
        // refused by the full check.
        let mut bad = bytes.clone();
        let at = bad.len() - 3 - 8 * 3;
        bad[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        let m = Model::decode(&bad).unwrap();
        assert!(m.validate().unwrap_err().0.contains("names no prototype"));
    }
}
