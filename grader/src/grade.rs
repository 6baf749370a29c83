//! Grading: a [`TaskContext`] holds the per-task work, done once, and grades
//! any number of submissions, from many threads at once (a batch): build
//! one, run the selected tests, assemble the [`Report`], and tell an
//! [`Observer`] each step of the way. A grade owns no global state and
//! writes nothing outside its own scratch directories and the shared build
//! cache.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::builder::{self, BuildResult};
use crate::course::Course;
use crate::events::{Cancel, Event, Ignore, Observer};
use crate::harness::Confinement;
use crate::result::{BuildSummary, Environment, Outcome, Protection, Report, Status, TestResult};
use crate::scenario::{self, ScenarioEnv};
use crate::spec::{Spec, Test};

/// How to grade.
#[derive(Debug, Clone)]
pub struct GradeOptions {
    pub seed: u64,
    /// Run only tests whose name contains this.
    /// Run only the tests these patterns select (all when empty).
    pub only: Vec<String>,
    /// How the submission's path is shown in reproduce commands.
    pub shown_path: String,
    /// Tests run at once (at least 1). Each test is a world of its own
    /// (its user, namespaces, cgroup and scratch directory), so they may
    /// overlap; where tests cannot have users of their own they would
    /// count each other's processes against their limits, and run one at
    /// a time whatever this says.
    pub test_jobs: usize,
}

/// The grader could not grade (no verdict at all).
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    /// `--only` selected nothing.
    #[error("no test name contains {pattern:?}; the tests are: {}", names.join(", "))]
    NoTestSelected { pattern: String, names: Vec<String> },
    #[error("{0}")]
    Submission(String),
    /// Grading was cancelled before the submission's last test ended.
    #[error("grading was cancelled")]
    Cancelled,
}

/// The tests `only` selects: for each pattern, the test of exactly that
/// name if there is one, else every test whose name contains it; every test
/// when there is no pattern. In spec order.
pub fn select<'s>(spec: &'s Spec, only: &[String]) -> Result<Vec<&'s Test>, GradeError> {
    if only.is_empty() {
        return Ok(spec.tests.iter().collect());
    }
    let picks = |p: &str, t: &Test| {
        if spec.tests.iter().any(|x| x.name == p) {
            t.name == p
        } else {
            t.name.contains(p)
        }
    };
    for p in only {
        if !spec.tests.iter().any(|t| picks(p, t)) {
            return Err(GradeError::NoTestSelected {
                pattern: p.clone(),
                names: spec.tests.iter().map(|t| t.name.clone()).collect(),
            });
        }
    }
    Ok(spec
        .tests
        .iter()
        .filter(|t| only.iter().any(|p| picks(p, t)))
        .collect())
}

/// One submission to grade.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// Its id: a batch entry's name, or the path as given.
    pub id: &'a str,
    /// The crate directory.
    pub dir: &'a Path,
    /// A digest of its sources, where the caller computed one.
    pub digest: Option<&'a str>,
}

/// Per-task work, done once however many submissions are graded: the spec,
/// the build toolchain (the starter's dependencies compiled once, for every
/// submission's build to link against), the grader's own binary (peers,
/// namespace holders), the I/O fault shim, and the sweep of what graders
/// that died left behind.
pub struct TaskContext<'c> {
    course: &'c Course,
    spec: Spec,
    /// The prepared builds, or why they could not be prepared (every grade
    /// then reports that as ungradable: it is no verdict on any student).
    builds: Result<builder::Prepared, String>,
    helper: PathBuf,
    /// The shim, built, when a selected test injects I/O faults; its build
    /// error otherwise (every grade then reports it as ungradable).
    shim: Option<Result<PathBuf, String>>,
    /// Directories no build and no test process may see, beyond the course
    /// and the submission's own: a batch's other submissions and results.
    hidden: Vec<PathBuf>,
}

