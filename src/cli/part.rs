//! `--rows START..END` and `--part I/N`: which rows of the corpus a
//! `nudge map` or `nudge apply` works on.

use std::ops::Range;

use clap::Args;

use nudge::{Error, Result};

/// The part of the corpus a command works on (default: all of it).
#[derive(Args, Debug, Clone, Default)]
pub struct PartArgs {
    /// Corpus rows of the part: START..END (END excluded), e.g. 0..250000
    #[arg(long, value_name = "START..END", conflicts_with = "part")]
    pub rows: Option<String>,
    /// The I-th of N equal parts of the corpus, counting from 0, e.g. 3/8
    /// (a Kubernetes Indexed Job's completion index, a Slurm array task id)
    #[arg(long, value_name = "I/N")]
    pub part: Option<String>,
}

impl PartArgs {
    /// The rows of a corpus of `n` rows that the part names.
    pub fn range(&self, n: usize) -> Result<Range<usize>> {
        if let Some(r) = &self.rows {
            let bad = || {
                Error::invalid(format!(
                    "--rows {r}: expected START..END with START <= END <= {n} (the corpus's rows)"
                ))
            };
            let (a, b) = r.split_once("..").ok_or_else(bad)?;
            let (a, b): (usize, usize) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b || b > n {
                return Err(bad());
            }
            return Ok(a..b);
        }
        if let Some(p) = &self.part {
            let bad = || {
                Error::invalid(format!(
                    "--part {p}: expected I/N with 0 <= I < N, e.g. 0/4 for the first of four parts"
                ))
            };
            let (i, k) = p.split_once('/').ok_or_else(bad)?;
            let (i, k): (usize, usize) = (
                i.trim().parse().map_err(|_| bad())?,
                k.trim().parse().map_err(|_| bad())?,
            );
            return nudge::fit::partial::part(i, k, n).map_err(|_| bad());
        }
        Ok(0..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(p: &str) -> PartArgs {
        PartArgs {
            rows: None,
            part: Some(p.into()),
        }
    }

    #[test]
    fn parts_tile_the_corpus() {
        for k in 1..9 {
            let mut next = 0;
            for i in 0..k {
                let r = part(&format!("{i}/{k}")).range(10).unwrap();
                assert_eq!(r.start, next);
                assert!(r.len() == 10 / k || r.len() == 10 / k + 1);
                next = r.end;
            }
            assert_eq!(next, 10);
        }
    }

    #[test]
    fn refuses_what_is_not_a_part() {
        for p in ["4/4", "1/0", "x/2", "1"] {
            assert!(part(p).range(10).is_err(), "{p}");
        }
        let rows = |r: &str| PartArgs {
            rows: Some(r.into()),
            part: None,
        };
        assert_eq!(rows("2..7").range(10).unwrap(), 2..7);
        for r in ["7..2", "0..11", "3", "a..4"] {
            assert!(rows(r).range(10).is_err(), "{r}");
        }
    }
}
