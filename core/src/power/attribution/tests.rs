//! Accuracy of attribution on synthetic traces whose true energy is known exactly.

use super::*;
use crate::config::SplitRule;
use crate::power::curve::EnergyCurve;
use crate::rng::SplitMix64;
use ipw_sampler_sdk::{ChannelKind, GaugeTiming};

const HZ: f64 = 20.0;

/// Exact integral of `p` over [a, b] (fine Simpson; the test powers are piecewise smooth, and
/// a step of the grid of at most 1 us keeps a pulse's edges under 1 mJ each).
fn true_energy(p: &dyn Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let n = 20_000.max(((b - a) * 1e6) as usize);
    let h = (b - a) / n as f64;
    (0..n)
        .map(|i| {
            let (x0, x1) = (a + i as f64 * h, a + (i + 1) as f64 * h);
            (p(x0) + 4.0 * p((x0 + x1) / 2.0) + p(x1)) * h / 6.0
        })
        .sum()
}

/// Sample times at `HZ` with up to 20% jitter and about 5% of samples dropped.
fn sample_times(seed: u64, until: f64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let dt = 1.0 / HZ;
    let mut t = 0.0;
    let mut out = Vec::new();
    while t <= until {
        let jitter = (rng.below(1000) as f64 / 1000.0 - 0.5) * 0.4 * dt;
        if rng.below(100) >= 5 {
            out.push((t + jitter).max(0.0));
        }
        t += dt;
    }
    out
}

fn counter_readings(p: &dyn Fn(f64) -> f64, times: &[f64], resolution: f64) -> Vec<(f64, f64)> {
    let mut e = 0.0;
    let mut prev = 0.0;
    times
        .iter()
        .map(|&t| {
            e += true_energy(p, prev, t);
            prev = t;
            (t, (e / resolution).floor() * resolution)
        })
        .collect()
}

fn channel<'a>(curve: &'a EnergyCurve, estimated: bool) -> ChannelInput<'a> {
    ChannelInput {
        name: "c".into(),
        curve,
        update_period_s: 0.01,
        sample_interval_s: 1.0 / HZ,
        estimated,
        idle_w: Some(40.0),
        errors: &[],
        edge_reads: true,
        accuracy: Default::default(),
        idle_bound_w: Some((40.0, 40.0)),
        domain: None,
        ceiling_w: None,
    }
}

fn window(start: f64, end: f64) -> QueryWindow {
    QueryWindow {
        start,
        end,
        ttft: None,
        input_tokens: None,
        output_tokens: None,
    }
}

