//! WASM routers under real wasmtime: hostile routers (built from tests/fixtures/routers) that
//! loop, allocate without bound, sleep in a blocking call or name a model that is not a
//! candidate each cost a routing error for the query they were asked about, within the
//! sandbox's limits, and the simulation routes every other query. A router that fails every
//! decision is given up on after a few, and the report names it.

use ipw_core::config::ModelMeta;
use ipw_core::grade::test_support::fixture_router;
use ipw_core::joined::{Aggregates, Column, EnergySource, Outcome, Row, Table};
use ipw_core::routing::give_up::GIVE_UP_AFTER;
use ipw_core::routing::simulate::simulate;
use ipw_core::routing::wasm::WasmRouter;
use ipw_core::sandbox::Limits;
use std::time::Instant;

fn table(queries: usize) -> Table {
    let outcome = |energy: f64| Outcome {
        score: 1.0,
        failed: false,
        unscored: false,
        pairwise: false,
        energy_j: Some(energy),
        latency_s: Some(1.0),
        input_tokens: Some(10),
        output_tokens: Some(10),
        flops: None,
        cost_usd: None,
        g_co2e: None,
    };
    let column = |name: &str| Column {
        name: name.into(),
        meta: ModelMeta::default(),
        accelerator: "test".into(),
        run: "/nonexistent".into(),
        energy: EnergySource::Measured,
        aggregates: Aggregates::default(),
    };
    Table {
        columns: vec![column("small"), column("big")],
        rows: (0..queries)
            .map(|i| Row {
                query_id: format!("q{i}"),
                dataset: "d".into(),
                subject: None,
                category: None,
                domain: None,
                // Lengths 1, 2, 3, ...: the `stray` fixture strays on even ones.
                prompt: "x".repeat(i + 1),
                prompt_tokens: Some(i as u64 + 1),
                outcomes: vec![outcome(1.0), outcome(10.0)],
            })
            .collect(),
        incomplete: Vec::new(),
        energy_basis: "net",
    }
}

fn limits() -> Limits {
    Limits {
        timeout_ms: 300,
        memory_mib: 32,
        ..Limits::default()
    }
}

#[test]
fn hostile_routers_become_routing_errors_and_routing_goes_on() {
    let t = table(4);
    for (name, says) in [
        // Fuel (1e9 instructions) runs out before the 300 ms deadline on this loop.
        ("spin", "router ran out of fuel"),
        ("membomb", "router exceeded its 32 MiB memory budget"),
        ("sleep", "router exceeded its 300 ms deadline"),
    ] {
        let path = fixture_router(name);
        let mut r = WasmRouter::load(name, &path, "{}", limits(), 1).unwrap();
        let started = Instant::now();
        let report = simulate(&mut r, &t, 1, 1);
        let took = started.elapsed().as_secs_f64();
        assert_eq!(
            report.errors.len(),
            4,
            "{name}: every query is a routing error"
        );
        assert!(
            report.errors.iter().all(|e| e.message.contains(says)),
            "{name}: {:?}",
            report.errors[0].message
        );
        // Every query went to the reference (10 J) instead.
        assert!((report.figures.energy_j.as_ref().unwrap().value - 10.0).abs() < 1e-12);
        assert!(
            took < 4.0 * 0.3 + 3.0,
            "{name}: {took} s for 4 deadlines of 0.3 s"
        );
    }
    // A choice outside the candidates, on the even-length prompts (q1, q3) only.
    let mut r = WasmRouter::load("stray", &fixture_router("stray"), "{}", limits(), 1).unwrap();
    let report = simulate(&mut r, &t, 1, 1);
    let failed: Vec<&str> = report.errors.iter().map(|e| e.query_id.as_str()).collect();
    assert_eq!(failed, ["q1", "q3"]);
    assert!(
        report.errors[0].message.contains("not a candidate"),
        "{}",
        report.errors[0].message
    );
    // q0 and q2 went to small (1 J), q1 and q3 to the reference (10 J).
    assert!((report.figures.energy_j.as_ref().unwrap().value - 5.5).abs() < 1e-12);
}

