//! Training on a table with a planted rule, and the trained component in the real sandbox.

use super::*;
use crate::joined::{Row, Table};
use crate::routing::routers::{Objective, Router};
use crate::routing::tests::{column, outcome};
use crate::routing::wasm::WasmRouter;

const WORDS: [&str; 12] = [
    "apple", "river", "stone", "cloud", "paper", "green", "seven", "table", "light", "north",
    "sugar", "metal",
];

/// `small` (1 J) and `big` (20 J, the reference) on `n` queries of random words: `small` is as
/// good as `big` exactly on prompts with the word `zebra` (about 40% of them), except for 5%
/// of queries whose label is flipped (noise).
fn planted(n: usize, seed: u64) -> Table {
    planted_from(n, seed, &WORDS.map(String::from))
}

/// [`planted`] with prompts drawn from `vocabulary`.
fn planted_from(n: usize, seed: u64, vocabulary: &[String]) -> Table {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let rows = (0..n)
        .map(|i| {
            let mut words: Vec<&str> = (0..8 + rng.below(8))
                .map(|_| vocabulary[rng.below(vocabulary.len())].as_str())
                .collect();
            let marked = rng.below(10) < 4;
            if marked {
                let at = rng.below(words.len());
                words.insert(at, "zebra");
            }
            let noisy = rng.below(20) == 0;
            let small_ok = marked != noisy;
            let prompt = words.join(" ");
            Row {
                query_id: format!("planted/{i}"),
                dataset: "planted".into(),
                subject: None,
                category: None,
                domain: None,
                prompt_tokens: Some(words.len() as u64),
                prompt,
                outcomes: vec![
                    outcome(if small_ok { 1.0 } else { 0.0 }, 1.0),
                    outcome(1.0, 20.0),
                ],
            }
        })
        .collect();
    Table {
        columns: vec![column("small"), column("big")],
        rows,
        incomplete: Vec::new(),
        energy_basis: "net",
    }
}

fn options() -> TrainOptions {
    TrainOptions {
        reference: "big".into(),
        objective: None,
        holdout: 0.3,
        seed: 11,
        features: ipw_router_model::FeatureSet::DEFAULT,
        epochs: Some(5),
        algorithm: Algorithm::Logistic,
    }
}

fn load(bytes: &[u8], params: &str) -> (tempfile::TempDir, WasmRouter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.wasm");
    std::fs::write(&path, bytes).unwrap();
    let r = WasmRouter::load(
        "router.wasm",
        &path,
        params,
        crate::sandbox::Limits::router(),
        1,
    )
    .unwrap();
    (dir, r)
}

#[test]
fn learns_a_planted_rule_and_routes_held_out_queries_by_it_in_the_sandbox() {
    let table = planted(3000, 5);
    let trained = train(&table, &options()).unwrap();
    let m = &trained.meta;
    assert_eq!(
        (m.reference.as_str(), m.objective.as_str()),
        ("big", "energy")
    );
    assert_eq!(m.train_queries + m.held_out_queries, 3000);
    assert!(
        (800..1000).contains(&m.held_out_queries),
        "{}",
        m.held_out_queries
    );
    assert_eq!(m.models[0].name, "small");
    assert!(m.models[0].routable && !m.models[1].routable);

    let learned = LearnedRouter::from_component(&trained.component)
        .unwrap()
        .expect("a trained router reads back");
    assert_eq!(learned.meta, trained.meta);
    let (_dir, mut router) = load(&trained.component, "{}");
    let (mut right, mut held) = (0, 0);
    for row in table.rows.iter().filter(|r| m.holdout.holds_out(r)) {
        held += 1;
        let d = router.decide(row, &table).unwrap();
        // The component computes what the host computes from the same parameters.
        let z = learned.logits(row);
        let host = learned.model().choose(&z, 0.5).map_or(1, |c| c.0);
        assert_eq!(d.tried, vec![host], "{}", row.prompt);
        assert_eq!(host == 0, z[0] >= 0.0);
        let marked = row.prompt.split(' ').any(|w| w == "zebra");
        right += usize::from(d.tried[0] == if marked { 0 } else { 1 });
    }
    assert_eq!(held, m.held_out_queries);
    // The rule, not the noise: nearly every held-out query goes where the marker says.
    assert!(right as f64 / held as f64 > 0.97, "{right} of {held}");
}

