//! Self-checking a spec: the reference solution must get full marks, and so
//! must every alternative solution (a correct program of another design:
//! `solutions/<slug>/alternatives/NAME/`), the untouched starter at most
//! [`STARTER_MAX_PERCENT`], and every known-buggy
//! variant of the solution (a mutant) must lose points in each test meant to
//! catch it. A spec that passes this is a spec whose tests can fail.
//!
//! Mutants live beside the solution, in `solutions/<slug>/mutants.toml`: a
//! find/replace on one file of the solution, so a mutant is a reviewed,
//! minimal, realistic bug rather than a copy of the whole program.
//!
//! This module is the judging: what each subject must get, as a verdict
//! ([`Check`]) on one report. Grading them all, at several seeds, and the
//! rates across seeds are [`crate::verify`]'s.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::course::Course;
use crate::result::{Outcome, Report};
use crate::spec::{Spec, SpecError};

/// The most the untouched starter may score, in percent.
pub const STARTER_MAX_PERCENT: f64 = 10.0;

/// One known-buggy variant of the reference solution.
#[derive(Debug, Clone, Serialize)]
pub struct Mutant {
    pub name: String,
    pub description: String,
    /// File of the solution crate to patch, relative to it.
    pub file: String,
    /// Text that occurs exactly once in that file...
    pub find: String,
    /// ...and what it becomes.
    pub replace: String,
    /// Tests that must lose points against this mutant.
    pub catches: Vec<String>,
}

/// The path of a task's mutants file.
pub fn mutants_path(course: &Course, spec: &Spec) -> PathBuf {
    course.solution_dir(spec).join("mutants.toml")
}

/// Reads and validates the mutants of a task against its spec and its
/// solution (see [`crate::check::read_mutants`]).
pub fn load_mutants(path: &Path, spec: &Spec) -> Result<Vec<Mutant>, SpecError> {
    let shown = crate::check::shown(path);
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::unreadable(&shown, &e))?;
    let tests: Vec<String> = spec.tests.iter().map(|t| t.name.clone()).collect();
    crate::check::read_mutants(&shown, &text, Some(&tests), path.parent())
}

/// A mutant that cannot be written out: its `file` unreadable, or its
/// `find` not occurring exactly once in it (the mutants file changed since
/// it was checked, or the solution did).
#[derive(Debug, thiserror::Error)]
pub enum MutantError {
    #[error("mutant {mutant:?}: cannot copy the solution {}: {source}", solution.display())]
    Copy {
        mutant: String,
        solution: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mutant {mutant:?}: {file}: {source}")]
    File {
        mutant: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "mutant {mutant:?}: `find` occurs {count} times in {file} (it must occur exactly once)"
    )]
    Find {
        mutant: String,
        file: String,
        count: usize,
    },
}

/// Writes the mutant's crate (the solution with the patch applied) into `dir`.
pub fn materialise(mutant: &Mutant, solution: &Path, dir: &Path) -> Result<(), MutantError> {
    let file_error = |source| MutantError::File {
        mutant: mutant.name.clone(),
        file: mutant.file.clone(),
        source,
    };
    copy_crate(solution, dir).map_err(|source| MutantError::Copy {
        mutant: mutant.name.clone(),
        solution: solution.to_owned(),
        source,
    })?;
    let target = dir.join(&mutant.file);
    let text = std::fs::read_to_string(&target).map_err(file_error)?;
    match text.matches(&mutant.find).count() {
        1 => {}
        count => {
            return Err(MutantError::Find {
                mutant: mutant.name.clone(),
                file: mutant.file.clone(),
                count,
            })
        }
    }
    std::fs::write(&target, text.replacen(&mutant.find, &mutant.replace, 1)).map_err(file_error)
}

/// Copies a crate directory, without its `target/`.
pub fn copy_crate(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_crate(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// The verdict of one subject at one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `reference`, `alternative NAME`, `starter`, or `mutant NAME`.
    pub subject: String,
    pub ok: bool,
    pub score: u32,
    pub max_score: u32,
    /// Why it is (not) as required.
    pub detail: String,
    /// For a mutant: the tests it lost points in without declaring them
    /// (information: a mutant may break more than it was written for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_lost: Vec<String>,
    /// For a mutant that does not compile: the first compiler error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_error: Option<String>,
    /// The report's outcome was `graded` (it compiled and every test ran).
    #[serde(skip)]
    pub graded: bool,
    /// Per test: whether the subject got every point of it (never, when it
    /// was not graded).
    #[serde(skip)]
    pub full: Vec<(String, bool)>,
}

/// Every subject of one task judged at one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCheck {
    pub task: String,
    pub seed: u64,
    pub checks: Vec<Check>,
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// What one subject of a self-check is.
#[derive(Debug, Clone)]
pub enum Role {
    Reference,
    Alternative,
    Starter,
    Mutant(Mutant),
}

impl Role {
    /// The role's word in the JSON results.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Reference => "reference",
            Role::Alternative => "alternative",
            Role::Starter => "starter",
            Role::Mutant(_) => "mutant",
        }
    }

    /// Judges `report` by what this role requires.
    pub fn judge(&self, report: &Report) -> Check {
        match self {
            Role::Reference | Role::Alternative => judge_reference(report),
            Role::Starter => judge_starter(report),
            Role::Mutant(m) => judge_mutant(m, report),
        }
    }
}

