//! A sharded corpus: a folder of `.npy` files, or of Parquet files, read in
//! lexical file-name order as one matrix.
//!
//! The shards are opened, never concatenated: a row range is read from the
//! shard (or shards) that hold it, so memory stays what one shard's reader
//! takes. The ids come from an `.ids.txt` beside each `.npy` shard
//! (`part-0.npy` -> `part-0.ids.txt`, optionally `.gz` / `.zst`) or from
//! each Parquet shard's id column; without them they are the row numbers,
//! continuing across shards. Either every shard has ids or none does, and
//! ids are unique across the whole folder.

use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::data::ids::Ids;
use crate::data::npy::NpyMatrix;
use crate::data::table::{Columns, TableMatrix};
use crate::data::{Corpus, MatrixFile};
use crate::error::{Error, Result};

/// What the shards of a folder are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKind {
    /// `.npy` files.
    Npy,
    /// `.parquet` (or `.pq`) files.
    Parquet,
}

/// The shard files of `dir`, in lexical order of their names, and what
/// they are. Hidden files (a `.nudge-partial-*` among them) and files of
/// other extensions (the `.ids.txt` files, a README) are not shards.
pub fn list(dir: &Path) -> Result<(ShardKind, Vec<PathBuf>)> {
    // A dataset folder given where a matrix goes (`--corpus DATA/`) would
    // otherwise read its `queries.npy` as a corpus shard.
    if let Some(what) = ["qrels", "queries.npy", "queries.parquet"]
        .iter()
        .find(|f| dir.join(f).exists())
    {
        return Err(Error::data(
            dir,
            format!(
                "is a dataset folder (it holds {what}), not a folder of corpus shards; give it as --dataset, or name the corpus file"
            ),
        ));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::unreadable(dir, "list the folder", e))?;
    let (mut npy, mut pq) = (Vec::new(), Vec::new());
    for e in entries {
        let e = e.map_err(|e| Error::unreadable(dir, "list the folder", e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            continue;
        }
        let ext = path
            .extension()
            .and_then(|x| x.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => npy.push(path),
            Some("parquet" | "pq") => pq.push(path),
            _ => {}
        }
    }
    let (kind, mut files) = match (npy.is_empty(), pq.is_empty()) {
        (false, true) => (ShardKind::Npy, npy),
        (true, false) => (ShardKind::Parquet, pq),
        (true, true) => {
            return Err(Error::data(
                dir,
                "holds no .npy or .parquet shards; expected a folder of corpus shards",
            ));
        }
        (false, false) => {
            return Err(Error::data(
                dir,
                format!(
                    "holds both .npy ({}) and .parquet ({}) files; a sharded corpus is all .npy or all .parquet",
                    npy.len(),
                    pq.len()
                ),
            ));
        }
    };
    // Lexical order of the names (bytes), as `ls` in the C locale lists them.
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok((kind, files))
}

/// The ids file of `.npy` shard `shard`, if there is one: `NAME.ids.txt`,
/// or the same gzip or zstd compressed (`.gz`, `.zst`).
pub fn ids_file(shard: &Path) -> Option<PathBuf> {
    let stem = shard.file_stem()?.to_str()?;
    ["", ".gz", ".zst"]
        .iter()
        .map(|z| shard.with_file_name(format!("{stem}.ids.txt{z}")))
        .find(|p| p.is_file())
}

/// A folder of shards, opened (see the module doc).
pub struct ShardedMatrix {
    dir: PathBuf,
    kind: ShardKind,
    shards: Vec<MatrixFile>,
    /// Global row of each shard's first row, and the row count at the end.
    starts: Vec<usize>,
    cols: usize,
}

impl ShardedMatrix {
    /// Opens every shard of `dir` (its header or metadata only) and checks
    /// that they have the same width.
    pub fn open(dir: &Path, columns: &Columns) -> Result<ShardedMatrix> {
        let (kind, files) = list(dir)?;
        let mut shards = Vec::with_capacity(files.len());
        let mut starts = vec![0];
        for f in &files {
            let m = match kind {
                ShardKind::Npy => MatrixFile::Npy(NpyMatrix::open(f)?),
                ShardKind::Parquet => MatrixFile::Table(Box::new(TableMatrix::open(f, columns)?)),
            };
            if let Some(first) = shards.first().map(MatrixFile::cols)
                && m.cols() != first
            {
                return Err(Error::data(
                    f,
                    format!(
                        "has {}-d rows but {} has {first}-d rows; every shard must have the same width",
                        m.cols(),
                        files[0].display()
                    ),
                ));
            }
            starts.push(starts.last().unwrap() + m.rows());
            shards.push(m);
        }
        let cols = shards[0].cols();
        Ok(ShardedMatrix {
            dir: dir.to_path_buf(),
            kind,
            shards,
            starts,
            cols,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// What the shards are.
    pub fn kind(&self) -> ShardKind {
        self.kind
    }
    /// The shards, in order.
    pub fn shards(&self) -> &[MatrixFile] {
        &self.shards
    }
    /// The global row range of shard `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }
    /// Number of rows, all shards together.
    pub fn rows(&self) -> usize {
        *self.starts.last().unwrap()
    }
    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The shard file that holds global `row`, and the row in it.
    pub fn locate(&self, row: usize) -> (&Path, usize) {
        let s = self.starts.partition_point(|&x| x <= row).saturating_sub(1);
        (self.shards[s].path(), row - self.starts[s])
    }

    /// Converts rows `start..start+count` to f32 into `out`, from whichever
    /// shards hold them; `raw` is scratch space for the `.npy` reader.
    pub fn read_rows_into(
        &self,
        start: usize,
        count: usize,
        raw: &mut Vec<u8>,
        out: &mut [f32],
    ) -> Result<()> {
        let (mut row, end) = (start, start + count);
        let mut o = 0;
        while row < end {
            let s = self.starts.partition_point(|&x| x <= row) - 1;
            let take = end.min(self.starts[s + 1]) - row;
            let local = row - self.starts[s];
            Corpus::from(&self.shards[s]).read_rows_into(
                local,
                take,
                raw,
                &mut out[o..o + take * self.cols],
            )?;
            // A shard read to its end is done with (passes read in order).
            if row + take == self.starts[s + 1]
                && let MatrixFile::Table(t) = &self.shards[s]
            {
                t.release();
            }
            row += take;
            o += take * self.cols;
        }
        Ok(())
    }

    /// The ids of the rows: from the shards' ids files or id columns, or
    /// the row numbers (continuing across shards) when they have none.
    pub fn ids(&self) -> Result<Ids> {
        // Each shard's ids, checked in their own file first (so an error
        // names that file and line), or `None`.
        let mut per_shard: Vec<(PathBuf, Option<Vec<String>>)> = Vec::new();
        for m in &self.shards {
            let (source, names) = match m {
                MatrixFile::Npy(n) => match ids_file(n.path()) {
                    Some(f) => {
                        let ids = Ids::load(Some(&f), n.rows(), n.path())?;
                        let names = (0..n.rows()).map(|r| ids.name(r)).collect();
                        (f, Some(names))
                    }
                    None => (n.path().to_path_buf(), None),
                },
                MatrixFile::Table(t) => {
                    t.check_ids()?;
                    (t.path().to_path_buf(), t.id_names().map(<[_]>::to_vec))
                }
                MatrixFile::Shards(_) => unreachable!("shards are files"),
            };
            per_shard.push((source, names));
        }
        let with = per_shard.iter().filter(|s| s.1.is_some()).count();
        if with == 0 {
            return Ok(Ids::rows(self.rows()));
        }
        if with < per_shard.len() {
            let (has, lacks) = (
                per_shard.iter().find(|s| s.1.is_some()).unwrap(),
                per_shard.iter().find(|s| s.1.is_none()).unwrap(),
            );
            let what = match self.kind {
                ShardKind::Npy => "an .ids.txt file beside it",
                ShardKind::Parquet => "an id column",
            };
            return Err(Error::data(
                &lacks.0,
                format!(
                    "has no ids, but {} has; every shard needs {what}, or none (row numbers)",
                    has.0.display()
                ),
            ));
        }
        // Unique across shards: a duplicate names both places.
        let mut seen: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
        seen.reserve(self.rows());
        for (s, (_, names)) in per_shard.iter().enumerate() {
            for (r, id) in names.as_ref().unwrap().iter().enumerate() {
                if let Some((s0, r0)) = seen.insert(id, (s, r)) {
                    return Err(Error::data_row(
                        &per_shard[s].0,
                        r,
                        format!(
                            "duplicate id {id:?} at row {r}, first at row {r0} of {}; ids must be unique across the shards",
                            per_shard[s0].0.display()
                        ),
                    ));
                }
            }
        }
        drop(seen);
        let all = per_shard.iter().flat_map(|s| s.1.as_ref().unwrap());
        Ids::from_names(all, &self.dir.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn shards_read_to_the_end_let_go_of_their_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let cols = 4;
        for (i, rows) in [3usize, 5, 2].into_iter().enumerate() {
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let data: Vec<f32> = (0..rows * cols).map(|x| (i * 100 + x) as f32).collect();
            let emb = FixedSizeListArray::new(
                item,
                cols as i32,
                Arc::new(Float32Array::from(data)),
                None,
            );
            let schema = Arc::new(Schema::new(vec![Field::new(
                "emb",
                emb.data_type().clone(),
                false,
            )]));
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(emb)]).unwrap();
            let f = std::fs::File::create(dir.path().join(format!("s{i}.parquet"))).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
        let m = ShardedMatrix::open(dir.path(), &Columns::default()).unwrap();
        assert_eq!((m.rows(), m.cols()), (10, cols));
        let table = |i: usize| match &m.shards()[i] {
            MatrixFile::Table(t) => t,
            _ => unreachable!(),
        };
        let mut out = vec![0.0; 4 * cols];
        // Rows 2..6: the end of shard 0, the start of shard 1.
        m.read_rows_into(2, 4, &mut Vec::new(), &mut out).unwrap();
        assert_eq!((out[0], out[cols]), (8.0, 100.0));
        assert!(!table(0).holds_a_batch() && table(1).holds_a_batch());
        let all = Corpus::Shards(&m).read_rows(0, 10).unwrap();
        assert_eq!((all[9 * cols], all.len()), (200.0 + 4.0, 10 * cols));
        assert!((0..3).all(|i| !table(i).holds_a_batch()));
    }
}
