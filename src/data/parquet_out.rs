//! Writing embeddings as Parquet: `(id, vector)` rows, the id a string and
//! the vector a `fixed_size_list<float32>` (or `<float16>`), which pyarrow,
//! polars, DuckDB and LanceDB read as a fixed-width embedding column.
//!
//! Rows stream through: row groups are cut at about 64 MiB of vectors, so
//! the writer never holds more than one of them, however large the output.
//! The file is a temporary one beside its path until the caller commits the
//! [`Pending`] it is staged as, so a failed run leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float16Array, Float32Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::data::Pending;
use crate::data::npy::OutDtype;
use crate::error::{Error, Result};

/// Bytes of vectors per row group: bounds the writer's memory (it buffers a
/// row group) while keeping row groups large enough to read fast.
const GROUP_BYTES: usize = 64 << 20;

/// The id column's name.
pub const ID_COLUMN: &str = "id";
/// The vector column's name.
pub const VECTOR_COLUMN: &str = "vector";

/// A Parquet file being written (see the module doc).
pub struct ParquetOut {
    path: PathBuf,
    cols: usize,
    dtype: OutDtype,
    schema: SchemaRef,
    item: Arc<Field>,
    writer: ArrowWriter<std::fs::File>,
    tmp: tempfile::NamedTempFile,
}

impl ParquetOut {
    /// Starts a Parquet file of `cols`-wide vectors of `dtype`, destined for
    /// `path` (a temporary file beside it until committed).
    pub fn create(path: &Path, cols: usize, dtype: OutDtype) -> Result<ParquetOut> {
        let tmp = crate::data::temp_beside(path, ".parquet")?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io(path, "open the temporary file", e))?;
        let element = match dtype {
            OutDtype::F32 => DataType::Float32,
            OutDtype::F16 => DataType::Float16,
        };
        let item = Arc::new(Field::new("item", element, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(
                VECTOR_COLUMN,
                DataType::FixedSizeList(item.clone(), cols as i32),
                false,
            ),
        ]));
        let width = match dtype {
            OutDtype::F32 => 4,
            OutDtype::F16 => 2,
        };
        // Vectors neither repeat nor sort: a dictionary and min/max
        // statistics would cost time and bytes for nothing.
        let vec_path = ColumnPath::new(vec![
            VECTOR_COLUMN.to_string(),
            "list".to_string(),
            "item".to_string(),
        ]);
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some((GROUP_BYTES / (cols.max(1) * width)).max(1)))
            .set_column_dictionary_enabled(vec_path.clone(), false)
            .set_column_statistics_enabled(
                vec_path,
                parquet::file::properties::EnabledStatistics::None,
            )
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            Error::runtime(format!(
                "{}: cannot start Parquet file: {e}",
                path.display()
            ))
        })?;
        Ok(ParquetOut {
            path: path.to_path_buf(),
            cols,
            dtype,
            schema,
            item,
            writer,
            tmp,
        })
    }

    /// Appends rows: `ids` (one per row) and their `rows x cols` values.
    pub fn write<S: AsRef<str>>(&mut self, ids: &[S], values: &[f32]) -> Result<()> {
        assert_eq!(ids.len() * self.cols, values.len(), "one id per row");
        let values: ArrayRef = match self.dtype {
            OutDtype::F32 => Arc::new(Float32Array::from(values.to_vec())),
            OutDtype::F16 => Arc::new(Float16Array::from_iter_values(
                values.iter().map(|&x| half::f16::from_f32(x)),
            )),
        };
        let vectors = FixedSizeListArray::new(self.item.clone(), self.cols as i32, values, None);
        let ids = StringArray::from_iter_values(ids.iter().map(AsRef::as_ref));
        let batch =
            RecordBatch::try_new(self.schema.clone(), vec![Arc::new(ids), Arc::new(vectors)])
                .map_err(|e| Error::runtime(format!("{}: {e}", self.path.display())))?;
        self.writer.write(&batch).map_err(|e| self.error(e))
    }

    fn error(&self, e: parquet::errors::ParquetError) -> Error {
        match e {
            parquet::errors::ParquetError::External(x) => match x.downcast::<std::io::Error>() {
                Ok(io) => Error::io(&self.path, "write", *io),
                Err(x) => Error::runtime(format!("{}: cannot write: {x}", self.path.display())),
            },
            e => Error::runtime(format!("{}: cannot write: {e}", self.path.display())),
        }
    }

    /// Writes the footer, syncs the file and stages it for
    /// [`crate::data::commit_all`].
    pub fn finish_staged(self) -> Result<Pending> {
        let ParquetOut {
            path, writer, tmp, ..
        } = self;
        writer.close().map_err(|e| {
            Error::runtime(format!(
                "{}: cannot finish the Parquet file: {e}",
                path.display()
            ))
        })?;
        Pending::new(&path, tmp)
    }
}

/// Writes a whole matrix and its ids as a Parquet file, staged.
pub fn stage_matrix<S: AsRef<str>>(
    path: &Path,
    ids: &[S],
    data: &[f32],
    cols: usize,
    dtype: OutDtype,
) -> Result<Pending> {
    let mut w = ParquetOut::create(path, cols, dtype)?;
    // Batches of at most a row group, so the writer's buffer stays one.
    let step = (GROUP_BYTES / (cols.max(1) * 4)).max(1);
    for (i, chunk) in ids.chunks(step).enumerate() {
        let at = i * step * cols;
        w.write(chunk, &data[at..at + chunk.len() * cols])?;
    }
    w.finish_staged()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn vectors_round_trip_without_a_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let data: Vec<f32> = (0..30).map(|i| i as f32 * 0.5).collect();
        let ids: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        for dtype in [OutDtype::F32, OutDtype::F16] {
            stage_matrix(&path, &ids, &data, 3, dtype)
                .unwrap()
                .commit()
                .unwrap();
            let t = crate::data::table::TableMatrix::open(&path, &Default::default()).unwrap();
            assert_eq!(t.id_names().unwrap(), &ids[..]);
            // Halves of small integers are exact in f16 too.
            assert_eq!(t.read_all().unwrap(), data);
            // The vector column's path is the one the properties name.
            let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let col = r.metadata().row_group(0).column(1);
            assert_eq!(col.column_path().string(), "vector.list.item");
            assert!(col.dictionary_page_offset().is_none());
        }
    }
}
