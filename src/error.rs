//! One error type for the whole crate, classified by who has to act on it.
//!
//! Scripts that drive nudge on cloud instances need to tell "you called me
//! wrong" from "your data is wrong" from "the machine failed", so every error
//! carries a [`Kind`] that maps to a documented exit code (see README).

use std::fmt;

/// Who has to fix the problem; decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line: a flag missing, two flags that contradict. Exit 2.
    Usage,
    /// The input files are malformed or inconsistent. Exit 3.
    Data,
    /// The run itself failed: I/O, GPU device, out of memory. Exit 4.
    Runtime,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Data => 3,
            Kind::Runtime => 4,
        }
    }
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Usage,
            message: message.into(),
        }
    }
    pub fn data(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Data,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Runtime,
            message: message.into(),
        }
    }
    /// An I/O failure on `path`, phrased so the user knows which file.
    pub fn io(path: &std::path::Path, what: &str, err: std::io::Error) -> Self {
        Error::runtime(format!("{}: cannot {what}: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
