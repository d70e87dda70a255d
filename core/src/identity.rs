//! What makes two runs the same measurement: the same plan (query ids and prompts, in order:
//! [`plan_hash`]) and the same settings (generation, model, samplers, energy, grading:
//! [`settings`]). `--resume` refuses to continue a run whose plan or settings changed, and
//! `ipw merge` refuses shards that differ, each naming every differing field
//! ([`differences`]).

use crate::dataset::hex;
use crate::records::{GraderInfo, Manifest};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// sha256 over the plan's `(query id, prompt sha256)` pairs, in order: the same for a run and
/// for the merge of its shards.
pub fn plan_hash<A: AsRef<str>, B: AsRef<str>>(
    entries: impl IntoIterator<Item = (A, B)>,
) -> String {
    let mut h = Sha256::new();
    for (id, prompt) in entries {
        h.update(id.as_ref().as_bytes());
        h.update([0]);
        h.update(prompt.as_ref().as_bytes());
        h.update([b'\n']);
    }
    hex(&h.finalize())
}

/// What must not change inside one run, as recorded in its manifest.
pub fn recorded_settings(m: &Manifest) -> Value {
    let model = serde_json::to_value(&m.model).expect("recorded model serialises");
    let graders: Vec<GraderInfo> = m
        .sessions
        .iter()
        .rev()
        .find(|s| !s.graders.is_empty())
        .map(|s| s.graders.clone())
        .unwrap_or_default();
    settings(&with_current_defaults(&m.experiment), &model, &graders)
}

/// The recorded experiment with sections read through today's types, so a setting added since
/// the run started (at its default) is not mistaken for a change.
fn with_current_defaults(experiment: &Value) -> Value {
    let mut e = experiment.clone();
    if let Some(energy) = e.get("energy").filter(|v| !v.is_null()) {
        if let Ok(parsed) = serde_json::from_value::<crate::config::EnergyConfig>(energy.clone()) {
            e["energy"] = serde_json::to_value(parsed).expect("energy config serialises");
        }
    }
    e
}

/// The settings that define what a run measures, as one JSON object whose paths name them.
pub fn settings(experiment: &Value, model: &Value, graders: &[GraderInfo]) -> Value {
    let mut model = model.clone();
    // The file's identity is its hash (checked separately): moving it is not a change.
    if let Some(m) = model.as_object_mut() {
        m.remove("path");
        // Facts about the model (price, size) are not part of what was measured.
        m.remove("meta");
    }
    let field = |k: &str| experiment.get(k).cloned().unwrap_or(Value::Null);
    let concurrency = experiment
        .get("run")
        .and_then(|r| r.get("concurrency"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = serde_json::json!({
        "seed": field("seed"),
        "run": { "concurrency": concurrency },
        "generation": field("generation"),
        "model": model,
        "samplers": field("samplers"),
        "energy": field("energy"),
        "grading": field("grading"),
    });
    // Runs made before graders were recorded in the manifest cannot be compared on them.
    if !graders.is_empty() {
        out["graders"] = serde_json::to_value(graders).expect("grader info serialises");
    }
    out
}

/// Every path where `now` differs from `was`, as `path: old -> new`. A field the old manifest
/// does not have is a difference only when the new value is not null (an ipw upgrade that adds a
/// setting with no value must not block a resume).
pub fn differences(was: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", Some(was), Some(now), &mut out);
    out
}

fn diff(path: &str, was: Option<&Value>, now: Option<&Value>, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (was, now) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff(&join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (None, Some(Value::Null)) | (Some(Value::Null), None) | (None, None) => {}
        (a, b) if a == b => {}
        (a, b) => {
            let show = |v: Option<&Value>| v.map_or("(not recorded)".to_string(), Value::to_string);
            out.push(format!("{path}: {} -> {}", show(a), show(b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::differences;
    use serde_json::json;

    #[test]
    fn differences_name_every_changed_leaf_and_nothing_else() {
        let was = json!({"generation": {"max_tokens": 128, "temperature": 0.0, "stop": ["a"]},
                         "samplers": [{"plugin": "rapl", "rate_hz": 20}], "grading": {}});
        let now = json!({"generation": {"max_tokens": 256, "temperature": 0.0, "stop": ["b"]},
                         "samplers": [{"plugin": "rapl", "rate_hz": 20}, {"plugin": "nvml"}],
                         "grading": {"fuel": null}});
        let d = differences(&was, &now);
        assert_eq!(
            d,
            vec![
                "generation.max_tokens: 128 -> 256",
                "generation.stop[0]: \"a\" -> \"b\"",
                "samplers: [{\"plugin\":\"rapl\",\"rate_hz\":20}] -> [{\"plugin\":\"rapl\",\"rate_hz\":20},{\"plugin\":\"nvml\"}]",
            ]
        );
        assert!(differences(&was, &was).is_empty());
        // A setting the old manifest never recorded, now set to a value, is a difference.
        let d = differences(
            &json!({"energy": {}}),
            &json!({"energy": {"split": "equal"}}),
        );
        assert_eq!(d, vec!["energy.split: (not recorded) -> \"equal\""]);
    }

    #[test]
    fn a_setting_added_since_the_run_started_is_not_a_change() {
        // Recorded by an ipw without `energy.overlap`; today's default fills it in.
        let was = json!({"energy": {"baseline_s": 10.0, "split": "tokens"}});
        let now = serde_json::to_value(crate::config::EnergyConfig::default()).unwrap();
        let d = differences(&super::with_current_defaults(&was)["energy"], &now);
        assert!(d.is_empty(), "{d:?}");
        assert!(
            !differences(&was["energy"], &now).is_empty(),
            "raw, it would differ"
        );
    }
}
