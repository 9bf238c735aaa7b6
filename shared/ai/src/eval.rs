//! The evaluation's measures and the frozen sets' shapes (`bench/ai-eval/*.json`, split into
//! `dev`, which weights were tuned on, and `test`, which nothing was tuned on). The command that
//! runs it is `gocoffee-host eval`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::search::Filters;

/// A routing request labelled with the agent that should get it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoutingCase {
    pub split: String,
    pub request: String,
    pub agent: String,
}

/// A search query with graded relevant items (3 exactly it, 2 good, 1 acceptable).
#[derive(Debug, Clone, Deserialize)]
pub struct SearchCase {
    pub split: String,
    pub query: String,
    #[serde(default)]
    pub filters: Filters,
    pub relevant: BTreeMap<String, u32>,
}

/// Normalised discounted cumulative gain of `ranked` in its first `k`, gains `2^grade - 1`.
pub fn ndcg_at(k: usize, ranked: &[&str], relevant: &BTreeMap<String, u32>) -> f64 {
    let gain = |g: u32| f64::from((1u32 << g.min(16)) - 1);
    let dcg: f64 = ranked.iter().take(k).enumerate().map(|(i, id)| gain(relevant.get(*id).copied().unwrap_or(0)) / ((i + 2) as f64).log2()).sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| gain(*g) / ((i + 2) as f64).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// 1 / the rank of the first relevant item (any grade), 0 when none is ranked.
pub fn reciprocal_rank(ranked: &[&str], relevant: &BTreeMap<String, u32>) -> f64 {
    ranked.iter().position(|id| relevant.get(*id).is_some_and(|g| *g > 0)).map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Accuracy and macro-averaged F1 of `predicted` against `truth` over the labels in `truth`.
pub fn accuracy_and_macro_f1(truth: &[&str], predicted: &[&str]) -> (f64, f64) {
    let n = truth.len().max(1) as f64;
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count() as f64;
    let mut labels: Vec<&str> = truth.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let f1s: Vec<f64> = labels
        .iter()
        .map(|l| {
            let tp = truth.iter().zip(predicted).filter(|(t, p)| *t == l && *p == l).count() as f64;
            let fp = truth.iter().zip(predicted).filter(|(t, p)| *t != l && *p == l).count() as f64;
            let fne = truth.iter().zip(predicted).filter(|(t, p)| *t == l && *p != l).count() as f64;
            if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fne) }
        })
        .collect();
    (correct / n, f1s.iter().sum::<f64>() / f1s.len().max(1) as f64)
}

/// The cases of `split` (`all` for every one).
pub fn in_split<'a, T>(cases: &'a [T], split: &str, of: impl Fn(&T) -> &str + 'a) -> impl Iterator<Item = &'a T> + 'a {
    let split = split.to_owned();
    cases.iter().filter(move |c| split == "all" || of(c) == split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grades(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn ndcg_is_one_for_the_ideal_order_and_less_otherwise() {
        let rel = grades(&[("a", 3), ("b", 1)]);
        assert!((ndcg_at(5, &["a", "b"], &rel) - 1.0).abs() < 1e-12);
        let swapped = ndcg_at(5, &["b", "a"], &rel);
        // (1/1 + 7/log2 3) / (7/1 + 1/log2 3)
        let expected = (1.0 + 7.0 / 3f64.log2()) / (7.0 + 1.0 / 3f64.log2());
        assert!((swapped - expected).abs() < 1e-12);
        assert_eq!(ndcg_at(5, &["x"], &rel), 0.0);
        assert_eq!(ndcg_at(5, &["a"], &BTreeMap::new()), 0.0);
    }

    #[test]
    fn reciprocal_rank_counts_the_first_relevant_item() {
        let rel = grades(&[("b", 1)]);
        assert_eq!(reciprocal_rank(&["a", "b"], &rel), 0.5);
        assert_eq!(reciprocal_rank(&["a"], &rel), 0.0);
    }

    #[test]
    fn macro_f1_averages_each_labels_f1() {
        let (acc, f1) = accuracy_and_macro_f1(&["x", "x", "y", "y"], &["x", "y", "y", "y"]);
        assert_eq!(acc, 0.75);
        // x: tp 1 fp 0 fn 1 -> 2/3; y: tp 2 fp 1 fn 0 -> 4/5
        assert!((f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    }
}

/// What a customer-service question should get: `{"passage": id}`, `{"tool": name}` or
/// `{"handoff": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The answer grounded in this passage of `data/cafe.md`.
    Passage(String),
    /// One of the agent's tools.
    Tool(String),
    /// A hand-off to staff.
    Handoff(bool),
}

/// A customer-service question with what should answer it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceCase {
    pub split: String,
    pub question: String,
    pub expect: Expect,
}

/// A manager's question with the query that answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct AnalyticsCase {
    pub split: String,
    pub question: String,
    pub query: crate::analytics::Query,
}
