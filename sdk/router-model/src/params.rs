//! A trained model's parameters as bytes: what the learned-router component carries.
//!
//! Layout, little-endian: the magic; `dim_log2`, `word_n`, `char_n`, the number of cheaper
//! candidates `k` (u32 each); the reference's name; per cheaper candidate (cheapest first) its
//! name and bias (f32); the number of other candidates (u32: models it was trained beside but
//! never sends a query to, as they cost the reference's or more) and their names; zero padding to a multiple of 4; then `2^dim_log2 x k` f32 weights,
//! bucket-major (a bucket's `k` weights side by side, so a feature reads one place for every
//! candidate). A name is a u32 byte length and UTF-8.

use crate::features::{Feature, FeatureSet};

/// The first bytes of a learned router's parameters (the last byte is the format version).
pub const MAGIC: [u8; 8] = *b"ipwlrnr\x01";

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
    weights: &'a [u8],
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
        let weights = r.take(features.dim() * k * 4)?;
        if r.at != bytes.len() {
            return Err(ParamsError(format!(
                "{} bytes after the weights",
                bytes.len() - r.at
            )));
        }
        Ok(Model {
            features,
            reference,
            cheaper,
            others,
            weights,
        })
    }

    /// The bytes of a model: `weights` bucket-major (`weights[bucket * k + j]` for cheaper
    /// candidate `j`), `cheaper` cheapest first with its bias, `others` the models it expects
    /// beside them and never chooses.
    pub fn encode(
        features: &FeatureSet,
        reference: &str,
        cheaper: &[(String, f32)],
        others: &[String],
        weights: &[f32],
    ) -> Vec<u8> {
        assert_eq!(
            weights.len(),
            features.dim() * cheaper.len(),
            "one weight per bucket and candidate"
        );
        let mut out = MAGIC.to_vec();
        for v in [
            features.dim_log2,
            features.word_n,
            features.char_n,
            cheaper.len() as u32,
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
        for w in weights {
            out.extend_from_slice(&w.to_bits().to_le_bytes());
        }
        out
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
        let row = 4 * k;
        for &(bucket, value) in x {
            // One bounds check per feature, then plain loads: this loop is the decision.
            let at = bucket as usize * row;
            let weights = &self.weights[at..at + row];
            for (zj, w) in z.iter_mut().zip(weights.chunks_exact(4)) {
                *zj += value * f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
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
        let bytes = Model::encode(&fs, "large", &cheaper, &["huge".into()], &weights);
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
        let bytes = Model::encode(&fs, "r", &[("a".into(), 0.0)], &[], &[0.0; 4]);
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
}
