//! `--rows START..END` and `--part I/N`: which rows of the corpus a
//! `nudge map` or `nudge apply` works on.

use std::ops::Range;

use clap::Args;

use nudge::data::MatrixFile;
use nudge::{Error, Result};

/// The part of the corpus a command works on (default: all of it).
#[derive(Args, Debug, Clone, Default)]
pub struct PartArgs {
    /// Corpus rows of the part: START..END (END excluded), e.g. 0..250000
    #[arg(long, value_name = "START..END", conflicts_with = "part")]
    pub rows: Option<String>,
    /// The I-th of N equal parts of the corpus, counting from 0, e.g. 3/8
    /// (a Kubernetes Indexed Job's completion index, a Slurm array task id)
    #[arg(long, value_name = "I/N", conflicts_with = "shard")]
    pub part: Option<String>,
    /// One shard of a sharded corpus folder: its file name, or its index in
    /// file-name order (from 0)
    #[arg(long, value_name = "NAME|I", conflicts_with = "rows")]
    pub shard: Option<String>,
}

impl PartArgs {
    /// The rows of `corpus` that the part names (a shard's rows only in a
    /// sharded corpus folder).
    pub fn rows_of(&self, corpus: &MatrixFile) -> Result<Range<usize>> {
        let Some(want) = &self.shard else {
            return self.range(corpus.rows());
        };
        let MatrixFile::Shards(s) = corpus else {
            return Err(Error::invalid(format!(
                "--shard {want}: the corpus is one file, not a folder of shards; give --rows or --part"
            )));
        };
        let names: Vec<String> = s
            .shards()
            .iter()
            .map(|m| {
                m.path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        let index = match want.parse::<usize>() {
            Ok(i) if i < names.len() => Some(i),
            Ok(_) => None,
            Err(_) => names.iter().position(|n| n == want),
        };
        match index {
            Some(i) => Ok(s.range(i)),
            None => Err(Error::invalid(format!(
                "--shard {want}: expected a shard's file name or an index below {} (the shards: {})",
                names.len(),
                names.join(", ")
            ))),
        }
    }

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
            shard: None,
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
            shard: None,
        };
        assert_eq!(rows("2..7").range(10).unwrap(), 2..7);
        for r in ["7..2", "0..11", "3", "a..4"] {
            assert!(rows(r).range(10).is_err(), "{r}");
        }
    }
}
