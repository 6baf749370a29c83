//! Reporters: each renders a [`Report`] for one audience and decides
//! nothing about the verdict. Every text a person reads (explanations,
//! hints, reproduce commands) is rendered here from the model's structured
//! fields; what a hidden test shows is decided by
//! [`Report::for_audience`], which every reporter is handed the result of.

pub mod classroom;
pub mod gradebook;
pub mod gradescope;
pub mod human;
pub mod json;
pub mod lms;
pub mod prairielearn;
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
    if result.visibility == Visibility::Hidden && result.failure.is_none() {
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
    for (i, hint) in result.hints.iter().enumerate() {
        let _ = match i {
            0 => writeln!(out, "Hint: {hint}"),
            _ => writeln!(out, "Hint {}: {hint}", i + 1),
        };
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
    /// JUnit XML: one testsuite, a testcase per test.
    Junit,
    /// Gradescope's `results.json` ([`gradescope`]).
    Gradescope,
    /// PrairieLearn's external-grader `results.json` ([`prairielearn`]).
    PrairieLearn,
    /// GitHub Classroom's reporter input ([`classroom`]): the base64 line
    /// on stdout (and `result=` appended to `$GITHUB_OUTPUT` when set), the
    /// student's report on stderr for the Actions log.
    GithubClassroom,
}

/// The reporter of a single grade, an observer: it renders each finished
/// report on stdout, as `audience` may see it (the LMS formats are always
/// rendered for students).
pub struct Reporter {
    style: Style,
    audience: crate::result::Audience,
    /// The task's spec, which JUnit names its suite after.
    spec: Option<crate::spec::Spec>,
    /// Hints shown per test to a student (`--hint N`).
    hints: usize,
    written: std::sync::Mutex<std::io::Result<()>>,
}

impl Reporter {
    pub fn new(style: Style, audience: crate::result::Audience) -> Reporter {
        Reporter {
            style,
            audience,
            spec: None,
            hints: 1,
            written: std::sync::Mutex::new(Ok(())),
        }
    }

    /// The task's spec, for the formats that need it (JUnit).
    pub fn with_spec(mut self, spec: &crate::spec::Spec) -> Reporter {
        self.spec = Some(spec.clone());
        self
    }

    /// Up to `n` hints per test for a student (`--hint N`).
    pub fn with_hints(mut self, n: usize) -> Reporter {
        self.hints = n;
        self
    }

    /// Whether every report was written.
    pub fn result(self) -> std::io::Result<()> {
        self.written.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, report: &Report) -> std::io::Result<()> {
        use std::io::Write;
        let view = match self.audience {
            crate::result::Audience::Student => report.for_student(self.hints),
            crate::result::Audience::Instructor => report.clone(),
        };
        let mut stdout = std::io::stdout();
        match self.style {
            Style::Human => human::render(&view, &mut anstream::stdout()),
            Style::Json => writeln!(stdout, "{}", json::render(&view)),
            Style::Junit => {
                let spec = self.spec.as_ref().ok_or_else(|| {
                    std::io::Error::other(
                        "JUnit output needs the task's spec (Reporter::with_spec)",
                    )
                })?;
                write!(
                    stdout,
                    "{}",
                    gradebook::junit_xml(spec, std::slice::from_ref(&view))
                )
            }
            Style::Gradescope => writeln!(stdout, "{}", gradescope::render(&view)),
            Style::PrairieLearn => writeln!(stdout, "{}", prairielearn::render(&view)),
            Style::GithubClassroom => {
                let encoded = classroom::encode(&view);
                // The feedback a student reads in the Actions log.
                human::render(&lms::student_view(&view), &mut anstream::stderr())?;
                if let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
                    let path = std::path::PathBuf::from(path);
                    classroom::append_output(&path, &encoded).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                }
                writeln!(stdout, "{encoded}")
            }
        }
    }
}

impl crate::events::Observer for Reporter {
    fn event(&self, event: &crate::events::Event<'_>) {
        let crate::events::Event::Finished { report, .. } = event else {
            return;
        };
        let written = self.write(report);
        if written.is_err() {
            *self.written.lock().unwrap_or_else(|p| p.into_inner()) = written;
        }
    }
}

/// Failed tests that share one root cause: the same panic (message and
/// place) or the same expectation missed the same way (a program that exits
/// before its first line fails every test at that line). Reporters say such
/// a cause once and list the tests it took down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Indices into `report.tests`, in order; at least two.
    pub members: Vec<usize>,
}

/// The shared causes among `report`'s failed tests.
pub fn root_causes(report: &Report) -> Vec<Cause> {
    let mut by_key: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, t) in report.tests.iter().enumerate() {
        let Some(key) = cause_key(t) else { continue };
        match by_key.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => by_key.push((key, vec![i])),
        }
    }
    by_key
        .into_iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(_, members)| Cause { members })
        .collect()
}

fn cause_key(t: &TestResult) -> Option<String> {
    if matches!(t.status, Status::Passed | Status::NotRun) {
        return None;
    }
    let f = t.failure.as_ref()?;
    // Pids and thread ids differ from run to run of the same failure.
    let ids = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut digits = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !digits {
                    out.push('#');
                }
                digits = true;
            } else {
                digits = false;
                out.push(c);
            }
        }
        out
    };
    if let Some(i) = f.stderr_tail.iter().position(|l| l.contains("panicked at")) {
        let place = f.stderr_tail[i].split("panicked at").nth(1).unwrap_or("");
        let message = f.stderr_tail.get(i + 1).map_or("", String::as_str);
        return Some(format!("panic at {place} {message}"));
    }
    Some(format!("{}\u{0}{}", f.expected, ids(&f.observed)))
}

/// The human report without colour: `report.txt` of a batch.
pub fn text(report: &Report) -> String {
    let mut bytes = Vec::new();
    human::render(report, &mut bytes).expect("writing to memory");
    anstream::adapter::strip_str(&String::from_utf8_lossy(&bytes)).to_string()
}
