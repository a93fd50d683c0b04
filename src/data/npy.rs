//! Reading and writing `.npy` matrices.
//!
//! Hand-written rather than taken from a crate because nudge needs three things
//! together that the npy crates do not offer: row-range reads straight out of a
//! memory map (a million-row corpus is streamed, never loaded whole), f16/f64
//! conversion on the fly, and error messages that name the file and say what
//! was expected. The format itself is small: a magic string, a Python-dict
//! header, then the raw C-order data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes per parallel read of a chunk of f32 rows: large enough that a
/// system call's cost vanishes, small enough to spread a 64 MiB chunk over
/// every core.
const READ_PIECE: usize = 4 << 20;

/// Element types nudge reads. Everything is converted to f32 on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Little-endian IEEE half precision (`<f2`).
    F16,
    /// Little-endian IEEE single precision (`<f4`).
    F32,
    /// Little-endian IEEE double precision (`<f8`).
    F64,
}

impl Dtype {
    /// The numpy name of the element type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Bytes per element on disk.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
    /// The numpy type string, e.g. `<f4`.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }
}

/// What the header of an `.npy` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Element type of the data.
    pub dtype: Dtype,
    /// First dimension of the shape.
    pub rows: usize,
    /// Second dimension of the shape (the embedding dimension).
    pub cols: usize,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

/// Parses the magic string and header dict of an `.npy` file from its first
/// bytes. `bytes` may be the whole file; only the header is looked at.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let (descr, rows, cols, data_offset) = parse_any(bytes)?;
    let dtype = match descr.as_str() {
        "<f4" | "=f4" => Dtype::F32,
        "<f2" | "=f2" => Dtype::F16,
        "<f8" | "=f8" => Dtype::F64,
        ">f4" | ">f2" | ">f8" => {
            return Err(format!(
                "big-endian dtype {descr:?} is not supported (expected little-endian float32 or float16; convert with arr.astype('<f4'))"
            ));
        }
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (expected float32 '<f4' or float16 '<f2', or float64 '<f8' which is converted; integer embeddings are refused)"
            ));
        }
    };
    Ok(Header {
        dtype,
        rows,
        cols,
        data_offset,
    })
}

/// The header of a 2-d C-order `.npy` of any element type: its type string,
/// rows, columns and the byte offset of the data.
fn parse_any(bytes: &[u8]) -> std::result::Result<(String, usize, usize, usize), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 {
        return Err(format!(
            "file is {} bytes long, too short to be a .npy file (expected the \\x93NUMPY magic and a header)",
            bytes.len()
        ));
    }
    if &bytes[..6] != MAGIC {
        return Err("not a .npy file: it does not start with the \\x93NUMPY magic string".into());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(format!(
                "unsupported .npy format version {v} (expected 1, 2 or 3)"
            ));
        }
    };
    let end = header_start
        .checked_add(header_len)
        .ok_or("header length overflows")?;
    if bytes.len() < end {
        return Err(format!(
            "truncated .npy header: it announces {header_len} header bytes but the file ends first"
        ));
    }
    let text = std::str::from_utf8(&bytes[header_start..end])
        .map_err(|_| "the .npy header is not valid text".to_string())?;

    let descr = dict_value(text, "descr")?;
    let descr = parse_quoted(descr)
        .ok_or_else(|| format!("malformed 'descr' in header {text:?}"))?
        .to_string();
    let fortran = dict_value(text, "fortran_order")?;
    if fortran.starts_with("True") {
        return Err(
            "array is in Fortran (column-major) order; expected C order (save it with np.ascontiguousarray)".into(),
        );
    } else if !fortran.starts_with("False") {
        return Err(format!("malformed 'fortran_order' in header {text:?}"));
    }
    let shape = dict_value(text, "shape")?;
    let dims = parse_shape(shape).ok_or_else(|| format!("malformed 'shape' in header {text:?}"))?;
    if dims.len() != 2 {
        return Err(format!(
            "array has rank {} (shape {:?}); expected a 2-d matrix of rows x dimensions",
            dims.len(),
            dims
        ));
    }
    Ok((descr, dims[0], dims[1], end))
}

