//! The split of a plan into shards: a pure function of the plan (query ids, prompt lengths,
//! models, max tokens) and the shard count, so every task computes the same one without
//! talking to the others. Whole model x dataset cells when they balance within
//! [`CELL_BALANCE`], else single (model, query) units. Either way each unit goes to exactly one
//! shard, by longest-processing-time-first on the expected work (prompt tokens + max output
//! tokens), so no query is measured by two shards.

use crate::dataset::Query;
use crate::records::SplitMethod;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Whole cells are used only when the busiest shard gets at most this much more than an equal
/// share; otherwise a few big cells would leave most of the array waiting for one task.
pub const CELL_BALANCE: f64 = 1.10;

/// The split of a plan into shards: which shard measures each (model, query).
#[derive(Debug, Clone)]
pub struct Split {
    /// How.
    pub method: SplitMethod,
    /// Shard count.
    pub count: usize,
    /// `shard[m][q]`: the shard of model `m`'s query `q` (plan order).
    shard: Vec<Vec<u32>>,
    /// Expected work per shard (tokens).
    pub work: Vec<f64>,
}

impl Split {
    /// Plan indices of model `m`'s queries in shard `index`, in plan order.
    pub fn queries_of(&self, model: usize, index: usize) -> Vec<usize> {
        self.shard[model]
            .iter()
            .enumerate()
            .filter(|(_, &s)| s as usize == index)
            .map(|(q, _)| q)
            .collect()
    }

    /// How many (model, query) units shard `index` measures.
    pub fn units_of(&self, index: usize) -> usize {
        self.shard
            .iter()
            .map(|m| m.iter().filter(|&&s| s as usize == index).count())
            .sum()
    }
}

/// Expected work of one query: its prompt's tokens (about 4 characters each) plus the most it
/// may generate. Decode dominates on every backend ipw measures, so max tokens carry most of it.
fn work(q: &Query, max_tokens: u32) -> f64 {
    q.prompt.len() as f64 / 4.0 + f64::from(max_tokens)
}

/// Assign weighted items to `count` bins, heaviest first, each to the least-loaded bin (lowest
/// index on a tie). Items of equal weight keep their order, so the result is deterministic.
fn lpt(weights: &[f64], count: usize) -> (Vec<u32>, Vec<f64>) {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    // Loads as integers of 1/1024 token, so the heap orders them exactly.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..count).map(|i| Reverse((0u64, i))).collect();
    let mut bin = vec![0u32; weights.len()];
    let mut load = vec![0.0; count];
    for item in order {
        let Reverse((l, b)) = heap.pop().expect("count > 0");
        bin[item] = b as u32;
        load[b] += weights[item];
        heap.push(Reverse((l + (weights[item] * 1024.0) as u64, b)));
    }
    (bin, load)
}

/// Split `models` models x `queries` into `count` shards (see the module doc).
pub fn split(queries: &[Query], models: usize, max_tokens: u32, count: usize) -> Split {
    assert!(count > 0, "a split needs at least one shard");
    let weights: Vec<f64> = queries.iter().map(|q| work(q, max_tokens)).collect();
    let total: f64 = weights.iter().sum::<f64>() * models as f64;
    // Cells: (model, dataset) in plan order; a dataset's queries are contiguous in the plan.
    let mut datasets: Vec<(usize, usize)> = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        match datasets.last_mut() {
            Some((start, end)) if queries[*start].dataset == q.dataset => *end = i + 1,
            _ => datasets.push((i, i + 1)),
        }
    }
    let cells: Vec<(usize, usize, usize)> = (0..models)
        .flat_map(|m| datasets.iter().map(move |&(s, e)| (m, s, e)))
        .collect();
    let cell_work: Vec<f64> = cells
        .iter()
        .map(|&(_, s, e)| weights[s..e].iter().sum())
        .collect();
    if cells.len() >= count {
        let (bin, load) = lpt(&cell_work, count);
        let fair = total / count as f64;
        let busiest = load.iter().copied().fold(0.0, f64::max);
        if load.iter().all(|&l| l > 0.0) && busiest <= fair * CELL_BALANCE {
            let mut shard = vec![vec![0u32; queries.len()]; models];
            for (c, &(m, s, e)) in cells.iter().enumerate() {
                shard[m][s..e].fill(bin[c]);
            }
            return Split {
                method: SplitMethod::Cells,
                count,
                shard,
                work: load,
            };
        }
    }
    let unit_weights: Vec<f64> = (0..models).flat_map(|_| weights.iter().copied()).collect();
    let (bin, load) = lpt(&unit_weights, count);
    let shard = bin
        .chunks(queries.len().max(1))
        .map(<[u32]>::to_vec)
        .collect();
    Split {
        method: SplitMethod::Queries,
        count,
        shard: if queries.is_empty() {
            vec![Vec::new(); models]
        } else {
            shard
        },
        work: load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaleout::test_plans::plan;

    /// Every (model, query) lands in exactly one shard, whatever the method.
    fn assert_partition(s: &Split, queries: usize, models: usize) {
        let mut seen = vec![vec![0; queries]; models];
        for i in 0..s.count {
            for (m, counts) in seen.iter_mut().enumerate() {
                for q in s.queries_of(m, i) {
                    counts[q] += 1;
                }
            }
        }
        assert!(seen.iter().flatten().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn many_even_cells_split_by_cell_and_balance() {
        let queries = plan(&[("a", 50), ("b", 50), ("c", 50), ("d", 50)]);
        let s = split(&queries, 4, 128, 4);
        assert_eq!(s.method, SplitMethod::Cells);
        assert_partition(&s, queries.len(), 4);
        let fair = s.work.iter().sum::<f64>() / 4.0;
        assert!(
            s.work.iter().all(|&w| w <= fair * CELL_BALANCE),
            "{:?}",
            s.work
        );
        // A cell is never cut: each (model, dataset) has one shard.
        for m in 0..4 {
            for d in 0..4 {
                let shards: std::collections::HashSet<usize> = (0..4)
                    .filter(|&i| s.queries_of(m, i).iter().any(|&q| q / 50 == d))
                    .collect();
                assert_eq!(shards.len(), 1);
            }
        }
    }

    #[test]
    fn few_or_uneven_cells_split_by_query_balanced_by_work() {
        // One model, one dataset: one cell cannot feed four shards.
        let queries = plan(&[("a", 101)]);
        let s = split(&queries, 1, 64, 4);
        assert_eq!(s.method, SplitMethod::Queries);
        assert_partition(&s, queries.len(), 1);
        let fair = s.work.iter().sum::<f64>() / 4.0;
        let max_item = queries.iter().map(|q| work(q, 64)).fold(0.0, f64::max);
        for &w in &s.work {
            assert!((w - fair).abs() <= max_item, "{:?} fair {fair}", s.work);
        }
        // Enough cells but one dwarfs the rest: cells would not balance, so by query.
        let queries = plan(&[("big", 300), ("s1", 5), ("s2", 5), ("s3", 5)]);
        let s = split(&queries, 1, 64, 4);
        assert_eq!(s.method, SplitMethod::Queries);
        assert_partition(&s, queries.len(), 1);
    }

    #[test]
    fn the_split_is_the_same_every_time() {
        let queries = plan(&[("a", 37), ("b", 11)]);
        let a = split(&queries, 3, 128, 5);
        let b = split(&queries, 3, 128, 5);
        assert_eq!(a.shard, b.shard);
        assert_eq!(split(&queries, 3, 128, 1).units_of(0), 48 * 3);
    }
}