type Shape = (&'static str, Box<dyn Fn(f64) -> f64>);

fn shapes() -> Vec<Shape> {
    vec![
        (
            "steps",
            Box::new(|t: f64| if (t * 0.7).fract() < 0.5 { 60.0 } else { 180.0 }),
        ),
        ("ramp", Box::new(|t: f64| 40.0 + 12.0 * t)),
        (
            "spikes",
            Box::new(|t: f64| {
                if (t * 3.1).fract() < 0.02 {
                    400.0
                } else {
                    90.0
                }
            }),
        ),
        ("wave", Box::new(|t: f64| 120.0 + 60.0 * (t * 2.0).sin())),
    ]
}

/// Windows of 1 s to 4 s placed at awkward offsets.
fn windows() -> Vec<QueryWindow> {
    (0..12)
        .map(|i| {
            let s = 0.5 + i as f64 * 0.613;
            window(s, s + 1.0 + (i % 4) as f64)
        })
        .collect()
}

/// The background 20 Hz samples plus the host's reads at every window edge (taken when the
/// runner marks a query's start and end; modelled here as 0.3 ms late).
fn with_edge_reads(mut times: Vec<f64>) -> Vec<f64> {
    for w in windows() {
        times.push(w.start + 3e-4);
        times.push(w.end + 3e-4);
    }
    times.sort_by(f64::total_cmp);
    times
}

#[test]
fn energy_counters_are_within_half_a_percent_for_any_shape() {
    let mut worst_of_all: f64 = 0.0;
    for (name, p) in shapes() {
        let mut worst: f64 = 0.0;
        for seed in 0..3 {
            let times = with_edge_reads(sample_times(seed, 12.0));
            let curve = EnergyCurve::build(
                &ChannelKind::EnergyCounter {
                    resolution_j: 1e-3,
                    wrap_j: None,
                },
                &counter_readings(&*p, &times, 1e-3),
            );
            for w in windows() {
                let got = attribute(&[channel(&curve, false)], &[w], SplitRule::Tokens)[0]
                    .gross_j
                    .unwrap();
                let want = true_energy(&*p, w.start, w.end);
                let err = (got - want).abs() / want;
                worst = worst.max(err);
                assert!(
                    err < 0.005,
                    "{name} seed {seed} [{:.3},{:.3}]: {got} vs {want} ({:.3}%)",
                    w.start,
                    w.end,
                    err * 100.0
                );
            }
        }
        println!("counter, {name}: worst error {:.4}%", worst * 100.0);
        worst_of_all = worst_of_all.max(worst);
    }
    // The figure the README states ("counters <= 0.016 %"), pinned: it moves only with the
    // code, and then the README must move with it.
    assert!(
        worst_of_all * 100.0 < 0.0165,
        "counters' worst error {:.4}% is not the README's <= 0.016 %",
        worst_of_all * 100.0
    );
}

#[test]
fn instant_gauges_on_smooth_power_stay_within_the_interpolation_bound() {
    // No edge reads: the host reads on demand only samplers whose energy counters update within
    // 5 ms, never a gauge, so a gauge's window edges fall between its jittered 20 Hz samples
    // (with drops). Power is interpolated linearly between samples, so |P - L| <= max|P''| h^2 / 8
    // for a gap h, and a window of length T is off by at most T max|P''| h^2 / 8 (exactly 0 for
    // a ramp). A host that integrated steps instead of lines would fail the ramp by ~0.6%.
    let gauge = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    // (shape, max |P''|) for the smooth shapes.
    let curvature = [("ramp", 0.0), ("wave", 60.0 * 4.0)];
    for (name, p) in shapes()
        .into_iter()
        .filter(|(n, _)| curvature.iter().any(|(c, _)| c == n))
    {
        let p2 = curvature.iter().find(|(c, _)| *c == name).unwrap().1;
        let mut worst: f64 = 0.0;
        for seed in 0..3 {
            let readings: Vec<(f64, f64)> = sample_times(seed, 12.0)
                .into_iter()
                .map(|t| (t, p(t)))
                .collect();
            let curve = EnergyCurve::build(&gauge, &readings);
            for w in windows() {
                let got = attribute(&[channel(&curve, false)], &[w], SplitRule::Tokens)[0]
                    .gross_j
                    .unwrap();
                let want = true_energy(&*p, w.start, w.end);
                let h = curve.largest_gap_in(w.start, w.end);
                let bound = (w.end - w.start) * p2 * h * h / 8.0 + 1e-9 * want;
                worst = worst.max((got - want).abs() / want);
                assert!(
                    (got - want).abs() <= bound,
                    "{name} seed {seed} [{:.3},{:.3}]: {got} vs {want}, bound {bound}",
                    w.start,
                    w.end
                );
            }
        }
        println!(
            "instant gauge without edge reads, {name}: worst error {:.4}%",
            worst * 100.0
        );
        // The README's "worst error 0.061 % (instant gauge, wave)", pinned.
        if name == "wave" {
            assert_rounds_to(
                worst * 100.0,
                0.061,
                3,
                "instant gauge, wave: worst error %",
            );
        }
    }
}

/// Assert that `got` shown with `decimals` decimals is `shown` (a figure the README prints).
fn assert_rounds_to(got: f64, shown: f64, decimals: i32, what: &str) {
    let half_unit = 0.5 * 10f64.powi(-decimals);
    assert!(
        (got - shown).abs() <= half_unit + 1e-12,
        "{what}: {got:.5} is not the README's {shown}: update the README with the code"
    );
}

#[test]
fn a_step_at_a_window_edge_costs_at_most_a_quarter_interval() {
    // Without edge reads (a sampler whose counter cannot be read on demand), a power step of dP
    // inside the sampling interval around a window edge misplaces at most dP * dt / 4 joules at
    // that edge (linear interpolation of the counter). This is why the host reads at edges.
    let (lo, hi, step_at) = (50.0, 250.0, 2.0);
    let p = move |t: f64| if t < step_at { lo } else { hi };
    let times: Vec<f64> = (0..=100).map(|i| i as f64 / HZ).collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None,
        },
        &counter_readings(&p, &times, 1e-6),
    );
    let bound = (hi - lo) / HZ / 4.0;
    for k in 1..10 {
        let start = step_at - 0.5 / HZ + k as f64 / (10.0 * HZ);
        let w = window(start, start + 1.0);
        let got = attribute(&[channel(&curve, false)], &[w], SplitRule::Tokens)[0]
            .gross_j
            .unwrap();
        let want = true_energy(&p, w.start, w.end);
        assert!(
            (got - want).abs() <= bound + 1e-6,
            "{got} vs {want}, bound {bound}"
        );
    }
}

