//! Everything that touches files: `.npy` matrices, ids, qrels, dataset
//! folders, and the in-memory corpus a fit can read instead.
mod corpus;
pub mod dataset;
pub mod ids;
pub mod npy;
pub mod parquet_out;
pub mod qrels;
pub mod shards;
pub mod stream;
pub mod synth;
pub mod table;
pub mod text;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use corpus::{Corpus, MatrixFile};

/// "3, 17, 40 and 12 more": the first few of a list of rows, for messages.
pub fn list_rows(rows: &[usize]) -> String {
    let shown: Vec<String> = rows.iter().take(5).map(|r| r.to_string()).collect();
    let mut s = shown.join(", ");
    if rows.len() > 5 {
        s.push_str(&format!(" and {} more", rows.len() - 5));
    }
    s
}

/// A finished output in its temporary file (`.nudge-partial-*`, same
/// directory), not yet at its final path. [`Pending::commit`] renames it into
/// place; dropping it uncommitted removes the temporary file. A command with
/// several outputs stages them all and commits them together
/// ([`commit_all`]), so a failure while writing any of them leaves none.
pub struct Pending {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Pending {
    /// Syncs `tmp` to disk and holds it for `path`.
    pub fn new(path: &Path, tmp: tempfile::NamedTempFile) -> Result<Pending> {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(path, "sync", e))?;
        Ok(Pending {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file the content is in until the commit (to read a
    /// staged output back, e.g. to convert it to another format).
    pub fn staged_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the file into place, replacing any file there atomically.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tmp
            .persist(&path)
            .map_err(|e| Error::io(&path, "rename the finished file into place", e.error))?;
        Ok(())
    }
}

/// Commits staged outputs, unless the run was cancelled meanwhile.
pub fn commit_all(pending: Vec<Pending>, cancel: &crate::Cancel) -> Result<()> {
    cancel.check()?;
    for p in pending {
        p.commit()?;
    }
    Ok(())
}

/// A temporary file next to `path`, where its content is written first.
pub fn temp_beside(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    partial_file(dir, suffix).map_err(|e| {
        Error::io(
            path,
            format!("create a temporary file in {}", dir.display()),
            e,
        )
    })
}

/// Writes `bytes` to a temporary file next to `path`, staged for [`Pending::commit`].
pub fn stage_write(path: &Path, bytes: &[u8]) -> Result<Pending> {
    let mut tmp = temp_beside(path, "")?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(path, "write", e))?;
    Pending::new(path, tmp)
}

/// Writes a small file atomically: temporary file in the same directory,
/// then rename, so readers never see a partial file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    stage_write(path, bytes)?.commit()
}

/// A temporary file in `dir` that becomes an output by rename. Created with
/// mode 0666 (less the umask), as a plain `File::create` would be, rather
/// than tempfile's private 0600, since it ends up as the user's output.
pub fn partial_file(dir: &Path, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".nudge-partial-")
        .suffix(suffix)
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}
