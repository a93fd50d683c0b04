//! The `nudge` binary: parse, dispatch, map errors to exit codes.

use clap::Parser;

// Fits allocate and free many mid-sized blocks (score blocks, chunks); the
// system allocator returns those to the kernel and faults them back in on
// every reuse, which showed up as a third of a small fit's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = nudge::cli::Cli::parse();
    if let Err(e) = nudge::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.kind.exit_code());
    }
}