#[test]
fn short_windows_and_gaps_are_flagged_and_uncovered_windows_are_not_zero() {
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-3,
            wrap_j: None,
        },
        &[
            (0.0, 0.0),
            (0.1, 10.0),
            (0.2, 20.0),
            (1.5, 150.0),
            (1.6, 160.0),
        ],
    );
    let mut ch = channel(&curve, false);
    ch.update_period_s = 0.1;
    ch.sample_interval_s = 0.1;
    let e = attribute(
        &[ch],
        &[window(0.02, 0.07), window(0.1, 1.55), window(1.0, 2.0)],
        SplitRule::Tokens,
    );
    assert!(e[0].flags.contains(&Flag::ShortWindow));
    assert!((e[0].gross_j.unwrap() - 5.0).abs() < 1e-9);
    assert!(e[1].flags.contains(&Flag::MissingSamples), "1.3 s gap");
    assert_eq!(e[2].gross_j, None, "past the last reading: unknown, not 0");
    assert!(e[2].flags.contains(&Flag::MissingSamples));
}

#[test]
fn overlapping_queries_add_up_and_split_by_tokens() {
    // Constant 100 W counter. A: [0, 4] s, 40 prompt tokens in its first 1 s, then 30 output
    // tokens over 3 s (10 tok/s). B: [2, 6] s, 20 prompt tokens over 1 s (20 tok/s), then 30
    // output tokens over 3 s.
    let times: Vec<f64> = (0..=140).map(|i| i as f64 * 0.05).collect();
    let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, 100.0 * t)).collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None,
        },
        &readings,
    );
    let a = QueryWindow {
        start: 0.0,
        end: 4.0,
        ttft: Some(1.0),
        input_tokens: Some(40),
        output_tokens: Some(30),
    };
    let b = QueryWindow {
        start: 2.0,
        end: 6.0,
        ttft: Some(1.0),
        input_tokens: Some(20),
        output_tokens: Some(30),
    };
    let mut ch = channel(&curve, false);
    ch.idle_w = Some(10.0);
    let e = attribute(&[ch], &[a, b], SplitRule::Tokens);
    let (ea, eb) = (e[0].gross_j.unwrap(), e[1].gross_j.unwrap());
    assert!(
        (ea + eb - 600.0).abs() < 1e-6,
        "the union [0, 6] s at 100 W"
    );
    // [0,2]: A alone = 200 J. [2,3]: A decodes 10 tok/s, B prefills 20 tok/s -> A 1/3 of 100 J.
    // [3,4]: both decode 10 tok/s -> 50/50. [4,6]: B alone.
    let want_a = 200.0 + 100.0 / 3.0 + 50.0;
    assert!((ea - want_a).abs() < 1e-6, "{ea} vs {want_a}");
    assert!((eb - (600.0 - want_a)).abs() < 1e-6);
    let (na, nb) = (e[0].net_j.unwrap(), e[1].net_j.unwrap());
    assert!(
        (na + nb - (600.0 - 60.0)).abs() < 1e-6,
        "net adds up to total minus idle"
    );

    let e = attribute(&[channel(&curve, false)], &[a, b], SplitRule::Equal);
    assert!(
        (e[0].gross_j.unwrap() - 300.0).abs() < 1e-6,
        "equal split: 200 + 100/2 + 100/2"
    );
    assert!((e[1].gross_j.unwrap() - 300.0).abs() < 1e-6);
}

#[test]
fn idle_baseline_gives_net_energy() {
    let readings: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let t = i as f64 * 0.05;
            (
                t,
                if t < 5.0 {
                    30.0 * t
                } else {
                    150.0 + 80.0 * (t - 5.0)
                },
            )
        })
        .collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None,
        },
        &readings,
    );
    let idle = idle_power(&curve, 0.0, 5.0).unwrap();
    assert!((idle - 30.0).abs() < 1e-9);
    let mut ch = channel(&curve, false);
    ch.idle_w = Some(idle);
    let e = attribute(&[ch], &[window(6.0, 8.0)], SplitRule::Tokens);
    assert!((e[0].gross_j.unwrap() - 160.0).abs() < 1e-6);
    assert!((e[0].net_j.unwrap() - 100.0).abs() < 1e-6);
    assert!((e[0].mean_power_w.unwrap() - 80.0).abs() < 1e-6);
}

