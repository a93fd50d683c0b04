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

/// Whether an output is flushed to the disk before it is renamed into
/// place. Either way the rename is atomic, so a failed or interrupted run
/// leaves no partial file; the difference is what a power loss or kernel
/// crash soon after the run can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fsync` each file before its rename, so that once the command has
    /// returned neither a power loss nor a kernel crash can lose or
    /// truncate it. It costs what the disk takes to flush: 10-20 ms for
    /// the 5-10 MB outputs of the small datasets on a cloud VM's disk,
    /// about as long as the search at 1M records.
    #[default]
    Synced,
    /// Rename without `fsync`, as numpy's `save` or `cp` do: the kernel
    /// writes the file back in its own time. Write errors the kernel
    /// reports when the file is closed (NFS flushes then) still fail the
    /// command before the rename. For outputs that are read or uploaded
    /// right away, or can simply be computed again. (On ext4, renaming
    /// over an existing file starts the new one's writeback anyway, so a
    /// large output that replaces another gains little.)
    Unsynced,
}

impl Durability {
    /// `Synced` when `sync`, else `Unsynced`: what a yes/no setting (the
    /// CLI's `--no-sync`, Python's `sync=`) asks for.
    pub fn from_sync(sync: bool) -> Durability {
        if sync {
            Durability::Synced
        } else {
            Durability::Unsynced
        }
    }
}

/// A finished output in its temporary file (`.nudge-partial-*`, same
/// directory), not yet at its final path. [`Pending::commit`] (or
/// [`commit_all`]) flushes it as asked and renames it into place; dropping
/// it uncommitted removes the temporary file. A command with several
/// outputs stages them all and commits them together ([`commit_all`]), so
/// a failure while writing any of them leaves none.
pub struct Pending {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    /// Whether [`Pending::flush`] has run (it runs once).
    flushed: bool,
}

impl Pending {
    /// Holds `tmp`, whose content is complete, for `path`.
    pub fn new(path: &Path, tmp: tempfile::NamedTempFile) -> Result<Pending> {
        Ok(Pending {
            path: path.to_path_buf(),
            tmp,
            flushed: false,
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

    /// Makes the content as durable as `durability` asks (`fsync`, or the
    /// write errors a close would report), or fails naming the final path.
    /// The first call does it, later ones (and the commit's) have nothing
    /// left to do: a command flushes its large outputs early to time it.
    pub fn flush(&mut self, durability: Durability) -> Result<()> {
        if self.flushed {
            return Ok(());
        }
        let file = self.tmp.as_file();
        match durability {
            Durability::Synced => file
                .sync_all()
                .map_err(|e| Error::io(&self.path, "sync", e))?,
            Durability::Unsynced => {
                close_errors(file).map_err(|e| Error::io(&self.path, "write", e))?
            }
        }
        self.flushed = true;
        Ok(())
    }

    /// Syncs the file to disk (unless [`Pending::flush`] has already
    /// flushed it as its caller asked) and renames it into place, replacing
    /// any file there atomically.
    pub fn commit(mut self) -> Result<()> {
        self.flush(Durability::Synced)?;
        self.rename()
    }

    fn rename(self) -> Result<()> {
        let path = self.path;
        self.tmp
            .persist(&path)
            .map_err(|e| Error::io(&path, "rename the finished file into place", e.error))?;
        Ok(())
    }
}

/// The errors closing `file` would report, without closing it: a
/// duplicate of its descriptor is closed instead, which runs the
/// filesystem's flush as every close does (NFS writes the file back
/// there and reports what failed; a local filesystem has nothing to do).
/// Rust's `File` ignores the errors of the close in its `drop`.
#[cfg(unix)]
fn close_errors(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let dup = file.as_fd().try_clone_to_owned()?;
    let fd = std::os::fd::IntoRawFd::into_raw_fd(dup);
    // SAFETY: `fd` is a descriptor this function owns and closes once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn close_errors(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Commits staged outputs, unless the run was cancelled meanwhile: every
/// file is flushed as `durability` asks before any is renamed into place,
/// so a failure on any of them leaves none.
pub fn commit_all(
    mut pending: Vec<Pending>,
    cancel: &crate::Cancel,
    durability: Durability,
) -> Result<()> {
    for p in &mut pending {
        p.flush(durability)?;
    }
    cancel.check()?;
    for p in pending {
        p.rename()?;
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
