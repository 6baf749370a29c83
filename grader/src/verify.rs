//! `cargo grade verify`: each task's spec proved against the task's own
//! files, at one seed or at several.
//!
//! What is proved is [`crate::selfcheck`]'s: the reference and every
//! alternative get full marks, the starter at most its ceiling, every mutant
//! loses points in each test it declares (and the tests it loses points in
//! without declaring them are listed). Why several seeds: a spec's faults are
//! seeded and the kernel's scheduling is not, so a test that passes the
//! reference at seed 1 and fails it at seed 3 would fail a correct student
//! somewhere in a class, and a mutant caught at one seed only is a bug some
//! student's program slips past. `--repeat N` grades everything at seeds S,
//! S+1, ..., counts per test how often the reference passed and how often
//! each mutant was caught, and names the seeds where a verdict differed:
//! flakiness found by the tool, before a student meets it.
//!
//! A mutant that does not compile proves nothing about the spec: it is an
//! error of the task's files, named with its first compiler error, not a
//! verdict on the spec.
//!
//! Each task is prepared once ([`TaskContext::prepare`]: the starter's
//! dependencies, the fault shim) and its mutants written out once; the
//! grades of every subject at every seed share one pool of `--jobs` threads
//! ([`crate::pool`]), judged as the engine finishes them (the judge is an
//! [`Observer`] of the event stream, like every reporter). The result is
//! data ([`Verification`], serialisable as the JSON output); the text for a
//! person is rendered from it ([`Verification::render`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::course::Course;
use crate::events::{Cancel, Event, Fanout, Observer};
use crate::grade::{GradeError, GradeOptions, Submission, TaskContext};
use crate::selfcheck::{self, Check, MutantError, Role, SelfCheck};
use crate::spec::{Spec, SpecError};

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first seed.
    pub seed: u64,
    /// Runs of everything, at seeds `seed`, `seed + 1`, ...
    pub repeat: u32,
    /// Subjects graded at once.
    pub jobs: usize,
}

impl Options {
    pub fn seeds(&self) -> Vec<u64> {
        (0..u64::from(self.repeat.max(1)))
            .map(|i| self.seed.wrapping_add(i))
            .collect()
    }
}

/// Verification could not run to the end (no verdict).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Mutants(#[from] SpecError),
    #[error("{0}")]
    Mutant(#[from] MutantError),
    #[error("cannot create a directory for mutant {mutant:?}: {source}")]
    TempDir {
        mutant: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{task}: {source}")]
    Grade {
        task: String,
        #[source]
        source: GradeError,
    },
    #[error("verification was cancelled")]
    Cancelled,
}

/// Every task verified.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Every check of every task held at every seed, and no task has an
    /// error.
    pub passed: bool,
    pub seeds: Vec<u64>,
    pub tasks: Vec<TaskVerification>,
    pub duration_ms: u64,
}

/// One task verified at every seed.
#[derive(Debug, Clone, Serialize)]
pub struct TaskVerification {
    pub task: String,
    pub slug: String,
    pub seeds: Vec<u64>,
    /// Every check held at every seed, and no error.
    pub passed: bool,
    /// Problems of the task's files that grading found: mutants that do not
    /// compile, each named with its first compiler error.
    pub errors: Vec<String>,
    /// Each subject's verdict across the seeds.
    pub subjects: Vec<SubjectVerdict>,
    /// Per test of the spec: how often each subject did what it must.
    pub tests: Vec<TestRates>,
    /// Verdicts that differed from one seed to another.
    pub disagreements: Vec<Disagreement>,
    /// Every check at each seed, in the order of `seeds`.
    pub runs: Vec<SelfCheck>,
    pub duration_ms: u64,
}

/// One subject (`reference`, `alternative NAME`, `starter`, `mutant NAME`)
/// across the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectVerdict {
    pub subject: String,
    /// `reference`, `alternative`, `starter` or `mutant`.
    pub role: &'static str,
    /// Runs in which it was as required, of `runs`.
    pub ok_runs: u32,
    pub runs: u32,
    /// The seeds at which it was not.
    pub failed_seeds: Vec<u64>,
    /// Why: the first failing run's detail, else the first run's.
    pub detail: String,
    /// For a mutant: the tests it lost points in at some seed without
    /// declaring them (information, not a failure).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_lost: Vec<String>,
}

