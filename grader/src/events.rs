//! Grading as a stream of events, and the observers that consume it.
//!
//! The engine does the grading and says what happens, in order: a
//! submission is queued, its build starts and ends, each test starts and
//! ends (tests that run at once, `cargo grade --jobs`, interleave; the
//! report keeps the spec's order), the submission is finished (its
//! [`Report`] complete), the batch is finished. Everything that shows or keeps results is an observer of that
//! one stream: the human report, the progress display, the batch's files,
//! the self-check, watch mode. None of them grades, and none re-derives a
//! verdict: they render what the events carry. (The shape is
//! cargo-nextest's: its runner emits events that every reporter consumes.)
//!
//! Cancellation travels the other way on a [`Cancel`] token that the engine
//! checks between steps, so Ctrl-C, a deadline or a newer change in watch
//! mode ends the running tests at their next step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::result::{BuildSummary, Report, TestResult};

/// Something that happened while grading. Submissions are named by their
/// id (a batch entry's name, or the path graded).
#[derive(Debug)]
pub enum Event<'a> {
    /// A submission will be graded (`total` in the run).
    Queued {
        id: &'a str,
        index: usize,
        total: usize,
    },
    BuildStarted {
        id: &'a str,
    },
    BuildFinished {
        id: &'a str,
        build: &'a BuildSummary,
    },
    TestStarted {
        id: &'a str,
        test: &'a str,
    },
    TestFinished {
        id: &'a str,
        result: &'a TestResult,
    },
    /// The submission's report is complete (and, in a batch, on disk).
    Finished {
        id: &'a str,
        report: &'a Report,
    },
    /// A submission was not graded again: its result from an earlier run
    /// of the same spec, seed and grader, for the same sources, stands.
    Reused {
        id: &'a str,
        report: &'a Report,
    },
    /// Grading stopped before the end (Ctrl-C, a deadline).
    Cancelled {
        finished: usize,
        total: usize,
    },
    /// Every submission is finished.
    BatchFinished {
        total: usize,
        duration_ms: u64,
    },
}

/// A consumer of events. Observers are called from the grading threads (in
/// a batch, several at once), so they synchronise their own state.
pub trait Observer: Sync {
    fn event(&self, event: &Event<'_>);
}

/// An observer that ignores everything.
pub struct Ignore;

impl Observer for Ignore {
    fn event(&self, _: &Event<'_>) {}
}

/// Several observers, each called in order.
pub struct Fanout<'a>(pub Vec<&'a dyn Observer>);

impl Observer for Fanout<'_> {
    fn event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

/// A cancellation flag shared by whoever may cancel and the engine.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for the engine's checks.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// Cancels `cancel` on SIGINT and SIGTERM (Ctrl-C, or a CI runner or
/// scheduler stopping the job). The handler only sets a flag; the engine
/// notices it at its next step. A second signal kills the grader the
/// ordinary way (the handler is reset after the first), whose per-round
/// holders then kill every process of every running round.
pub fn cancel_on_signals(cancel: &Cancel) {
    static FLAG: std::sync::OnceLock<Cancel> = std::sync::OnceLock::new();
    if FLAG.set(cancel.clone()).is_err() {
        return;
    }
    extern "C" fn on_signal(signo: libc::c_int) {
        if let Some(c) = FLAG.get() {
            // An atomic store only: async-signal-safe.
            c.0.store(true, Ordering::SeqCst);
        }
        // SAFETY: signal() is async-signal-safe; back to the default action.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    for signo in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and resets itself.
        unsafe {
            libc::signal(signo, on_signal as extern "C" fn(libc::c_int) as usize);
        }
    }
}
