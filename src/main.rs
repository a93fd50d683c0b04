//! The `nudge` binary: parse, dispatch, map errors to exit codes.

use clap::Parser;

// See `nudge::alloc` for why a small fit cares which allocator it runs on.
#[global_allocator]
static GLOBAL: nudge::alloc::Allocator = nudge::alloc::Allocator;

fn main() {
    // `nudge eval --json | head` must end quietly, as other Unix tools do,
    // not panic on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    nudge::alloc::keep_freed_memory();
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
