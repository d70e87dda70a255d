//! Routers and their metrics on tables whose answers are worked out by hand.

use super::routers::{self, oracle_choice, Context, Decision, Objective, Router};
use super::simulate::{gap_recovery, random_gap_recovery, simulate};
use crate::config::ModelMeta;
use crate::joined::{Aggregates, Column, EnergySource, Outcome, Row, Table};

pub(super) fn outcome(score: f64, energy: f64) -> Outcome {
    Outcome {
        score,
        failed: false,
        unscored: false,
        pairwise: false,
        energy_j: Some(energy),
        latency_s: Some(energy / 10.0),
        input_tokens: Some(10),
        output_tokens: Some(20),
        flops: Some(energy * 1e9),
        cost_usd: Some(energy * 1e-6),
        g_co2e: None,
    }
}

pub(super) fn column(name: &str) -> Column {
    Column {
        name: name.into(),
        meta: ModelMeta::default(),
        accelerator: "test".into(),
        run: "/nonexistent".into(),
        energy: EnergySource::Measured,
        aggregates: Aggregates::default(),
    }
}

/// small (1 J), mid (5 J), big (20 J, the reference) on six queries:
///
/// | query | small | mid | big | oracle (cheapest scoring >= big) |
/// |---|---|---|---|---|
/// | q0 | 1 | 1 | 1 | small |
/// | q1 | 0 | 1 | 1 | mid |
/// | q2 | 0 | 0 | 1 | big |
/// | q3 | 0 | 0 | 0 | small (big is wrong too) |
/// | q4 | 1 | 0 | 0 | small |
/// | q5 | 0 | 1 | 0 | small |
fn table() -> Table {
    let scores = [
        [1.0, 1.0, 1.0],
        [0.0, 1.0, 1.0],
        [0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
    ];
    let rows = scores
        .iter()
        .enumerate()
        .map(|(i, s)| Row {
            query_id: format!("q{i}"),
            dataset: "d".into(),
            subject: None,
            category: None,
            domain: None,
            prompt: "x".repeat(10 * (i + 1)),
            prompt_tokens: Some(10 * (i as u64 + 1)),
            outcomes: vec![outcome(s[0], 1.0), outcome(s[1], 5.0), outcome(s[2], 20.0)],
        })
        .collect();
    Table {
        columns: vec![column("small"), column("mid"), column("big")],
        rows,
        incomplete: Vec::new(),
        energy_basis: "net",
    }
}

fn ctx() -> Context {
    Context {
        reference: 2,
        objective: Objective::Energy,
        seed: 7,
    }
}

fn run(spec: &str, t: &Table) -> super::simulate::RouterReport {
    let mut r = routers::builtin(spec, t, ctx()).unwrap();
    simulate(r.as_mut(), t, 2, 1)
}

fn value(e: &Option<crate::analysis::Estimate>) -> f64 {
    e.as_ref().unwrap().value
}

#[test]
fn oracle_always_and_cascade_match_the_table_by_hand() {
    let t = table();
    let choices: Vec<usize> = t
        .rows
        .iter()
        .map(|r| oracle_choice(r, 2, Objective::Energy).unwrap())
        .collect();
    assert_eq!(choices, [0, 1, 2, 0, 0, 0]);

    // Oracle: scores 1,1,1,0,1,0; energy 1+5+20+1+1+1 = 29 against 6 x 20 = 120.
    let o = run("oracle", &t);
    assert!((value(&o.figures.accuracy) - 4.0 / 6.0).abs() < 1e-12);
    assert!((value(&o.figures.accuracy_delta) - 1.0 / 6.0).abs() < 1e-12);
    assert!((value(&o.figures.energy_j) - 29.0 / 6.0).abs() < 1e-12);
    assert!((value(&o.figures.savings.energy) - (1.0 - 29.0 / 120.0)).abs() < 1e-12);
    assert!((value(&o.figures.savings.cost) - (1.0 - 29.0 / 120.0)).abs() < 1e-12);
    assert!((o.figures.answered_by["small"] - 4.0 / 6.0).abs() < 1e-12);
    let s = o.figures.savings.energy.unwrap();
    assert!(s.ci95[0] <= s.value && s.value <= s.ci95[1] && s.ci95[0] < s.ci95[1]);

    // Always the reference: no saving, no change.
    let b = run("always:big", &t);
    assert!(value(&b.figures.savings.energy).abs() < 1e-12);
    assert!(value(&b.figures.accuracy_delta).abs() < 1e-12);

    // Always small: 2/6 right, 6 J of 120.
    let a = run("always:small", &t);
    assert!((value(&a.figures.accuracy) - 2.0 / 6.0).abs() < 1e-12);
    assert!((value(&a.figures.savings.energy) - 0.95).abs() < 1e-12);

    // Cascade small -> big when small is wrong: q0 and q4 stop at small (1 J), the other four
    // pay 21 J and get big's answer: scores 1,1,1,0,1,0; energy 2 + 84 = 86.
    let c = run("cascade:small", &t);
    assert_eq!(c.figures.escalated, 4);
    assert!((value(&c.figures.accuracy) - 4.0 / 6.0).abs() < 1e-12);
    assert!((value(&c.figures.energy_j) - 86.0 / 6.0).abs() < 1e-12);
    assert!(
        (value(&c.figures.latency_s) - 8.6 / 6.0).abs() < 1e-12,
        "both attempts' latency"
    );

    // Threshold on prompt tokens: q0..q2 (10-30 tokens) to small, the rest to big.
    let th = run("threshold:prompt_tokens:30:small", &t);
    // small on q0,q1,q2: 1,0,0; big on q3,q4,q5: 0,0,0.
    assert!((value(&th.figures.accuracy) - 1.0 / 6.0).abs() < 1e-12);
    assert!((value(&th.figures.energy_j) - 63.0 / 6.0).abs() < 1e-12);
}

#[test]
fn oracle_by_cost_or_compute_follows_its_objective() {
    let mut t = table();
    // Make mid the cheapest in dollars on every query; energy unchanged.
    for r in &mut t.rows {
        r.outcomes[1].cost_usd = Some(1e-9);
    }
    let by_cost = routers::builtin("oracle:cost", &t, ctx()).unwrap();
    let mut by_cost = by_cost;
    let d = by_cost.decide(&t.rows[0], &t).unwrap();
    assert_eq!(
        d.tried,
        vec![1],
        "q0: everyone is right; mid is cheapest in dollars"
    );
    let mut by_energy = routers::builtin("oracle:energy", &t, ctx()).unwrap();
    assert_eq!(by_energy.decide(&t.rows[0], &t).unwrap().tried, vec![0]);
}

#[test]
fn p_accurate_takes_its_objective_and_an_objective_without_figures_is_refused() {
    let mut t = table();
    for r in &mut t.rows {
        r.outcomes[1].cost_usd = Some(1e-9);
    }
    let mut by_cost = routers::builtin("p-accurate:1:reference:cost", &t, ctx()).unwrap();
    assert_eq!(by_cost.decide(&t.rows[0], &t).unwrap().tried, vec![1]);
    let mut by_cost = routers::builtin("p-accurate:1:cost", &t, ctx()).unwrap();
    assert_eq!(by_cost.decide(&t.rows[0], &t).unwrap().tried, vec![1]);
    assert!(routers::builtin("p-accurate:1:watts", &t, ctx()).is_err());
    // A table of costs only, as routing papers publish.
    for r in &mut t.rows {
        for o in &mut r.outcomes {
            (o.energy_j, o.flops) = (None, None);
        }
    }
    assert_eq!(Objective::default_for(&t), Objective::Cost);
    for spec in [
        "oracle",
        "oracle:energy",
        "p-accurate:0.5",
        "p-accurate:0.5:compute",
    ] {
        let e = routers::builtin(spec, &t, ctx())
            .err()
            .expect(spec)
            .to_string();
        assert!(e.contains("objectives with figures: cost"), "{spec}: {e}");
    }
    assert!(routers::builtin("oracle:cost", &t, ctx()).is_ok());
}

#[test]
fn p_accurate_is_the_oracle_with_probability_p_else_the_reference() {
    // 2000 copies of the table's queries (distinct ids, so distinct random draws).
    let base = table();
    let mut t = base.clone();
    t.rows = (0..2000)
        .map(|k| {
            let mut r = base.rows[k % 6].clone();
            r.query_id = format!("q{k}");
            r
        })
        .collect();
    let oracle: Vec<usize> = t
        .rows
        .iter()
        .map(|r| oracle_choice(r, 2, Objective::Energy).unwrap())
        .collect();
    for (spec, p) in [
        ("p-accurate:0", 0.0),
        ("p-accurate:1", 1.0),
        ("p-accurate:0.8", 0.8),
    ] {
        let mut r = routers::builtin(spec, &t, ctx()).unwrap();
        let mut took_oracle = 0;
        for (row, &o) in t.rows.iter().zip(&oracle) {
            let d = r.decide(row, &t).unwrap();
            assert!(d.tried == vec![o] || d.tried == vec![2], "{spec}: {d:?}");
            // Where the oracle picks the reference the two are the same choice: count only
            // the queries where they differ.
            if o != 2 && d.tried == vec![o] {
                took_oracle += 1;
            }
        }
        let differ = oracle.iter().filter(|&&o| o != 2).count() as f64;
        let share = took_oracle as f64 / differ;
        // Binomial: sd = sqrt(.8 x .2 / 1667) = 0.0098; 4 sd.
        assert!((share - p).abs() < 0.04, "{spec}: {share}");
    }
    // Seeded: the same decisions again, others with another seed.
    let decide_all = |seed: u64| -> Vec<Vec<usize>> {
        let mut c = ctx();
        c.seed = seed;
        let mut r = routers::builtin("p-accurate:0.5", &t, c).unwrap();
        t.rows
            .iter()
            .map(|row| r.decide(row, &t).unwrap().tried)
            .collect()
    };
    assert_eq!(decide_all(7), decide_all(7));
    assert_ne!(decide_all(7), decide_all(8));
}

#[test]
fn gap_recovery_is_exact_for_random_and_for_a_known_ordering() {
    let r = random_gap_recovery(100);
    assert!((r.apgr - 0.5).abs() < 1e-12);
    assert!((r.cpt50 - 0.5).abs() < 1e-12 && (r.cpt80 - 0.8).abs() < 1e-12);
    // small (weak) vs big (strong): accuracies 2/6 and 3/6, a gap of 1/6. The oracle order
    // sends q1 and q2 (big right, small wrong) first: PGR 0, 1, 2, 2, 2, 2, then q4 (small
    // right, big wrong) brings it to 1. Area: (0.5 + 1.5 + 2 + 2 + 2 + 1.5) / 6 = 9.5 / 6.
    let t = table();
    let priority: Vec<f64> = t
        .rows
        .iter()
        .map(|r| r.outcomes[2].score - r.outcomes[0].score)
        .collect();
    let g = gap_recovery(&t, 0, 2, "oracle", &priority).unwrap();
    assert!((g.apgr - 9.5 / 6.0).abs() < 1e-12, "{}", g.apgr);
    assert!((g.cpt50 - 1.0 / 6.0).abs() < 1e-12);
    assert!(
        (g.curve.last().unwrap().1 - 1.0).abs() < 1e-12,
        "all strong: the whole gap"
    );
    // Equal accuracy: no gap, no figure.
    assert!(gap_recovery(&t, 2, 2, "x", &priority).is_none());
}

struct Hostile;

impl Router for Hostile {
    fn name(&self) -> String {
        "hostile".into()
    }
    fn decide(&mut self, row: &Row, _: &Table) -> Result<Decision, String> {
        match row.query_id.as_str() {
            "q0" => Err("trapped: out of fuel".into()),
            "q1" => Ok(Decision {
                tried: vec![99],
                confidence: None,
            }),
            "q2" => Ok(Decision {
                tried: vec![],
                confidence: None,
            }),
            _ => Ok(Decision {
                tried: vec![0],
                confidence: None,
            }),
        }
    }
}

#[test]
fn a_failing_router_costs_a_routing_error_per_query_and_the_rest_goes_on() {
    let t = table();
    let r = simulate(&mut Hostile, &t, 2, 1);
    let failed: Vec<&str> = r.errors.iter().map(|e| e.query_id.as_str()).collect();
    assert_eq!(failed, ["q0", "q1", "q2"]);
    assert!(r.errors[1].message.contains("not a candidate"));
    // q0..q2 fall back to big (20 J each); q3..q5 go to small (1 J each).
    assert!((value(&r.figures.energy_j) - 63.0 / 6.0).abs() < 1e-12);
}

#[test]
fn bad_specs_are_refused_by_name() {
    let t = table();
    for (spec, what) in [
        ("always:huge", "no model `huge`"),
        ("p-accurate:1.5", "not in [0, 1]"),
        ("random:x", "not a number"),
        ("oracle:speed", "use energy, compute, cost or carbon"),
        ("magic", "unknown router"),
    ] {
        let e = routers::builtin(spec, &t, ctx()).err().unwrap().to_string();
        assert!(e.contains(spec) && e.contains(what), "{spec}: {e}");
    }
}

#[test]
fn a_workload_counts_the_reference_load_taken_off_per_hour_and_at_peak() {
    use super::workload::{read_trace, replay, Arrival};
    let arrival = |t: f64, tokens: u64| Arrival {
        t,
        input_tokens: tokens,
        output_tokens: 0,
    };
    // Minute 0 holds 100 + 50 tokens, minute 61 holds 400: the busiest minute.
    let trace = [
        arrival(0.0, 100),
        arrival(10.0, 50),
        arrival(3600.0 + 65.0, 400),
    ];
    let t = table();
    let mut small = routers::builtin("always:small", &t, ctx()).unwrap();
    let w = replay(&trace, small.as_mut(), &t, 2, 1);
    assert_eq!(w.requests, 3);
    assert_eq!(w.hours.len(), 2);
    assert_eq!((w.hours[0].requests, w.hours[0].tokens), (2, 150));
    assert_eq!((w.hours[1].requests, w.hours[1].to_reference), (1, 0));
    assert_eq!(w.offloaded_requests, 1.0);
    assert_eq!(w.peak_tokens_per_min_all_reference, 400);
    assert_eq!((w.peak_tokens_per_min_routed, w.peak_reduction), (0, 1.0));
    let mut big = routers::builtin("always:big", &t, ctx()).unwrap();
    let w = replay(&trace, big.as_mut(), &t, 2, 1);
    assert_eq!((w.offloaded_tokens, w.peak_reduction), (0.0, 0.0));
    // A cascade that escalates still loads the reference: on a table of queries small gets
    // wrong (q1, q2, q3, q5) nothing is taken off; on q0 and q4 (small right) everything is.
    let mut wrong = t.clone();
    wrong.rows.retain(|r| r.outcomes[0].score == 0.0);
    let mut right = t.clone();
    right.rows.retain(|r| r.outcomes[0].score == 1.0);
    for (tab, off) in [(&wrong, 0.0), (&right, 1.0)] {
        let mut c = routers::builtin("cascade:small", tab, ctx()).unwrap();
        assert_eq!(
            replay(&trace, c.as_mut(), tab, 2, 1).offloaded_requests,
            off
        );
    }
    // The shipped bursty trace reads (BurstGPT columns), in time order.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = read_trace(&root.join("examples/data/bursty-trace.csv")).unwrap();
    assert!(shipped.len() > 1000 && shipped.windows(2).all(|w| w[0].t <= w[1].t));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "t,input_tokens,output_tokens\n1,10,10\n2,ten,10\n").unwrap();
    let e = read_trace(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.csv:3") && e.contains("`ten`"), "{e}");
}

#[test]
fn no_gap_figures_when_the_strong_model_is_not_the_more_accurate() {
    // big (3/6) as weak and small (2/6) as strong: a negative gap has nothing to recover.
    let t = table();
    assert!(gap_recovery(&t, 2, 0, "x", &[0.0; 6]).is_none());
}

#[test]
fn a_subject_threshold_sends_the_named_subjects_to_the_small_model() {
    let mut t = table();
    for (i, r) in t.rows.iter_mut().enumerate() {
        r.subject = Some(if i < 2 { "easy".into() } else { "hard".into() });
    }
    // q0, q1 (easy) to small: scores 1, 0; q2..q5 to big: 1, 0, 0, 0.
    let r = run("threshold:subject:easy:small", &t);
    assert!((value(&r.figures.accuracy) - 2.0 / 6.0).abs() < 1e-12);
    assert!((value(&r.figures.energy_j) - (2.0 + 80.0) / 6.0).abs() < 1e-12);
    // Several subjects, or a dataset name.
    let r = run("threshold:subject:easy|hard:small", &t);
    assert!((r.figures.answered_by["small"] - 1.0).abs() < 1e-12);
    let r = run("threshold:subject:d:small", &t);
    assert!((r.figures.answered_by["small"] - 1.0).abs() < 1e-12);
}

#[test]
fn figures_per_domain_are_the_routers_own_decisions_over_each_group() {
    // q0-q2 in 15-0000, q3 in 23-0000, q4-q5 unlabelled.
    let mut t = table();
    for (i, row) in t.rows.iter_mut().enumerate() {
        row.domain = match i {
            0..=2 => Some("15-0000".into()),
            3 => Some("23-0000".into()),
            _ => None,
        };
    }
    let mut r = routers::builtin("oracle", &t, ctx()).unwrap();
    let o = super::simulate::simulate_grouped(
        r.as_mut(),
        &t,
        2,
        1,
        Some(crate::study::GroupBy::Domain),
    );
    let groups: Vec<(&str, usize)> = o
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.queries))
        .collect();
    assert_eq!(groups, [("15-0000", 3), ("23-0000", 1), ("unlabelled", 2)]);
    // 15-0000: the oracle picks small, mid, big (1 + 5 + 20 J of 60), scores 1, 1, 1.
    let g = &o.groups[0].figures;
    assert!((value(&g.accuracy) - 1.0).abs() < 1e-12);
    assert!((value(&g.savings.energy) - (1.0 - 26.0 / 60.0)).abs() < 1e-12);
    assert!((g.answered_by["big"] - 1.0 / 3.0).abs() < 1e-12);
    // Unlabelled q4, q5: small both times (2 J of 40), scores 1 and 0; big scored 0 on both.
    let u = &o.groups[2].figures;
    assert!((value(&u.accuracy) - 0.5).abs() < 1e-12);
    assert!((value(&u.accuracy_delta) - 0.5).abs() < 1e-12);
    assert!((value(&u.savings.energy) - 0.95).abs() < 1e-12);
    // The whole is unchanged by grouping.
    let plain = run("oracle", &t);
    assert_eq!(value(&plain.figures.accuracy), value(&o.figures.accuracy));
    assert!(plain.groups.is_empty());
}
