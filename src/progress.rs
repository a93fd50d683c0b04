//! Progress bars on stderr for phases that take a while; silent when stderr
//! is not a terminal or under `--quiet`, so scripts and logs stay clean.

use std::io::IsTerminal;

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(phase: &str, total: u64, unit: &str) -> Progress {
        if crate::log::is_quiet() || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new(total);
        let template =
            format!("{phase:>16} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        // Sub-second phases should not flash a bar.
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        Progress { bar: Some(bar) }
    }

    pub fn set(&self, pos: u64) {
        if let Some(b) = &self.bar {
            if b.is_hidden() && b.elapsed().as_secs_f32() > 1.0 {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.set_position(pos);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
