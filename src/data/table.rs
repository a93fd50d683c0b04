//! Embeddings in a table: a Parquet file or an Arrow IPC (Feather v2) file
//! with a vector column (`list`, `large_list` or `fixed_size_list` of
//! float16/float32/float64) and, optionally, an id column.
//!
//! Rows are read as the corpus pass asks for them: a Parquet file a batch of
//! a row group at a time, an IPC file a record batch at a time, so memory
//! stays bounded however large the file is. Errors name the file, the row
//! group (or record batch), the row in it and the row of the file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, OffsetSizeTrait, RecordBatch};
use arrow_ipc::reader::FileReader;
use arrow_schema::{ArrowError, DataType, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::FloatType;
use parquet::file::serialized_reader::SerializedPageReader;
use rustc_hash::FxHashMap;

use crate::data::ids::Ids;
use crate::error::{Error, Result};

/// Rows decoded per Parquet batch, at most: bounds the memory a row group
/// takes.
const BATCH_ROWS: usize = 8192;

/// Bytes of f32 values per Parquet batch the rows are read in (once the
/// width is known). Small batches are much faster: a batch's buffers are
/// allocated afresh by the decoder, and at 1M x 384 batches of 8192 rows
/// (12 MiB) took the kernel's zeroing of fresh pages and cache misses to
/// 4.1 s a read, against 2.0 s at 1024 rows (1.5 MiB).
const BATCH_BYTES: usize = 1 << 20;

/// Which names the `vector` and `id` columns of a table have; `None` picks
/// the default (the one list column; `id` or `_id` if there is one).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// The vector column.
    pub vector: Option<String>,
    /// The id column.
    pub id: Option<String>,
}

/// Whether `path` names a table file nudge reads as such: `.parquet`, or an
/// Arrow IPC file (`.arrow`, `.feather`, `.ipc`).
pub fn is_table(path: &Path) -> bool {
    format_of(path).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Ipc,
}

fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "parquet" | "pq" => Some(Format::Parquet),
        "arrow" | "feather" | "ipc" => Some(Format::Ipc),
        _ => None,
    }
}

/// The element type of the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// float16.
    F16,
    /// float32.
    F32,
    /// float64 (converted to float32 as it is read).
    F64,
}

impl Element {
    /// `float16`, `float32` or `float64`.
    pub fn name(self) -> &'static str {
        match self {
            Element::F16 => "float16",
            Element::F32 => "float32",
            Element::F64 => "float64",
        }
    }
}

/// The batch last decoded, and the reader that goes on from it (none yet:
/// [`Cursor::default`]).
#[derive(Default)]
struct Cursor {
    /// Global row of `values`' first row.
    start: usize,
    /// Rows in `values`.
    rows: usize,
    /// The batch's `rows x cols` values, as decoded (checked, not yet
    /// converted): rows are converted to f32 straight into the caller's
    /// buffer, sparing a copy and the zeroing of one of a batch's size.
    values: Option<ArrayRef>,
    /// Parquet: the part the reader reads, the global row it goes on at, and
    /// the reader.
    reader: Option<(usize, usize, BatchIter)>,
    /// IPC: the open file.
    ipc: Option<FileReader<BufReader<File>>>,
    /// Parquet float32 vectors: the column reader of the fast path (see
    /// [`TableMatrix::next_fast`]), and the values it decoded last, which
    /// `values` then leaves to (it is `None`).
    fast: Option<Fast>,
    owned: Vec<f32>,
    /// Page buffers of the fast path, for reuse.
    pool: Pool,
}

type Pool = std::sync::Arc<Mutex<Vec<Vec<u8>>>>;

/// A Parquet file whose pages are read into reused buffers: a fresh buffer
/// per page (as parquet's `File` reader takes) costs the kernel a zeroed
/// page per 4 KiB, 14% of a 1M x 384 read.
struct Pooled {
    file: File,
    len: u64,
    pool: Pool,
}