#[test]
fn net_energy_below_zero_is_flagged_not_passed_off() {
    // 50 W throughout, but a baseline that claimed 60 W (taken while something else ran).
    let readings: Vec<(f64, f64)> = (0..=200)
        .map(|i| (i as f64 * 0.05, 50.0 * i as f64 * 0.05))
        .collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None,
        },
        &readings,
    );
    let mut ch = channel(&curve, false);
    ch.idle_w = Some(60.0);
    let e = attribute(&[ch], &[window(2.0, 4.0)], SplitRule::Tokens);
    assert!(
        (e[0].net_j.unwrap() + 20.0).abs() < 1e-6,
        "{:?}",
        e[0].net_j
    );
    assert!(e[0].flags.contains(&Flag::NegativeNet), "{:?}", e[0].flags);
    // A sound baseline: no flag.
    let mut ch = channel(&curve, false);
    ch.idle_w = Some(40.0);
    let e = attribute(&[ch], &[window(2.0, 4.0)], SplitRule::Tokens);
    assert!(!e[0].flags.contains(&Flag::NegativeNet));
}

#[test]
fn a_three_period_gap_at_an_edge_and_a_coarse_window_are_flagged() {
    // 20 Hz readings of a 50 W counter, with the two readings after 1.0 s dropped: a 150 ms
    // gap (three periods) across the start of a window beginning at 1.05 s.
    let times: Vec<f64> = (0..=60)
        .map(|i| i as f64 * 0.05)
        .filter(|t| !(1.01..1.14).contains(t))
        .collect();
    let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, 50.0 * t)).collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: None,
        },
        &readings,
    );
    let mut ch = channel(&curve, false);
    ch.update_period_s = 0.001;
    ch.sample_interval_s = 0.05;
    ch.edge_reads = false;
    let e = attribute(
        &[ch],
        &[window(1.05, 2.5), window(2.0, 2.4)],
        SplitRule::Tokens,
    );
    assert!(
        e[0].flags.contains(&Flag::MissingSamples),
        "{:?}",
        e[0].flags
    );
    // 1.45 s = 29 intervals: not coarse; 0.4 s = 8 intervals without edge reads: coarse.
    assert!(
        !e[0].flags.contains(&Flag::CoarseSampling),
        "{:?}",
        e[0].flags
    );
    assert!(
        e[1].flags.contains(&Flag::CoarseSampling),
        "{:?}",
        e[1].flags
    );
    assert!(
        !e[1].flags.contains(&Flag::MissingSamples),
        "{:?}",
        e[1].flags
    );
    // With edge reads the same short window is not coarse.
    let mut ch = channel(&curve, false);
    ch.sample_interval_s = 0.05;
    let e = attribute(&[ch], &[window(2.0, 2.4)], SplitRule::Tokens);
    assert!(!e[0].flags.contains(&Flag::CoarseSampling));
}

/// Readings of an `interval-mean` gauge: the exact mean power since the previous reading.
fn interval_mean_readings(p: &dyn Fn(f64) -> f64, times: &[f64]) -> Vec<(f64, f64)> {
    let mut prev: Option<f64> = None;
    times
        .iter()
        .map(|&t| {
            let v = match prev {
                Some(t0) if t > t0 => true_energy(p, t0, t) / (t - t0),
                _ => p(t),
            };
            prev = Some(t);
            (t, v)
        })
        .collect()
}

/// A pulse train four sampling periods wide: an instant gauge sees each, dropped readings
/// and jitter included.
fn wide_spikes(t: f64) -> f64 {
    if (t * 1.3).fract() < 1.3 * 4.0 / HZ {
        400.0
    } else {
        90.0
    }
}

/// The true energy of each of `windows()`, on a grid fine enough (1 us) that a pulse's edges
/// cost under 1 mJ: Simpson's rule is not exact across a discontinuity.
fn window_truths(p: &dyn Fn(f64) -> f64) -> Vec<f64> {
    windows()
        .iter()
        .map(|w| {
            let n = ((w.end - w.start) * 1e6) as usize;
            let h = (w.end - w.start) / n as f64;
            (0..n).map(|i| p(w.start + (i as f64 + 0.5) * h) * h).sum()
        })
        .collect()
}

