//! Hand-written SVG: scales, ticks, axes, number formatting and escaping for the report's
//! charts. No charting library: the page must work offline and stay small, and the charts are
//! few and simple.

use std::fmt::Write;

/// Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), in the order
/// runs get them; yellow is left out, it vanishes on white.
pub const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
];

/// The colour of the `i`th run (or series).
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escape text for HTML and SVG (element content and quoted attributes alike).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with three significant digits, without an exponent between 1e-4 and 1e6 (what a
/// reader compares at a glance; the JSON has every digit).
pub fn fmt_sig(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    // 0.500 -> 0.5: trailing zeros say nothing about precision here.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A coordinate, rounded to what a screen shows.
pub fn px(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A map from data to pixels, linear or log10.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Data range.
    pub lo: f64,
    /// Data range.
    pub hi: f64,
    /// Pixel range (may run backwards, as a y axis does).
    pub from: f64,
    /// Pixel range.
    pub to: f64,
    /// Log10 scale.
    pub log: bool,
}

impl Scale {
    /// A linear scale over `[lo, hi]` padded to nice ends, widened when empty.
    pub fn linear(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else if lo == 0.0 {
            (0.0, 1.0)
        } else {
            (lo - lo.abs() * 0.5, hi + hi.abs() * 0.5)
        };
        let step = nice_step((hi - lo) / 5.0);
        Self {
            lo: (lo / step).floor() * step,
            hi: (hi / step).ceil() * step,
            from,
            to,
            log: false,
        }
    }

    /// A linear scale over exactly `[lo, hi]` (a time axis: padding would show time nothing
    /// was recorded in).
    pub fn exact(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        if hi > lo {
            Self {
                lo,
                hi,
                from,
                to,
                log: false,
            }
        } else {
            Self::linear(lo, hi, from, to)
        }
    }

    /// A log10 scale over `[lo, hi]` (both positive) widened to whole decades.
    pub fn log(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        Self {
            lo: 10f64.powf(lo.log10().floor()),
            hi: 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
            from,
            to,
            log: true,
        }
    }

    /// Log when positive values span more than a factor of 20 (a linear axis would squash
    /// the small ones into a corner), else linear from zero.
    pub fn auto(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        if lo > 0.0 && hi / lo > 20.0 {
            Self::log(lo, hi, from, to)
        } else {
            Self::linear(0f64.min(lo), hi, from, to)
        }
    }

    /// Pixel position of `v` (clamped to the range, so a mark never leaves the plot).
    pub fn at(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo * 1e-3).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + (self.to - self.from) * f.clamp(-0.02, 1.02)
    }

    /// Tick values.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let mut t = Vec::new();
            for e in a..=b {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(e);
                    // 2 and 5 only when there are few decades.
                    if v <= self.hi * 1.0001 && (m == 1.0 || b - a <= 2) {
                        t.push(v);
                    }
                }
            }
            t
        } else {
            // Multiples of a nice step inside the range (an exact range need not start on one).
            let step = nice_step((self.hi - self.lo) / 5.0);
            let first = (self.lo / step - 1e-9).ceil() as i64;
            let last = (self.hi / step + 1e-9).floor() as i64;
            (first..=last).map(|k| k as f64 * step).collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * p)
}

/// The plot area inside a chart's viewBox.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// viewBox width.
    pub w: f64,
    /// viewBox height.
    pub h: f64,
    /// Left margin (y labels).
    pub left: f64,
    /// Right margin.
    pub right: f64,
    /// Top margin.
    pub top: f64,
    /// Bottom margin (x labels).
    pub bottom: f64,
}

impl Frame {
    /// Plot x range.
    pub fn xs(&self) -> (f64, f64) {
        (self.left, self.w - self.right)
    }
    /// Plot y range, bottom to top.
    pub fn ys(&self) -> (f64, f64) {
        (self.h - self.bottom, self.top)
    }
}

/// Open an accessible chart: `<svg>` with a viewBox that scales to the page's width, and a
/// `<title>` and `<desc>` a screen reader announces.
pub fn open(out: &mut String, id: &str, f: &Frame, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg id="{id}" viewBox="0 0 {} {}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        px(f.w),
        px(f.h),
        esc(title),
        esc(desc)
    );
}

