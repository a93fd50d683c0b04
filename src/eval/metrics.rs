//! Recall@k and NDCG@k exactly as the paper's harness defines them (DESIGN §1).

use crate::backend::TopK;
use crate::data::dataset::LabeledQuery;

/// `|top-k ∩ relevant| / min(|relevant|, k)`.
pub fn recall_at(ranked: &[u32], q: &LabeledQuery, k: usize) -> f64 {
    let hits = ranked
        .iter()
        .take(k)
        .filter(|r| q.relevance(**r) > 0.0)
        .count();
    hits as f64 / q.answers.len().min(k) as f64
}

/// NDCG@k with linear gain: DCG = sum over rank p (from 0) of
/// `rel / log2(p + 2)`, divided by the DCG of the ideal ranking cut at k.
pub fn ndcg_at(ranked: &[u32], q: &LabeledQuery, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(p, r)| q.relevance(*r) as f64 / (p as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<f64> = q.answers.iter().map(|a| a.1 as f64).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(p, r)| r / (p as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Averages over a split's queries (all of which have an answer).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scores {
    /// The cut-off these scores are at.
    pub k: usize,
    /// Mean recall@k over the queries.
    pub recall: f64,
    /// Mean NDCG@k over the queries.
    pub ndcg: f64,
    /// Number of queries averaged over.
    pub queries: usize,
}

/// NDCG@k of every query of a split, in split order (`top` row i belongs to
/// `queries[i]`).
pub fn per_query_ndcg(top: &TopK, queries: &[LabeledQuery], k: usize) -> Vec<f64> {
    queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let ranked: Vec<u32> = top.entries(i).map(|e| e.1).collect();
            ndcg_at(&ranked, q, k)
        })
        .collect()
}

/// Scores every query of a split from its top-k list (`top` row i belongs to
/// `queries[i]`), at each cut-off in `ks` (each <= `top.k`).
pub fn score(top: &TopK, queries: &[LabeledQuery], ks: &[usize]) -> Vec<Scores> {
    assert_eq!(top.queries, queries.len());
    ks.iter()
        .map(|&k| {
            assert!(k <= top.k, "top-k lists are shorter than the cut-off");
            let (mut recall, mut ndcg) = (0.0, 0.0);
            for (i, q) in queries.iter().enumerate() {
                let ranked: Vec<u32> = top.entries(i).map(|e| e.1).collect();
                recall += recall_at(&ranked, q, k);
                ndcg += ndcg_at(&ranked, q, k);
            }
            let n = queries.len().max(1) as f64;
            Scores {
                k,
                recall: recall / n,
                ndcg: ndcg / n,
                queries: queries.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(answers: &[(u32, f32)]) -> LabeledQuery {
        LabeledQuery {
            row: 0,
            answers: answers.to_vec(),
        }
    }

    #[test]
    fn recall_divides_by_the_smaller_of_answers_and_k() {
        let q3 = q(&[(1, 1.0), (2, 1.0), (3, 1.0)]);
        assert_eq!(recall_at(&[1, 9, 2], &q3, 3), 2.0 / 3.0);
        assert_eq!(recall_at(&[9, 1], &q3, 2), 0.5);
        assert_eq!(recall_at(&[1], &q3, 1), 1.0);
        assert_eq!(recall_at(&[7, 8], &q3, 10), 0.0);
    }

    #[test]
    fn ndcg_with_graded_relevance_by_hand() {
        // Relevances: record 1 -> 2, record 2 -> 1. Ranking [2, 9, 1]:
        // DCG = 1/log2(2) + 0 + 2/log2(4) = 1 + 1 = 2.
        // Ideal [1, 2]: 2/log2(2) + 1/log2(3) = 2 + 0.6309297535714575.
        let g = q(&[(1, 2.0), (2, 1.0)]);
        let want = 2.0 / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&[2, 9, 1], &g, 3) - want).abs() < 1e-15);
        // Cut at k = 1: DCG = 1, ideal = 2.
        assert!((ndcg_at(&[2, 9, 1], &g, 1) - 0.5).abs() < 1e-15);
        assert_eq!(ndcg_at(&[1, 2], &g, 10), 1.0);
        assert_eq!(ndcg_at(&[5, 6], &g, 10), 0.0);
    }

    #[test]
    fn score_averages_over_queries() {
        let mut top = TopK::new(2, 2);
        top.push(0, 0.9, 1);
        top.push(0, 0.5, 4);
        top.push(1, 0.7, 8);
        let qs = [q(&[(4, 1.0)]), q(&[(3, 1.0)])];
        let s = score(&top, &qs, &[1, 2]);
        assert_eq!((s[0].recall, s[1].recall), (0.0, 0.5));
        assert!((s[1].ndcg - 0.5 * (1.0 / 3f64.log2())).abs() < 1e-15);
        assert_eq!(s[0].queries, 2);
    }
}