/// Check every window's bound against the truth; returns the widest bound relative to the truth.
fn assert_bounds_hold(label: &str, curve: &EnergyCurve, truths: &[f64]) -> f64 {
    let mut ch = channel(curve, false);
    ch.edge_reads = false;
    let mut widest: f64 = 0.0;
    for (w, &truth) in windows().into_iter().zip(truths) {
        let e = attribute(std::slice::from_ref(&ch), &[w], SplitRule::Equal).remove(0);
        let [lo, hi] = e.gross_bound_j.expect("a covered window has a bound");
        let got = e.gross_j.unwrap();
        let eps = 1e-3 + 1e-9 * truth;
        assert!(
            lo - eps <= truth && truth <= hi + eps,
            "{label} [{:.3},{:.3}]: truth {truth} outside [{lo}, {hi}] (estimate {got})",
            w.start,
            w.end
        );
        assert!(
            lo - eps <= got && got <= hi + eps,
            "{label}: estimate outside its bound"
        );
        // Net: the truth less idle (40 W, known exactly here) lies in the net bound.
        let [nlo, nhi] = e.net_bound_j.unwrap();
        let net = truth - 40.0 * (w.end - w.start);
        assert!(
            nlo - eps <= net && net <= nhi + eps,
            "{label}: net {net} outside [{nlo}, {nhi}]"
        );
        widest = widest.max((hi - lo) / truth);
    }
    widest
}

#[test]
fn every_window_holds_the_true_energy_within_its_bound_without_edge_reads() {
    // Jittered 20 Hz samples with ~5% dropped, no reading at any window edge: the truth of every
    // window lies inside the bound attribution gives it, for counters and interval-mean gauges
    // on every shape (spikes shorter than a period included: they are inside the segment's
    // energy), and for instant gauges on every shape they can see.
    let counter = ChannelKind::EnergyCounter {
        resolution_j: 1e-3,
        wrap_j: None,
    };
    let mean = ChannelKind::PowerGauge {
        timing: GaugeTiming::IntervalMean,
        estimated: false,
    };
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let mut all = shapes();
    all.push(("wide spikes", Box::new(wide_spikes)));
    for (name, p) in &all {
        let truths = window_truths(&**p);
        let mut widest = [0.0f64; 3];
        for seed in 0..4 {
            let times = sample_times(seed, 12.0);
            let c = EnergyCurve::build(&counter, &counter_readings(&**p, &times, 1e-3));
            widest[0] = widest[0].max(assert_bounds_hold(
                &format!("counter, {name}, seed {seed}"),
                &c,
                &truths,
            ));
            let c = EnergyCurve::build(&mean, &interval_mean_readings(&**p, &times));
            widest[1] = widest[1].max(assert_bounds_hold(
                &format!("interval-mean, {name}, seed {seed}"),
                &c,
                &truths,
            ));
            // "spikes" are 6.5 ms pulses: an instant gauge misses most of them between its
            // 50 ms readings, and the few it catches widen its bounds (the next tests).
            let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, p(t))).collect();
            let c = EnergyCurve::build(&instant, &readings);
            widest[2] = widest[2].max(assert_bounds_hold(
                &format!("instant, {name}, seed {seed}"),
                &c,
                &truths,
            ));
        }
        println!(
            "{name}: widest bound / truth: counter {:.3}%, interval-mean {:.3}%, instant {:.3}%",
            widest[0] * 100.0,
            widest[1] * 100.0,
            widest[2] * 100.0
        );
        // The README's width table, pinned: every figure, for every shape and kind.
        let readme: [Option<(f64, i32)>; 3] = match *name {
            "ramp" => [Some((0.28, 2)), Some((0.28, 2)), Some((0.00, 2))],
            "wave" => [Some((0.63, 2)), Some((0.62, 2)), Some((1.09, 2))],
            "steps" => [Some((2.7, 1)), Some((2.7, 1)), Some((15.2, 1))],
            "spikes" => [Some((3.6, 1)), Some((3.6, 1)), Some((443.5, 1))],
            "wide spikes" => [Some((19.1, 1)), Some((19.1, 1)), Some((42.4, 1))],
            other => panic!("shape {other} is not in the README's width table"),
        };
        for ((kind, w), shown) in ["counter", "interval-mean", "instant"]
            .iter()
            .zip(widest)
            .zip(readme)
        {
            if let Some((shown, decimals)) = shown {
                assert_rounds_to(
                    w * 100.0,
                    shown,
                    decimals,
                    &format!("{name}, {kind}: widest bound / truth %"),
                );
            }
        }
        if *name == "ramp" {
            // Smooth power: the readings pin the energy down; the bound is near zero width.
            assert!(
                widest.iter().all(|&w| w < 0.003),
                "ramp bounds too wide: {widest:?}"
            );
        }
        if *name == "steps" {
            // A step between two readings is genuinely unknown: the bound says so.
            assert!(
                widest.iter().all(|&w| w > 0.005),
                "a step must widen the bound: {widest:?}"
            );
        }
    }
}

