//! Everything that touches files: `.npy` matrices, ids, qrels, dataset folders.
pub mod dataset;
pub mod ids;
pub mod npy;
pub mod qrels;
pub mod stream;
pub mod synth;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes a small file atomically: temporary file in the same directory,
/// then rename, so readers never see a partial file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp =
        partial_file(dir, "").map_err(|e| Error::io(path, "create a temporary file", e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(path, "write", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(path, "sync", e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "rename into place", e.error))?;
    Ok(())
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
