//! How a caller watches and stops a long run: a [`Progress`] sink and a
//! [`Cancel`] token, passed in as values ([`Control`]) rather than read from
//! globals, so that the `nudge` binary can draw a progress bar and stop on
//! Ctrl-C, the Python package can drive a notebook bar and raise
//! `KeyboardInterrupt`, and two fits in one process do not see each other's
//! signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Receives the progress of the long phases of a run (the corpus scan, the
/// gamma search). Called from the thread that runs the phase; phases do not
/// overlap.
pub trait Progress: Send + Sync {
    /// A phase named `phase` starts, with `total` units of `unit` to do
    /// (e.g. `("scanning corpus", 1_000_000, "rows")`).
    fn start(&self, phase: &str, total: u64, unit: &str);
    /// `done` units of the current phase are done (ascending).
    fn set(&self, done: u64);
    /// The current phase has ended (also when it failed).
    fn finish(&self);
}

/// A cancellation token: clone it, hand a clone to the run, call
/// [`Cancel::cancel`] from anywhere (a signal handler, another thread), and
/// the run stops at its next chunk or block with [`Error::Interrupted`],
/// leaving no partial output.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>, Option<Arc<AtomicBool>>);

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every run holding a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) || self.1.as_ref().is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// A token cancelled with this one, or on its own (without cancelling
    /// this one): the parts of a job split across devices stop together
    /// when one fails, and the caller's token is left as it was.
    pub(crate) fn child(&self) -> Cancel {
        Cancel(Arc::default(), Some(self.0.clone()))
    }

    /// `Err(Error::Interrupted)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// What a run reports to and is stopped by. The default reports nothing and
/// is never cancelled.
#[derive(Clone, Default)]
pub struct Control {
    /// Where progress goes, if anywhere.
    pub progress: Option<Arc<dyn Progress>>,
    /// The token that stops the run.
    pub cancel: Cancel,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("progress", &self.progress.as_ref().map(|_| "..."))
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl Control {
    /// `Err(Error::Interrupted)` once the run is cancelled.
    pub fn check(&self) -> Result<()> {
        self.cancel.check()
    }

    /// Starts a phase; the returned guard reports its progress and ends it
    /// when dropped.
    pub(crate) fn phase(&self, name: &str, total: u64, unit: &str) -> Phase<'_> {
        if let Some(p) = &self.progress {
            p.start(name, total, unit);
        }
        Phase(self.progress.as_deref())
    }
}

/// A running phase (see [`Control::phase`]).
impl Control {
    /// Controls for `n` parts of one job that run at the same time: they
    /// share a [`Cancel::child`] of this control's token (cancel it to stop
    /// them all), and the rows each part reports add up into one phase of
    /// this control, started by the caller.
    pub(crate) fn parts(&self, n: usize) -> (Vec<Control>, Cancel) {
        let cancel = self.cancel.child();
        let shared = Arc::new(Summed {
            parent: self.progress.clone(),
            done: (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        });
        let controls = (0..n)
            .map(|i| Control {
                progress: Some(Arc::new(Part {
                    shared: shared.clone(),
                    index: i,
                }) as Arc<dyn Progress>),
                cancel: cancel.clone(),
            })
            .collect();
        (controls, cancel)
    }
}

/// The progress of parts summed into the parent's phase.
struct Summed {
    parent: Option<Arc<dyn Progress>>,
    done: Vec<std::sync::atomic::AtomicU64>,
}

/// One part's view of [`Summed`]: its own phases are the parent's one.
struct Part {
    shared: Arc<Summed>,
    index: usize,
}

impl Progress for Part {
    fn start(&self, _phase: &str, _total: u64, _unit: &str) {}
    fn set(&self, done: u64) {
        let s = &self.shared;
        s.done[self.index].store(done, Ordering::Relaxed);
        if let Some(p) = &s.parent {
            p.set(s.done.iter().map(|d| d.load(Ordering::Relaxed)).sum());
        }
    }
    fn finish(&self) {}
}

pub(crate) struct Phase<'a>(Option<&'a dyn Progress>);

impl Phase<'_> {
    pub(crate) fn set(&self, done: u64) {
        if let Some(p) = self.0 {
            p.set(done);
        }
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.finish();
        }
    }
}