/// 10 ms pulses to 400 W on 90 W at 2 Hz, 20 ms off every reading of a 20 Hz gauge that reads
/// at whole multiples of its period: no reading ever sees one.
fn hidden_pulses(t: f64) -> f64 {
    if (t * 2.0).fract() > 0.5 && (t * 2.0).fract() < 0.52 {
        400.0
    } else {
        90.0
    }
}

#[test]
fn an_instant_gauge_that_never_saw_a_spike_cannot_bound_one() {
    // The limit the README states: pulses that fall between every pair of readings leave no
    // trace in an instant gauge, so nothing tells its bound they exist. 10 ms pulses at 2 Hz,
    // read at exactly 20 Hz, 20 ms off every pulse.
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let hidden = hidden_pulses;
    let readings: Vec<(f64, f64)> = (0..=240)
        .map(|i| i as f64 / HZ)
        .map(|t| (t, hidden(t)))
        .collect();
    assert!(
        readings.iter().all(|r| r.1 == 90.0),
        "the test hides the pulses"
    );
    let c = EnergyCurve::build(&instant, &readings);
    let missed = windows()
        .into_iter()
        .filter(|w| {
            let e = attribute(&[channel(&c, false)], &[*w], SplitRule::Equal).remove(0);
            assert!(!e.flags.contains(&Flag::BoundFromNearby));
            true_energy(&hidden, w.start, w.end) > e.gross_bound_j.unwrap()[1]
        })
        .count();
    assert!(missed > 0, "unseen spikes cannot be inside a bound");
}

#[test]
fn a_coarse_window_reaches_the_devices_ceiling_where_the_gauge_saw_nothing() {
    // The pulses of the test above, now never caught (10 ms to 400 W at 2 Hz, read at exactly
    // 20 Hz, 20 ms off each), in windows of 0.2 s to 0.9 s (fewer than 20 readings: coarse).
    // The readings are all 90 W: alone they give a zero-width bound that misses the pulses.
    // A declared ceiling (450 W: an enforced power limit, a meter's range) holds every truth.
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let hidden = hidden_pulses;
    let readings: Vec<(f64, f64)> = (0..=600)
        .map(|i| i as f64 / HZ)
        .map(|t| (t, hidden(t)))
        .collect();
    let c = EnergyCurve::build(&instant, &readings);
    let windows: Vec<QueryWindow> = (0..40)
        .map(|i| {
            let start = 1.0 + i as f64 * 0.611;
            window(start, start + 0.2 + (i % 8) as f64 * 0.1)
        })
        .collect();
    let run = |ceiling: Option<f64>| {
        let mut ch = channel(&c, false);
        ch.edge_reads = false;
        ch.ceiling_w = ceiling;
        let (mut missed, mut zero_width, mut flagged) = (0, 0, 0);
        for w in &windows {
            let e = attribute(std::slice::from_ref(&ch), &[*w], SplitRule::Equal).remove(0);
            assert!(e.flags.contains(&Flag::CoarseSampling));
            let [lo, hi] = e.gross_bound_j.unwrap();
            let truth = true_energy(&hidden, w.start, w.end);
            missed += usize::from(!(lo - 1e-6 <= truth && truth <= hi + 1e-6));
            zero_width += usize::from(hi - lo < 1e-9);
            flagged += usize::from(e.flags.contains(&Flag::BoundFromCeiling));
            if ceiling.is_some() {
                // The floor is the least the gauge read nearby; the top the ceiling.
                assert!(
                    (hi - 450.0 * (w.end - w.start)).abs() < 1e-6,
                    "[{lo}, {hi}]"
                );
            }
        }
        (missed, zero_width, flagged)
    };
    let (missed, zero_width, flagged) = run(None);
    assert!(
        missed > 0 && zero_width == windows.len(),
        "{missed} {zero_width}"
    );
    assert_eq!(flagged, 0);
    assert_eq!(run(Some(450.0)), (0, 0, windows.len()));
}

#[test]
fn a_ceiling_leaves_well_sampled_windows_as_tight_as_their_readings() {
    // Windows of 20 readings or more are not coarse: the ceiling plays no part there, and a
    // ramp's bound stays the zero-width one its readings give.
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let ramp = |t: f64| 50.0 + 15.0 * t;
    let readings: Vec<(f64, f64)> = sample_times(3, 12.0)
        .iter()
        .map(|&t| (t, ramp(t)))
        .collect();
    let c = EnergyCurve::build(&instant, &readings);
    let mut ch = channel(&c, false);
    ch.edge_reads = false;
    ch.ceiling_w = Some(1000.0);
    for w in windows() {
        let e = attribute(std::slice::from_ref(&ch), &[w], SplitRule::Equal).remove(0);
        let [lo, hi] = e.gross_bound_j.unwrap();
        assert!((hi - lo) / e.gross_j.unwrap() < 0.003, "[{lo}, {hi}]");
        assert!(!e.flags.contains(&Flag::BoundFromCeiling));
    }
}

