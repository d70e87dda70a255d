//! Routing on real runs: SmolLM2 profiled in-process (8 generated tokens at most) and the same
//! GGUF behind a real llama-server (48 at most, so it answers differently and costs more), both
//! measured by the CPU estimator on the same MMLU queries; then `ipw route` against the server
//! as the reference. The test recomputes every figure from the runs' records by hand.

use crate::support::*;
use serde_json::Value;
use std::collections::HashMap;

fn experiment(name: &str, max_tokens: u32, model: &str, queries: usize) -> String {
    format!(
        // No idle baseline: routing is checked on gross energy, which is never zero or below.
        // (A baseline taken while other work loads the machine can exceed a query's estimate,
        // and a reference with no net energy has no savings to check.)
        "name = {name:?}\n[run]\nwarmup_queries = 1\n[energy]\nbaseline_s = 0\n\
         [generation]\nmax_tokens = {max_tokens}\n{model}\
         [models.meta]\nparams_b = 0.135\nprice_in_per_mtok = 0.1\nprice_out_per_mtok = 0.4\n\
         [[samplers]]\nplugin = \"cpu-estimate\"\n\
         [[datasets]]\nbuiltin = \"mmlu\"\nmax_queries = {queries}\n"
    )
}

/// query id -> (score, energy on the route's basis, input + output tokens)
fn outcomes(run: &std::path::Path, basis: &str) -> HashMap<String, (f64, f64, f64)> {
    records(run)
        .into_iter()
        .map(|r| {
            let score = r["grade"]["score"].as_f64().unwrap_or(0.0);
            let energy = r["energy"][format!("{basis}_j")].as_f64().unwrap();
            let tokens = r["input_tokens"].as_f64().unwrap() + r["output_tokens"].as_f64().unwrap();
            (
                r["query_id"].as_str().unwrap().to_string(),
                (score, energy, tokens),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn routing_two_real_runs_matches_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let local = experiment(
        "local",
        8,
        &format!(
            "[[models]]\nname = \"local\"\npath = {}\nthreads = 2\n",
            q(&model_path())
        ),
        12,
    );
    let out_local = profile_ok(dir.path(), "local", &local);
    let server = LlamaServer::start();
    let remote = experiment(
        "server",
        48,
        &format!(
            "[[models]]\nname = \"server\"\nbackend = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"smollm2\"\n",
            server.url
        ),
        13,
    );
    let out_server = profile_ok(dir.path(), "server", &remote);
    drop(server);

    // The third-party router sends prompts up to the local run's median length to the model
    // with the lowest mean energy, the rest to the reference.
    let example = build_wasm_example("router-short-prompts");
    let mut lengths: Vec<u64> = records(&out_local.join("local"))
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap())
        .collect();
    lengths.sort();
    let median = lengths[lengths.len() / 2];
    let wasm_spec = format!("{}:{{\"max_tokens\": {median}}}", example.display());

    let analysis = dir.path().join("analysis");
    let o = run_ipw(
        &[
            "route",
            out_local.to_str().unwrap(),
            out_server.to_str().unwrap(),
            "--reference",
            "server",
            "--router",
            "oracle",
            "--router",
            "always:local",
            "--router",
            "p-accurate:0.8",
            "--router",
            "oracle:compute",
            "--router",
            &wasm_spec,
            "--out",
            analysis.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = text(&o);
    assert!(stdout.contains("savings vs reference"), "{stdout}");
    let report = json(&analysis.join("route.json"));
    let csv = std::fs::read_to_string(analysis.join("route.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        6,
        "a header and one line per router:\n{csv}"
    );

    // The server ran one query more: reported, not routed.
    assert_eq!(report["queries"], 12);
    assert_eq!(report["incomplete"].as_array().unwrap().len(), 1);
    assert_eq!(report["incomplete"][0][1][0], "local");

    let basis = report["energy_basis"].as_str().unwrap();
    assert_eq!(basis, "gross", "no baseline was taken");
    let a = outcomes(&out_local.join("local"), basis);
    let b = outcomes(&out_server.join("server"), basis);
    let ids: Vec<&String> = a.keys().collect();
    assert_eq!(ids.len(), 12);
    let n = ids.len() as f64;
    let sum = |f: &dyn Fn(&String) -> f64| ids.iter().map(|id| f(id)).sum::<f64>();
    let ref_energy = sum(&|id| b[id].1);

    // always:local: the local run's accuracy, and its energy against the server's.
    let al = router(&report, "always:local");
    assert!(close(
        al["accuracy"]["value"].as_f64().unwrap(),
        sum(&|id| a[id].0) / n
    ));
    assert!(close(
        al["savings"]["energy"]["value"].as_f64().unwrap(),
        1.0 - sum(&|id| a[id].1) / ref_energy
    ));

    // The oracle by hand: local when it scores at least as well and costs less energy.
    let pick = |id: &String, cost: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let (l, s) = (&a[id], &b[id]);
        if l.0 >= s.0 && cost(l) < cost(s) {
            *l
        } else {
            *s
        }
    };
    let or = router(&report, "oracle");
    assert!(close(
        or["accuracy"]["value"].as_f64().unwrap(),
        sum(&|id| pick(id, &|o| o.1).0) / n
    ));
    assert!(close(
        or["savings"]["energy"]["value"].as_f64().unwrap(),
        1.0 - sum(&|id| pick(id, &|o| o.1).1) / ref_energy
    ));
    let acc_delta = or["accuracy_delta"]["value"].as_f64().unwrap();
    assert!(acc_delta >= 0.0, "the oracle never loses to the reference");
    // By compute: FLOPs = 2 x 0.135e9 x tokens, so the fewer tokens the cheaper.
    let oc = router(&report, "oracle:compute");
    let flops = |o: &(f64, f64, f64)| 2.0 * 0.135e9 * o.2;
    assert!(close(
        oc["savings"]["compute"]["value"].as_f64().unwrap(),
        1.0 - sum(&|id| flops(&pick(id, &flops))) / sum(&|id| flops(&b[id]))
    ));
    // Cost: prices from [models.meta] reach the figures.
    assert!(or["cost_usd"]["value"].as_f64().unwrap() > 0.0);

    // p-accurate lies between the reference and the oracle in energy, and sweeps a curve.
    let pa = router(&report, "p-accurate:0.8");
    let s = pa["savings"]["energy"]["value"].as_f64().unwrap();
    assert!(s <= or["savings"]["energy"]["value"].as_f64().unwrap() + 1e-12);
    let curve = report["curves"]["p-accurate:0.8"].as_array().unwrap();
    assert_eq!(curve.len(), 11);
    assert!(
        close(curve[0]["reference_share"].as_f64().unwrap(), 1.0),
        "p = 0: all reference"
    );

    // The WASM router by hand: short prompts to the frugal model.
    let frugal = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|x, y| {
            let e = |m: &Value| m["aggregates"]["energy_j"].as_f64().unwrap();
            e(x).total_cmp(&e(y))
        })
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens: HashMap<String, u64> = records(&out_local.join("local"))
        .iter()
        .map(|r| {
            (
                r["query_id"].as_str().unwrap().to_string(),
                r["input_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    let by_wasm = |id: &String| {
        if tokens[id] <= median && frugal == "local" {
            a[id]
        } else {
            b[id]
        }
    };
    let w = router(&report, &wasm_spec);
    assert_eq!(w["errors"].as_array().unwrap().len(), 0, "{w}");
    assert!(close(
        w["accuracy"]["value"].as_f64().unwrap(),
        sum(&|id| by_wasm(id).0) / n
    ));
    assert!(close(
        w["savings"]["energy"]["value"].as_f64().unwrap(),
        1.0 - sum(&|id| by_wasm(id).1) / ref_energy
    ));

    trained_on_the_real_runs(dir.path(), &out_local, &out_server, &a, &b);

    // Unknown models and routers are refused by name.
    let o = run_ipw(
        &[
            "route",
            out_local.to_str().unwrap(),
            out_server.to_str().unwrap(),
            "--reference",
            "gpt-9",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no model `gpt-9`") && text(&o).contains("local, server"),
        "{}",
        text(&o)
    );
}

/// `ipw route train` on the two real runs (the cheaper in compute: the local run's 8 tokens
/// against the server's 48): the router is written, routes exactly the queries it held out,
/// and each of its decisions there is one of the two models' real outcomes.
fn trained_on_the_real_runs(
    dir: &std::path::Path,
    local: &std::path::Path,
    server: &std::path::Path,
    a: &HashMap<String, (f64, f64, f64)>,
    b: &HashMap<String, (f64, f64, f64)>,
) {
    let wasm = dir.join("smol-router.wasm");
    let o = run_ipw(
        &[
            "route",
            "train",
            local.to_str().unwrap(),
            server.to_str().unwrap(),
            "--reference",
            "server",
            "--objective",
            "compute",
            "--holdout",
            "0.5",
            "-o",
            wasm.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = json(&dir.join("smol-router.held-out/route.json"));
    let learned = &report["learned"][0];
    let held = learned["meta"]["held_out_queries"].as_u64().unwrap();
    assert_eq!(report["queries"].as_u64().unwrap(), held);
    assert_eq!(
        learned["meta"]["train_queries"].as_u64().unwrap() + held,
        12
    );
    assert_eq!(learned["meta"]["models"][0]["name"], "local");
    let runs = learned["meta"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r["plan_sha256"].as_str().unwrap().len() == 64),
        "{runs:?}"
    );
    let r = router(&report, wasm.to_str().unwrap());
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{r}");
    let shares: f64 = r["answered_by"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(close(shares, 1.0), "{r}");
    // The held-out queries are those the split names (seed 0), and on each the router took
    // one model's real outcome: its accuracy lies between both-right and either-right.
    let ids: Vec<&String> = a
        .keys()
        .filter(|id| ipw_router_model::held_out(id, 0.5, 0))
        .collect();
    assert_eq!(ids.len() as u64, held);
    let both: f64 = ids.iter().map(|id| a[*id].0.min(b[*id].0)).sum();
    let either: f64 = ids.iter().map(|id| a[*id].0.max(b[*id].0)).sum();
    let acc = r["accuracy"]["value"].as_f64().unwrap() * held as f64;
    assert!(
        both - 1e-9 <= acc && acc <= either + 1e-9,
        "{both} <= {acc} <= {either}"
    );
}
