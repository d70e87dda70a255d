//! Parse the text `powermetrics --samplers cpu_power,gpu_power,ane_power` prints: per sample,
//! lines such as `CPU Power: 1234 mW`, `GPU Power: 56 mW`, `ANE Power: 0 mW` and
//! `Combined Power (CPU + GPU + ANE): 1290 mW`. Each is the mean power over the sample's
//! interval. A line that is absent gives no value, never 0.

/// One powermetrics sample: mean power over its interval, watts.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PowerSample {
    /// `CPU Power`.
    pub cpu_w: Option<f64>,
    /// `GPU Power`.
    pub gpu_w: Option<f64>,
    /// `ANE Power`.
    pub ane_w: Option<f64>,
    /// `Combined Power (...)`: the sum of the above as powermetrics computes it.
    pub combined_w: Option<f64>,
}

impl PowerSample {
    /// True when no power line was found.
    pub fn is_empty(&self) -> bool {
        *self == PowerSample::default()
    }
}

/// The marker powermetrics prints at the top of every sample.
pub const SAMPLE_HEADER: &str = "*** Sampled system activity";

/// `1234 mW` / `1.2 W` to watts.
fn watts(v: &str) -> Option<f64> {
    let mut it = v.split_whitespace();
    let x: f64 = it.next()?.parse().ok()?;
    let scale = match it.next()? {
        "mW" => 1e-3,
        "W" => 1.0,
        _ => return None,
    };
    x.is_finite().then_some(x * scale)
}

/// Parse the power lines of one sample's text.
pub fn parse_sample(text: &str) -> PowerSample {
    let mut s = PowerSample::default();
    for line in text.lines() {
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let label = label.trim();
        let slot = match label {
            "CPU Power" => &mut s.cpu_w,
            "GPU Power" => &mut s.gpu_w,
            "ANE Power" => &mut s.ane_w,
            l if l.starts_with("Combined Power") => &mut s.combined_w,
            _ => continue,
        };
        if let Some(w) = watts(value) {
            *slot = Some(w);
        }
    }
    s
}

/// Split a stream of output into samples (text after each [`SAMPLE_HEADER`]) and parse each.
/// Text before the first header is not a sample.
pub fn parse_stream(text: &str) -> Vec<PowerSample> {
    text.split(SAMPLE_HEADER)
        .skip(1)
        .map(parse_sample)
        .collect()
}
