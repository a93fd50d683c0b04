//! Ctrl-C (SIGINT) and SIGTERM: stop at the next chunk, clean up, exit 130.
//!
//! The handler only sets a flag. The long loops (the corpus scan, the output
//! pass, the moved-record blocks) call [`check`] once per chunk and return an
//! error when it is set; unwinding drops the output writer, whose temporary
//! file is removed on drop, so an interrupted run leaves no partial output and
//! an existing output file is left as it was.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT).
pub const EXIT_CODE: i32 = 130;

/// Installs the handler (the binary calls this once; library users need not).
pub fn install() {
    // An error here means a handler is already installed: keep that one.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// Whether an interrupt has been received.
pub fn is_set() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Marks the run as interrupted, as the signal handler does (for tests).
pub fn set() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `Err(interrupted)` once an interrupt has been received.
pub fn check() -> Result<()> {
    if is_set() {
        Err(Error::runtime("interrupted"))
    } else {
        Ok(())
    }
}
