//! Where a corpus's rows come from: an `.npy` file read in row ranges, or a
//! matrix the caller already holds in memory (f32 or f16, borrowed, never
//! copied whole). Every corpus pass reads through [`Corpus`], so a fit over
//! numpy arrays and a fit over a 100 GB file are the same code.

use std::path::{Path, PathBuf};

use crate::data::ids::Ids;
use crate::data::npy::NpyMatrix;
use crate::data::shards::ShardedMatrix;
use crate::data::table::Columns;
use crate::data::table::TableMatrix;
use crate::error::{Error, Result};

/// The rows of a corpus, `rows() x cols()`, as the corpus pass reads them.
#[derive(Clone, Copy)]
pub enum Corpus<'a> {
    /// An `.npy` file, read chunk by chunk (memory stays bounded).
    Npy(&'a NpyMatrix),
    /// A Parquet or Arrow IPC file, read a batch at a time (memory stays
    /// bounded).
    Table(&'a TableMatrix),
    /// A folder of shards, read shard by shard as one corpus (memory stays
    /// bounded: the shards are never concatenated).
    Shards(&'a ShardedMatrix),
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
            Corpus::Table(m) => m.rows(),
            Corpus::Shards(m) => m.rows(),
            Corpus::F32 { data, cols } => data.len() / (*cols).max(1),
            Corpus::F16 { data, cols } => data.len() / (*cols).max(1),
        }
    }

    /// Values per row (the embedding dimension).
    pub fn cols(&self) -> usize {
        match self {
            Corpus::Npy(m) => m.cols(),
            Corpus::Table(m) => m.cols(),
            Corpus::Shards(m) => m.cols(),
            Corpus::F32 { cols, .. } | Corpus::F16 { cols, .. } => *cols,
        }
    }

    /// The name errors give it: the file, or `corpus` for memory.
    pub fn path(&self) -> &Path {
        match self {
            Corpus::Npy(m) => m.path(),
            Corpus::Table(m) => m.path(),
            Corpus::Shards(m) => m.path(),
            _ => Path::new("corpus"),
        }
    }

    /// Where global `row` is, for messages about it: for a sharded corpus,
    /// " (row R of SHARD)"; nothing otherwise.
    pub fn row_origin(&self, row: usize) -> String {
        match self {
            Corpus::Shards(m) => {
                let (path, local) = m.locate(row);
                format!(" (row {local} of {})", path.display())
            }
            _ => String::new(),
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
            Corpus::Table(m) => m.read_rows_into(start, count, out),
            Corpus::Shards(m) => m.read_rows_into(start, count, raw, out),
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

    /// Whether the rows are stored as f16 (an f16 `.npy`, or f16 in
    /// memory): those [`Corpus::read_rows_f16_into`] reads as they are.
    pub fn is_f16(&self) -> bool {
        match self {
            Corpus::Npy(m) => m.dtype() == crate::data::npy::Dtype::F16,
            Corpus::F16 { .. } => true,
            _ => false,
        }
    }

    /// Rows `start..start+count` as stored, into `out` (exactly that many
    /// values), where [`Corpus::is_f16`]; a usage error elsewhere.
    pub fn read_rows_f16_into(
        &self,
        start: usize,
        count: usize,
        out: &mut [half::f16],
    ) -> Result<()> {
        match self {
            Corpus::Npy(m) => m.read_rows_f16_into(start, count, out),
            Corpus::F16 { data, cols } => {
                out.copy_from_slice(&data[start * cols..(start + count) * cols]);
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "{}: rows are not stored as float16",
                self.path().display()
            ))),
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

impl<'a> From<&'a TableMatrix> for Corpus<'a> {
    fn from(m: &'a TableMatrix) -> Corpus<'a> {
        Corpus::Table(m)
    }
}

impl<'a> From<&'a MatrixFile> for Corpus<'a> {
    fn from(m: &'a MatrixFile) -> Corpus<'a> {
        match m {
            MatrixFile::Npy(m) => Corpus::Npy(m),
            MatrixFile::Table(m) => Corpus::Table(m),
            MatrixFile::Shards(m) => Corpus::Shards(m),
        }
    }
}

/// An embeddings file, opened: an `.npy` matrix, a table (Parquet, Arrow
/// IPC) with a vector column, or a folder of `.npy` or Parquet shards.
pub enum MatrixFile {
    /// An `.npy` file.
    Npy(NpyMatrix),
    /// A Parquet or Arrow IPC file.
    Table(Box<TableMatrix>),
    /// A folder of shards (see [`crate::data::shards`]).
    Shards(Box<ShardedMatrix>),
}

impl MatrixFile {
    /// Opens `path`: a folder of shards, a table by its extension (see
    /// [`crate::data::table::is_table`]), else an `.npy` file.
    pub fn open(path: &Path, columns: &Columns) -> Result<MatrixFile> {
        if path.is_dir() {
            ShardedMatrix::open(path, columns).map(|m| MatrixFile::Shards(Box::new(m)))
        } else if crate::data::table::is_table(path) {
            TableMatrix::open(path, columns).map(|t| MatrixFile::Table(Box::new(t)))
        } else {
            NpyMatrix::open(path).map(MatrixFile::Npy)
        }
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        Corpus::from(self).rows()
    }
    /// Values per row.
    pub fn cols(&self) -> usize {
        Corpus::from(self).cols()
    }
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            MatrixFile::Npy(m) => m.path(),
            MatrixFile::Table(m) => m.path(),
            MatrixFile::Shards(m) => m.path(),
        }
    }
    /// The element type on disk: `float32`, `float16` or `float64`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            MatrixFile::Npy(m) => match m.dtype() {
                crate::data::npy::Dtype::F32 => "float32",
                crate::data::npy::Dtype::F16 => "float16",
                crate::data::npy::Dtype::F64 => "float64",
            },
            MatrixFile::Table(m) => m.element().name(),
            // float64 if any shard is (it is converted as it is read).
            MatrixFile::Shards(m) => m
                .shards()
                .iter()
                .map(MatrixFile::dtype_name)
                .find(|&d| d == "float64")
                .unwrap_or_else(|| m.shards()[0].dtype_name()),
        }
    }
    /// How the file's values are described in reports: the `.npy` dtype
    /// (`<f4`), or e.g. `parquet emb float32`.
    pub fn descr(&self) -> String {
        match self {
            MatrixFile::Npy(m) => m.dtype().descr().to_string(),
            MatrixFile::Table(m) => format!("{} {}", m.vector_column(), m.element().name()),
            MatrixFile::Shards(m) => {
                format!("{} shards, {}", m.shards().len(), m.shards()[0].descr())
            }
        }
    }
    /// The whole matrix as f32; for the (small) query matrix.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        match self {
            MatrixFile::Npy(m) => m.read_all(),
            MatrixFile::Table(m) => m.read_all(),
            MatrixFile::Shards(m) => Corpus::Shards(m).read_rows(0, m.rows()),
        }
    }
    /// The ids the matrix carries itself: a table's id column, if it has
    /// one; a folder's shard ids (ids files or id columns, else the row
    /// numbers across the shards).
    pub fn table_ids(&self) -> Result<Option<Ids>> {
        match self {
            MatrixFile::Table(m) if m.id_column().is_some() => m.ids().map(Some),
            MatrixFile::Shards(m) => m.ids().map(Some),
            _ => Ok(None),
        }
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