/// A `rows x cols` matrix of u32 as a whole `.npy` file (`<u4`): how a fit's
/// partial stores record rows, readable by `numpy.load`.
pub fn u32_npy_bytes(data: &[u32], cols: usize) -> Vec<u8> {
    let rows = data.len().checked_div(cols).unwrap_or(0);
    let mut header =
        format!("{{'descr': '<u4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Version 1.0, the header padded so the data starts on 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytemuck::cast_slice(data));
    out
}

/// Reads a whole `<u4` `.npy` file written by [`u32_npy_bytes`] (or numpy):
/// its values, rows and columns. A data error naming `path` if it is not
/// one.
pub fn read_u32(path: &Path) -> Result<(Vec<u32>, usize, usize)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    let (descr, rows, cols, offset) = parse_any(&bytes).map_err(|m| Error::data(path, m))?;
    if descr != "<u4" && descr != "=u4" {
        return Err(Error::data(
            path,
            format!("dtype {descr:?}: expected uint32 '<u4'"),
        ));
    }
    let want = rows * cols * 4;
    if bytes.len() - offset != want {
        return Err(Error::data(
            path,
            format!(
                "holds {} data bytes; its header ({rows} x {cols} uint32) announces {want}",
                bytes.len() - offset
            ),
        ));
    }
    let data = bytes[offset..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((data, rows, cols))
}

/// The text after `'key':` up to the end of the dict.
fn dict_value<'a>(text: &'a str, key: &str) -> std::result::Result<&'a str, String> {
    for quote in ['\'', '"'] {
        let pat = format!("{quote}{key}{quote}");
        if let Some(pos) = text.find(&pat) {
            let rest = text[pos + pat.len()..].trim_start();
            if let Some(rest) = rest.strip_prefix(':') {
                return Ok(rest.trim_start());
            }
        }
    }
    Err(format!("the .npy header has no '{key}' entry: {text:?}"))
}

fn parse_quoted(s: &str) -> Option<&str> {
    let q = s.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let end = s[1..].find(q)?;
    Some(&s[1..1 + end])
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let s = s.strip_prefix('(')?;
    let end = s.find(')')?;
    let mut dims = Vec::new();
    for part in s[..end].split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        dims.push(part.trim_end_matches('L').parse().ok()?);
    }
    Some(dims)
}

/// An `.npy` matrix on disk, read in row ranges.
///
/// Positional reads into a reusable buffer rather than a memory map: pages of
/// a mapped file count towards the process's resident memory, and a fit must
/// stay within a bounded footprint however large the corpus is.
pub struct NpyMatrix {
    path: PathBuf,
    header: Header,
    file: File,
}

