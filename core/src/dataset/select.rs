//! Choosing which rows become queries: subject filter, seeded shuffle, proportional
//! stratification by subject, and `max_queries`. Deterministic for a given seed.

use super::Row;
use crate::rng::SplitMix64;
use std::collections::BTreeMap;

/// Keep only rows whose subject is listed (all rows when the list is empty).
pub fn filter_subjects(rows: Vec<Row>, subjects: &[String]) -> Result<Vec<Row>, String> {
    if subjects.is_empty() {
        return Ok(rows);
    }
    let known: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r.subject.as_deref()).collect();
    if let Some(missing) = subjects.iter().find(|s| !known.contains(s.as_str())) {
        let list: Vec<&str> = known.into_iter().collect();
        return Err(format!(
            "unknown subject `{missing}` (known: {})",
            list.join(", ")
        ));
    }
    Ok(rows
        .into_iter()
        .filter(|r| r.subject.as_ref().is_some_and(|s| subjects.contains(s)))
        .collect())
}

/// Pick the rows to run.
///
/// - no `max_queries`: every row (shuffled if asked);
/// - `stratify`: each subject gets a share of `max_queries` proportional to its size (largest
///   remainder, ties broken by the seeded order), rows within a subject are drawn at random, and
///   the result is interleaved in seeded random order;
/// - `shuffle`: a seeded random sample;
/// - otherwise: the first `max_queries` rows in file order.
pub fn sample(
    mut rows: Vec<Row>,
    max: Option<usize>,
    shuffle: bool,
    stratify: bool,
    seed: u64,
) -> Vec<Row> {
    let mut rng = SplitMix64::new(seed);
    let n = max.unwrap_or(rows.len()).min(rows.len());
    if stratify {
        return stratified(rows, n, &mut rng);
    }
    if shuffle {
        rng.shuffle(&mut rows);
    }
    rows.truncate(n);
    rows
}

fn stratified(rows: Vec<Row>, n: usize, rng: &mut SplitMix64) -> Vec<Row> {
    let total = rows.len();
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        groups
            .entry(r.subject.clone().unwrap_or_default())
            .or_default()
            .push(r);
    }
    let mut groups: Vec<(String, Vec<Row>)> = groups.into_iter().collect();
    for (_, g) in &mut groups {
        rng.shuffle(g);
    }
    // Largest-remainder apportionment of n over the groups.
    let mut quota: Vec<usize> = groups
        .iter()
        .map(|(_, g)| g.len() * n / total.max(1))
        .collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by_key(|&i| std::cmp::Reverse((groups[i].1.len() * n) % total.max(1)));
    let mut left = n - quota.iter().sum::<usize>();
    for &i in &order {
        if left == 0 {
            break;
        }
        if quota[i] < groups[i].1.len() {
            quota[i] += 1;
            left -= 1;
        }
    }
    let mut out: Vec<Row> = groups
        .into_iter()
        .zip(quota)
        .flat_map(|((_, mut g), q)| {
            g.truncate(q);
            g
        })
        .collect();
    rng.shuffle(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(&str, usize)]) -> Vec<Row> {
        spec.iter()
            .flat_map(|(s, k)| {
                (0..*k).map(move |i| Row {
                    id: format!("{s}-{i}"),
                    question: "q".into(),
                    answers: vec![],
                    choices: vec![],
                    subject: Some(s.to_string()),
                    category: None,
                })
            })
            .collect()
    }

    #[test]
    fn stratified_is_proportional_and_reproducible() {
        let data = rows(&[("a", 60), ("b", 30), ("c", 10)]);
        let picked = sample(data.clone(), Some(10), false, true, 3);
        let count = |s: &str| {
            picked
                .iter()
                .filter(|r| r.subject.as_deref() == Some(s))
                .count()
        };
        assert_eq!((count("a"), count("b"), count("c")), (6, 3, 1));
        assert_eq!(picked, sample(data, Some(10), false, true, 3));
    }

    #[test]
    fn first_rows_without_shuffle_and_seeded_with() {
        let data = rows(&[("a", 20)]);
        let first = sample(data.clone(), Some(3), false, false, 1);
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a-0", "a-1", "a-2"]
        );
        let s1 = sample(data.clone(), Some(5), true, false, 1);
        let s2 = sample(data.clone(), Some(5), true, false, 2);
        assert_eq!(s1, sample(data, Some(5), true, false, 1));
        assert_ne!(s1, s2);
    }

    #[test]
    fn unknown_subject_is_named() {
        let err = filter_subjects(rows(&[("a", 1)]), &["zz".into()]).unwrap_err();
        assert!(err.contains("`zz`"), "{err}");
    }
}