fn summary(subject: String, report: &Report, ok: bool, detail: String) -> Check {
    Check {
        subject,
        ok,
        score: report.score,
        max_score: report.max_score,
        detail,
        also_lost: Vec::new(),
        compile_error: None,
        graded: report.outcome == Outcome::Graded,
        full: report
            .tests
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    report.outcome == Outcome::Graded && t.score == t.max_score,
                )
            })
            .collect(),
    }
}

fn lost(report: &Report) -> Vec<String> {
    report
        .tests
        .iter()
        .filter(|t| t.score < t.max_score)
        .map(|t| format!("{} ({})", t.name, t.status.label()))
        .collect()
}

/// The reference must be graded and get every point.
pub fn judge_reference(report: &Report) -> Check {
    let ok = report.outcome == Outcome::Graded && report.score == report.max_score;
    let detail = if ok {
        "full marks".into()
    } else if report.outcome != Outcome::Graded {
        not_graded(report)
    } else {
        format!("lost points in {}", lost(report).join(", "))
    };
    summary("reference".into(), report, ok, detail)
}

/// The starter must build and score at most [`STARTER_MAX_PERCENT`].
pub fn judge_starter(report: &Report) -> Check {
    let ok = report.outcome == Outcome::Graded && report.percent() <= STARTER_MAX_PERCENT;
    let detail = match &report.outcome {
        Outcome::Graded => format!(
            "{:.0}% (at most {STARTER_MAX_PERCENT:.0}% allowed)",
            report.percent()
        ),
        Outcome::BuildFailed => format!(
            "the starter does not compile: {}",
            first_compiler_error(&report.build.diagnostics)
        ),
        _ => not_graded(report),
    };
    summary("starter".into(), report, ok, detail)
}

fn not_graded(report: &Report) -> String {
    match &report.outcome {
        Outcome::BuildFailed => format!(
            "does not compile: {}",
            first_compiler_error(&report.build.diagnostics)
        ),
        Outcome::Ungradable(why) | Outcome::Rejected(why) => format!("not graded: {why}"),
        Outcome::Graded => "graded".into(),
    }
}

/// The mutant must be graded and lose points in every test of `catches`;
/// the tests it loses points in besides are listed, as information.
pub fn judge_mutant(mutant: &Mutant, report: &Report) -> Check {
    let lost_in = |name: &str| {
        report
            .tests
            .iter()
            .any(|t| t.name == name && t.score < t.max_score)
    };
    let missed: Vec<&str> = mutant
        .catches
        .iter()
        .map(String::as_str)
        .filter(|name| !lost_in(name))
        .collect();
    let also_lost: Vec<String> = report
        .tests
        .iter()
        .filter(|t| t.score < t.max_score && !mutant.catches.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    let ok = report.outcome == Outcome::Graded && missed.is_empty();
    let mut compile_error = None;
    let detail = match &report.outcome {
        Outcome::Graded if ok => format!("caught by {}", mutant.catches.join(", ")),
        Outcome::Graded => format!(
            "NOT caught by {} (it lost points in: {})",
            missed.join(", "),
            lost(report).join(", ")
        ),
        Outcome::BuildFailed => {
            let first = first_compiler_error(&report.build.diagnostics);
            compile_error = Some(first.clone());
            format!("does not compile: {first}")
        }
        _ => not_graded(report),
    };
    let mut check = summary(format!("mutant {}", mutant.name), report, ok, detail);
    if report.outcome == Outcome::Graded {
        check.also_lost = also_lost;
    }
    check.compile_error = compile_error;
    check
}

/// The first error of a compiler's output, on one line: its message and,
/// when it has one, its place (`error[E0425]: cannot find value `x` in
/// this scope (src/main.rs:3:5)`).
pub fn first_compiler_error(diagnostics: &str) -> String {
    let plain = anstream::adapter::strip_str(diagnostics).to_string();
    let mut lines = plain.lines().map(str::trim_end);
    let Some(first) = lines
        .by_ref()
        .find(|l| l.starts_with("error"))
        .or_else(|| plain.lines().find(|l| !l.trim().is_empty()))
    else {
        return "the compiler gave no message".into();
    };
    let place = lines
        .take(3)
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .map(|p| format!(" ({})", p.trim()));
    format!("{first}{}", place.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_compiler_error_is_one_line_with_its_place() {
        let rustc = "\u{1b}[1m\u{1b}[38;5;9merror[E0425]\u{1b}[0m: cannot find value `x` in this scope\n  --> src/main.rs:3:5\n   |\n3  |     x\n   |     ^ not found\n\nerror: aborting due to 1 previous error\n";
        assert_eq!(
            first_compiler_error(rustc),
            "error[E0425]: cannot find value `x` in this scope (src/main.rs:3:5)"
        );
        assert_eq!(
            first_compiler_error("the build took longer than 60 s and was stopped"),
            "the build took longer than 60 s and was stopped"
        );
        assert_eq!(first_compiler_error(""), "the compiler gave no message");
    }
}