impl NpyMatrix {
    /// Opens and validates `path`: header, dtype, rank and that the file holds
    /// every element the header promises.
    pub fn open(path: &Path) -> Result<NpyMatrix> {
        let file = File::open(path).map_err(|e| Error::unreadable(path, "open", e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if meta.is_dir() {
            return Err(Error::data(path, "is a directory; expected a .npy file"));
        }
        let len = meta.len();
        if len == 0 {
            return Err(Error::data(path, "file is empty; expected a .npy matrix"));
        }
        let mut head = vec![0u8; len.min(1 << 16) as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, "read", e))?;
        let header = parse_header(&head).map_err(|e| Error::data(path, e))?;
        let need = header
            .rows
            .checked_mul(header.cols)
            .and_then(|n| n.checked_mul(header.dtype.size()))
            .and_then(|n| n.checked_add(header.data_offset))
            .ok_or_else(|| Error::data(path, "shape in header is too large"))?;
        if len < need as u64 {
            return Err(Error::data(
                path,
                format!(
                    "truncated: header says {} x {} {} ({} bytes of data) but the file holds only {} bytes of data",
                    header.rows,
                    header.cols,
                    header.dtype.descr(),
                    need - header.data_offset,
                    len - header.data_offset as u64
                ),
            ));
        }
        Ok(NpyMatrix {
            path: path.to_path_buf(),
            header,
            file,
        })
    }

    /// The file this matrix was opened from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of rows, from the header.
    pub fn rows(&self) -> usize {
        self.header.rows
    }
    /// Number of columns, from the header.
    pub fn cols(&self) -> usize {
        self.header.cols
    }
    /// Element type on disk (rows are converted to f32 when read).
    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    /// Converts rows `start..start+count` to f32 into `out` (resized to fit).
    pub fn read_rows(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        let len = count * self.header.cols;
        if out.capacity() < len {
            // A fresh zeroed allocation rather than `resize`: the pages come
            // from the kernel zeroed and are faulted in by the parallel
            // reads below, not first filled with zeros on this thread alone
            // (a query matrix of tldr's 28 MB: 3-5 ms of a 150 ms fit).
            *out = vec![0.0; len];
        }
        out.resize(len, 0.0);
        self.read_rows_into(start, count, &mut Vec::new(), out)
    }

    /// Converts rows `start..start+count` to f32 into `out`, which holds
    /// exactly that many values; `raw` is the byte buffer for dtypes other
    /// than little-endian f32.
    pub fn read_rows_into(
        &self,
        start: usize,
        count: usize,
        raw: &mut Vec<u8>,
        out: &mut [f32],
    ) -> Result<()> {
        let cols = self.header.cols;
        assert_eq!(out.len(), count * cols, "read_rows_into: buffer size");
        let size = self.header.dtype.size();
        let begin = self.header.data_offset + start * cols * size;
        #[cfg(target_endian = "little")]
        if self.header.dtype == Dtype::F32 {
            // Straight into the f32 buffer: no byte buffer, no conversion.
            return self.read_bytes_at(bytemuck::cast_slice_mut(out), begin, start, count);
        }
        raw.resize(count * cols * size, 0);
        self.read_bytes_at(raw, begin, start, count)?;
        // Converted in parallel blocks too: one core widens f16 at about
        // the speed it reads.
        use rayon::prelude::*;
        const VALUES: usize = 1 << 18;
        let pieces = out
            .par_chunks_mut(VALUES)
            .zip(raw.par_chunks(VALUES * size));
        match self.header.dtype {
            Dtype::F32 => pieces.for_each(|(out, bytes)| {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }),
            Dtype::F16 => pieces.for_each(|(out, bytes)| {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }),
            Dtype::F64 => pieces.for_each(|(out, bytes)| {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    *o = f64::from_le_bytes(b.try_into().unwrap()) as f32;
                }
            }),
        }
        Ok(())
    }

    /// Rows `start..start+count` of an f16 file as stored, into `out`
    /// (exactly that many values): what the GPU's f16 scan uploads, with
    /// no trip through f32. A usage error on a file of another dtype.
    pub fn read_rows_f16_into(
        &self,
        start: usize,
        count: usize,
        out: &mut [half::f16],
    ) -> Result<()> {
        let cols = self.header.cols;
        assert_eq!(out.len(), count * cols, "read_rows_f16_into: buffer size");
        if self.header.dtype != Dtype::F16 {
            return Err(Error::invalid(format!(
                "{}: rows are {}, not float16",
                self.path.display(),
                self.header.dtype.name()
            )));
        }
        let begin = self.header.data_offset + start * cols * 2;
        self.read_bytes_at(bytemuck::cast_slice_mut(out), begin, start, count)?;
        // The file is little-endian; so are the halves everywhere else.
        #[cfg(target_endian = "big")]
        for x in out.iter_mut() {
            *x = half::f16::from_bits(u16::from_le(x.to_bits()));
        }
        Ok(())
    }