#[test]
fn same_runs_and_seed_same_bytes_and_another_seed_other_bytes() {
    let table = planted(600, 9);
    let a = train(&table, &options()).unwrap().component;
    let b = train(&table, &options()).unwrap().component;
    assert!(a == b, "two trainings differ");
    let c = train(
        &table,
        &TrainOptions {
            seed: 12,
            ..options()
        },
    )
    .unwrap()
    .component;
    assert!(a != c);
}

#[test]
fn threshold_trades_quality_for_savings_and_other_candidates_are_refused() {
    let table = planted(600, 3);
    let trained = train(&table, &options()).unwrap();
    let to_small = |params: &str| {
        let (_dir, mut r) = load(&trained.component, params);
        table
            .rows
            .iter()
            .filter(|row| r.decide(row, &table).unwrap().tried == [0])
            .count()
    };
    let (all, half, none) = (
        to_small(r#"{"threshold": 0.0}"#),
        to_small("{}"),
        to_small(r#"{"threshold": 1.0}"#),
    );
    assert_eq!(all, 600);
    assert!(none < half && half < all, "{none} {half} {all}");

    // Models it was not trained on: refused, named, both by the host's check and in the
    // sandbox.
    let mut other = table.clone();
    other.columns[0] = column("tiny");
    let learned = LearnedRouter::from_component(&trained.component)
        .unwrap()
        .unwrap();
    let e = learned.check_models(&["tiny", "big"]).unwrap_err();
    assert!(e.contains("lack small") && e.contains("add tiny"), "{e}");
    let (_dir, mut r) = load(&trained.component, "{}");
    let e = r.decide(&other.rows[0], &other).unwrap_err();
    assert!(e.contains("lack small") && e.contains("add tiny"), "{e}");
}

#[test]
fn bad_options_and_untrainable_runs_are_refused_by_name() {
    let table = planted(50, 1);
    let e = train(
        &table,
        &TrainOptions {
            holdout: 1.0,
            ..options()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--holdout 1"), "{e}");
    let e = train(
        &table,
        &TrainOptions {
            reference: "small".into(),
            ..options()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("no model is cheaper than small"),
        "{e}"
    );
    let e = train(
        &table,
        &TrainOptions {
            objective: Some(Objective::Carbon),
            ..options()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no run has carbon"), "{e}");
}

#[test]
fn the_untrained_component_says_so_and_is_no_learned_router() {
    assert!(LearnedRouter::from_component(generic_component())
        .unwrap()
        .is_none());
    let table = planted(5, 1);
    let (_dir, mut r) = load(generic_component(), "{}");
    let e = r.decide(&table.rows[0], &table).unwrap_err();
    assert!(e.contains("untrained"), "{e}");
}

#[test]
fn nearest_neighbours_learn_which_prompts_are_alike_and_run_in_the_sandbox() {
    // Two topics: the prompts `small` does as well on are about one (words red0..red49), the
    // rest about the other (blue0..blue49); as in `planted`, 5% of labels are flipped. Prompts
    // alike in words are alike in outcome: what nearest neighbours find.
    let mut table = planted(3000, 8);
    let mut rng = crate::rng::SplitMix64::new(3);
    for row in &mut table.rows {
        let topic = if row.prompt.split(' ').any(|w| w == "zebra") {
            "red"
        } else {
            "blue"
        };
        row.prompt = (0..8 + rng.below(8))
            .map(|_| format!("{topic}{}", rng.below(50)))
            .collect::<Vec<_>>()
            .join(" ");
    }
    let opts = TrainOptions {
        algorithm: Algorithm::Neighbours {
            vote: 15,
            prototypes: 1500,
        },
        ..options()
    };
    let trained = train(&table, &opts).unwrap();
    assert_eq!(trained.meta.algorithm, "nearest-neighbours");
    assert_eq!(trained.meta.epochs, 0);
    assert!(trained.component == train(&table, &opts).unwrap().component);
    let learned = LearnedRouter::from_component(&trained.component)
        .unwrap()
        .unwrap();
    let (_dir, mut router) = load(&trained.component, "{}");
    let (mut right, mut held) = (0, 0);
    for row in table
        .rows
        .iter()
        .filter(|r| trained.meta.holdout.holds_out(r))
    {
        held += 1;
        let d = router.decide(row, &table).unwrap();
        let host = learned
            .model()
            .choose(&learned.logits(row), 0.5)
            .map_or(1, |c| c.0);
        assert_eq!(d.tried, vec![host]);
        let red = row.prompt.starts_with("red");
        right += usize::from(host == if red { 0 } else { 1 });
    }
    assert!(right as f64 / held as f64 > 0.95, "{right} of {held}");
}