#[test]
fn an_instant_gauge_bounds_pulses_between_its_readings_by_those_it_saw_nearby() {
    // 30 ms pulses to 220 W on 120 W, 7 per second, read by a jittered 20 Hz instant gauge:
    // most windows' readings miss most pulses, and some windows' two readings are equal, a
    // zero-width bound before. The pulses the gauge did catch nearby widen every bound to the
    // power it read there; the truth stays inside each of 70 windows of 0.2 s to 1.5 s.
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let pulses = |t: f64| {
        if (t * 7.0).fract() < 0.21 {
            220.0
        } else {
            120.0
        }
    };
    let times = sample_times(11, 40.0);
    let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, pulses(t))).collect();
    let c = EnergyCurve::build(&instant, &readings);
    let mut ch = channel(&c, false);
    ch.edge_reads = false;
    let (mut widest, mut missed, mut flagged) = (0.0f64, Vec::new(), 0);
    for i in 0..70 {
        let start = 1.0 + i as f64 * 0.537;
        let w = window(start, start + 0.2 + (i % 7) as f64 * 0.217);
        let truth = true_energy(&pulses, w.start, w.end);
        let e = attribute(std::slice::from_ref(&ch), &[w], SplitRule::Equal).remove(0);
        let [lo, hi] = e.gross_bound_j.unwrap();
        if !(lo - 1e-3 <= truth && truth <= hi + 1e-3) {
            missed.push(format!(
                "[{:.3}, {:.3}]: truth {truth:.2} outside [{lo:.2}, {hi:.2}]",
                w.start, w.end
            ));
        }
        flagged += usize::from(e.flags.contains(&Flag::BoundFromNearby));
        widest = widest.max((hi - lo) / truth);
    }
    assert!(
        missed.is_empty(),
        "{} of 70 windows: {missed:#?}",
        missed.len()
    );
    assert_eq!(flagged, 70, "every bound says which rule it rests on");
    println!(
        "30 ms pulses, instant 20 Hz: widest bound / truth {:.1}%",
        widest * 100.0
    );
}

#[test]
fn smooth_power_keeps_its_tight_bound() {
    // Ramps, waves and steps show no lone reading: nothing is widened and no record says so
    // (the width table in the test above pins how tight they stay).
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    for (name, p) in shapes().iter().filter(|(n, _)| *n != "spikes") {
        for seed in 0..4 {
            let times = sample_times(seed, 12.0);
            let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, p(t))).collect();
            let c = EnergyCurve::build(&instant, &readings);
            for w in windows() {
                assert!(
                    !c.widened_by_nearby(w.start, w.end),
                    "{name}, seed {seed}: a smooth trace widened at [{}, {}]",
                    w.start,
                    w.end
                );
            }
        }
    }
}

#[test]
fn declared_accuracy_widens_the_bound_to_hold_a_miscalibrated_meter() {
    // A meter that reads 4% high: without a declared accuracy its bound misses the truth, with
    // its declared +-5% it holds it.
    let p = |t: f64| 100.0 + 20.0 * (t * 1.7).sin();
    let times = sample_times(7, 12.0);
    let readings: Vec<(f64, f64)> = times.iter().map(|&t| (t, 1.04 * p(t))).collect();
    let c = EnergyCurve::build(
        &ChannelKind::PowerGauge {
            timing: GaugeTiming::Instant,
            estimated: false,
        },
        &readings,
    );
    let holds = |accuracy: ipw_sampler_sdk::Accuracy| {
        let mut ch = channel(&c, false);
        ch.accuracy = accuracy;
        windows().into_iter().all(|w| {
            let e = attribute(std::slice::from_ref(&ch), &[w], SplitRule::Equal).remove(0);
            let [lo, hi] = e.gross_bound_j.unwrap();
            let truth = true_energy(&p, w.start, w.end);
            lo <= truth && truth <= hi
        })
    };
    assert!(!holds(Default::default()));
    assert!(holds(ipw_sampler_sdk::Accuracy::relative(0.05)));
}