/// A page buffer that goes back to its pool when parquet drops the page.
struct Recycled {
    buf: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        // A few pages are alive at a time; more buffers would only hold memory.
        if pool.len() < 8 {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

impl parquet::file::reader::Length for Pooled {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for Pooled {
    type T = BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BufReader<File>> {
        parquet::file::reader::ChunkReader::get_read(&self.file, start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let popped = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut buf = popped.unwrap_or_default();
        buf.clear();
        buf.resize(length, 0);
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(bytes::Bytes::from_owner(Recycled {
            buf,
            pool: self.pool.clone(),
        }))
    }
}

/// A row group's float32 leaf column, read with parquet's column reader:
/// the row group, the global row it goes on at, the reader and its level
/// buffers.
struct Fast {
    part: usize,
    next: usize,
    reader: ColumnReaderImpl<FloatType>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

type BatchIter = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// A table file's vectors, read in row ranges (see the module doc).
pub struct TableMatrix {
    path: PathBuf,
    format: Format,
    /// Parquet: the file's metadata, read once.
    meta: Option<ArrowReaderMetadata>,
    /// Index (among the top-level columns) and name of the vector column.
    vector: usize,
    vector_name: String,
    element: Element,
    cols: usize,
    /// Global row of each part's first row, and the row count at the end.
    starts: Vec<usize>,
    /// Rows per Parquet batch (see [`BATCH_BYTES`]).
    batch_rows: usize,
    /// Parquet float32 vectors: the leaf column that holds their values,
    /// read without the Arrow list reader (see [`TableMatrix::next_fast`]).
    fast_leaf: Option<usize>,
    ids: Option<Vec<String>>,
    id_name: Option<String>,
    cursor: Mutex<Cursor>,
}

impl TableMatrix {
    /// Opens `path` (Parquet, or Arrow IPC by its extension), picks the
    /// columns and reads the ids (if any) and the row counts.
    pub fn open(path: &Path, columns: &Columns) -> Result<TableMatrix> {
        let format = format_of(path).ok_or_else(|| {
            Error::data(
                path,
                "is not a .parquet, .arrow, .feather or .ipc file; expected a table of embeddings",
            )
        })?;
        let file = File::open(path).map_err(|e| Error::unreadable(path, "open", e))?;
        let meta_fs = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if meta_fs.is_dir() {
            return Err(Error::data(path, "is a directory; expected a table file"));
        }
        let (schema, meta) = match format {
            Format::Parquet => {
                let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
                    .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))?;
                (meta.schema().clone(), Some(meta))
            }
            Format::Ipc => {
                let r = FileReader::try_new_buffered(file, None).map_err(|e| {
                    Error::data(path, format!("not a readable Arrow IPC file: {e}"))
                })?;
                (r.schema(), None)
            }
        };
        let (vector, element) = pick_vector(path, &schema, columns.vector.as_deref())?;
        let id = pick_id(path, &schema, columns.id.as_deref(), vector)?;
        let mut t = TableMatrix {
            path: path.to_path_buf(),
            format,
            meta,
            vector,
            vector_name: schema.field(vector).name().clone(),
            element,
            cols: 0,
            starts: vec![0],
            batch_rows: BATCH_ROWS,
            fast_leaf: None,
            ids: None,
            id_name: id.map(|i| schema.field(i).name().clone()),
            cursor: Mutex::new(Cursor::default()),
        };
        // Row counts (and, from the same pass for IPC, the ids).
        let mut ids = id.map(|_| Vec::new());
        match format {
            Format::Parquet => {
                let md = t.meta.as_ref().unwrap().metadata().clone();
                for g in md.row_groups() {
                    let n = g.num_rows() as usize;
                    t.starts.push(t.starts.last().unwrap() + n);
                }
                if let (Some(i), Some(ids)) = (id, ids.as_mut()) {
                    let reader = t.parquet_reader(None, i, 0)?;
                    let mut row = 0;
                    for b in reader {
                        let b = b.map_err(|e| t.arrow_error(row, e))?;
                        t.push_ids(b.column(0), row, ids)?;
                        row += b.num_rows();
                    }
                }
            }
            Format::Ipc => {
                let proj = vec![id.unwrap_or(vector)];
                let file = File::open(path).map_err(|e| Error::unreadable(path, "open", e))?;
                let r = FileReader::try_new_buffered(file, Some(proj)).map_err(|e| {
                    Error::data(path, format!("not a readable Arrow IPC file: {e}"))
                })?;
                let mut row = 0;
                for b in r {
                    let b = b.map_err(|e| t.arrow_error(row, e))?;
                    t.starts.push(row + b.num_rows());
                    if let Some(ids) = ids.as_mut() {
                        t.push_ids(b.column(0), row, ids)?;
                    }
                    row += b.num_rows();
                }
            }
        }
        if t.rows() == 0 {
            return Err(Error::data(path, "the table has no rows"));
        }
        // The ids are checked when they are used (`ids`): a fast check there,
        // and this table's precise one only to word an error.
        t.ids = ids;
        t.cols = match schema.field(vector).data_type() {
            DataType::FixedSizeList(_, n) => *n as usize,
            _ => t.first_len()?,
        };
        t.batch_rows = (BATCH_BYTES / (t.cols.max(1) * 4)).clamp(64, BATCH_ROWS);
        if let (Some(meta), Element::F32) = (&t.meta, element) {
            let descr = meta.parquet_schema();
            let leaves: Vec<usize> = (0..descr.num_columns())
                .filter(|&i| descr.get_column_root_idx(i) == vector)
                .collect();
            if let [leaf] = leaves[..]
                && descr.column(leaf).physical_type() == parquet::basic::Type::FLOAT
            {
                t.fast_leaf = Some(leaf);
            }
        }
        // The reader that found the width read batches of the old size.
        *t.cursor.lock().unwrap() = Cursor::default();
        if t.cols == 0 {
            return Err(Error::data(
                path,
                format!(
                    "column {:?} holds empty vectors; expected n x d embeddings with d >= 1",
                    t.vector_name
                ),
            ));
        }
        Ok(t)
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the reader holds a decoded batch (for tests of [`Self::release`]).
    #[cfg(test)]
    pub(crate) fn holds_a_batch(&self) -> bool {
        let cur = self.cursor.lock().unwrap();
        cur.rows > 0 || cur.owned.capacity() > 0
    }

    /// Drops the reader's state: its open readers, the batch last decoded
    /// and its buffers. A sharded corpus calls it on each shard it has read
    /// to the end, so that a folder of many shards holds the buffers of one
    /// rather than of all.
    pub fn release(&self) {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = Cursor::default();
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        *self.starts.last().unwrap()
    }
    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The vectors' element type in the file.
    pub fn element(&self) -> Element {
        self.element
    }
    /// The vector column's name.
    pub fn vector_column(&self) -> &str {
        &self.vector_name
    }
    /// The id column's name, if there is one.
    pub fn id_column(&self) -> Option<&str> {
        self.id_name.as_deref()
    }

    /// The ids of the id column, in row order, if there is one.
    pub fn id_names(&self) -> Option<&[String]> {
        self.ids.as_deref()
    }

    /// The ids from the id column, or the row numbers without one. Ids
    /// must be unique, non-empty and hold no line break; an error names the
    /// row group and row.
    pub fn ids(&self) -> Result<Ids> {
        match &self.ids {
            None => Ok(Ids::rows(self.rows())),
            // Building the lookup table finds any bad id; the slower check
            // that says where it is runs only then (at 1M ids both together
            // were a third of the time a Parquet corpus took to open).
            Some(names) => Ids::from_names(names, &self.path.display().to_string())
                .map_err(|e| self.check_ids().err().unwrap_or(e)),
        }
    }

    /// Checks the id column's ids (unique, non-empty, no line break) with
    /// errors that name the row group and row; `Ok` without an id column.
    pub fn check_ids(&self) -> Result<()> {
        match &self.ids {
            Some(ids) => self.check_unique(ids),
            None => Ok(()),
        }
    }

    /// "row group 2, row 17 (row 2065 of the file)".
    fn locate(&self, row: usize) -> String {
        let part = self.starts.partition_point(|&s| s <= row).saturating_sub(1);
        let what = match self.format {
            Format::Parquet => "row group",
            Format::Ipc => "record batch",
        };
        format!(
            "{what} {part}, row {} (row {row} of the file)",
            row - self.starts[part]
        )
    }

    fn row_error(&self, row: usize, message: impl std::fmt::Display) -> Error {
        Error::data_row(&self.path, row, format!("{}: {message}", self.locate(row)))
    }

    fn arrow_error(&self, row: usize, e: ArrowError) -> Error {
        Error::data(&self.path, format!("cannot read from row {row} on: {e}"))
    }

    fn parquet_reader(
        &self,
        part: Option<usize>,
        column: usize,
        offset: usize,
    ) -> Result<BatchIter> {
        let meta = self.meta.as_ref().expect("a Parquet table");
        let file = File::open(&self.path).map_err(|e| Error::unreadable(&self.path, "open", e))?;
        let mask = ProjectionMask::roots(meta.parquet_schema(), [column]);
        let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_projection(mask)
            .with_batch_size(self.batch_rows);
        if let Some(p) = part {
            b = b.with_row_groups(vec![p]).with_offset(offset);
        }
        let r = b
            .build()
            .map_err(|e| Error::data(&self.path, format!("cannot read: {e}")))?;
        Ok(Box::new(r))
    }

    fn push_ids(&self, col: &ArrayRef, first: usize, out: &mut Vec<String>) -> Result<()> {
        let name = self.id_name.as_deref().unwrap_or("id");
        if let Some(nulls) = col.nulls()
            && let Some(i) = (0..col.len()).find(|&i| nulls.is_null(i))
        {
            return Err(self.row_error(first + i, format!("the id in column {name:?} is null")));
        }
        macro_rules! ints {
            ($($t:ty),*) => {
                $(if let Some(a) = col.as_primitive_opt::<$t>() {
                    out.extend(a.values().iter().map(|v| v.to_string()));
                    return Ok(());
                })*
            };
        }
        ints!(
            Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
            UInt64Type
        );
        if let Some(a) = col.as_string_opt::<i32>() {
            out.extend(a.iter().map(|s| s.unwrap_or_default().to_string()));
        } else if let Some(a) = col.as_string_opt::<i64>() {
            out.extend(a.iter().map(|s| s.unwrap_or_default().to_string()));
        } else if let Some(a) = col.as_string_view_opt() {
            out.extend(a.iter().map(|s| s.unwrap_or_default().to_string()));
        } else {
            return Err(Error::data(
                &self.path,
                format!(
                    "id column {name:?} holds {}; expected strings or integers",
                    col.data_type()
                ),
            ));
        }
        Ok(())
    }

    fn check_unique(&self, ids: &[String]) -> Result<()> {
        let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
        seen.reserve(ids.len());
        for (row, id) in ids.iter().enumerate() {
            if id.is_empty() {
                return Err(self.row_error(row, "empty id; ids must be non-empty"));
            }
            if id.contains(['\n', '\r']) {
                return Err(self.row_error(row, format!("id {id:?} holds a line break")));
            }
            if let Some(first) = seen.insert(id, row) {
                return Err(self.row_error(
                    row,
                    format!(
                        "duplicate id {id:?} (first at {}); ids must be unique",
                        self.locate(first)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The length of the first row's vector (for list columns).
    fn first_len(&self) -> Result<usize> {
        let mut cur = self.cursor.lock().unwrap();
        let (batch, start) = self.next_batch(&mut cur, 0)?;
        let col = batch.column(0);
        if col.is_null(0) {
            return Err(self.row_error(
                start,
                format!("the vector in column {:?} is null", self.vector_name),
            ));
        }
        Ok(match col.data_type() {
            DataType::List(_) => col.as_list::<i32>().value_length(0) as usize,
            DataType::LargeList(_) => col.as_list::<i64>().value_length(0) as usize,
            DataType::FixedSizeList(_, n) => *n as usize,
            t => {
                return Err(Error::data(
                    &self.path,
                    format!("unexpected vector type {t}"),
                ));
            }
        })
    }

    /// The batch of the vector column holding global `row`, with the global
    /// row of its first row; the cursor's reader moves past it.
    fn next_batch(&self, cur: &mut Cursor, row: usize) -> Result<(RecordBatch, usize)> {
        let part = self.starts.partition_point(|&s| s <= row) - 1;
        match self.format {
            Format::Ipc => {
                let r = match cur.ipc.as_mut() {
                    Some(r) => r,
                    None => {
                        let file = File::open(&self.path)
                            .map_err(|e| Error::unreadable(&self.path, "open", e))?;
                        let r = FileReader::try_new_buffered(file, Some(vec![self.vector]))
                            .map_err(|e| Error::data(&self.path, format!("cannot read: {e}")))?;
                        cur.ipc.insert(r)
                    }
                };
                r.set_index(part)
                    .map_err(|e| self.arrow_error(self.starts[part], e))?;
                let b = r
                    .next()
                    .ok_or_else(|| self.row_error(row, "the record batch is missing"))?
                    .map_err(|e| self.arrow_error(self.starts[part], e))?;
                let b = if b.num_columns() > 1 {
                    b.project(&[self.vector])
                        .map_err(|e| self.arrow_error(self.starts[part], e))?
                } else {
                    b
                };
                Ok((b, self.starts[part]))
            }
            Format::Parquet => {
                let fresh =
                    !matches!(&cur.reader, Some((p, next, _)) if *p == part && *next <= row);
                if fresh {
                    let offset = row - self.starts[part];
                    let r = self.parquet_reader(Some(part), self.vector, offset)?;
                    cur.reader = Some((part, row, r));
                }
                let (_, next, r) = cur.reader.as_mut().unwrap();
                loop {
                    let b = r
                        .next()
                        .ok_or_else(|| self.row_error(row, "the row group ends early"))?
                        .map_err(|e| self.arrow_error(*next, e))?;
                    let start = *next;
                    *next += b.num_rows();
                    if *next > row {
                        return Ok((b, start));
                    }
                }
            }
        }
    }

    /// Decodes `batch` (the vector column, its first row at global `start`)
    /// into the cursor.
    fn decode(&self, cur: &mut Cursor, batch: &RecordBatch, start: usize) -> Result<()> {
        let col = batch.column(0);
        let n = col.len();
        cur.start = start;
        cur.rows = 0;
        cur.values = None;
        if let Some(nulls) = col.nulls()
            && let Some(i) = (0..n).find(|&i| nulls.is_null(i))
        {
            return Err(self.row_error(
                start + i,
                format!("the vector in column {:?} is null", self.vector_name),
            ));
        }
        let (values, from) = match col.data_type() {
            DataType::List(_) => self.check_offsets(col.as_list::<i32>(), start)?,
            DataType::LargeList(_) => self.check_offsets(col.as_list::<i64>(), start)?,
            DataType::FixedSizeList(_, _) => {
                let l = col.as_fixed_size_list();
                let from = l.value_offset_at(0);
                (l.values().clone(), from)
            }
            t => {
                return Err(Error::data(
                    &self.path,
                    format!("unexpected vector type {t}"),
                ));
            }
        };
        let values = values.slice(from, n * self.cols);
        if values.null_count() > 0 {
            let i = (0..values.len()).find(|&i| values.is_null(i)).unwrap_or(0);
            return Err(self.row_error(
                start + i / self.cols,
                format!(
                    "element {} of the vector in column {:?} is null",
                    i % self.cols,
                    self.vector_name
                ),
            ));
        }
        cur.values = Some(values);
        cur.rows = n;
        Ok(())
    }

    /// The fast path for float32 vectors in Parquet: reads the batch that
    /// holds global `row` with parquet's column reader into the cursor's
    /// own buffer, rather than through the Arrow list reader, whose
    /// per-value level checks and fresh buffers made a 1M x 384 read take
    /// about 2.5x as long. Only a batch of whole rows of `cols` non-null
    /// values is taken; anything else (a null, a ragged row, an error)
    /// returns `false`, and the Arrow path reads the batch again and says
    /// precisely what is wrong.
    fn next_fast(&self, cur: &mut Cursor, row: usize) -> Result<bool> {
        let (Some(leaf), Some(meta)) = (self.fast_leaf, self.meta.as_ref()) else {
            return Ok(false);
        };
        let part = self.starts.partition_point(|&s| s <= row) - 1;
        let fresh = !matches!(&cur.fast, Some(f) if f.part == part && f.next <= row);
        if fresh {
            cur.fast = None;
            let file =
                File::open(&self.path).map_err(|e| Error::unreadable(&self.path, "open", e))?;
            let len = file
                .metadata()
                .map_err(|e| Error::unreadable(&self.path, "stat", e))?
                .len();
            let file = Pooled {
                file,
                len,
                pool: cur.pool.clone(),
            };
            let group = meta.metadata().row_group(part);
            let Ok(pages) = SerializedPageReader::new(
                std::sync::Arc::new(file),
                group.column(leaf),
                group.num_rows() as usize,
                None,
            ) else {
                return Ok(false);
            };
            let descr = meta.parquet_schema().column(leaf);
            let mut reader = ColumnReaderImpl::<FloatType>::new(descr, Box::new(pages));
            let skip = row - self.starts[part];
            if reader.skip_records(skip).ok() != Some(skip) {
                return Ok(false);
            }
            cur.fast = Some(Fast {
                part,
                next: row,
                reader,
                def: Vec::new(),
                rep: Vec::new(),
            });
        }
        let f = cur.fast.as_mut().expect("a fast reader");
        loop {
            f.def.clear();
            f.rep.clear();
            cur.owned.clear();
            let read = f.reader.read_records(
                self.batch_rows,
                Some(&mut f.def),
                Some(&mut f.rep),
                &mut cur.owned,
            );
            // Whole rows, every value present (as many values as levels).
            let Ok((rows, values, levels)) = read else {
                cur.fast = None;
                return Ok(false);
            };
            // Each row starts (repetition level 0) where the previous one's
            // `cols` values end: ragged rows that even out are not whole.
            let whole = f.rep.len() == levels && f.rep.iter().step_by(self.cols).all(|&r| r == 0);
            if rows == 0 || values != rows * self.cols || levels != values || !whole {
                cur.fast = None;
                return Ok(false);
            }
            let start = f.next;
            f.next += rows;
            if f.next > row {
                cur.values = None;
                cur.start = start;
                cur.rows = rows;
                return Ok(true);
            }
        }
    }

    /// Converts values `from..from + out.len()` of a decoded batch to f32
    /// into `out`.
    fn convert(&self, values: &ArrayRef, from: usize, out: &mut [f32]) {
        let to = from + out.len();
        match self.element {
            Element::F32 => {
                out.copy_from_slice(&values.as_primitive::<Float32Type>().values()[from..to])
            }
            Element::F16 => {
                let src = &values.as_primitive::<Float16Type>().values()[from..to];
                for (o, x) in out.iter_mut().zip(src) {
                    *o = x.to_f32();
                }
            }
            Element::F64 => {
                let src = &values.as_primitive::<Float64Type>().values()[from..to];
                for (o, x) in out.iter_mut().zip(src) {
                    *o = *x as f32;
                }
            }
        }
    }

    /// Checks every row of a list batch holds `cols` values; the values and
    /// where the batch's start in them.
    fn check_offsets<O: OffsetSizeTrait>(
        &self,
        l: &arrow_array::GenericListArray<O>,
        start: usize,
    ) -> Result<(ArrayRef, usize)> {
        let offsets = l.value_offsets();
        for (i, w) in offsets.windows(2).enumerate() {
            let len = (w[1] - w[0]).as_usize();
            if len != self.cols {
                return Err(self.row_error(
                    start + i,
                    format!(
                        "the vector in column {:?} has {len} values, but the first row has {}; every vector must have the same length",
                        self.vector_name, self.cols
                    ),
                ));
            }
        }
        Ok((l.values().clone(), offsets[0].as_usize()))
    }

    /// Converts rows `start..start+count` to f32 into `out` (exactly that
    /// many values).
    pub fn read_rows_into(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let cols = self.cols;
        assert_eq!(out.len(), count * cols, "read_rows_into: buffer size");
        let mut cur = self.cursor.lock().unwrap();
        let (mut row, end) = (start, start + count);
        let mut o = 0;
        while row < end {
            // The batch held, else one read by the fast path, else by Arrow.
            let held = cur.start <= row && row < cur.start + cur.rows;
            if !(held || self.next_fast(&mut cur, row)?) {
                let (batch, first) = self.next_batch(&mut cur, row)?;
                self.decode(&mut cur, &batch, first)?;
            }
            let take = end.min(cur.start + cur.rows) - row;
            let from = (row - cur.start) * cols;
            let dest = &mut out[o..o + take * cols];
            match cur.values.as_ref() {
                Some(values) => self.convert(values, from, dest),
                None => dest.copy_from_slice(&cur.owned[from..from + take * cols]),
            }
            row += take;
            o += take * cols;
        }
        Ok(())
    }

    /// The whole matrix as f32; for the (small) query matrix.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.rows() * self.cols];
        self.read_rows_into(0, self.rows(), &mut out)?;
        Ok(out)
    }
}

fn names(schema: &Schema) -> String {
    let v: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect();
    v.join(", ")
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    )
}

fn pick_vector(path: &Path, schema: &Schema, name: Option<&str>) -> Result<(usize, Element)> {
    let i = match name {
        Some(n) => schema.index_of(n).map_err(|_| {
            Error::data(
                path,
                format!("no column named {n:?}; the columns are {}", names(schema)),
            )
        })?,
        None => {
            let lists: Vec<usize> = (0..schema.fields().len())
                .filter(|&i| is_list(schema.field(i).data_type()))
                .collect();
            match lists[..] {
                [i] => i,
                [] => {
                    return Err(Error::data(
                        path,
                        format!(
                            "no list column to read the vectors from; the columns are {}",
                            names(schema)
                        ),
                    ));
                }
                _ => {
                    let l: Vec<&str> = lists
                        .iter()
                        .map(|&i| schema.field(i).name().as_str())
                        .collect();
                    return Err(Error::data(
                        path,
                        format!(
                            "several list columns ({}) could hold the vectors; name the one to read",
                            l.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let f = schema.field(i);
    let item = match f.data_type() {
        DataType::List(c) | DataType::LargeList(c) | DataType::FixedSizeList(c, _) => c.data_type(),
        t => {
            return Err(Error::data(
                path,
                format!(
                    "column {:?} holds {t}; expected a list or fixed_size_list of float16, float32 or float64",
                    f.name()
                ),
            ));
        }
    };
    let element = match item {
        DataType::Float16 => Element::F16,
        DataType::Float32 => Element::F32,
        DataType::Float64 => Element::F64,
        t => {
            return Err(Error::data(
                path,
                format!(
                    "column {:?} holds lists of {t}; expected float16, float32 or float64 values",
                    f.name()
                ),
            ));
        }
    };
    Ok((i, element))
}

fn pick_id(
    path: &Path,
    schema: &Schema,
    name: Option<&str>,
    vector: usize,
) -> Result<Option<usize>> {
    match name {
        Some(n) => {
            let i = schema.index_of(n).map_err(|_| {
                Error::data(
                    path,
                    format!("no column named {n:?}; the columns are {}", names(schema)),
                )
            })?;
            if i == vector {
                return Err(Error::data(
                    path,
                    format!("column {n:?} holds the vectors; it cannot also hold the ids"),
                ));
            }
            Ok(Some(i))
        }
        None => Ok(["id", "_id"]
            .iter()
            .find_map(|n| schema.index_of(n).ok())
            .filter(|&i| i != vector)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::FixedSizeListArray;
    use arrow_schema::Field;
    use std::sync::Arc;

    #[test]
    fn ragged_rows_that_even_out_are_still_ragged() {
        // Rows of 2, 3 and 1 values: 6 = 3 x 2 values, but row 1 is wrong.
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(arrow_array::Float32Array::from(vec![1.0; 6]));
        let offsets = arrow_buffer::OffsetBuffer::from_lengths([2, 3, 1]);
        let emb = arrow_array::ListArray::new(item, offsets, values, None);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "emb",
            emb.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(emb)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let m = TableMatrix::open(&path, &Columns::default()).unwrap();
        assert!(m.fast_leaf.is_some());
        let e = m.read_all().unwrap_err();
        assert_eq!(e.row(), Some(1), "{e}");
        assert!(e.to_string().contains("has 3 values"), "{e}");
    }

    #[test]
    fn a_row_group_is_decoded_a_batch_at_a_time() {
        // One row group of 3 batches: reading it all never holds more than
        // one batch of values.
        let (rows, cols) = (3 * BATCH_ROWS, 2);
        let data: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(arrow_array::Float32Array::from(data.clone()));
        let emb = FixedSizeListArray::new(item, cols as i32, values, None);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "emb",
            emb.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(emb)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let file = File::create(&path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let m = TableMatrix::open(&path, &Columns::default()).unwrap();
        assert_eq!((m.rows(), m.cols(), m.starts.len()), (rows, cols, 2));
        let mut out = vec![0.0; 1000 * cols];
        let mut start = 0;
        while start < rows {
            let n = 1000.min(rows - start);
            m.read_rows_into(start, n, &mut out[..n * cols]).unwrap();
            assert_eq!(out[..n * cols], data[start * cols..(start + n) * cols]);
            // (The fast path's buffer grows by doubling: up to twice that.)
            let cur = m.cursor.lock().unwrap();
            assert!(cur.values.as_ref().map_or(0, |v| v.len()) <= BATCH_ROWS * cols);
            assert!(cur.owned.capacity() <= 2 * BATCH_ROWS * cols);
            start += n;
        }
    }
}