    /// Reads `bytes.len()` bytes at `begin` (rows `start..start+count`, for
    /// the error), in pieces read in parallel: one core's copy out of the
    /// page cache (5-8 GB/s) is slower than a GPU's bus and than the
    /// memory behind it.
    fn read_bytes_at(
        &self,
        bytes: &mut [u8],
        begin: usize,
        start: usize,
        count: usize,
    ) -> Result<()> {
        use rayon::prelude::*;
        bytes
            .par_chunks_mut(READ_PIECE)
            .enumerate()
            .try_for_each(|(i, piece)| {
                self.file
                    .read_exact_at(piece, (begin + i * READ_PIECE) as u64)
            })
            .map_err(|e| self.read_error(start, count, e))
    }

    fn read_error(&self, start: usize, count: usize, e: std::io::Error) -> Error {
        Error::io(
            &self.path,
            format!("read rows {start}..{}", start + count),
            e,
        )
    }

    /// The whole matrix as f32; for the (small) query matrix.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.read_rows(0, self.rows(), &mut out)?;
        Ok(out)
    }

    /// Index of the first row holding a NaN or infinity, with its column.
    pub fn first_non_finite(data: &[f32], cols: usize) -> Option<(usize, usize)> {
        // Blocks checked with `all_finite`, which vectorises (a `position`
        // stops at every element to ask whether to go on, and does not);
        // only a block that fails is searched.
        const BLOCK: usize = 4096;
        let (b, block) = data
            .chunks(BLOCK)
            .enumerate()
            .find(|(_, c)| !crate::matrix::all_finite(c))?;
        let i = b * BLOCK + block.iter().position(|x| !x.is_finite())?;
        Some((i / cols, i % cols))
    }
}

/// Output element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutDtype {
    /// Single precision (`<f4`), exact.
    F32,
    /// Half precision (`<f2`): half the size, rounded from f32.
    F16,
}

/// Streams rows into an `.npy` file that appears at its final path only when
/// complete: rows go to a temporary file in the same directory, renamed into
/// place by [`NpyWriter::finish`]. Dropping the writer early removes the
/// temporary file, so a failed run never leaves a partial output.
pub struct NpyWriter {
    path: PathBuf,
    rows: usize,
    cols: usize,
    written: usize,
    dtype: OutDtype,
    out: BufWriter<tempfile::NamedTempFile>,
    bytes: Vec<u8>,
    /// Byte offset of the first row (the header's length).
    data_offset: u64,
    /// Bytes handed to the kernel so far, and how far writeback was started.
    sent: u64,
    flushed: u64,
    /// Whether writeback is started as the rows come (for a file that will
    /// be synced; see [`NpyWriter::write_rows`]).
    early_writeback: bool,
}

/// Start writeback every this many bytes (see [`NpyWriter::write_rows`]).
const WRITEBACK_STEP: u64 = 1 << 20;

impl NpyWriter {
    /// Starts a `rows x cols` matrix of `dtype` destined for `path`: writes
    /// the header to a temporary file beside it. Exactly `rows` rows must be
    /// written before [`NpyWriter::finish`].
    pub fn create(path: &Path, rows: usize, cols: usize, dtype: OutDtype) -> Result<NpyWriter> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = super::partial_file(dir, ".npy").map_err(|e| {
            Error::io(
                path,
                format!("create a temporary file in {}", dir.display()),
                e,
            )
        })?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        let descr = match dtype {
            OutDtype::F32 => Dtype::F32.descr(),
            OutDtype::F16 => Dtype::F16.descr(),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
        // Pad so that magic + len + header + '\n' is a multiple of 64 bytes,
        // as numpy does; keeps the data aligned for memory-mapped readers.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut prefix = b"\x93NUMPY\x01\x00".to_vec();
        prefix.extend_from_slice(&(header.len() as u16).to_le_bytes());
        prefix.extend_from_slice(header.as_bytes());
        out.write_all(&prefix)
            .map_err(|e| Error::io(path, "write", e))?;
        Ok(NpyWriter {
            path: path.to_path_buf(),
            rows,
            cols,
            written: 0,
            dtype,
            out,
            bytes: Vec::new(),
            data_offset: prefix.len() as u64,
            sent: 0,
            flushed: 0,
            early_writeback: true,
        })
    }

