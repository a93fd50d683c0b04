//! The `nudge` binary: a thin layer over the `nudge` library. It parses the
//! command line, maps flags and environment variables to the library's
//! options, draws progress bars, turns Ctrl-C into the library's
//! cancellation token, prints, and maps errors to exit codes.

mod cli;

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
    let args = cli::Cli::parse();
    cli::interrupt::install();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {}", cli::errors::describe(&e));
        // An interrupted run exits 130 (128 + SIGINT) whatever failed on the
        // way out; everything else by who has to act.
        if cli::interrupt::token().is_cancelled() {
            std::process::exit(cli::errors::INTERRUPTED);
        }
        std::process::exit(cli::errors::exit_code(&e));
    }
}