impl<'c> TaskContext<'c> {
    /// Prepares grading against `spec`.
    pub fn prepare(course: &'c Course, spec: Spec) -> Result<TaskContext<'c>, GradeError> {
        // What graders killed before us left behind goes first, once.
        crate::harness::scratch::remove_stale();
        // The grader's own binary runs its peers and the namespace holder.
        // /proc/self/exe, exec'd by a forked child, is that binary even if
        // the file was replaced meanwhile (a rebuild or reinstall during a
        // batch).
        let helper = PathBuf::from("/proc/self/exe");
        if !helper.exists() {
            return Err(GradeError::Submission(
                "cannot find the grader's own binary (/proc/self/exe) to run its peers".into(),
            ));
        }
        // The shim's build and the starter's dependencies are two cargo
        // runs of their own: side by side, a first grade waits for the
        // longer one only.
        let needs_shim = spec.tests.iter().any(|t| t.io_faults.is_some());
        let (shim, builds) = std::thread::scope(|s| {
            let shim = needs_shim
                .then(|| s.spawn(|| crate::shim::ensure_built(&course.root, &course.work_dir())));
            let builds = builder::Prepared::new(course, &spec).map_err(|e| e.to_string());
            let shim = shim.map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("the I/O fault shim's build panicked".into()))
            });
            (shim, builds)
        });
        Ok(TaskContext {
            course,
            spec,
            builds,
            helper,
            shim,
            hidden: Vec::new(),
        })
    }

    /// Also hides `dirs` from every build and test process of this task.
    pub fn hiding(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.hidden.extend(dirs);
        self
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn course(&self) -> &Course {
        self.course
    }

    /// Builds and grades one submission, telling `observer` as it goes
    /// (build and tests). Returns [`GradeError::Cancelled`] when `cancel` was
    /// set before the end: a cancelled grade has no verdict.
    fn grade_once(
        &self,
        submission: Submission<'_>,
        opts: &GradeOptions,
        observer: &dyn Observer,
        cancel: &Cancel,
    ) -> Result<Report, GradeError> {
        let (spec, course) = (&self.spec, self.course);
        let id = submission.id;
        let started = Instant::now();
        let tests = select(spec, &opts.only)?;
        if !submission.dir.is_dir() {
            return Err(GradeError::Submission(format!(
                "submission {} is not a directory",
                submission.dir.display()
            )));
        }
        let mut report = new_report(
            spec,
            submission,
            opts.shown_path.clone(),
            opts.seed,
            tests.iter().map(|t| t.points).sum(),
        );

        // The binaries student processes run: readable and executable by
        // the unprivileged user they run as, mounted read-only in their
        // sandbox.
        let scratch = match crate::harness::scratch::create("bin-", 0o755) {
            Ok(dir) => dir,
            Err(e) => {
                return Ok(ungradable(
                    report,
                    format!("cannot create a scratch directory: {e}"),
                    &tests,
                ))
            }
        };
        observer.event(&Event::BuildStarted { id });
        let built = match &self.builds {
            Ok(builds) => {
                let started = Instant::now();
                builds
                    .build_hiding(submission.dir, scratch.path(), &self.hidden)
                    .map(|b| b.took(started.elapsed()))
                    .map_err(|e| e.to_string())
            }
            Err(why) => Err(format!("the task's builds could not be prepared: {why}")),
        };
        let binary = match built {
            Err(e) => {
                let report = ungradable(report, e, &tests);
                observer.event(&Event::BuildFinished {
                    id,
                    build: &report.build,
                });
                return Ok(report);
            }
            Ok(BuildResult::Failed {
                diagnostics,
                duration,
            }) => {
                report.outcome = Outcome::BuildFailed;
                report.environment.protections = grader_protections();
                report.build.duration_ms = duration.as_millis() as u64;
                report.build.diagnostics = diagnostics;
                observer.event(&Event::BuildFinished {
                    id,
                    build: &report.build,
                });
                report.tests = tests
                    .iter()
                    .map(|t| not_run(t, "the build failed"))
                    .collect();
                report.duration_ms = started.elapsed().as_millis() as u64;
                return Ok(report);
            }
            Ok(BuildResult::Built { binary, duration }) => {
                report.build.ok = true;
                report.build.duration_ms = duration.as_millis() as u64;
                observer.event(&Event::BuildFinished {
                    id,
                    build: &report.build,
                });
                binary
            }
        };

        let needs_shim = tests.iter().any(|t| t.io_faults.is_some());
        let shim = match (&self.shim, needs_shim) {
            (Some(Ok(path)), true) => {
                // A copy beside the binary: the course's build directory is
                // hidden from student processes.
                let copy = scratch.path().join(path.file_name().unwrap_or_default());
                match std::fs::copy(path, &copy) {
                    Ok(_) => Some(copy),
                    Err(e) => {
                        return Ok(ungradable(
                            report,
                            format!("cannot copy the I/O fault shim {}: {e}", path.display()),
                            &tests,
                        ))
                    }
                }
            }
            (Some(Err(e)), true) => {
                return Ok(ungradable(
                    report,
                    format!("cannot build the I/O fault shim: {e}"),
                    &tests,
                ))
            }
            _ => None,
        };
        let confinement = Confinement {
            hidden: [
                course.root.clone(),
                course.work_dir(),
                submission.dir.to_owned(),
            ]
            .into_iter()
            .chain(self.hidden.iter().cloned())
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .collect(),
            readonly: vec![scratch.path().to_owned()],
            disk_bytes: spec.limits.disk_mib << 20,
            memory_bytes: spec.limits.test_memory_mib << 20,
        };
        let env = ScenarioEnv {
            binary: &binary,
            seed: opts.seed,
            helper: &self.helper,
            shim: shim.as_deref(),
            limits: &spec.limits,
            confinement: &confinement,
            cancel: cancel.flag(),
        };
        let jobs = match crate::harness::Identity::rounds_have_own_users() {
            true => opts.test_jobs,
            false => 1,
        };
        // Tests start in the spec's order, by whichever lane is free, and
        // say so as they start and end; the report keeps the spec's order.
        let results = crate::pool::map(&tests, jobs, |test| {
            if cancel.is_cancelled() {
                return None;
            }
            observer.event(&Event::TestStarted {
                id,
                test: &test.name,
            });
            let result = scenario::run_test(&env, test);
            if cancel.is_cancelled() {
                return None;
            }
            observer.event(&Event::TestFinished {
                id,
                result: &result,
            });
            Some(result)
        });
        for result in results {
            report.tests.push(result.ok_or(GradeError::Cancelled)?);
        }
        report.score = report.tests.iter().map(|t| t.score).sum();
        if let Some(isolation) = report.tests.iter().find_map(|t| t.isolation) {
            let why = report
                .tests
                .iter()
                .find_map(|t| t.isolation_note.as_deref())
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            report.environment.isolation = format!(
                "{}{why}; each program in its own process group and scratch directory, the whole group killed at the end of every test",
                isolation.describe()
            );
        }
        if let Some(t) = report.tests.iter().find(|t| !t.protections.is_empty()) {
            let mut list = t.protections.clone();
            list.push(Protection::active(
                "output capped",
                format!(
                    "output captured up to {} KiB per stream, the rest drained and dropped",
                    spec.limits.output_limit_bytes >> 10
                ),
            ));
            list.extend(grader_protections());
            report.environment.protections = list;
        }
        if let Some(t) = report.tests.iter().find(|t| t.status == Status::Error) {
            report.outcome = Outcome::Ungradable(format!(
                "test {} could not be run: {}",
                t.name,
                t.note
                    .as_deref()
                    .or(t.failure.as_ref().map(|f| f.observed.as_str()))
                    .unwrap_or("unknown error")
            ));
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.environment.grader_peak_rss_kib = peak_rss_kib();
        Ok(report)
    }

    /// [`TaskContext::grade_once`], then [`Event::Finished`] with the report
    /// (a build failure or a machine fault included; a cancelled grade has no
    /// report and no such event).
    pub fn grade(
        &self,
        submission: Submission<'_>,
        opts: &GradeOptions,
        observer: &dyn Observer,
        cancel: &Cancel,
    ) -> Result<Report, GradeError> {
        let report = self.grade_once(submission, opts, observer, cancel)?;
        observer.event(&Event::Finished {
            id: submission.id,
            report: &report,
        });
        Ok(report)
    }
}

/// Builds and grades `submission` against `spec`: a task prepared for one
/// submission, graded with no observer.
pub fn grade(
    course: &Course,
    spec: &Spec,
    submission: &Path,
    opts: &GradeOptions,
) -> Result<Report, GradeError> {
    let ctx = TaskContext::prepare(course, spec.clone())?;
    let id = opts.shown_path.clone();
    ctx.grade(
        Submission {
            id: &id,
            dir: submission,
            digest: None,
        },
        opts,
        &Ignore,
        &Cancel::new(),
    )
}

/// What the grader itself does to contain every test, and the build.
fn grader_protections() -> Vec<Protection> {
    let mut list = vec![builder::isolation()];
    // SAFETY: prctl with PR_GET_CHILD_SUBREAPER writes one int.
    let mut subreaper: libc::c_int = 0;
    unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut subreaper) };
    list.push(if subreaper != 0 {
        Protection::active("child subreaper", "the grader is a child subreaper: daemons stay its descendants; every process of a test is killed at its end; student processes die with the grader (PR_SET_PDEATHSIG)")
    } else {
        Protection::missing("child subreaper", "every process group of a test is still killed at its end, and student processes die with the grader (PR_SET_PDEATHSIG)")
    });
    list
}

