//! One error type for the whole crate, classified by who has to act on it.
//!
//! Scripts that drive nudge on cloud instances need to tell "you called me
//! wrong" from "your data is wrong" from "the machine failed", so every error
//! has a [`Kind`] (which the binary maps to a documented exit code). The
//! variants keep what a program needs to act on the error without parsing a
//! message: the file, the line or row, the ids, and the underlying
//! [`std::io::Error`] as the [`source`](std::error::Error::source).
//!
//! Messages say what is wrong and never name a command-line flag: the
//! `nudge` binary adds how to fix it with its own flags, and the Python
//! package with its own arguments.

use std::path::PathBuf;

/// Who has to fix the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller asked for something invalid: an option out of range,
    /// contradictory options, a missing input. (`nudge` exits 2.)
    Usage,
    /// The input data is malformed or inconsistent. (Exit 3.)
    Data,
    /// The run itself failed: I/O, GPU device, out of memory. (Exit 4.)
    Runtime,
    /// The caller cancelled the run (see [`crate::Cancel`]). (Exit 130.)
    Interrupted,
}

/// Which kind of id a qrels line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A query id (first column of a qrels line).
    Query,
    /// A corpus id (second column of a qrels line).
    Corpus,
}

impl IdKind {
    /// "query" or "corpus".
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Query => "query",
            IdKind::Corpus => "corpus",
        }
    }
}

/// Everything that can go wrong in nudge.
///
/// An input held in memory rather than in a file (a fit over arrays) is
/// named in `path` by what it is, e.g. `corpus` or `queries`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something invalid (an option out of range, two
    /// options that contradict each other). [`Kind::Usage`].
    #[error("{message}")]
    Invalid {
        /// What is wrong and what was expected.
        message: String,
    },

    /// A required input was not given. [`Kind::Usage`].
    #[error("no {what} given")]
    MissingInput {
        /// `corpus`, `queries`, ...
        what: &'static str,
    },

    /// A required split has no judgements: its qrels file does not exist
    /// ([`Kind::Data`] when a dataset folder was expected to hold it) or
    /// none was given ([`Kind::Usage`]).
    #[error("{}", missing_split(split, expected))]
    MissingSplit {
        /// `train`, `dev` or `test`.
        split: &'static str,
        /// The file the split was looked for in, if a dataset folder was given.
        expected: Option<PathBuf>,
    },

    /// An input is malformed: `path` (at `line` of a text file, or `row` of
    /// a matrix, where known) holds something other than what was expected.
    /// [`Kind::Data`].
    #[error("{}", at(path, *line, message))]
    Data {
        /// The file (or the in-memory input's name).
        path: PathBuf,
        /// 1-based line of a text file.
        line: Option<usize>,
        /// 0-based row of a matrix.
        row: Option<usize>,
        /// What is wrong and what was expected.
        message: String,
    },

    /// Inputs that are each well-formed but do not fit together (e.g. corpus
    /// and queries of different dimensions). [`Kind::Data`].
    #[error("{message}")]
    Inconsistent {
        /// What does not match.
        message: String,
    },

    /// A judgement names an id that is not in the ids. [`Kind::Data`].
    #[error("{}:{line}: unknown {} id {id:?} (not in the {} ids)", path.display(), what.as_str(), what.as_str())]
    UnknownId {
        /// The qrels file (for judgements given in memory, the split's name).
        path: PathBuf,
        /// 1-based line (for judgements given in memory, the 1-based
        /// position of the judgement).
        line: usize,
        /// Whether the query or the corpus id is unknown.
        what: IdKind,
        /// The id as written.
        id: String,
    },

    /// Corpus rows of zero norm, which cannot be normalised (a fit can keep
    /// them unmoved with [`crate::FitOptions::allow_zero_rows`]).
    /// [`Kind::Data`].
    #[error("{}: {}; they cannot be normalised", path.display(), zero_rows(rows))]
    ZeroRows {
        /// The corpus.
        path: PathBuf,
        /// The rows, ascending.
        rows: Vec<usize>,
    },

    /// Reading or writing a file failed. [`Kind::Runtime`].
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file (or directory).
        path: PathBuf,
        /// What was being done, e.g. `read`, `create a temporary file`.
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// An input file cannot be opened or read (it does not exist, or is not
    /// readable). [`Kind::Data`]: the input named is what has to change.
    #[error("{}: cannot {action}: {source}", path.display())]
    Unreadable {
        /// The input file.
        path: PathBuf,
        /// What was being done, e.g. `open`, `read ids file`.
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// No GPU adapter was found. [`Kind::Runtime`].
    #[error(
        "no GPU adapter found (wgpu saw no Vulkan device); install a GPU driver, or mesa-vulkan-drivers and libvulkan1 for the CPU-emulated lavapipe"
    )]
    NoAdapter,

    /// No adapter's name contains the one asked for. [`Kind::Usage`].
    #[error("no GPU adapter name contains {wanted:?}; adapters: {}", available.join(", "))]
    NoSuchAdapter {
        /// The text asked for.
        wanted: String,
        /// The adapters there are.
        available: Vec<String>,
    },

    /// The GPU failed: a lost device, an allocation, a wait that timed out.
    /// [`Kind::Runtime`].
    #[error("{message}")]
    Gpu {
        /// What failed.
        message: String,
    },

    /// Any other failure of the run. [`Kind::Runtime`].
    #[error("{message}")]
    Runtime {
        /// What failed.
        message: String,
    },

    /// The run was cancelled through its [`crate::Cancel`] token.
    /// [`Kind::Interrupted`].
    #[error("interrupted")]
    Interrupted,
}