#[test]
fn a_file_that_is_not_a_router_is_refused_at_load() {
    let grader = ipw_core::grade::test_support::fixture_grader("spin");
    let e = WasmRouter::load("g", &grader, "{}", limits(), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("router world") || e.contains("route"), "{e}");
    let e = WasmRouter::load(
        "x",
        std::path::Path::new("/nonexistent/r.wasm"),
        "{}",
        limits(),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("cannot read /nonexistent/r.wasm"), "{e}");
}

#[test]
fn a_router_failing_every_decision_is_given_up_on_and_named() {
    let t = table(200);
    for (name, says) in [
        ("sleep", "router exceeded its 50 ms deadline"),
        ("spin", "router ran out of fuel"),
    ] {
        // A router's own limits, as `ipw route` loads it.
        let mut r =
            WasmRouter::load(name, &fixture_router(name), "{}", Limits::router(), 1).unwrap();
        let started = Instant::now();
        let report = simulate(&mut r, &t, 1, 1);
        eprintln!(
            "{name}: 200 queries in {:.2} s, {} decisions asked",
            started.elapsed().as_secs_f64(),
            r.calls()
        );
        assert_eq!(
            r.calls(),
            GIVE_UP_AFTER as u64,
            "{name}: only the decisions before giving up are asked for"
        );
        // Every query is still counted: the asked ones failed, the rest were not asked, and
        // all went to the reference (10 J), as any failed decision does.
        assert_eq!(report.queries, 200);
        assert_eq!(report.errors.len(), 200, "{name}");
        assert!(report.errors[..GIVE_UP_AFTER]
            .iter()
            .all(|e| e.message.contains(says)));
        assert!(
            report.errors[GIVE_UP_AFTER..]
                .iter()
                .all(|e| e.message.contains("not asked")),
            "{:?}",
            report.errors[GIVE_UP_AFTER]
        );
        assert!((report.figures.energy_j.as_ref().unwrap().value - 10.0).abs() < 1e-12);
        let g = report.given_up.as_ref().expect("given up on");
        assert_eq!(g.router, name);
        assert_eq!(g.failed_in_a_row, GIVE_UP_AFTER);
        assert_eq!(g.not_asked, 200 - GIVE_UP_AFTER);
        assert_eq!(g.first_query, "q0");
        assert!(g.first_error.contains(says), "{}", g.first_error);
        let said = g.to_string();
        assert!(
            said.contains(&format!(
                "router `{name}` given up on after 5 failed decisions"
            )),
            "{said}"
        );
        // route.json carries it.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["given_up"]["router"], name, "{}", json["given_up"]);
        assert_eq!(json["given_up"]["not_asked"], 195);
    }
    // A router that fails on every other query (never twice in a row) is asked about all.
    let mut r =
        WasmRouter::load("stray", &fixture_router("stray"), "{}", Limits::router(), 1).unwrap();
    let report = simulate(&mut r, &t, 1, 1);
    assert_eq!(r.calls(), 200);
    assert_eq!(report.errors.len(), 100);
    assert!(report.given_up.is_none());
}

#[test]
fn a_router_runs_under_tighter_limits_than_a_grader() {
    let (router, grader) = (Limits::router(), Limits::default());
    assert!(router.timeout_ms * 10 <= grader.timeout_ms, "{router:?}");
    assert!(router.fuel * 10 <= grader.fuel, "{router:?}");
    // The example of a real decision (a prompt-length rule) fits them many times over: the
    // `stray` fixture decides every query of a table within them.
    let mut r = WasmRouter::load("stray", &fixture_router("stray"), "{}", router, 1).unwrap();
    assert_eq!(r.limits(), &router);
    let report = simulate(&mut r, &table(20), 1, 1);
    assert!(report
        .errors
        .iter()
        .all(|e| e.message.contains("not a candidate")));
}
