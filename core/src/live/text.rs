//! The Prometheus text exposition format (version 0.0.4, which OpenMetrics parsers read too):
//! families with `# HELP` and `# TYPE`, samples with escaped label values, and histograms with
//! cumulative `le` buckets.

use std::fmt::Write as _;

/// Upper bounds of the latency and time-to-first-token buckets, seconds.
pub(super) const SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Observations counted into [`SECONDS_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    /// Per bucket, observations at or below its bound (not cumulative).
    counts: [u64; SECONDS_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(super) fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = SECONDS_BUCKETS.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

/// A page of metrics being written.
#[derive(Default)]
pub(super) struct Exposition {
    out: String,
}

impl Exposition {
    /// Start family `name` of type `kind` (`counter`, `gauge`, `histogram`).
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample.
    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram's samples (`_bucket`, `_sum`, `_count`) under `labels`.
    pub(super) fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (bound, n) in SECONDS_BUCKETS.iter().zip(h.counts) {
            cumulative += n;
            let le = number(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    /// The page.
    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as the format writes it (Go's float syntax for the special values).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_buckets_cumulative() {
        let mut h = Histogram::default();
        for v in [0.003, 0.2, 0.2, 7.0, 500.0] {
            h.observe(v);
        }
        let mut e = Exposition::default();
        e.family("x_seconds", "histogram", "A test.");
        e.histogram("x_seconds", &[("model", "a\"b\\c\nd")], &h);
        let page = e.finish();
        assert!(page.contains("x_seconds_bucket{model=\"a\\\"b\\\\c\\nd\",le=\"0.005\"} 1\n"));
        assert!(page.contains(",le=\"0.25\"} 3\n"), "{page}");
        assert!(page.contains(",le=\"120\"} 4\n"), "{page}");
        assert!(page.contains(",le=\"+Inf\"} 5\n"), "{page}");
        assert!(page.contains("x_seconds_count{model=\"a\\\"b\\\\c\\nd\"} 5\n"));
    }
}
