//! Progress bars on stderr for phases that take a while: the binary's
//! [`nudge::Progress`]. Silent when stderr is not a terminal or under
//! `--quiet`, so scripts and logs stay clean.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// An indicatif bar per phase, shown only once the phase has run a second.
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Bars {
    /// Bars if they can be seen (a terminal, not `--quiet`), else none.
    pub fn for_terminal() -> Option<Arc<dyn nudge::Progress>> {
        if super::log::is_quiet() || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars::default()))
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<indicatif::ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl nudge::Progress for Bars {
    fn start(&self, phase: &str, total: u64, unit: &str) {
        let bar = indicatif::ProgressBar::new(total);
        let template =
            format!("{phase:>16} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        // Sub-second phases should not flash a bar.
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        *self.bar() = Some(bar);
    }

    fn set(&self, done: u64) {
        if let Some(b) = self.bar().as_ref() {
            if b.is_hidden() && b.elapsed().as_secs_f32() > 1.0 {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar().take() {
            b.finish_and_clear();
        }
    }
}
