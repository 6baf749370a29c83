//! The result model: what grading found, as data, independent of how it is
//! shown.
//!
//! Every reporter (human, text, JSON, JUnit, the batch's gradebook files)
//! renders a [`Report`]; none of them re-derives a verdict, and none of the
//! text people read is stored here: explanations, hints and reproduce
//! commands are rendered from the structured fields ([`crate::report`]). The
//! model round-trips through serde (a batch reads back the reports it wrote
//! to resume, and `merge` reads shards), and carries what a reader needs to
//! know whether two results are comparable: a schema version, the spec's
//! digest, the grader's version and the seed.
//!
//! The model keeps "could not be graded" (a grader or machine fault:
//! [`Outcome::Ungradable`], or a test in [`Status::Error`]) apart from a
//! graded score of 0 (a build failure of the student's code is
//! [`Outcome::BuildFailed`], a graded 0), and both apart from a submission
//! refused before grading ([`Outcome::Rejected`]: a hostile archive, no crate
//! inside).

use serde::{Deserialize, Serialize};

use crate::spec::Visibility;

/// The version of this model's serialised form; bumped on any change a
/// reader of an older report would misread.
pub const SCHEMA_VERSION: u32 = 2;

/// The grading of one submission against one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Task id, `task1`.
    pub task: String,
    pub slug: String,
    pub title: String,
    /// The submission's id: its name in a batch, else the path as given.
    pub submission_id: String,
    /// The submission as shown in reproduce commands (a path).
    pub submission: String,
    /// SHA-256 of the submission's sources, where the batch computed it: a
    /// resumed batch regrades a submission whose digest changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_digest: Option<String>,
    /// SHA-256 of the spec file (and the instructor overlay, if any).
    pub spec_digest: String,
    pub grader_version: String,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Outcome {
    /// Every test ran; the score is the student's.
    Graded,
    /// The student's code did not compile: a graded 0.
    BuildFailed,
    /// The grader or the machine failed (a test in error, a build that could
    /// not be started): the score is not a verdict.
    Ungradable(String),
    /// The submission was refused before any build (an archive that
    /// escapes its directory or expands without bound, no crate inside):
    /// nothing of it ran. A graded 0, with the reason.
    Rejected(String),
}

impl Outcome {
    /// The word a gradebook's `status` column shows.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Graded => "graded",
            Outcome::BuildFailed => "build_failed",
            Outcome::Ungradable(_) => "ungradable",
            Outcome::Rejected(_) => "rejected",
        }
    }

    /// Why the submission was not graded normally, if it was not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Graded => None,
            Outcome::BuildFailed => Some("the code does not compile"),
            Outcome::Ungradable(why) | Outcome::Rejected(why) => Some(why),
        }
    }

    /// Whether the score is a verdict (a graded 0 included).
    pub fn is_verdict(&self) -> bool {
        !matches!(self, Outcome::Ungradable(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub ok: bool,
    pub duration_ms: u64,
    /// The compiler's errors, rendered by the compiler, when the build failed.
    pub diagnostics: String,
}

/// One protection of the sandbox, and whether this machine allowed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// What it protects with, in a few words (`memory cgroup per test`).
    pub name: String,
    pub active: bool,
    /// What it does when active; why not, and what holds instead, when not.
    pub detail: String,
}

impl Protection {
    pub fn active(name: impl Into<String>, detail: impl Into<String>) -> Protection {
        Protection {
            name: name.into(),
            active: true,
            detail: detail.into(),
        }
    }

    pub fn missing(name: impl Into<String>, why: impl Into<String>) -> Protection {
        Protection {
            name: name.into(),
            active: false,
            detail: why.into(),
        }
    }
}

/// What the grader could and could not do on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub kernel: String,
    /// The isolation each test ran under, in words.
    pub isolation: String,
    /// Every protection, in force or not.
    pub protections: Vec<Protection>,
    /// The grader's own peak resident memory (VmHWM), in KiB: flooding or
    /// hostile submissions must not grow it.
    pub grader_peak_rss_kib: u64,
}

/// The status of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// The program did not do what a step waited for in time (a hang or
    /// deadlock, usually).
    Timeout,
    /// The grader could not run the test (not the student's fault).
    Error,
    /// Not run: the build failed, or the submission was rejected.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    pub description: String,
    pub score: u32,
    pub max_score: u32,
    pub status: Status,
    pub visibility: Visibility,
    /// Why the test did not pass, step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Why it was not run, or why the grader could not run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The spec's hints, mildest first.
    #[serde(default)]
    pub hints: Vec<String>,
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
    pub protections: Vec<Protection>,
    pub duration_ms: u64,
}

