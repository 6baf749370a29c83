//! Grading one submission: build it, run the selected tests, and assemble
//! the [`Report`]. This is the seam that batch grading will call many times
//! in parallel; it owns no global state and writes nothing outside its own
//! scratch directories and the shared build cache.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::builder::{self, BuildResult};
use crate::course::Course;
use crate::harness::Confinement;
use crate::report;
use crate::result::{BuildSummary, Environment, Outcome, Report, Status, TestResult};
use crate::scenario::{self, ScenarioEnv};
use crate::spec::{Spec, Test, Visibility};

/// How to grade.
#[derive(Debug, Clone)]
pub struct GradeOptions {
    pub seed: u64,
    /// Run only tests whose name contains this.
    pub only: Option<String>,
    /// How the submission's path is shown in reproduce commands.
    pub shown_path: String,
}

/// The grader could not grade (no verdict at all).
#[derive(Debug)]
pub enum GradeError {
    /// `--only` selected nothing.
    NoTestSelected {
        pattern: String,
        names: Vec<String>,
    },
    Submission(String),
}

impl std::fmt::Display for GradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradeError::NoTestSelected { pattern, names } => {
                write!(
                    f,
                    "no test name contains {pattern:?}; the tests are: {}",
                    names.join(", ")
                )
            }
            GradeError::Submission(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for GradeError {}

/// The tests `only` selects: the test of exactly that name if there is one,
/// else every test whose name contains it.
pub fn select<'s>(spec: &'s Spec, only: Option<&str>) -> Result<Vec<&'s Test>, GradeError> {
    let exact = |t: &&Test| only.is_some_and(|p| t.name == p);
    let selected: Vec<&Test> = if spec.tests.iter().any(|t| exact(&t)) {
        spec.tests.iter().filter(exact).collect()
    } else {
        spec.tests
            .iter()
            .filter(|t| only.is_none_or(|p| t.name.contains(p)))
            .collect()
    };
    if selected.is_empty() {
        return Err(GradeError::NoTestSelected {
            pattern: only.unwrap_or_default().to_owned(),
            names: spec.tests.iter().map(|t| t.name.clone()).collect(),
        });
    }
    Ok(selected)
}

