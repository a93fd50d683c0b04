//! The `nudge` binary: parse, dispatch, map errors to exit codes.

use clap::Parser;

// Fits allocate and free many mid-sized blocks (score blocks, chunks); the
// system allocator returns those to the kernel and faults them back in on
// every reuse, which showed up as a third of a small fit's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `nudge eval --json | head` must end quietly, as other Unix tools do,
    // not panic on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let cli = nudge::cli::Cli::parse();
    nudge::interrupt::install();
    if let Err(e) = nudge::cli::run(cli) {
        eprintln!("error: {e}");
        // An interrupted run exits 130 (128 + SIGINT) whatever failed on the
        // way out; everything else by who has to act (see `error::Kind`).
        if nudge::interrupt::is_set() {
            std::process::exit(nudge::interrupt::EXIT_CODE);
        }
        std::process::exit(e.kind.exit_code());
    }
}

/// Tells mimalloc never to return freed memory to the kernel.
///
/// A run is short, and mimalloc purges (hands back with madvise) the pages
/// of threads that end and, at exit, everything: work for the kernel that
/// only the next allocation (faulting in zeroed pages again) or nobody
/// benefits from. That came to a sixth of a small fit's time. The cost is
/// that the resident size stays at its peak until the process ends.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the -sys crate
    // names no constant for it); -1 means never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: plain option setters, callable at any time.
    unsafe {
        // Guard against a renumbered enum: the default is a delay in ms
        // (1000 in mimalloc 3.1), an option of no other meaning would not
        // sit in this range.
        if (1..=100_000).contains(&libmimalloc_sys::mi_option_get(PURGE_DELAY)) {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}
