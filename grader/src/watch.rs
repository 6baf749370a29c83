//! Watch mode: `cargo grade TASK --watch` grades again whenever the crate's
//! sources change, so a student sees the verdict of an edit while they
//! still remember it.
//!
//! Changes are debounced (an editor's save is several events) with
//! `notify-debouncer-mini`. A grade still running when a file changes is
//! cancelled through the engine's [`Cancel`] token (its running test ends at
//! its next step, its processes are killed like any test's) and started
//! again on the new sources; its half-done result is never shown. Each
//! verdict clears the screen (on a terminal) and shows the summary first,
//! then the first failure in full. Ctrl-C leaves cleanly: the running grade
//! is cancelled and waited for.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::events::{Cancel, Event, Observer};
use crate::grade::{GradeError, GradeOptions, Submission, TaskContext};
use crate::result::{Audience, Report};

/// Why watching stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch { path: String, source: notify::Error },
    #[error("{0}")]
    Grade(#[from] GradeError),
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

enum Msg {
    Changed,
    /// The grade of this generation has built the sources (it has read
    /// them) and runs the tests.
    Built(u64),
    Graded(u64, Box<Result<Report, GradeError>>),
}

/// Tells the watch loop when a grade's build is done.
struct BuildDone {
    generation: u64,
    tx: mpsc::Sender<Msg>,
}

impl Observer for BuildDone {
    fn event(&self, event: &Event<'_>) {
        if let Event::BuildFinished { build, .. } = event {
            if build.ok {
                let _ = self.tx.send(Msg::Built(self.generation));
            }
        }
    }
}

/// How long edits must be quiet before a grade starts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Grades `dir` now and after every change under it, until `stop` is set.
pub fn run(
    ctx: &TaskContext<'_>,
    dir: &Path,
    opts: &GradeOptions,
    clear_screen: bool,
    out: &mut dyn Write,
    stop: &Cancel,
) -> Result<(), WatchError> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let changes = tx.clone();
    let mut debouncer = notify_debouncer_mini::new_debouncer(DEBOUNCE, move |events| {
        if let Ok(events) = events {
            let events: Vec<notify_debouncer_mini::DebouncedEvent> = events;
            // The grader's own build output never triggers a grade.
            if events
                .iter()
                .any(|e| !e.path.components().any(|c| c.as_os_str() == "target"))
            {
                let _ = changes.send(Msg::Changed);
            }
        }
    })
    .map_err(|source| WatchError::Watch {
        path: dir.display().to_string(),
        source,
    })?;
    for watched in ["src", "Cargo.toml"] {
        let path = dir.join(watched);
        if path.exists() {
            debouncer
                .watcher()
                .watch(&path, notify::RecursiveMode::Recursive)
                .map_err(|source| WatchError::Watch {
                    path: path.display().to_string(),
                    source,
                })?;
        }
    }

    std::thread::scope(|scope| -> Result<(), WatchError> {
        let mut generation = 0u64;
        let mut running: Option<Cancel> = None;
        // What was last graded: reading the sources (the build does) is an
        // event too, and so is saving a file unchanged; only a change of the
        // sources' content grades again.
        let digest = || crate::intake::digest(dir, &crate::intake::Caps::default()).ok();
        let mut graded = digest();
        let start = |generation: u64, running: &mut Option<Cancel>| {
            let cancel = Cancel::new();
            *running = Some(cancel.clone());
            let tx = tx.clone();
            scope.spawn(move || {
                let id = dir.display().to_string();
                let result = ctx.grade(
                    Submission {
                        id: &id,
                        dir,
                        digest: None,
                    },
                    opts,
                    &BuildDone {
                        generation,
                        tx: tx.clone(),
                    },
                    &cancel,
                );
                let _ = tx.send(Msg::Graded(generation, Box::new(result)));
            });
        };
        writeln!(out, "grading {} ...", dir.display())?;
        out.flush()?;
        start(generation, &mut running);
        loop {
            if stop.is_cancelled() {
                if let Some(c) = &running {
                    c.cancel();
                }
                // Wait for the cancelled grade, so no test is left running.
                while running.is_some() {
                    match rx.recv_timeout(Duration::from_secs(30)) {
                        Ok(Msg::Graded(g, _)) if g == generation => running = None,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                writeln!(out, "stopped watching.")?;
                return Ok(());
            }
            // The timeout paces the check of Ctrl-C; every other wake-up is
            // an event.
            let msg = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match msg {
                Msg::Changed => {
                    let now = digest();
                    if now.is_some() && now == graded {
                        continue;
                    }
                    graded = now;
                    if let Some(c) = running.take() {
                        c.cancel();
                        writeln!(
                            out,
                            "sources changed: grading again (the running grade is cancelled) ..."
                        )?;
                    } else {
                        writeln!(out, "sources changed: grading again ...")?;
                    }
                    out.flush()?;
                    generation += 1;
                    start(generation, &mut running);
                }
                Msg::Built(g) if g == generation => {
                    writeln!(out, "built; running the tests ...")?;
                    out.flush()?;
                }
                Msg::Built(_) => {}
                Msg::Graded(g, _) if g != generation => {}
                Msg::Graded(_, result) => match *result {
                    Err(GradeError::Cancelled) => running = None,
                    Err(e) => {
                        running = None;
                        writeln!(out, "could not grade: {e}")?;
                    }
                    Ok(report) => {
                        running = None;
                        if clear_screen {
                            // The grader's own control sequence: clear, home.
                            write!(out, "\x1b[2J\x1b[H")?;
                        }
                        crate::report::human::render_summary_first(
                            &report.for_audience(Audience::Student),
                            out,
                        )?;
                        writeln!(
                            out,
                            "\nwatching {} for changes (Ctrl-C to stop)",
                            dir.join("src").display()
                        )?;
                        out.flush()?;
                    }
                },
            }
        }
    })
}
