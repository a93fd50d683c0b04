//! Ctrl-C (SIGINT) and SIGTERM: cancel the run, which stops at its next
//! chunk or block, cleans up, and the binary exits 130.
//!
//! The handler only cancels the process's one [`Cancel`] token, which every
//! command hands to the library in its options; unwinding drops the output
//! writer, whose temporary file is removed on drop, so an interrupted run
//! leaves no partial output and an existing output file is left as it was.

use std::sync::OnceLock;

use nudge::Cancel;

static TOKEN: OnceLock<Cancel> = OnceLock::new();

/// The process's cancellation token.
pub fn token() -> &'static Cancel {
    TOKEN.get_or_init(Cancel::new)
}

/// Installs the handler (once, before the command runs).
pub fn install() {
    let t = token().clone();
    // An error here means a handler is already installed: keep that one.
    let _ = ctrlc::set_handler(move || t.cancel());
}