/// Why a test did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Who a rendering is for. What a hidden test shows is decided here, once,
/// for every format: [`Report::for_audience`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The student (the terminal, `report.json`/`report.txt` of a batch,
    /// Gradescope and GitHub Classroom results): a hidden test shows its
    /// name, points and status only.
    Student,
    /// The instructor (batch gradebook files, `--instructor`): everything.
    Instructor,
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

    /// The report as `audience` may see it. For students, a hidden test
    /// keeps its name, score and status, and loses what it checks and what
    /// the program did in it: description, steps, expectations, output,
    /// faults, leftovers; and every test shows its first hint only (the
    /// student asks for more with `--hint N`: [`Report::for_student`]).
    pub fn for_audience(&self, audience: Audience) -> Report {
        match audience {
            Audience::Student => self.for_student(1),
            Audience::Instructor => self.clone(),
        }
    }

    /// The student's view with up to `hints` hints per test (at least one).
    pub fn for_student(&self, hints: usize) -> Report {
        let mut view = self.clone();
        for t in &mut view.tests {
            t.hints.truncate(hints.max(1));
        }
        for t in view
            .tests
            .iter_mut()
            .filter(|t| t.visibility == Visibility::Hidden)
        {
            t.description.clear();
            t.failure = None;
            t.faults.clear();
            t.leftovers.clear();
            if t.status == Status::Error {
                t.note = Some("the grader could not run this hidden test".into());
            }
        }
        view
    }

    /// The command that reruns one test exactly.
    pub fn reproduce(&self, test: &str) -> String {
        format!(
            "cargo grade {} --path {} --only {test} --seed {}",
            self.task,
            shell_word(&self.submission),
            self.seed
        )
    }
}

/// `s` as one shell word.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            task: "task1".into(),
            slug: "task1-signals".into(),
            title: "Signal handler".into(),
            submission_id: "alice".into(),
            submission: "subs/alice".into(),
            submission_digest: Some("ab".repeat(32)),
            spec_digest: "cd".repeat(32),
            grader_version: "0.1.0".into(),
            seed: 7,
            outcome: Outcome::Graded,
            score: 1,
            max_score: 3,
            build: BuildSummary {
                ok: true,
                duration_ms: 10,
                diagnostics: String::new(),
            },
            environment: Environment {
                kernel: "6.1".into(),
                isolation: "namespaces".into(),
                protections: vec![
                    Protection::active("limits", "CPU, memory"),
                    Protection::missing("memory cgroup", "cgroup v2 without delegation"),
                ],
                grader_peak_rss_kib: 9000,
            },
            tests: vec![
                TestResult {
                    name: "shown".into(),
                    description: "visible".into(),
                    score: 1,
                    max_score: 1,
                    status: Status::Passed,
                    visibility: Visibility::Visible,
                    failure: None,
                    note: None,
                    hints: vec![],
                    faults: vec![],
                    leftovers: vec![],
                    isolation: None,
                    isolation_note: None,
                    protections: vec![],
                    duration_ms: 5,
                },
                TestResult {
                    name: "secret".into(),
                    description: "checks the secret thing".into(),
                    score: 0,
                    max_score: 2,
                    status: Status::Failed,
                    visibility: Visibility::Hidden,
                    failure: Some(Failure {
                        step: 2,
                        actions: vec!["sent the line \"magic\"".into()],
                        expected: "the line /^MAGIC$/".into(),
                        observed: "\"magic\"".into(),
                        stdout_tail: vec!["magic".into()],
                        stderr_tail: vec![],
                    }),
                    note: None,
                    hints: vec!["think".into()],
                    faults: vec!["SIGINT x3".into()],
                    leftovers: vec!["FIFO x".into()],
                    isolation: None,
                    isolation_note: None,
                    protections: vec![],
                    duration_ms: 5,
                },
            ],
            duration_ms: 30,
        }
    }

    #[test]
    fn a_report_reads_back_what_it_wrote() {
        let report = sample();
        let text = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        for outcome in [
            Outcome::BuildFailed,
            Outcome::Ungradable("disk full".into()),
            Outcome::Rejected("path traversal".into()),
        ] {
            let r = Report {
                outcome: outcome.clone(),
                ..report.clone()
            };
            let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back.outcome, outcome);
        }
    }

    #[test]
    fn students_see_a_hidden_test_by_name_and_score_only() {
        let student = sample().for_audience(Audience::Student);
        let text = serde_json::to_string(&student).unwrap();
        for secret in ["magic", "MAGIC", "secret thing", "SIGINT x3", "FIFO x"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let hidden = &student.tests[1];
        assert_eq!((hidden.name.as_str(), hidden.score), ("secret", 0));
        let instructor = sample().for_audience(Audience::Instructor);
        assert_eq!(instructor, sample());
    }

    #[test]
    fn reproduce_quotes_what_the_shell_would_split() {
        let mut r = sample();
        assert_eq!(
            r.reproduce("shown"),
            "cargo grade task1 --path subs/alice --only shown --seed 7"
        );
        r.submission = "my sub's".into();
        assert!(r.reproduce("shown").contains(r"'my sub'\''s'"));
    }
}