/// The grader's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn not_run(test: &Test, why: &str) -> TestResult {
    TestResult {
        name: test.name.clone(),
        description: test.description.clone(),
        score: 0,
        max_score: test.points,
        status: Status::NotRun,
        visibility: test.visibility,
        failure: None,
        note: Some(format!("Not run: {why}.")),
        hints: test.hints(),
        faults: Vec::new(),
        leftovers: Vec::new(),
        isolation: None,
        isolation_note: None,
        protections: Vec::new(),
        duration_ms: 0,
    }
}

fn ungradable(mut report: Report, why: String, tests: &[&Test]) -> Report {
    report.outcome = Outcome::Ungradable(why.clone());
    report.tests = tests
        .iter()
        .map(|t| {
            let mut r = not_run(t, "the grader could not build the submission");
            r.status = Status::Error;
            r.note = Some(format!("Not run: {why}"));
            r
        })
        .collect();
    report
}

/// The report of a submission refused before grading (a hostile archive,
/// no crate inside: [`Outcome::Rejected`], a graded 0 with the reason), or
/// one the machine could not take in ([`Outcome::Ungradable`]): every test
/// not run.
pub fn not_graded(spec: &Spec, submission: Submission<'_>, seed: u64, outcome: Outcome) -> Report {
    let note = match &outcome {
        Outcome::Rejected(_) => "the submission was rejected",
        _ => "the grader could not take the submission in",
    };
    let mut report = new_report(
        spec,
        submission,
        submission.dir.display().to_string(),
        seed,
        spec.max_score(),
    );
    report.outcome = outcome;
    report.tests = spec.tests.iter().map(|t| not_run(t, note)).collect();
    report
}

/// A report of `submission` with nothing graded yet: outcome graded, score
/// 0 of `max_score`, no test, the build not run.
fn new_report(
    spec: &Spec,
    submission: Submission<'_>,
    shown: String,
    seed: u64,
    max_score: u32,
) -> Report {
    Report {
        schema_version: crate::result::SCHEMA_VERSION,
        task: spec.task.id.clone(),
        slug: spec.task.slug.clone(),
        title: spec.task.title.clone(),
        submission_id: submission.id.to_owned(),
        submission: shown,
        submission_digest: submission.digest.map(str::to_owned),
        spec_digest: spec.digest.clone(),
        grader_version: env!("CARGO_PKG_VERSION").to_owned(),
        seed,
        outcome: Outcome::Graded,
        score: 0,
        max_score,
        build: BuildSummary {
            ok: false,
            duration_ms: 0,
            diagnostics: String::new(),
        },
        environment: environment(),
        tests: Vec::new(),
        duration_ms: 0,
    }
}

fn environment() -> Environment {
    Environment {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        isolation: "each program in its own process group and scratch directory; \
                    the whole group is killed at the end of every test"
            .into(),
        protections: Vec::new(),
        grader_peak_rss_kib: peak_rss_kib(),
    }
}