    /// Encodes rows in the output element type.
    fn encode<'a>(dtype: OutDtype, data: &'a [f32], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match dtype {
            // .npy '<f4' is little-endian, as is every target nudge builds for.
            #[cfg(target_endian = "little")]
            OutDtype::F32 => bytemuck::cast_slice(data),
            #[cfg(not(target_endian = "little"))]
            OutDtype::F32 => {
                scratch.clear();
                data.iter()
                    .for_each(|x| scratch.extend_from_slice(&x.to_le_bytes()));
                scratch
            }
            OutDtype::F16 => {
                scratch.clear();
                data.iter().for_each(|x| {
                    scratch.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes())
                });
                scratch
            }
        }
    }

    /// Overwrites rows already written: `rows[i]` (ascending or not) gets row
    /// `i` of `data`. For filling in the moved records after a pass that
    /// wrote every row as it was read.
    pub fn patch_rows(&mut self, rows: &[u32], data: &[f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.out
            .flush()
            .map_err(|e| Error::io(&self.path, "write", e))?;
        let cols = self.cols;
        let size = match self.dtype {
            OutDtype::F32 => 4,
            OutDtype::F16 => 2,
        };
        // One write per run of consecutive rows (up to about 4 MiB), not
        // one per row: most fits move rows in runs, and a write call per
        // 1.5 KiB row cost more than the data it wrote.
        let max_run = ((4usize << 20) / (cols * size).max(1)).max(1);
        let mut i = 0;
        while i < rows.len() {
            let r = rows[i];
            let mut run = 1;
            while run < max_run
                && i + run < rows.len()
                && rows[i + run] as usize == r as usize + run
            {
                run += 1;
            }
            assert!(
                r as usize + run <= self.written,
                "patching a row not yet written"
            );
            let bytes = Self::encode(
                self.dtype,
                &data[i * cols..(i + run) * cols],
                &mut self.bytes,
            );
            i += run;
            let at = self.data_offset + (r as usize * cols * size) as u64;
            self.out
                .get_ref()
                .as_file()
                .write_all_at(bytes, at)
                .map_err(|e| Error::io(&self.path, "write", e))?;
        }
        Ok(())
    }

    /// For a file that will not be synced ([`crate::data::Durability`]):
    /// no early writeback, which would only put the disk's work on this
    /// process; the kernel writes the file back in its own time.
    pub fn unsynced(mut self) -> NpyWriter {
        self.early_writeback = false;
        self
    }

    /// Appends whole rows (row-major, `cols` values each).
    pub fn write_rows(&mut self, data: &[f32]) -> Result<()> {
        debug_assert_eq!(data.len() % self.cols.max(1), 0);
        let mut scratch = std::mem::take(&mut self.bytes);
        let bytes = Self::encode(self.dtype, data, &mut scratch);
        // The output is synced before it is renamed into place. Starting the
        // disk on each MiB as soon as it is handed over, rather than all in
        // that final sync, lets the disk work while the rest is copied (and,
        // streamed, while later chunks are read and normalised): on a 1.5 GB
        // corpus the final sync otherwise costs as much as the whole pass,
        // and writing SciFact's 8 MB in one piece and then syncing took
        // 7.8 ms against 6.1 ms in 1 MiB pieces.
        let mut result = Ok(());
        for piece in bytes.chunks(WRITEBACK_STEP as usize) {
            if let Err(e) = self.out.write_all(piece) {
                result = Err(Error::io(&self.path, "write", e));
                break;
            }
            self.sent += piece.len() as u64;
            if self.early_writeback && self.sent - self.flushed >= WRITEBACK_STEP {
                self.writeback(self.data_offset + self.flushed, self.sent - self.flushed);
                self.flushed = self.sent;
            }
        }
        self.bytes = scratch;
        result?;
        self.written += data.len() / self.cols.max(1);
        Ok(())
    }

    /// Hands everything written so far to the kernel and starts the disk
    /// on all of it, without waiting: the final sync then has less to do.
    pub fn start_writeback(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io(&self.path, "write", e))?;
        if self.early_writeback {
            self.writeback(0, 0); // 0 bytes: to the end of the file
        }
        Ok(())
    }

    /// Starts writeback of `len` bytes at file offset `offset` (`len` 0:
    /// to the end of the file).
    fn writeback(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            let fd = std::os::unix::io::AsRawFd::as_raw_fd(self.out.get_ref().as_file());
            // SAFETY: a hint to the kernel on our own open file; a failure
            // only means the final sync does all the work.
            unsafe {
                libc::sync_file_range(
                    fd,
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(self) -> Result<()> {
        self.finish_staged()?.commit()
    }

    /// Flushes the file to the kernel but leaves it at its temporary path
    /// (synced at its commit), for a command that commits several outputs
    /// together.
    pub fn finish_staged(self) -> Result<crate::data::Pending> {
        // Callers write every row they declared: a broken invariant, not
        // an input error.
        assert_eq!(
            self.written,
            self.rows,
            "{}: rows written and rows in the header differ",
            self.path.display()
        );
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, "write", e.into_error()))?;
        crate::data::Pending::new(&self.path, tmp)
    }
}

