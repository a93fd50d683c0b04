//! Where a corpus's rows come from: an `.npy` file read in row ranges, or a
//! matrix the caller already holds in memory (f32 or f16, borrowed, never
//! copied whole). Every corpus pass reads through [`Corpus`], so a fit over
//! numpy arrays and a fit over a 100 GB file are the same code.

use std::path::{Path, PathBuf};

use crate::data::npy::NpyMatrix;
use crate::error::{Error, Result};

/// The rows of a corpus, `rows() x cols()`, as the corpus pass reads them.
#[derive(Clone, Copy)]
pub enum Corpus<'a> {
    /// An `.npy` file, read chunk by chunk (memory stays bounded).
    Npy(&'a NpyMatrix),
    /// Row-major f32 rows held by the caller.
    F32 {
        /// `rows x cols` values, row-major.
        data: &'a [f32],
        /// Values per row.
        cols: usize,
    },
    /// Row-major f16 rows held by the caller (widened a chunk at a time).
    F16 {
        /// `rows x cols` values, row-major.
        data: &'a [half::f16],
        /// Values per row.
        cols: usize,
    },
}

impl<'a> Corpus<'a> {
    /// An in-memory f32 corpus; a data error if `data` is not a whole
    /// number of rows of `cols` values.
    pub fn f32(data: &'a [f32], cols: usize) -> Result<Corpus<'a>> {
        whole_rows(data.len(), cols)?;
        Ok(Corpus::F32 { data, cols })
    }

    /// An in-memory f16 corpus (see [`Corpus::f32`]).
    pub fn f16(data: &'a [half::f16], cols: usize) -> Result<Corpus<'a>> {
        whole_rows(data.len(), cols)?;
        Ok(Corpus::F16 { data, cols })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Corpus::Npy(m) => m.rows(),
            Corpus::F32 { data, cols } => data.len() / (*cols).max(1),
            Corpus::F16 { data, cols } => data.len() / (*cols).max(1),
        }
    }

    /// Values per row (the embedding dimension).
    pub fn cols(&self) -> usize {
        match self {
            Corpus::Npy(m) => m.cols(),
            Corpus::F32 { cols, .. } | Corpus::F16 { cols, .. } => *cols,
        }
    }

    /// The name errors give it: the file, or `corpus` for memory.
    pub fn path(&self) -> &Path {
        match self {
            Corpus::Npy(m) => m.path(),
            _ => Path::new("corpus"),
        }
    }

    /// The name as an owned path, for errors.
    pub fn path_buf(&self) -> PathBuf {
        self.path().to_path_buf()
    }

    /// Converts rows `start..start+count` to f32 into `out` (exactly that
    /// many values); `raw` is scratch space for the `.npy` reader.
    pub fn read_rows_into(
        &self,
        start: usize,
        count: usize,
        raw: &mut Vec<u8>,
        out: &mut [f32],
    ) -> Result<()> {
        match self {
            Corpus::Npy(m) => m.read_rows_into(start, count, raw, out),
            Corpus::F32 { data, cols } => {
                out.copy_from_slice(&data[start * cols..(start + count) * cols]);
                Ok(())
            }
            Corpus::F16 { data, cols } => {
                let src = &data[start * cols..(start + count) * cols];
                for (o, x) in out.iter_mut().zip(src) {
                    *o = x.to_f32();
                }
                Ok(())
            }
        }
    }

    /// Rows `start..start+count` as a new f32 vector.
    pub fn read_rows(&self, start: usize, count: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; count * self.cols()];
        self.read_rows_into(start, count, &mut Vec::new(), &mut out)?;
        Ok(out)
    }
}

impl<'a> From<&'a NpyMatrix> for Corpus<'a> {
    fn from(m: &'a NpyMatrix) -> Corpus<'a> {
        Corpus::Npy(m)
    }
}

fn whole_rows(len: usize, cols: usize) -> Result<()> {
    if cols == 0 {
        return Err(Error::data(
            "corpus",
            "rows have 0 dimensions; expected n x d embeddings with d >= 1",
        ));
    }
    if !len.is_multiple_of(cols) {
        return Err(Error::data(
            "corpus",
            format!("{len} values are not a whole number of rows of {cols}"),
        ));
    }
    Ok(())
}