#[test]
fn shaping_a_counter_with_instant_power_removes_most_of_the_edge_bias() {
    // The NVML case: a counter read at jittered 20 Hz, never at a window's edge, with the
    // instant power read beside it. Each query draws 150 W against 50 W around it, so both edge
    // intervals straddle a step. Spread evenly, an edge interval gives the query its mean power
    // (biased low); shaped by the instant readings, far less.
    let ws: Vec<QueryWindow> = (0..40)
        .map(|k| {
            let s = 0.3 + k as f64 * 0.9;
            window(s, s + 0.4 + 0.013 * (k % 7) as f64)
        })
        .collect();
    let inside = ws.clone();
    let p = move |t: f64| {
        if inside.iter().any(|w| t >= w.start && t < w.end) {
            150.0
        } else {
            50.0
        }
    };
    let kind = ChannelKind::EnergyCounter {
        resolution_j: 1e-3,
        wrap_j: None,
    };
    let instant = ChannelKind::PowerGauge {
        timing: GaugeTiming::Instant,
        estimated: false,
    };
    let (mut plain_bias, mut shaped_bias) = (0.0, 0.0);
    for seed in 0..3 {
        let times = sample_times(seed, 37.0);
        let plain = EnergyCurve::build(&kind, &counter_readings(&p, &times, 1e-3));
        let mut shaped = plain.clone();
        let power: Vec<(f64, f64)> = times.iter().map(|&t| (t, p(t))).collect();
        shaped.shape_with(EnergyCurve::build(&instant, &power));
        for (curve, bias) in [(&plain, &mut plain_bias), (&shaped, &mut shaped_bias)] {
            let mut ch = channel(curve, false);
            ch.edge_reads = false;
            for (w, e) in ws.iter().zip(attribute(&[ch], &ws, SplitRule::Equal)) {
                let truth = true_energy(&p, w.start, w.end);
                let got = e.gross_j.unwrap();
                let [lo, hi] = e.gross_bound_j.unwrap();
                assert!(
                    lo <= truth + 1e-9 && truth <= hi + 1e-9,
                    "{truth} outside [{lo}, {hi}]"
                );
                *bias += (got - truth) / truth / (3.0 * ws.len() as f64);
            }
        }
    }
    println!(
        "mean bias: spread evenly {:.2}%, shaped {:.2}%",
        plain_bias * 100.0,
        shaped_bias * 100.0
    );
    assert!(
        plain_bias < -0.01,
        "even spreading is biased low: {plain_bias}"
    );
    assert!(
        shaped_bias.abs() < 0.5 * plain_bias.abs(),
        "shaping must remove most of it: {shaped_bias} vs {plain_bias}"
    );
}

#[test]
fn energy_splits_at_the_first_token_into_prefill_and_decode() {
    // 100 W while the prompt is read (1.0-1.5 s), 40 W while generating (1.5-3.0 s), 10 W
    // around: prefill 50 J, decode 60 J; with 40 W idle, net 30 J and 0 J.
    let p = |t: f64| {
        if (1.0..1.5).contains(&t) {
            100.0
        } else if (1.5..3.0).contains(&t) {
            40.0
        } else {
            10.0
        }
    };
    let times: Vec<f64> = (0..=5000).map(|i| i as f64 / 1000.0).collect();
    let curve = EnergyCurve::build(
        &ChannelKind::EnergyCounter {
            resolution_j: 1e-9,
            wrap_j: None,
        },
        &counter_readings(&p, &times, 1e-9),
    );
    let w = QueryWindow {
        start: 1.0,
        end: 3.0,
        ttft: Some(0.5),
        input_tokens: Some(100),
        output_tokens: Some(30),
    };
    let e = attribute(&[channel(&curve, false)], &[w], SplitRule::Tokens).remove(0);
    let ph = e.phases.unwrap();
    assert!((ph.prefill_j - 50.0).abs() < 1e-6, "{ph:?}");
    assert!((ph.decode_j - 60.0).abs() < 1e-6, "{ph:?}");
    assert!((ph.prefill_net_j.unwrap() - 30.0).abs() < 1e-6);
    assert!(ph.decode_net_j.unwrap().abs() < 1e-6);
    // Overlapping queries: each one's phases add up to its own total.
    let other = QueryWindow {
        start: 2.0,
        end: 4.0,
        ttft: Some(0.8),
        input_tokens: Some(50),
        output_tokens: Some(10),
    };
    for e in attribute(&[channel(&curve, false)], &[w, other], SplitRule::Tokens) {
        let ph = e.phases.unwrap();
        assert!((ph.prefill_j + ph.decode_j - e.gross_j.unwrap()).abs() < 1e-9);
    }
    // No first token (a failed query): no split, not a zero.
    let failed = QueryWindow { ttft: None, ..w };
    assert!(
        attribute(&[channel(&curve, false)], &[failed], SplitRule::Tokens)[0]
            .phases
            .is_none()
    );
}