/// Writes a whole matrix atomically.
pub fn write_matrix(path: &Path, data: &[f32], cols: usize, dtype: OutDtype) -> Result<()> {
    stage_matrix(path, data, cols, dtype)?.commit()
}

/// Writes a whole matrix to a temporary file next to `path`, to be committed.
pub fn stage_matrix(
    path: &Path,
    data: &[f32],
    cols: usize,
    dtype: OutDtype,
) -> Result<crate::data::Pending> {
    let rows = data.len().checked_div(cols).unwrap_or(0);
    let mut w = NpyWriter::create(path, rows, cols, dtype)?;
    w.write_rows(data)?;
    w.finish_staged()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_a_numpy_written_header() {
        let bytes = npy_bytes("<f4", false, "(3, 2)", &[]);
        let h = parse_header(&bytes).unwrap();
        assert_eq!(
            (h.dtype, h.rows, h.cols, h.data_offset),
            (Dtype::F32, 3, 2, bytes.len())
        );
        assert_eq!(h.data_offset % 64, 0);
        let h = parse_header(&npy_bytes("<f2", false, "(10, 7)", &[])).unwrap();
        assert_eq!((h.dtype, h.rows, h.cols), (Dtype::F16, 10, 7));
    }

    #[test]
    fn refuses_what_nudge_cannot_read() {
        let err = |b: Vec<u8>| parse_header(&b).unwrap_err();
        assert!(err(npy_bytes("<f4", true, "(3, 2)", &[])).contains("Fortran"));
        assert!(err(npy_bytes("<i8", false, "(3, 2)", &[])).contains("\"<i8\" is not supported"));
        assert!(err(npy_bytes(">f4", false, "(3, 2)", &[])).contains("big-endian"));
        assert!(err(npy_bytes("<f4", false, "(6,)", &[])).contains("rank 1"));
        assert!(err(npy_bytes("<f4", false, "(1, 2, 3)", &[])).contains("rank 3"));
        assert!(err(b"PK\x03\x04 not numpy at all".to_vec()).contains("magic"));
        assert!(err(b"\x93NUM".to_vec()).contains("too short"));
        let mut v = npy_bytes("<f4", false, "(3, 2)", &[]);
        v.truncate(30);
        assert!(err(v).contains("truncated"));
    }

    #[test]
    fn round_trips_and_detects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let data: Vec<f32> = (0..12).map(|x| x as f32 * 0.5).collect();
        write_matrix(&p, &data, 4, OutDtype::F32).unwrap();
        let m = NpyMatrix::open(&p).unwrap();
        assert_eq!((m.rows(), m.cols()), (3, 4));
        let mut rows = Vec::new();
        m.read_rows(1, 2, &mut rows).unwrap();
        assert_eq!(rows, &data[4..]);
        write_matrix(&p, &data, 4, OutDtype::F16).unwrap();
        assert_eq!(NpyMatrix::open(&p).unwrap().read_all().unwrap(), data);

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        // Truncated and empty files are data errors about that file.
        for bytes in [&bytes[..bytes.len() - 3], &b""[..]] {
            std::fs::write(&p, bytes).unwrap();
            let e = NpyMatrix::open(&p).err().unwrap();
            assert!(matches!(e, Error::Data { .. }), "{e:?}");
            assert_eq!(e.path(), Some(p.as_path()));
        }
    }

    #[test]
    fn rows_read_in_parallel_pieces_are_the_rows() {
        // Over three read pieces, from a row that starts inside one piece
        // and ends inside another (rows of 7 floats never align with a
        // 4 MiB piece), and a read that fails in its last piece only.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let cols = 7;
        let rows = 3 * READ_PIECE / (4 * cols) + 5;
        // Values f16 holds exactly, so that both dtypes read back the same.
        let data: Vec<f32> = (0..rows * cols)
            .map(|x| (x % 1000) as f32 * 0.25 - 3.0)
            .collect();
        let (start, count) = (11, rows - 11);
        let want = &data[start * cols..(start + count) * cols];
        // f16: read and widened in parallel pieces, or read as stored.
        write_matrix(&p, &data, cols, OutDtype::F16).unwrap();
        let m = NpyMatrix::open(&p).unwrap();
        let mut out = vec![f32::NAN; count * cols];
        m.read_rows_into(start, count, &mut Vec::new(), &mut out)
            .unwrap();
        assert!(out == want);
        let mut halves = vec![half::f16::NAN; count * cols];
        m.read_rows_f16_into(start, count, &mut halves).unwrap();
        assert!(halves.iter().map(|h| h.to_f32()).eq(want.iter().copied()));
        write_matrix(&p, &data, cols, OutDtype::F32).unwrap();
        let m = NpyMatrix::open(&p).unwrap();
        assert!(m.read_rows_f16_into(start, count, &mut halves).is_err());
        let mut out = vec![f32::NAN; count * cols];
        m.read_rows_into(start, count, &mut Vec::new(), &mut out)
            .unwrap();
        assert!(out == want);
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 4)
            .unwrap();
        let e = m
            .read_rows_into(start, count, &mut Vec::new(), &mut out)
            .unwrap_err();
        assert_eq!(e.path(), Some(p.as_path()));
        assert!(
            e.to_string().contains(&format!("read rows {start}..")),
            "{e}"
        );
    }

    #[test]
    fn f64_is_converted() {
        let data: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npy");
        std::fs::write(&p, npy_bytes("<f8", false, "(1, 2)", &data)).unwrap();
        assert_eq!(
            NpyMatrix::open(&p).unwrap().read_all().unwrap(),
            vec![1.5, -2.0]
        );
    }

    #[test]
    fn failed_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.npy");
        let mut w = NpyWriter::create(&p, 2, 2, OutDtype::F32).unwrap();
        w.write_rows(&[1.0, 2.0]).unwrap();
        // Finishing short of the header's rows is a caller's bug: it panics,
        // and the unwinding removes the temporary file.
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.finish()));
        assert!(finished.is_err(), "finishing a short file must panic");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
