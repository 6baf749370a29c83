//! Reporters: each renders a [`Report`] for one audience and decides
//! nothing about the verdict. Every text a person reads (explanations,
//! hints, reproduce commands) is rendered here from the model's structured
//! fields; what a hidden test shows is decided by
//! [`Report::for_audience`], which every reporter is handed the result of.

pub mod gradebook;
pub mod human;
pub mod json;
pub mod safe;

use std::fmt::Write;

use crate::result::{Report, Status, TestResult};
use crate::spec::Visibility;

/// The plain-text explanation of one test result: what the grader did, what
/// it expected, what it observed, the hint, and how to reproduce it: the
/// feedback text of the gradebook formats (JUnit, Gradescope...). The human
/// reporter shows the same parts with colour.
pub fn explain(report: &Report, result: &TestResult) -> String {
    let mut out = String::new();
    match result.status {
        Status::Passed => return out,
        Status::NotRun => return result.note.clone().unwrap_or_default(),
        _ => {}
    }
    if result.visibility == Visibility::Hidden {
        let _ = writeln!(out, "This is a hidden test: its details are not shown.");
        if let Some(hint) = result.hints.first() {
            let _ = writeln!(out, "Hint: {hint}");
        }
        return out;
    }
    if let Some(f) = &result.failure {
        let _ = writeln!(out, "What the grader did:");
        for (i, action) in f.actions.iter().enumerate() {
            let _ = writeln!(out, "  {}. {action}", i + 1);
        }
        let _ = writeln!(out, "Expected: {}", f.expected);
        let _ = writeln!(out, "Observed: {}", f.observed);
        if !result.faults.is_empty() {
            let _ = writeln!(out, "Faults injected: {}", result.faults.join("; "));
        }
        if !result.leftovers.is_empty() {
            let _ = writeln!(out, "Left behind (the grader removed it):");
            for line in &result.leftovers {
                let _ = writeln!(out, "  - {line}");
            }
        }
        for (label, tail) in [("stdout", &f.stdout_tail), ("stderr", &f.stderr_tail)] {
            if !tail.is_empty() {
                let _ = writeln!(out, "Last lines of {label}:");
                for line in tail {
                    let _ = writeln!(out, "  | {line}");
                }
            }
        }
    } else if let Some(note) = &result.note {
        let _ = writeln!(out, "{note}");
    }
    if let Some(hint) = result.hints.first() {
        let _ = writeln!(out, "Hint: {hint}");
    }
    let _ = writeln!(out, "Reproduce: {}", report.reproduce(&result.name));
    out
}

/// How a [`Reporter`] renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// For a terminal (colour where it is one).
    Human,
    /// The result model as JSON.
    Json,
}

/// The reporter of a single grade, an observer: it renders each finished
/// report on stdout, as `audience` may see it.
pub struct Reporter {
    style: Style,
    audience: crate::result::Audience,
    written: std::sync::Mutex<std::io::Result<()>>,
}

impl Reporter {
    pub fn new(style: Style, audience: crate::result::Audience) -> Reporter {
        Reporter {
            style,
            audience,
            written: std::sync::Mutex::new(Ok(())),
        }
    }

    /// Whether every report was written.
    pub fn result(self) -> std::io::Result<()> {
        self.written.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::events::Observer for Reporter {
    fn event(&self, event: &crate::events::Event<'_>) {
        let crate::events::Event::Finished { report, .. } = event else {
            return;
        };
        let view = report.for_audience(self.audience);
        let written = match self.style {
            Style::Human => human::render(&view, &mut anstream::stdout()),
            Style::Json => {
                use std::io::Write;
                writeln!(std::io::stdout(), "{}", json::render(&view))
            }
        };
        if written.is_err() {
            *self.written.lock().unwrap_or_else(|p| p.into_inner()) = written;
        }
    }
}

/// The human report without colour: `report.txt` of a batch.
pub fn text(report: &Report) -> String {
    let mut bytes = Vec::new();
    human::render(report, &mut bytes).expect("writing to memory");
    anstream::adapter::strip_str(&String::from_utf8_lossy(&bytes)).to_string()
}
