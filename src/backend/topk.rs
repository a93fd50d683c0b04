//! Bounded top-k lists, one per query, kept sorted best-first.
//!
//! The order is total so that every backend ranks alike: higher score first,
//! and at equal scores the lower record row first.

/// The best `k` (score, record row) entries of each of `queries` queries,
/// each list sorted best-first in the module's total order; what a scan
/// returns and what the metrics score.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// Capacity of each query's list.
    pub k: usize,
    /// Number of queries (lists).
    pub queries: usize,
    /// `queries x k` scores, best first; unused slots hold -inf.
    pub scores: Vec<f32>,
    /// `queries x k` record rows; unused slots hold `u32::MAX`.
    pub rows: Vec<u32>,
}

/// The record row of an unused slot (its score is -inf).
pub const EMPTY: u32 = u32::MAX;

/// `true` if (s1, r1) ranks before (s2, r2).
#[inline]
pub fn better(s1: f32, r1: u32, s2: f32, r2: u32) -> bool {
    s1 > s2 || (s1 == s2 && r1 < r2)
}

impl TopK {
    /// `queries` empty lists of capacity `k`.
    pub fn new(queries: usize, k: usize) -> TopK {
        TopK {
            k,
            queries,
            scores: vec![f32::NEG_INFINITY; queries * k],
            rows: vec![EMPTY; queries * k],
        }
    }

    /// Query `q`'s `k` score slots, best first (unused slots -inf).
    pub fn scores(&self, q: usize) -> &[f32] {
        &self.scores[q * self.k..(q + 1) * self.k]
    }
    /// Query `q`'s `k` record-row slots, best first (unused slots [`EMPTY`]).
    pub fn rows(&self, q: usize) -> &[u32] {
        &self.rows[q * self.k..(q + 1) * self.k]
    }
    /// The filled entries of query `q`, best first.
    pub fn entries(&self, q: usize) -> impl Iterator<Item = (f32, u32)> + '_ {
        self.scores(q)
            .iter()
            .copied()
            .zip(self.rows(q).iter().copied())
            .filter(|e| e.1 != EMPTY)
    }

    /// Offers one candidate to query `q`'s list.
    #[inline]
    pub fn push(&mut self, q: usize, score: f32, row: u32) {
        let k = self.k;
        let (s, r) = (
            &mut self.scores[q * k..(q + 1) * k],
            &mut self.rows[q * k..(q + 1) * k],
        );
        push_into(s, r, score, row);
    }

    /// Merges another set of lists for the same queries into this one.
    pub fn merge(&mut self, other: &TopK) {
        assert_eq!(self.queries, other.queries);
        for q in 0..self.queries {
            for (s, r) in other.entries(q) {
                self.push(q, s, r);
            }
        }
    }
}

/// Inserts (score, row) into one sorted list if it ranks within it.
#[inline]
pub fn push_into(scores: &mut [f32], rows: &mut [u32], score: f32, row: u32) {
    let k = scores.len();
    if k == 0 || !better(score, row, scores[k - 1], rows[k - 1]) {
        return;
    }
    let mut i = k - 1;
    while i > 0 && better(score, row, scores[i - 1], rows[i - 1]) {
        scores[i] = scores[i - 1];
        rows[i] = rows[i - 1];
        i -= 1;
    }
    scores[i] = score;
    rows[i] = row;
}

/// Offers a whole row of candidate scores (`scores[j]` belongs to record
/// `rows[j]`) to one sorted list: [`offer_by`] with the scores as given.
#[inline]
pub fn offer(list_scores: &mut [f32], list_rows: &mut [u32], scores: &[f32], rows: &[u32]) {
    offer_by(list_scores, list_rows, rows, |at, out| {
        out.copy_from_slice(&scores[at..at + out.len()])
    });
}

/// Offers candidates `j` (record `rows[j]`) to one sorted list, their
/// scores computed 16 at a time by `fill(j0, out)`, which writes the scores
/// of candidates `j0..j0 + out.len()` into `out`. Most candidates fall below
/// the list's worst entry, so each block is tested with a branch-free
/// compare the compiler vectorises, and only blocks holding a contender go
/// through [`push_into`]. A score computed in `fill` never makes a round
/// trip through memory.
#[inline(always)]
pub fn offer_by(
    list_scores: &mut [f32],
    list_rows: &mut [u32],
    rows: &[u32],
    fill: impl Fn(usize, &mut [f32]),
) {
    const L: usize = 16;
    /// One block: `scores` holds its scores, `rows` its records.
    #[inline(always)]
    fn test(ls: &mut [f32], lr: &mut [u32], scores: &[f32], rows: &[u32]) {
        let worst = ls[ls.len() - 1];
        let mut any = false;
        for &s in scores {
            any |= s >= worst;
        }
        if any {
            for (&s, &r) in scores.iter().zip(rows) {
                push_into(ls, lr, s, r);
            }
        }
    }
    if list_scores.is_empty() {
        return;
    }
    let mut block = [0f32; L];
    let full = rows.len() / L * L;
    // Whole blocks first: their width is a constant, so `fill` and the
    // test unroll and vectorise; then the ragged tail.
    for at in (0..full).step_by(L) {
        fill(at, &mut block);
        test(list_scores, list_rows, &block, &rows[at..at + L]);
    }
    if full < rows.len() {
        let tail = &mut block[..rows.len() - full];
        fill(full, tail);
        test(list_scores, list_rows, tail, &rows[full..]);
    }
}

impl TopK {
    /// [`offer`] for query `q`.
    pub fn offer(&mut self, q: usize, scores: &[f32], rows: &[u32]) {
        let k = self.k;
        offer(
            &mut self.scores[q * k..(q + 1) * k],
            &mut self.rows[q * k..(q + 1) * k],
            scores,
            rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_k_with_ties_to_lower_row() {
        let mut t = TopK::new(1, 3);
        for (s, r) in [(0.5, 4), (0.9, 7), (0.5, 2), (0.1, 0), (0.9, 9), (0.5, 1)] {
            t.push(0, s, r);
        }
        assert_eq!(
            t.entries(0).collect::<Vec<_>>(),
            vec![(0.9, 7), (0.9, 9), (0.5, 1)]
        );
    }

    #[test]
    fn offer_equals_pushing_one_by_one() {
        let scores: Vec<f32> = (0..100)
            .map(|i| ((i * 37 % 41) as f32 * 0.1).sin())
            .collect();
        let rows: Vec<u32> = (0..100).map(|i| i * 3).collect();
        for k in [1, 3, 10] {
            let (mut a, mut b) = (TopK::new(1, k), TopK::new(1, k));
            a.offer(0, &scores, &rows);
            for (s, r) in scores.iter().zip(&rows) {
                b.push(0, *s, *r);
            }
            assert_eq!(a, b);
        }
    }

    #[test]
    fn fewer_candidates_than_k() {
        let mut t = TopK::new(2, 4);
        t.push(1, -3.0, 5);
        assert_eq!(t.entries(0).count(), 0);
        assert_eq!(t.entries(1).collect::<Vec<_>>(), vec![(-3.0, 5)]);
    }
}
