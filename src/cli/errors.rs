//! What the binary says about a library error, and its exit code.
//!
//! The library's messages say what is wrong without naming flags; here each
//! error that a flag can fix gets that flag added, so the user reads one
//! line that says both.

use nudge::{Error, Kind};

/// Exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// The documented exit code of an error (README, "Exit codes").
pub fn exit_code(e: &Error) -> i32 {
    match e.kind() {
        Kind::Usage => 2,
        Kind::Data => 3,
        Kind::Runtime => 4,
        Kind::Interrupted => INTERRUPTED,
        // `Kind` may grow: anything new is the machine's fault until said
        // otherwise.
        #[allow(unreachable_patterns)]
        _ => 4,
    }
}

/// The error's message, with the flag that fixes it where there is one.
pub fn describe(e: &Error) -> String {
    match e {
        Error::MissingInput { what } => {
            format!("no {what}: give --dataset DIR or --{what} FILE.npy")
        }
        Error::MissingSplit {
            split,
            expected: Some(_),
        } => format!("{e} (or give --{split}-qrels FILE)"),
        Error::MissingSplit {
            split,
            expected: None,
        } => format!(
            "no {split} qrels: give --{split}-qrels FILE or a --dataset folder with qrels/{split}.tsv"
        ),
        Error::UnknownId { .. } => format!("{e}; fix the file or pass --skip-unknown-ids"),
        Error::ZeroRows { .. } => {
            format!("{e}. Remove them, or pass --allow-zero-rows to keep them as they are")
        }
        Error::NoAdapter => format!("{e}, or use --device cpu"),
        Error::NoSuchAdapter { wanted, available } => format!(
            "--adapter {wanted:?}: no adapter name contains it; adapters: {}",
            available.join(", ")
        ),
        _ => e.to_string(),
    }
}