/// Axes with ticks, grid lines and labels; without a y scale (rows of bars), no y ticks.
pub fn axes(out: &mut String, f: &Frame, x: &Scale, y: Option<&Scale>, xlabel: &str, ylabel: &str) {
    let (x0, x1) = f.xs();
    let (y0, y1) = f.ys();
    out.push_str(r#"<g class="axis">"#);
    for (t, py) in y
        .into_iter()
        .flat_map(|y| y.ticks().into_iter().map(move |t| (t, px(y.at(t)))))
    {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{}" x2="{}" y1="{py}" y2="{py}"/><text x="{}" y="{py}" dy="0.32em" text-anchor="end">{}</text>"#,
            px(x0),
            px(x1),
            px(x0 - 6.0),
            fmt_sig(t)
        );
    }
    for t in x.ticks() {
        let pxx = px(x.at(t));
        let _ = write!(
            out,
            r#"<line class="grid" x1="{pxx}" x2="{pxx}" y1="{}" y2="{}"/><text x="{pxx}" y="{}" text-anchor="middle">{}</text>"#,
            px(y0),
            px(y1),
            px(y0 + 16.0),
            fmt_sig(t)
        );
    }
    let _ = write!(
        out,
        r#"<line class="frame" x1="{}" x2="{}" y1="{}" y2="{}"/><line class="frame" x1="{}" x2="{}" y1="{}" y2="{}"/>"#,
        px(x0),
        px(x1),
        px(y0),
        px(y0),
        px(x0),
        px(x0),
        px(y0),
        px(y1)
    );
    let _ = write!(
        out,
        r#"<text class="label" x="{}" y="{}" text-anchor="middle">{}</text><text class="label" transform="translate({} {}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
        px((x0 + x1) / 2.0),
        px(f.h - 6.0),
        esc(xlabel),
        px(14.0),
        px((y0 + y1) / 2.0),
        esc(ylabel)
    );
}

/// How a legend entry shows its colour.
#[derive(Debug, Clone, Copy)]
pub enum Swatch {
    /// A line (a series).
    Line,
    /// A filled box (an area).
    Box,
}

/// One legend entry.
#[derive(Debug, Clone)]
pub struct LegendItem {
    /// Its colour.
    pub colour: &'static str,
    /// Line or box.
    pub swatch: Swatch,
    /// Its text (escaped here).
    pub label: String,
}

/// A legend laid out left to right from `x0`, wrapping before `x1`, rows from `top`: the SVG
/// and the height it takes. Text width is estimated (8.8 units a character, room for the larger
/// font a narrow window gets): a browser measures, a server does not.
pub fn legend(items: &[LegendItem], x0: f64, x1: f64, top: f64) -> (String, f64) {
    let row = 18.0;
    let (mut x, mut y) = (x0, top + row / 2.0);
    let mut out = String::from(r#"<g class="legend">"#);
    for it in items {
        let w = 34.0 + 8.8 * it.label.chars().count() as f64;
        if x > x0 && x + w > x1 {
            x = x0;
            y += row;
        }
        match it.swatch {
            Swatch::Line => {
                let _ = write!(
                    out,
                    r#"<path d="M{} {}h20" stroke="{}" stroke-width="2"/>"#,
                    px(x),
                    px(y),
                    it.colour
                );
            }
            Swatch::Box => {
                let _ = write!(
                    out,
                    r#"<rect x="{}" y="{}" width="18" height="10" fill="{}" fill-opacity="0.4"/>"#,
                    px(x + 1.0),
                    px(y - 5.0),
                    it.colour
                );
            }
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" dy="0.32em">{}</text>"#,
            px(x + 24.0),
            px(y),
            esc(&it.label)
        );
        x += w;
    }
    out.push_str("</g>");
    (out, y + row / 2.0 - top + 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_three_significant_digits() {
        assert_eq!(fmt_sig(0.625), "0.625");
        assert_eq!(fmt_sig(0.15625), "0.156");
        assert_eq!(fmt_sig(1234.6), "1235");
        assert_eq!(fmt_sig(20.0), "20");
        assert_eq!(fmt_sig(0.5), "0.5");
        assert_eq!(fmt_sig(0.000123456), "0.000123");
        assert_eq!(fmt_sig(1.5e-7), "1.50e-7");
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn scales_map_their_ends_and_tick_inside() {
        let s = Scale::linear(0.0, 0.93, 0.0, 100.0);
        assert_eq!((s.lo, s.hi), (0.0, 1.0));
        assert!((s.at(0.5) - 50.0).abs() < 1e-9);
        assert!(s.ticks().iter().all(|t| *t >= s.lo && *t <= s.hi + 1e-9));
        let l = Scale::log(1.0, 20.0, 0.0, 100.0);
        assert_eq!((l.lo, l.hi), (1.0, 100.0));
        assert!((l.at(10.0) - 50.0).abs() < 1e-9);
    }
}
