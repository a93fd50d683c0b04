//! The `nudge` binary: parse, dispatch, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = nudge::cli::Cli::parse();
    if let Err(e) = nudge::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.kind.exit_code());
    }
}
