//! Human-facing messages on stderr: notices, warnings, progress.
//!
//! Library code reports through here instead of `eprintln!` so that `--quiet`
//! silences everything but errors in one place.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Something the user should know, e.g. "no GPU adapter, using the CPU".
pub fn notice(msg: impl AsRef<str>) {
    if !is_quiet() {
        eprintln!("{}", msg.as_ref());
    }
}

/// Something that may make the result differ from what the user expects.
pub fn warn(msg: impl AsRef<str>) {
    if !is_quiet() {
        eprintln!("warning: {}", msg.as_ref());
    }
}
