//! What the learning-management-system formats share: the student's view
//! of a report, each test's feedback text, and the summary of the whole
//! submission, rendered once so that Gradescope, PrairieLearn and GitHub
//! Classroom say the same thing.
//!
//! These formats are student-facing by construction: every renderer starts
//! from [`student_view`] ([`Report::for_audience`] for
//! [`Audience::Student`]), whatever audience its caller asked for, so a
//! hidden test shows its name, points and status only. Everything a
//! submission produced passes through [`visible`] (no control character
//! reaches a browser or a log), and what is unbounded (compiler errors) is
//! capped, since an LMS limits its result files (PrairieLearn: 1 MB).

use std::fmt::Write as _;

use crate::result::{Audience, Outcome, Report, Status, TestResult};
use crate::spec::Visibility;

use super::safe::visible;

/// The most of the compiler's errors an LMS result carries.
pub const MAX_DIAGNOSTICS: usize = 64 * 1024;

/// The report as a student may see it: the one place that decides is
/// [`Report::for_audience`].
pub fn student_view(report: &Report) -> Report {
    report.for_audience(Audience::Student)
}

/// `text`, at most `limit` bytes of it (cut at a character boundary), with
/// a note of how much was left out.
pub fn cap(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n... ({} more bytes not shown)",
        &text[..end],
        text.len() - end
    )
}

/// The compiler's errors, shown safely and capped.
pub fn diagnostics(view: &Report) -> String {
    cap(&visible(view.build.diagnostics.trim_end()), MAX_DIAGNOSTICS)
}

/// The feedback of one test, as plain text: for a visible test its
/// description, then why it lost points ([`super::explain`]: what the
/// grader did, expected, observed, the hint, the reproduce command); for a
/// hidden one only that it is hidden (and its hint).
pub fn test_feedback(view: &Report, t: &TestResult) -> String {
    let mut out = String::new();
    if t.visibility == Visibility::Visible && !t.description.trim().is_empty() {
        let _ = writeln!(out, "{}", t.description.trim());
    }
    let why = super::explain(view, t);
    if t.status == Status::Passed {
        let _ = writeln!(out, "Passed.");
    } else if !why.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&why);
    }
    visible(out.trim_end())
}

