//! Which records move, and from which training queries (DESIGN §2).
//!
//! Known before the corpus is read: a record moves only if it answers a
//! training query, so the moved set and its gradient layout come from the
//! qrels alone, and the one streaming pass can already leave moved rows out
//! of the static top-k.

use crate::backend::Segments;
use crate::data::dataset::Split;

pub struct Plan {
    /// Moved records, ascending row order.
    pub moved: Vec<u32>,
    /// Per moved record, the training queries (rows of the query matrix)
    /// that it answers, in split order: G is their sum.
    pub segments: Segments,
    /// Rows of the corpus.
    pub records: usize,
    /// Dev answers that do not move, ascending: the other rows the fit
    /// needs in memory (NUDGE-M scores them against their dev queries).
    pub kept: Vec<u32>,
}

impl Plan {
    pub fn new(n: usize, train: &Split, dev: &Split) -> Plan {
        let mut by_record: Vec<(u32, u32)> = Vec::new();
        for q in &train.queries {
            for &(r, _) in &q.answers {
                by_record.push((r, q.row));
            }
        }
        // Stable: keeps split order within a record.
        by_record.sort_by_key(|e| e.0);
        let mut moved = Vec::new();
        let mut segments = Segments {
            offsets: vec![0],
            indices: Vec::with_capacity(by_record.len()),
        };
        for (i, &(r, q)) in by_record.iter().enumerate() {
            if i > 0 && by_record[i - 1].0 != r {
                segments.offsets.push(segments.indices.len() as u32);
            }
            if i == 0 || by_record[i - 1].0 != r {
                moved.push(r);
            }
            segments.indices.push(q);
        }
        if !moved.is_empty() {
            segments.offsets.push(segments.indices.len() as u32);
        } else {
            segments.offsets = vec![0];
        }
        let mut kept: Vec<u32> = dev
            .queries
            .iter()
            .flat_map(|q| q.answers.iter().map(|a| a.0))
            .filter(|r| moved.binary_search(r).is_err())
            .collect();
        kept.sort_unstable();
        kept.dedup();
        Plan {
            moved,
            segments,
            records: n,
            kept,
        }
    }

    /// The moved records (or static dev answers: `rows` is either list,
    /// ascending) that lie in corpus rows `range`.
    pub fn within<'a>(rows: &'a [u32], range: &std::ops::Range<usize>) -> &'a [u32] {
        let lo = rows.partition_point(|&r| (r as usize) < range.start);
        let hi = rows.partition_point(|&r| (r as usize) < range.end);
        &rows[lo..hi]
    }

    /// `mask[row]`: whether each corpus row moves, what the scan leaves out
    /// of the static lists. Built only by the passes that scan (a reduce
    /// needs none: at a billion rows it would be a gigabyte).
    pub fn mask(&self) -> Vec<bool> {
        let mut is_moved = vec![false; self.records];
        for &r in &self.moved {
            is_moved[r as usize] = true;
        }
        is_moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{LabeledQuery, SplitName};

    #[test]
    fn groups_training_queries_by_record() {
        let lq = |row, a: &[u32]| LabeledQuery {
            row,
            answers: a.iter().map(|r| (*r, 1.0)).collect(),
        };
        let train = Split {
            name: SplitName::Train,
            queries: vec![lq(10, &[5, 2]), lq(11, &[2]), lq(12, &[7])],
        };
        let dev = Split {
            name: SplitName::Dev,
            queries: vec![lq(13, &[1, 5])],
        };
        let p = Plan::new(8, &train, &dev);
        assert_eq!(p.moved, vec![2, 5, 7]);
        assert_eq!(p.segments.offsets, vec![0, 2, 3, 4]);
        assert_eq!(p.segments.indices, vec![10, 11, 10, 12]);
        assert_eq!(p.kept, vec![1]);
        let mask = p.mask();
        assert!(mask[5] && !mask[1] && mask.len() == 8);
    }
}