impl SubjectVerdict {
    pub fn ok(&self) -> bool {
        self.ok_runs == self.runs
    }
}

/// A count of runs, for one subject.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub subject: String,
    pub count: u32,
}

/// One test of a spec across the runs.
#[derive(Debug, Clone, Serialize)]
pub struct TestRates {
    pub test: String,
    pub points: u32,
    pub runs: u32,
    /// Runs in which the reference got every point of the test.
    pub reference_passed: u32,
    /// Runs in which each alternative got every point of it.
    pub alternatives_passed: Vec<Count>,
    /// Each mutant that declares the test (`catches`): the runs in which it
    /// lost points in it.
    pub caught: Vec<Count>,
    /// Each mutant that lost points in it without declaring it: in how many
    /// runs (information).
    pub also_lost: Vec<Count>,
}

/// A verdict that differed across seeds: of a subject as a whole (`test`
/// absent), or of a subject in one test (the reference passing it, a
/// mutant caught by it).
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Seeds at which it was as required...
    pub held_at: Vec<u64>,
    /// ...and at which it was not.
    pub broke_at: Vec<u64>,
}

impl Verification {
    /// Some task has an error (a mutant that does not compile).
    pub fn has_errors(&self) -> bool {
        self.tasks.iter().any(|t| !t.errors.is_empty())
    }

    /// The verification as text for a person.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for task in &self.tasks {
            task.render(&mut out);
            out.push('\n');
        }
        let failed: Vec<&str> = self
            .tasks
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.task.as_str())
            .collect();
        let tasks = plural(self.tasks.len(), "task");
        out.push_str(&if failed.is_empty() {
            format!(
                "verify: {tasks} passed ({}) in {}\n",
                seeds_text(&self.seeds),
                seconds(self.duration_ms)
            )
        } else {
            format!(
                "verify: {} of {tasks} failed: {} ({})\n",
                failed.len(),
                failed.join(", "),
                seeds_text(&self.seeds)
            )
        });
        out
    }
}