/// One line on a test: `passed`, or what went wrong, for the formats that
/// show a short message beside the full feedback.
pub fn test_message(t: &TestResult) -> String {
    let line = match (t.status, t.visibility, &t.failure) {
        (Status::Passed, _, _) => "passed".to_owned(),
        // Why the grader did not run it: its own words, never the test's.
        (Status::NotRun | Status::Error, _, _) => t
            .note
            .clone()
            .unwrap_or_else(|| t.status.label().to_owned()),
        (_, Visibility::Hidden, _) => format!(
            "{}: a hidden test, its details are not shown",
            t.status.label()
        ),
        (_, _, Some(f)) => format!(
            "{} at step {}: expected {}; observed {}",
            t.status.label(),
            f.step,
            f.expected,
            f.observed
        ),
        (_, _, None) => t
            .note
            .clone()
            .unwrap_or_else(|| t.status.label().to_owned()),
    };
    let line = visible(line.lines().next().unwrap_or("").trim());
    if line.chars().count() > 300 {
        format!("{}...", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

/// What is said about the whole submission: its score, or why it has a
/// graded 0 (the build failed, the submission was rejected), or, loudly,
/// that it could not be graded at all.
pub fn summary(view: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cargo-grade {} · {} {} · seed {}",
        view.grader_version, view.task, view.title, view.seed
    );
    match &view.outcome {
        Outcome::Graded => {
            let _ = writeln!(
                out,
                "Score: {}/{} ({:.0}%).",
                view.score,
                view.max_score,
                view.percent()
            );
            let lost = view.tests.iter().filter(|t| t.score < t.max_score).count();
            if lost > 0 {
                let _ = writeln!(
                    out,
                    "{lost} of {} tests lost points: each says what the grader did, expected and observed, \
                     and how to rerun it (cargo grade {} --only TEST --seed {}).",
                    view.tests.len(),
                    view.task,
                    view.seed
                );
            }
            let hidden = view
                .tests
                .iter()
                .filter(|t| t.visibility == Visibility::Hidden)
                .count();
            if hidden > 0 {
                let _ = writeln!(
                    out,
                    "{hidden} hidden tests show their name and points only."
                );
            }
        }
        Outcome::BuildFailed => {
            let _ = writeln!(
                out,
                "Build failed: your code does not compile, so every test scores 0.\n\n{}",
                diagnostics(view)
            );
        }
        Outcome::Rejected(why) => {
            let _ = writeln!(
                out,
                "Submission rejected: {}. Nothing of it was built or run, so every test scores 0.",
                visible(why)
            );
        }
        Outcome::Ungradable(why) => {
            let _ = writeln!(
                out,
                "COULD NOT GRADE: {}\n\
                 This is a fault of the grader or the machine, not a verdict on your code: \
                 no score is given (not even 0). Ask your instructor to regrade this submission.",
                visible(why)
            );
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Reports of each outcome, with a hidden test whose secrets (steps,
    //! expectation, output, description, faults, leftovers) must never
    //! reach a student-facing format.

    use crate::result::*;
    use crate::spec::Visibility;

    /// Every secret of the hidden test: none may appear in student output.
    pub const SECRETS: &[&str] = &[
        "sent the line \"xyzzy-plugh\"",
        "xyzzy-plugh",
        "the line /^PLUGH-OUT$/",
        "PLUGH-OUT",
        "what-the-hidden-program-printed",
        "an-error-line-of-the-hidden-test",
        "checks the secret plugh protocol",
        "SIGUSR2 x7 secret storm",
        "FIFO /tmp/secret-plugh.fifo",
    ];

    fn test(name: &str, points: u32, score: u32, status: Status) -> TestResult {
        TestResult {
            name: name.into(),
            description: format!("{name} does its thing"),
            score,
            max_score: points,
            status,
            visibility: Visibility::Visible,
            failure: None,
            note: None,
            hints: vec![],
            faults: vec![],
            leftovers: vec![],
            isolation: None,
            isolation_note: None,
            protections: vec![],
            duration_ms: 120,
        }
    }

    /// A graded report: one visible pass, one visible failure (with a
    /// control character in its output), one hidden failure.
    pub fn graded() -> Report {
        let mut failed = test("sigterm_exits", 2, 0, Status::Failed);
        failed.failure = Some(Failure {
            step: 3,
            actions: vec![
                "started the program".into(),
                "sent SIGTERM".into(),
                "waited for the exit".into(),
            ],
            expected: "exit status 0".into(),
            observed: "killed by SIGTERM".into(),
            stdout_tail: vec!["ready\u{1b}[2J".into()],
            stderr_tail: vec![],
        });
        failed.hints = vec!["install a handler with sigaction".into()];
        let mut hidden = test("secret_protocol", 3, 0, Status::Failed);
        hidden.visibility = Visibility::Hidden;
        hidden.description = "checks the secret plugh protocol".into();
        hidden.failure = Some(Failure {
            step: 2,
            actions: vec!["sent the line \"xyzzy-plugh\"".into()],
            expected: "the line /^PLUGH-OUT$/".into(),
            observed: "\"what-the-hidden-program-printed\"".into(),
            stdout_tail: vec!["what-the-hidden-program-printed".into()],
            stderr_tail: vec!["an-error-line-of-the-hidden-test".into()],
        });
        hidden.hints = vec!["reread the protocol section".into()];
        hidden.faults = vec!["SIGUSR2 x7 secret storm".into()];
        hidden.leftovers = vec!["FIFO /tmp/secret-plugh.fifo".into()];
        Report {
            schema_version: SCHEMA_VERSION,
            task: "task1".into(),
            slug: "task1-signals".into(),
            title: "Signal handler".into(),
            submission_id: "alice".into(),
            submission: "subs/alice".into(),
            submission_digest: None,
            spec_digest: "cd".repeat(32),
            grader_version: "0.1.0".into(),
            seed: 7,
            outcome: Outcome::Graded,
            score: 1,
            max_score: 6,
            build: BuildSummary {
                ok: true,
                duration_ms: 900,
                diagnostics: String::new(),
            },
            environment: Environment {
                kernel: "6.1".into(),
                isolation: "namespaces".into(),
                protections: vec![],
                grader_peak_rss_kib: 9000,
            },
            tests: vec![test("echo_and_eof", 1, 1, Status::Passed), failed, hidden],
            duration_ms: 2500,
        }
    }

    /// The same submission, all tests passed.
    pub fn full_marks() -> Report {
        let mut r = graded();
        for t in &mut r.tests {
            t.status = Status::Passed;
            t.score = t.max_score;
            t.failure = None;
            t.faults.clear();
            t.leftovers.clear();
        }
        r.score = r.max_score;
        r
    }

    /// The code did not compile: a graded 0 with the compiler's errors.
    pub fn build_failed() -> Report {
        let mut r = graded();
        r.outcome = Outcome::BuildFailed;
        r.score = 0;
        r.build.ok = false;
        r.build.diagnostics =
            "error[E0425]: cannot find value `sigterm_flag` in this scope\n --> src/main.rs:12:5\n"
                .into();
        for t in &mut r.tests {
            t.status = Status::NotRun;
            t.score = 0;
            t.failure = None;
            t.faults.clear();
            t.leftovers.clear();
            t.note = Some("Not run: the build failed.".into());
        }
        r
    }

    /// The machine failed: no verdict.
    pub fn ungradable() -> Report {
        let mut r = graded();
        r.outcome = Outcome::Ungradable("cannot create a scratch directory: disk full".into());
        r.score = 0;
        for t in &mut r.tests {
            t.status = Status::Error;
            t.score = 0;
            t.failure = None;
            t.note = Some("Not run: cannot create a scratch directory: disk full".into());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    /// Every student-facing rendering of `report`.
    fn renderings(report: &Report) -> Vec<(&'static str, String)> {
        vec![
            (
                "gradescope",
                serde_json::to_string(&super::super::gradescope::results(report)).unwrap(),
            ),
            (
                "prairielearn",
                serde_json::to_string(&super::super::prairielearn::results(report)).unwrap(),
            ),
            (
                "github-classroom",
                serde_json::to_string(&super::super::classroom::results(report)).unwrap(),
            ),
            (
                "github-classroom base64, decoded",
                String::from_utf8(
                    super::super::classroom::decode_base64(&super::super::classroom::encode(
                        report,
                    ))
                    .unwrap(),
                )
                .unwrap(),
            ),
            ("summary", summary(&student_view(report))),
            (
                "junit (a single grade: the student's view)",
                super::super::gradebook::junit_xml(&spec(), &[student_view(report)]),
            ),
        ]
    }

    fn spec() -> crate::spec::Spec {
        let text = "[task]\nid = \"task1\"\nslug = \"task1-signals\"\ntitle = \"Signal handler\"\n\
                    binary = \"task1-signals\"\nhandout = \"tasks/task1-signals.md\"\n\n\
                    [[test]]\nname = \"echo_and_eof\"\npoints = 1\n\
                    steps = [{ start = \"main\" }, { expect_exit = 0 }]\n";
        crate::spec::Spec::parse(std::path::Path::new("specs/task1-signals.toml"), text).unwrap()
    }

    #[test]
    fn junit_of_one_submission_is_one_suite() {
        let xml = super::super::gradebook::junit_xml(&spec(), &[student_view(&graded())]);
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(
            xml.contains("<failure message=\"expected exit status 0\""),
            "{xml}"
        );
        assert!(xml.contains("This is a hidden test: its details are not shown."));
        let failed = super::super::gradebook::junit_xml(&spec(), &[student_view(&build_failed())]);
        assert!(failed.contains("<system-out>error[E0425]"), "{failed}");
        assert_eq!(failed.matches("<skipped ").count(), 3);
    }

    #[test]
    fn no_student_format_carries_a_hidden_tests_secrets() {
        for report in [graded(), build_failed(), ungradable()] {
            for (format, text) in renderings(&report) {
                for secret in SECRETS {
                    assert!(
                        !text.contains(secret),
                        "{format} leaks {secret:?} of the hidden test ({:?}): {text}",
                        report.outcome
                    );
                }
            }
        }
        // The hidden test is still there, by name.
        for (format, text) in renderings(&graded()) {
            if format != "summary" {
                assert!(text.contains("secret_protocol"), "{format}: {text}");
            }
        }
    }

    #[test]
    fn a_submissions_control_characters_are_shown_escaped() {
        for (format, text) in renderings(&graded()) {
            assert!(!text.contains('\u{1b}'), "{format}: {text}");
        }
        let view = student_view(&graded());
        assert!(test_feedback(&view, &view.tests[1]).contains("ready\\x1b[2J"));
    }

    #[test]
    fn feedback_explains_a_visible_failure_and_hides_a_hidden_one() {
        let view = student_view(&graded());
        let visible_one = test_feedback(&view, &view.tests[1]);
        for part in [
            "sigterm_exits does its thing",
            "Expected: exit status 0",
            "Observed: killed by SIGTERM",
            "Hint: install a handler with sigaction",
            "Reproduce: cargo grade task1 --path subs/alice --only sigterm_exits --seed 7",
        ] {
            assert!(visible_one.contains(part), "{part}: {visible_one}");
        }
        let hidden = test_feedback(&view, &view.tests[2]);
        assert_eq!(
            hidden,
            "This is a hidden test: its details are not shown.\nHint: reread the protocol section"
        );
        assert_eq!(
            test_feedback(&view, &view.tests[0]),
            "echo_and_eof does its thing\nPassed."
        );
        assert_eq!(
            test_message(&view.tests[1]),
            "failed at step 3: expected exit status 0; observed killed by SIGTERM"
        );
        assert_eq!(
            test_message(&view.tests[2]),
            "failed: a hidden test, its details are not shown"
        );
    }

    #[test]
    fn summaries_say_which_outcome_it_was() {
        assert!(summary(&graded()).contains("Score: 1/6 (17%)."));
        let failed = summary(&build_failed());
        assert!(failed.contains("does not compile, so every test scores 0"));
        assert!(failed.contains("error[E0425]: cannot find value `sigterm_flag`"));
        let ungradable = summary(&ungradable());
        assert!(ungradable.contains("COULD NOT GRADE: cannot create a scratch directory"));
        assert!(ungradable.contains("not a verdict on your code"));
        assert!(!ungradable.contains("Score:"));
    }

    #[test]
    fn cap_cuts_at_a_character_boundary_and_says_so() {
        assert_eq!(cap("short", 10), "short");
        let capped = cap("ééééé", 3);
        assert_eq!(capped, "é\n... (8 more bytes not shown)");
    }
}
