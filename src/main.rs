//! The `nudge` binary: parse, dispatch, map errors to exit codes.

use clap::Parser;

fn main() {
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
