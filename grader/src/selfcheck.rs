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

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::course::Course;
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::events::{Cancel, Event, Fanout, Observer};
use crate::grade::{GradeOptions, Submission, TaskContext};
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

/// Writes the mutant's crate (the solution with the patch applied) into `dir`.
pub fn materialise(mutant: &Mutant, solution: &Path, dir: &Path) -> Result<(), String> {
    copy_crate(solution, dir).map_err(|e| format!("copying {}: {e}", solution.display()))?;
    let target = dir.join(&mutant.file);
    let text =
        std::fs::read_to_string(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    match text.matches(&mutant.find).count() {
        1 => {}
        n => {
            return Err(format!(
                "mutant {:?}: `find` occurs {n} times in {} (it must occur exactly once)",
                mutant.name, mutant.file
            ))
        }
    }
    std::fs::write(&target, text.replacen(&mutant.find, &mutant.replace, 1))
        .map_err(|e| e.to_string())
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

/// The verdict of one self-check item.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `reference`, `alternative NAME`, `starter`, or `mutant NAME`.
    pub subject: String,
    pub ok: bool,
    pub score: u32,
    pub max_score: u32,
    /// Why it is (not) as required.
    pub detail: String,
}

/// A self-check of one task.
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

    pub fn render(&self) -> String {
        let mut out = format!("self-check of {} (seed {})\n", self.task, self.seed);
        for c in &self.checks {
            out.push_str(&format!(
                "  {}  {:<28} {:>2}/{:<2}  {}\n",
                if c.ok { "ok  " } else { "FAIL" },
                c.subject,
                c.score,
                c.max_score,
                c.detail
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        out.push_str(&if failed == 0 {
            format!("all {} checks passed\n", self.checks.len())
        } else {
            format!("{failed} of {} checks failed\n", self.checks.len())
        });
        out
    }
}

/// Judges each finished report by the role of its subject.
struct Judge<'r> {
    roles: BTreeMap<String, &'r Role>,
    checks: Mutex<BTreeMap<String, Check>>,
}

impl Observer for Judge<'_> {
    fn event(&self, event: &Event<'_>) {
        let Event::Finished { id, report } = event else {
            return;
        };
        let Some(role) = self.roles.get(*id) else {
            return;
        };
        let mut check = match role {
            Role::Reference | Role::Alternative => judge_reference(report),
            Role::Starter => judge_starter(report),
            Role::Mutant(m) => judge_mutant(m, report),
        };
        check.subject = (*id).to_owned();
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(check.subject.clone(), check);
    }
}

/// What one subject of a self-check is.
enum Role {
    Reference,
    Alternative,
    Starter,
    Mutant(Mutant),
}

/// Grades the reference, the alternatives, the starter and every mutant of
/// `spec`, `jobs` at once, on one prepared task.
pub fn run(
    course: &Course,
    spec: &Spec,
    seed: u64,
    jobs: usize,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<SelfCheck, Box<dyn std::error::Error>> {
    let mutants = load_mutants(&mutants_path(course, spec), spec)?;
    let slug = &spec.task.slug;
    let solution = course.solution_dir(spec);
    // (subject, shown path, crate dir, role); mutants in temporary crates.
    let mut subjects: Vec<(String, String, PathBuf, Role)> = vec![(
        "reference".into(),
        format!("solutions/{slug}"),
        solution.clone(),
        Role::Reference,
    )];
    for (name, dir) in course.alternatives(spec) {
        subjects.push((
            format!("alternative {name}"),
            format!("solutions/{slug}/alternatives/{name}"),
            dir,
            Role::Alternative,
        ));
    }
    subjects.push((
        "starter".into(),
        format!("starter/{slug}"),
        course.starter_dir(spec),
        Role::Starter,
    ));
    let mut temps = Vec::new();
    for mutant in mutants {
        let dir = tempfile::Builder::new()
            .prefix("cargo-grade-mutant-")
            .tempdir()?;
        materialise(&mutant, &solution, dir.path())?;
        subjects.push((
            format!("mutant {}", mutant.name),
            format!("<mutant {}>", mutant.name),
            dir.path().to_owned(),
            Role::Mutant(mutant),
        ));
        temps.push(dir);
    }
    let ctx = TaskContext::prepare(course, spec.clone())?;
    // The self-check is an observer too: it judges each report as the
    // engine finishes it.
    let judge = Judge {
        roles: subjects
            .iter()
            .map(|(subject, _, _, role)| (subject.clone(), role))
            .collect(),
        checks: Mutex::new(BTreeMap::new()),
    };
    let observers = Fanout(vec![&judge, observer]);
    let graded = crate::pool::map(&subjects, jobs, |(subject, shown, dir, _)| {
        let opts = GradeOptions {
            seed,
            only: Vec::new(),
            shown_path: shown.clone(),
        };
        ctx.grade(
            Submission {
                id: subject,
                dir,
                digest: None,
            },
            &opts,
            &observers,
            cancel,
        )
        .map(|_| ())
    });
    for g in graded {
        g?;
    }
    let mut judged = judge.checks.into_inner().unwrap_or_else(|p| p.into_inner());
    let checks: Vec<Check> = subjects
        .iter()
        .filter_map(|(subject, ..)| judged.remove(subject))
        .collect();
    drop(temps);
    Ok(SelfCheck {
        task: spec.task.id.clone(),
        seed,
        checks,
    })
}

fn summary(subject: String, report: &Report, ok: bool, detail: String) -> Check {
    Check {
        subject,
        ok,
        score: report.score,
        max_score: report.max_score,
        detail,
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
        format!("not graded: {:?}", report.outcome)
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
        Outcome::BuildFailed => "the starter does not compile".into(),
        Outcome::Ungradable(why) | Outcome::Rejected(why) => format!("not graded: {why}"),
    };
    summary("starter".into(), report, ok, detail)
}

/// The mutant must be graded and lose points in every test of `catches`.
pub fn judge_mutant(mutant: &Mutant, report: &Report) -> Check {
    let missed: Vec<&String> = mutant
        .catches
        .iter()
        .filter(|name| {
            report
                .tests
                .iter()
                .any(|t| &t.name == *name && t.score == t.max_score)
        })
        .collect();
    let ok = report.outcome == Outcome::Graded && missed.is_empty();
    let detail = match &report.outcome {
        Outcome::Graded if ok => format!("caught by {}", lost(report).join(", ")),
        Outcome::Graded => format!(
            "NOT caught by {} (it lost points in: {})",
            missed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            lost(report).join(", ")
        ),
        Outcome::BuildFailed => format!(
            "does not compile: {}",
            report.build.diagnostics.lines().next().unwrap_or("")
        ),
        Outcome::Ungradable(why) | Outcome::Rejected(why) => format!("not graded: {why}"),
    };
    summary(format!("mutant {}", mutant.name), report, ok, detail)
}
