//! `nudge report FIT.json --html REPORT.html`: the HTML report of a fit
//! saved with `nudge fit --report`, drawn from that file alone.

use std::path::PathBuf;

use clap::Args;

use super::log;
use nudge::{Error, Result};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A fit report written by `nudge fit --report`
    #[arg(value_name = "FIT.json")]
    pub report: PathBuf,
    /// Where to write the self-contained HTML report
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: ReportArgs) -> Result<()> {
    log::set_quiet(a.quiet);
    let text = std::fs::read_to_string(&a.report)
        .map_err(|e| Error::unreadable(&a.report, "read the fit report", e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::data_line(
            &a.report,
            e.line(),
            format!("not JSON ({e}); expected a report written by nudge fit --report"),
        )
    })?;
    let html = nudge::report::fit_html(&json).map_err(|e| match e {
        Error::Data { message, .. } => Error::data(&a.report, message),
        e => e,
    })?;
    super::fit::check_writable(&a.html)?;
    nudge::data::atomic_write(&a.html, html.as_bytes())?;
    log::notice(format!("wrote {}", a.html.display()));
    Ok(())
}