/// Builds and grades `submission` against `spec`.
pub fn grade(
    course: &Course,
    spec: &Spec,
    submission: &Path,
    opts: &GradeOptions,
) -> Result<Report, GradeError> {
    let started = Instant::now();
    let tests = select(spec, opts.only.as_deref())?;
    if !submission.is_dir() {
        return Err(GradeError::Submission(format!(
            "submission {} is not a directory",
            submission.display()
        )));
    }
    let mut report = Report {
        task: spec.task.id.clone(),
        slug: spec.task.slug.clone(),
        title: spec.task.title.clone(),
        submission: opts.shown_path.clone(),
        seed: opts.seed,
        outcome: Outcome::Graded,
        score: 0,
        max_score: tests.iter().map(|t| t.points).sum(),
        build: BuildSummary {
            ok: false,
            duration_ms: 0,
            diagnostics: String::new(),
        },
        environment: environment(),
        tests: Vec::new(),
        duration_ms: 0,
    };

    // The binaries student processes run: readable and executable by the
    // unprivileged user they run as, mounted read-only in their sandbox.
    // What graders killed before us left behind goes first.
    crate::harness::scratch::remove_stale();
    let scratch = match crate::harness::scratch::create("bin-", 0o755) {
        Ok(dir) => dir,
        Err(e) => {
            return Ok(ungradable(
                report,
                format!("cannot create a scratch directory: {e}"),
                &tests,
                opts,
            ))
        }
    };
    let binary = match builder::build(course, spec, submission, scratch.path()) {
        Err(e) => return Ok(ungradable(report, e.to_string(), &tests, opts)),
        Ok(BuildResult::Failed {
            diagnostics,
            duration,
        }) => {
            report.outcome = Outcome::BuildFailed;
            report.environment.protections = grader_protections();
            report.build.duration_ms = duration.as_millis() as u64;
            report.build.diagnostics = diagnostics;
            report.tests = tests
                .iter()
                .map(|t| not_run(t, "the build failed", opts, &spec.task.id))
                .collect();
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        Ok(BuildResult::Built { binary, duration }) => {
            report.build.ok = true;
            report.build.duration_ms = duration.as_millis() as u64;
            binary
        }
    };

    // The grader's own binary runs its peers and the namespace holder.
    // /proc/self/exe, exec'd by a forked child, is that binary even if the
    // file was replaced meanwhile (a rebuild or reinstall during a batch).
    let helper = PathBuf::from("/proc/self/exe");
    if !helper.exists() {
        return Ok(ungradable(
            report,
            "cannot find the grader's own binary (/proc/self/exe) to run its peers".into(),
            &tests,
            opts,
        ));
    }
    let shim = if tests.iter().any(|t| t.io_faults.is_some()) {
        let built = crate::shim::ensure_built(&course.root, &course.work_dir());
        // A copy beside the binary: the course's build directory is hidden.
        let copied = built.and_then(|path| {
            let copy = scratch.path().join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &copy)
                .map(|_| copy)
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))
        });
        match copied {
            Ok(path) => Some(path),
            Err(e) => {
                return Ok(ungradable(
                    report,
                    format!("cannot build the I/O fault shim: {e}"),
                    &tests,
                    opts,
                ))
            }
        }
    } else {
        None
    };
    let confinement = Confinement {
        hidden: [
            course.root.clone(),
            course.work_dir(),
            submission.to_owned(),
        ]
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect(),
        readonly: vec![scratch.path().to_owned()],
        disk_bytes: spec.limits.disk_mib << 20,
        memory_bytes: spec.limits.test_memory_mib << 20,
    };
    let env = ScenarioEnv {
        binary: &binary,
        seed: opts.seed,
        helper: &helper,
        shim: shim.as_deref(),
        limits: &spec.limits,
        confinement: &confinement,
    };
    for test in tests {
        let mut result = scenario::run_test(&env, test);
        result.reproduce = reproduce(&spec.task.id, opts, &test.name);
        result.output = report::explain(&result);
        if result.visibility == Visibility::Hidden {
            // What a hidden test checks stays out of every report.
            result.failure = None;
        }
        report.tests.push(result);
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
        let mut lines = t.protections.clone();
        lines.push(format!(
            "output captured up to {} KiB per stream, the rest drained and dropped",
            spec.limits.output_limit_bytes >> 10
        ));
        lines.extend(grader_protections());
        report.environment.protections = lines;
    }
    if let Some(t) = report.tests.iter().find(|t| t.status == Status::Error) {
        report.outcome =
            Outcome::Ungradable(format!("test {} could not be run: {}", t.name, t.output));
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.environment.grader_peak_rss_kib = peak_rss_kib();
    Ok(report)
}

/// What the grader itself does to contain every test, and the build.
fn grader_protections() -> Vec<String> {
    let mut lines = vec![builder::isolation().to_owned()];
    // SAFETY: prctl with PR_GET_CHILD_SUBREAPER writes one int.
    let mut subreaper: libc::c_int = 0;
    unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut subreaper) };
    lines.push(if subreaper != 0 {
        "the grader is a child subreaper: daemons stay its descendants; every process of a test is killed at its end; student processes die with the grader (PR_SET_PDEATHSIG)".into()
    } else {
        "NOT ACTIVE: child subreaper; every process group of a test is still killed at its end, and student processes die with the grader (PR_SET_PDEATHSIG)".into()
    });
    lines
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

/// The command that reruns one test exactly.
fn reproduce(task: &str, opts: &GradeOptions, test: &str) -> String {
    format!(
        "cargo grade {task} --path {} --only {test} --seed {}",
        shell_word(&opts.shown_path),
        opts.seed
    )
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn not_run(test: &Test, why: &str, opts: &GradeOptions, task: &str) -> TestResult {
    TestResult {
        name: test.name.clone(),
        description: test.description.clone(),
        score: 0,
        max_score: test.points,
        status: Status::NotRun,
        visibility: test.visibility,
        output: format!("Not run: {why}."),
        failure: None,
        hint: test.hint.clone(),
        faults: Vec::new(),
        leftovers: Vec::new(),
        isolation: None,
        isolation_note: None,
        protections: Vec::new(),
        reproduce: reproduce(task, opts, &test.name),
        duration_ms: 0,
    }
}

fn ungradable(mut report: Report, why: String, tests: &[&Test], opts: &GradeOptions) -> Report {
    report.outcome = Outcome::Ungradable(why.clone());
    report.tests = tests
        .iter()
        .map(|t| {
            let mut r = not_run(
                t,
                "the grader could not build the submission",
                opts,
                &report.task,
            );
            r.status = Status::Error;
            r.output = format!("Not run: {why}");
            r
        })
        .collect();
    report
}

fn environment() -> Environment {
    Environment {
        grader_version: env!("CARGO_PKG_VERSION").to_owned(),
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
