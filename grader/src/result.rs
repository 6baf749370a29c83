//! The result model: what grading found, independent of how it is shown.
//!
//! Every reporter (human, JSON, and the gradebook formats to come) renders a
//! [`Report`]; none of them re-derives a verdict. The model keeps "could not
//! be graded" (a grader or machine fault: [`Outcome::Ungradable`], or a test
//! in [`Status::Error`]) apart from a graded score of 0 (a build failure of
//! the student's code is [`Outcome::BuildFailed`], a graded 0).

use serde::Serialize;

use crate::spec::Visibility;

/// The grading of one submission against one task.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Task id, `task1`.
    pub task: String,
    pub slug: String,
    pub title: String,
    /// The submission directory, as given.
    pub submission: String,
    /// The seed that drove every randomised fault; `--seed` replays it.
    pub seed: u64,
    pub outcome: Outcome,
    pub score: u32,
    pub max_score: u32,
    pub build: BuildSummary,
    pub environment: Environment,
    pub tests: Vec<TestResult>,
    pub duration_ms: u64,
}

/// Whether the submission was graded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Outcome {
    /// Every test ran; the score is the student's.
    Graded,
    /// The student's code did not compile: a graded 0.
    BuildFailed,
    /// The grader or the machine failed (a test in error, a build that could
    /// not be started): the score is not a verdict.
    Ungradable(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub ok: bool,
    pub duration_ms: u64,
    /// The compiler's errors (and warnings), rendered, when the build failed.
    pub diagnostics: String,
}

/// What the grader could and could not do on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub grader_version: String,
    pub kernel: String,
    /// The isolation each test ran under, in words.
    pub isolation: String,
    /// Every protection that was in force, one line each; a line starting
    /// `NOT ACTIVE` names one this machine did not allow, and why.
    pub protections: Vec<String>,
    /// The grader's own peak resident memory (VmHWM), in KiB: flooding or
    /// hostile submissions must not grow it.
    pub grader_peak_rss_kib: u64,
}

/// The status of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// The program did not do what a step waited for in time (a hang or
    /// deadlock, usually).
    Timeout,
    /// The grader could not run the test (not the student's fault).
    Error,
    /// Not run, because the build failed.
    NotRun,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Error => "error",
            Status::NotRun => "not run",
        }
    }
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub description: String,
    pub score: u32,
    pub max_score: u32,
    pub status: Status,
    pub visibility: Visibility,
    /// The explanation shown to the student: what was done, expected,
    /// observed, the hint. Empty for a pass.
    pub output: String,
    /// Structured form of the failure, for tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub hint: String,
    /// The faults that were active in this test (signals, storms, ...).
    pub faults: Vec<String>,
    /// What the submission left behind (processes, FIFOs, sockets, IPC
    /// objects), one line each; the grader removed all of it.
    pub leftovers: Vec<String>,
    /// The isolation the test ran under (summarised in `environment`).
    #[serde(skip)]
    pub isolation: Option<crate::harness::Isolation>,
    /// Why namespaces were not used, when they were not.
    #[serde(skip)]
    pub isolation_note: Option<String>,
    /// The protections its processes ran under (summarised in
    /// `environment.protections`).
    #[serde(skip)]
    pub protections: Vec<String>,
    /// The one command that reproduces this test.
    pub reproduce: String,
    pub duration_ms: u64,
}

/// Why a test did not pass.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// 1-based step that failed.
    pub step: usize,
    /// What the grader did up to and including that step.
    pub actions: Vec<String>,
    pub expected: String,
    pub observed: String,
    /// The program's last lines of output.
    pub stdout_tail: Vec<String>,
    pub stderr_tail: Vec<String>,
}

impl Report {
    /// The score as a percentage of the maximum.
    pub fn percent(&self) -> f64 {
        if self.max_score == 0 {
            0.0
        } else {
            100.0 * f64::from(self.score) / f64::from(self.max_score)
        }
    }
}