impl TaskVerification {
    fn render(&self, out: &mut String) {
        let runs = self.seeds.len();
        let grades = runs * self.subjects.len();
        out.push_str(&format!(
            "verify {} ({}), {}: {}{} in {}\n",
            self.task,
            self.slug,
            seeds_text(&self.seeds),
            plural(self.subjects.len(), "subject"),
            if runs > 1 {
                format!(", {grades} grades")
            } else {
                String::new()
            },
            seconds(self.duration_ms)
        ));
        let width = self
            .subjects
            .iter()
            .map(|s| s.subject.len())
            .max()
            .unwrap_or(0);
        for (i, s) in self.subjects.iter().enumerate() {
            // At one seed, the score; at several, the runs that held.
            let tally = if runs == 1 {
                let c = &self.runs[0].checks[i];
                format!("{:>3}/{:<3}", c.score, c.max_score)
            } else {
                format!("{:<9}", format!("{}/{} runs", s.ok_runs, s.runs))
            };
            let mut detail = s.detail.clone();
            if runs > 1 && !s.ok() {
                detail = format!("at seed {}: {detail}", s.failed_seeds[0]);
            }
            if !s.also_lost.is_empty() {
                detail.push_str(&format!(
                    "; also lost points in: {}",
                    s.also_lost.join(", ")
                ));
            }
            out.push_str(&format!(
                "  {}  {:<width$}  {tally}  {detail}\n",
                if s.ok() { "ok  " } else { "FAIL" },
                s.subject,
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("  error: {e}\n"));
        }
        if runs > 1 {
            out.push_str(&format!(
                "  per test, of {runs} runs: the reference's passes (and each alternative's); each declaring mutant's catches\n"
            ));
            let width = self.tests.iter().map(|t| t.test.len()).max().unwrap_or(0);
            for t in &self.tests {
                let mut parts = vec![format!("reference {}/{runs}", t.reference_passed)];
                parts.extend(
                    t.alternatives_passed
                        .iter()
                        .map(|a| format!("{} {}/{runs}", a.subject, a.count)),
                );
                let mut line = parts.join(", ");
                if !t.caught.is_empty() {
                    line.push_str(&format!("; caught: {}", counts(&t.caught, runs)));
                }
                if !t.also_lost.is_empty() {
                    line.push_str(&format!(
                        "; also lost points: {}",
                        counts(&t.also_lost, runs)
                    ));
                }
                out.push_str(&format!("    {:<width$}  {line}\n", t.test));
            }
            if self.disagreements.is_empty() {
                out.push_str("  no verdict differed across seeds\n");
            } else {
                out.push_str("  seeds that disagreed:\n");
                for d in &self.disagreements {
                    let what = match &d.test {
                        Some(test) => format!("{} in {test}", d.subject),
                        None => d.subject.clone(),
                    };
                    out.push_str(&format!(
                        "    {what}: as required at seed{} {}; not at {}\n",
                        if d.held_at.len() == 1 { "" } else { "s" },
                        list(&d.held_at),
                        list(&d.broke_at)
                    ));
                }
            }
        }
        let failed = self.subjects.iter().filter(|s| !s.ok()).count();
        let every = if runs > 1 { " at every seed" } else { "" };
        out.push_str(&if failed == 0 && self.errors.is_empty() {
            format!("  all {} checks passed{every}\n", self.subjects.len())
        } else {
            format!(
                "  {failed} of {} checks failed{}\n",
                self.subjects.len(),
                match self.errors.len() {
                    0 => String::new(),
                    n => format!(", {}", plural(n, "error")),
                }
            )
        });
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn list(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn counts(counts: &[Count], runs: usize) -> String {
    counts
        .iter()
        .map(|c| format!("{} {}/{runs}", c.subject, c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seeds_text(seeds: &[u64]) -> String {
    match seeds {
        [one] => format!("seed {one}"),
        [first, .., last] => format!("seeds {first} to {last}"),
        [] => "no seed".into(),
    }
}

/// One subject of a task: what is graded and what it must get.
struct Subject {
    name: String,
    /// How its path is shown in reproduce commands.
    shown: String,
    dir: PathBuf,
    role: Role,
}

/// Judges each finished report by the role of its subject.
struct Judge<'s> {
    /// Submission id -> (seed index, subject index).
    ids: BTreeMap<String, (usize, usize)>,
    subjects: &'s [Subject],
    checks: Mutex<BTreeMap<(usize, usize), Check>>,
}

impl Observer for Judge<'_> {
    fn event(&self, event: &Event<'_>) {
        let Event::Finished { id, report } = event else {
            return;
        };
        let Some(&(seed, subject)) = self.ids.get(*id) else {
            return;
        };
        let mut check = self.subjects[subject].role.judge(report);
        check.subject = self.subjects[subject].name.clone();
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((seed, subject), check);
    }
}

/// Verifies each of `specs` in turn (each prepared once, its subjects
/// graded `opts.jobs` at once), telling `observer` every grade's events.
pub fn run(
    course: &Course,
    specs: &[Spec],
    opts: &Options,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Verification, VerifyError> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for spec in specs {
        tasks.push(run_task(course, spec, opts, observer, cancel)?);
    }
    Ok(Verification {
        passed: tasks.iter().all(|t| t.passed),
        seeds: opts.seeds(),
        tasks,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Verifies one task at every seed of `opts`.
pub fn run_task(
    course: &Course,
    spec: &Spec,
    opts: &Options,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<TaskVerification, VerifyError> {
    let started = Instant::now();
    let seeds = opts.seeds();
    let mutants = selfcheck::load_mutants(&selfcheck::mutants_path(course, spec), spec)?;
    let slug = &spec.task.slug;
    let solution = course.solution_dir(spec);
    let mut subjects = vec![Subject {
        name: "reference".into(),
        shown: format!("solutions/{slug}"),
        dir: solution.clone(),
        role: Role::Reference,
    }];
    for (name, dir) in course.alternatives(spec) {
        subjects.push(Subject {
            name: format!("alternative {name}"),
            shown: format!("solutions/{slug}/alternatives/{name}"),
            dir,
            role: Role::Alternative,
        });
    }
    subjects.push(Subject {
        name: "starter".into(),
        shown: format!("starter/{slug}"),
        dir: course.starter_dir(spec),
        role: Role::Starter,
    });
    // Each mutant written out once, in a temporary crate, for every seed.
    let mut temps = Vec::new();
    for mutant in mutants {
        let dir = tempfile::Builder::new()
            .prefix("cargo-grade-mutant-")
            .tempdir()
            .map_err(|source| VerifyError::TempDir {
                mutant: mutant.name.clone(),
                source,
            })?;
        selfcheck::materialise(&mutant, &solution, dir.path())?;
        subjects.push(Subject {
            name: format!("mutant {}", mutant.name),
            shown: format!("<mutant {}>", mutant.name),
            dir: dir.path().to_owned(),
            role: Role::Mutant(mutant),
        });
        temps.push(dir);
    }
    let grade_error = |source| VerifyError::Grade {
        task: spec.task.id.clone(),
        source,
    };
    let ctx = TaskContext::prepare(course, spec.clone()).map_err(grade_error)?;

    // Every (seed, subject), seed by seed; a subject's id names its seed
    // when there are several.
    let items: Vec<(usize, usize, String)> = (0..seeds.len())
        .flat_map(|s| (0..subjects.len()).map(move |i| (s, i)))
        .map(|(s, i)| {
            let id = if seeds.len() == 1 {
                format!("{} {}", spec.task.id, subjects[i].name)
            } else {
                format!("{} {} (seed {})", spec.task.id, subjects[i].name, seeds[s])
            };
            (s, i, id)
        })
        .collect();
    let judge = Judge {
        ids: items
            .iter()
            .map(|(s, i, id)| (id.clone(), (*s, *i)))
            .collect(),
        subjects: &subjects,
        checks: Mutex::new(BTreeMap::new()),
    };
    for (index, (_, _, id)) in items.iter().enumerate() {
        observer.event(&Event::Queued {
            id,
            index,
            total: items.len(),
        });
    }
    let observers = Fanout(vec![&judge, observer]);
    let graded = crate::pool::map(&items, opts.jobs, |(s, i, id)| {
        if cancel.is_cancelled() {
            return Err(GradeError::Cancelled);
        }
        let subject = &subjects[*i];
        let grade_opts = GradeOptions {
            seed: seeds[*s],
            only: Vec::new(),
            shown_path: subject.shown.clone(),
            // The subjects run `--jobs` at once: that keeps the cores busy.
            test_jobs: 1,
        };
        ctx.grade(
            Submission {
                id,
                dir: &subject.dir,
                digest: None,
            },
            &grade_opts,
            &observers,
            cancel,
        )
        .map(|_| ())
    });
    observer.event(&Event::BatchFinished {
        total: items.len(),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    for g in graded {
        match g {
            Ok(()) => {}
            Err(GradeError::Cancelled) => return Err(VerifyError::Cancelled),
            Err(e) => return Err(grade_error(e)),
        }
    }
    let mut judged = judge.checks.into_inner().unwrap_or_else(|p| p.into_inner());
    drop(temps);
    let mut grid: Vec<Vec<Check>> = Vec::new();
    for (s, seed) in seeds.iter().enumerate() {
        let mut row = Vec::new();
        for (i, subject) in subjects.iter().enumerate() {
            // Every grade that returned finished, and was judged.
            let Some(check) = judged.remove(&(s, i)) else {
                return Err(grade_error(GradeError::Submission(format!(
                    "{} at seed {seed} was graded but never finished",
                    subject.name
                ))));
            };
            row.push(check);
        }
        grid.push(row);
    }
    Ok(aggregate(
        spec,
        &subjects,
        &seeds,
        grid,
        started.elapsed().as_millis() as u64,
    ))
}

/// The verdicts of every subject at every seed (`grid[seed][subject]`)
/// summed up per subject and per test.
fn aggregate(
    spec: &Spec,
    subjects: &[Subject],
    seeds: &[u64],
    grid: Vec<Vec<Check>>,
    duration_ms: u64,
) -> TaskVerification {
    let runs = seeds.len() as u32;
    // At which seeds `held` is true of subject `i`.
    let split = |i: usize, held: &dyn Fn(&Check) -> bool| -> (Vec<u64>, Vec<u64>) {
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for (s, row) in grid.iter().enumerate() {
            if held(&row[i]) {
                yes.push(seeds[s]);
            } else {
                no.push(seeds[s]);
            }
        }
        (yes, no)
    };
    let full_in = |c: &Check, test: &str| c.full.iter().any(|(t, full)| t == test && *full);
    let caught_in =
        |c: &Check, test: &str| c.graded && c.full.iter().any(|(t, full)| t == test && !*full);
    let mut disagreements = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut verdicts = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let (held, broke) = split(i, &|c| c.ok);
        let first_bad = grid.iter().map(|row| &row[i]).find(|c| !c.ok);
        let detail = first_bad.unwrap_or(&grid[0][i]).detail.clone();
        let mut also_lost: Vec<String> = Vec::new();
        for t in &spec.tests {
            if grid.iter().any(|row| row[i].also_lost.contains(&t.name)) {
                also_lost.push(t.name.clone());
            }
        }
        if let Some(first) = grid.iter().find_map(|row| row[i].compile_error.as_ref()) {
            let name = subject.name.trim_start_matches("mutant ");
            errors.push(format!("mutant {name} does not compile: {first}"));
        }
        if !held.is_empty() && !broke.is_empty() {
            disagreements.push(Disagreement {
                subject: subject.name.clone(),
                test: None,
                held_at: held.clone(),
                broke_at: broke.clone(),
            });
        }
        verdicts.push(SubjectVerdict {
            subject: subject.name.clone(),
            role: subject.role.kind(),
            ok_runs: held.len() as u32,
            runs,
            failed_seeds: broke,
            detail,
            also_lost,
        });
    }
    let mut tests = Vec::new();
    for t in &spec.tests {
        let name = t.name.as_str();
        let count = |i: usize, f: &dyn Fn(&Check) -> bool| {
            grid.iter().filter(|row| f(&row[i])).count() as u32
        };
        let mut rates = TestRates {
            test: t.name.clone(),
            points: t.points,
            runs,
            reference_passed: 0,
            alternatives_passed: Vec::new(),
            caught: Vec::new(),
            also_lost: Vec::new(),
        };
        for (i, subject) in subjects.iter().enumerate() {
            // The per-test verdict that must hold at every seed, if any.
            let held: Option<&dyn Fn(&Check) -> bool> = match &subject.role {
                Role::Reference => {
                    rates.reference_passed = count(i, &|c| full_in(c, name));
                    Some(&|c| full_in(c, name))
                }
                Role::Alternative => {
                    rates.alternatives_passed.push(Count {
                        subject: subject.name.trim_start_matches("alternative ").into(),
                        count: count(i, &|c| full_in(c, name)),
                    });
                    Some(&|c| full_in(c, name))
                }
                Role::Mutant(m) if m.catches.iter().any(|c| c == name) => {
                    rates.caught.push(Count {
                        subject: m.name.clone(),
                        count: count(i, &|c| caught_in(c, name)),
                    });
                    Some(&|c| caught_in(c, name))
                }
                Role::Mutant(m) => {
                    let n = count(i, &|c| c.also_lost.iter().any(|x| x == name));
                    if n > 0 {
                        rates.also_lost.push(Count {
                            subject: m.name.clone(),
                            count: n,
                        });
                    }
                    None
                }
                Role::Starter => None,
            };
            if let Some(held) = held {
                let (yes, no) = split(i, held);
                if !yes.is_empty() && !no.is_empty() {
                    disagreements.push(Disagreement {
                        subject: subject.name.clone(),
                        test: Some(t.name.clone()),
                        held_at: yes,
                        broke_at: no,
                    });
                }
            }
        }
        tests.push(rates);
    }
    let runs: Vec<SelfCheck> = grid
        .into_iter()
        .zip(seeds)
        .map(|(checks, &seed)| SelfCheck {
            task: spec.task.id.clone(),
            seed,
            checks,
        })
        .collect();
    TaskVerification {
        task: spec.task.id.clone(),
        slug: spec.task.slug.clone(),
        seeds: seeds.to_vec(),
        passed: errors.is_empty() && runs.iter().all(SelfCheck::passed),
        errors,
        subjects: verdicts,
        tests,
        disagreements,
        runs,
        duration_ms,
    }
}