fn missing_split(split: &str, expected: &Option<PathBuf>) -> String {
    match expected {
        Some(p) => format!(
            "{}: not found; the {split} split is required (expected query-id<TAB>corpus-id<TAB>score lines there)",
            p.display()
        ),
        None => format!("no {split} qrels given; the {split} split is required"),
    }
}

fn at(path: &std::path::Path, line: Option<usize>, message: &str) -> String {
    match line {
        Some(l) => format!("{}:{l}: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    }
}

fn zero_rows(rows: &[usize]) -> String {
    if rows.len() == 1 {
        format!("1 row has zero norm (row {})", rows[0])
    } else {
        format!(
            "{} rows have zero norm (rows {})",
            rows.len(),
            crate::data::list_rows(rows)
        )
    }
}

impl Error {
    /// Who has to act on this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid { .. } | Error::MissingInput { .. } | Error::NoSuchAdapter { .. } => {
                Kind::Usage
            }
            Error::MissingSplit { expected, .. } => {
                if expected.is_some() {
                    Kind::Data
                } else {
                    Kind::Usage
                }
            }
            Error::Data { .. }
            | Error::Inconsistent { .. }
            | Error::UnknownId { .. }
            | Error::ZeroRows { .. }
            | Error::Unreadable { .. } => Kind::Data,
            Error::Io { .. } | Error::NoAdapter | Error::Gpu { .. } | Error::Runtime { .. } => {
                Kind::Runtime
            }
            Error::Interrupted => Kind::Interrupted,
        }
    }

    /// The file (or in-memory input) the error is about, if it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Data { path, .. }
            | Error::UnknownId { path, .. }
            | Error::ZeroRows { path, .. }
            | Error::Io { path, .. }
            | Error::Unreadable { path, .. } => Some(path),
            Error::MissingSplit { expected, .. } => expected.as_deref(),
            _ => None,
        }
    }

    /// The 1-based line of a text file the error is about, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Data { line, .. } => *line,
            Error::UnknownId { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The 0-based matrix row the error is about, if known.
    pub fn row(&self) -> Option<usize> {
        match self {
            Error::Data { row, .. } => *row,
            Error::ZeroRows { rows, .. } => rows.first().copied(),
            _ => None,
        }
    }

    /// [`Error::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
        }
    }

    /// [`Error::Data`] about a whole file.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            line: None,
            row: None,
            message: message.into(),
        }
    }

    /// [`Error::Data`] at a 1-based line of a text file.
    pub fn data_line(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            line: Some(line),
            row: None,
            message: message.into(),
        }
    }

    /// [`Error::Data`] at a 0-based row of a matrix (the message says which
    /// row, in words that fit it).
    pub fn data_row(path: impl Into<PathBuf>, row: usize, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            line: None,
            row: Some(row),
            message: message.into(),
        }
    }

    /// [`Error::Inconsistent`].
    pub fn inconsistent(message: impl Into<String>) -> Self {
        Error::Inconsistent {
            message: message.into(),
        }
    }

    /// [`Error::Io`]: `action` failed on `path`.
    pub fn io(path: &std::path::Path, action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            action: action.into(),
            source,
        }
    }

    /// [`Error::Unreadable`]: `action` failed on the input `path`.
    pub fn unreadable(
        path: &std::path::Path,
        action: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Unreadable {
            path: path.to_path_buf(),
            action: action.into(),
            source,
        }
    }

    /// [`Error::Gpu`].
    pub fn gpu(message: impl Into<String>) -> Self {
        Error::Gpu {
            message: message.into(),
        }
    }

    /// [`Error::Runtime`].
    pub fn runtime(message: impl Into<String>) -> Self {
        Error::Runtime {
            message: message.into(),
        }
    }
}

/// `Result` with nudge's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
