//! Gradescope's `results.json`, as its autograder specification documents
//! it ("Autograder Specifications", gradescope-autograders.readthedocs.io
//! /en/latest/specs/, source `docs/specs.md` of gradescope/autograder_samples):
//! top-level `score`, `execution_time` (seconds), `output`,
//! `output_format`, `test_output_format`, `test_name_format`,
//! `visibility`, `stdout_visibility`, `extra_data` and `tests[]`, each test
//! with `name`, `score`, `max_score`, `status` (`passed`/`failed`),
//! `output` and `visibility` (`hidden`, `after_due_date`,
//! `after_published`, `visible`).
//!
//! Choices, each against that page:
//! - Every format field is `text`: the top-level `output` defaults to
//!   `simple_format`, which renders HTML, and compiler errors or a
//!   program's output must never be rendered as markup.
//! - A hidden spec test is `after_published`: students see it only when the
//!   instructor publishes grades, and even then only what
//!   [`Report::for_audience`] leaves a student (name, points, status, hint).
//!   (Gradescope notes that while tests are hidden a student does not see
//!   the total either.)
//! - `stdout_visibility` is `hidden`: the autograder's own log is for the
//!   instructor.
//! - A build failure or a rejected submission is a graded 0: `score` 0 and
//!   the reason (the compiler's errors) in `output`.
//! - Gradescope has no "not gradable" flag, and a `score` is required
//!   either at the top level or on every test, so an ungradable run cannot
//!   be written as a valid result without inventing a score. Its rendering
//!   therefore has no `score` anywhere, says COULD NOT GRADE in `output`,
//!   and `extra_data.gradable` is `false`; `cargo grade` exits with status 2,
//!   and the packaged `run_autograder` then writes no `results.json` (it
//!   keeps this one as `results/ungradable.json` and prints it), which is
//!   how Gradescope surfaces an autograder failure: "The autograder failed
//!   to execute correctly" (its troubleshooting page), never a 0, and the
//!   instructor can rerun it.

use serde::{Deserialize, Serialize};

use crate::result::{Outcome, Report, Status};
use crate::spec::Visibility;

use super::lms;

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The points; absent when the submission could not be graded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u32>,
    /// Seconds.
    pub execution_time: u64,
    pub output: String,
    pub output_format: String,
    pub test_output_format: String,
    pub test_name_format: String,
    pub visibility: String,
    pub stdout_visibility: String,
    pub extra_data: ExtraData,
    pub tests: Vec<Test>,
}

/// What Gradescope stores beside the score (not shown to students).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraData {
    pub gradable: bool,
    /// `graded`, `build_failed`, `rejected`, `ungradable`.
    pub outcome: String,
    pub task: String,
    pub seed: u64,
    pub grader_version: String,
    pub spec_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_score: Option<u32>,
    pub status: String,
    pub output: String,
    pub visibility: String,
}

/// The visibility a spec test gets on Gradescope.
pub fn visibility(v: Visibility) -> &'static str {
    match v {
        Visibility::Visible => "visible",
        Visibility::Hidden => "after_published",
    }
}

/// `report` as Gradescope's results, as a student may see it.
pub fn results(report: &Report) -> Results {
    let view = lms::student_view(report);
    let gradable = view.outcome.is_verdict();
    let tests = view
        .tests
        .iter()
        .map(|t| Test {
            name: t.name.clone(),
            score: gradable.then_some(t.score),
            max_score: gradable.then_some(t.max_score),
            status: if t.status == Status::Passed {
                "passed"
            } else {
                "failed"
            }
            .into(),
            output: if gradable {
                lms::test_feedback(&view, t)
            } else {
                "Could not be graded: a fault of the grader or the machine, not of your code."
                    .into()
            },
            visibility: visibility(t.visibility).into(),
        })
        .collect();
    Results {
        score: gradable.then_some(view.score),
        execution_time: view.duration_ms.div_ceil(1000),
        output: lms::summary(&view),
        output_format: "text".into(),
        test_output_format: "text".into(),
        test_name_format: "text".into(),
        visibility: "visible".into(),
        stdout_visibility: "hidden".into(),
        extra_data: ExtraData {
            gradable,
            outcome: view.outcome.label().into(),
            task: view.task.clone(),
            seed: view.seed,
            grader_version: view.grader_version.clone(),
            spec_digest: view.spec_digest.clone(),
        },
        tests,
    }
}

/// `results.json`'s text.
pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(&results(report)).expect("the results always serialise")
}

/// Whether Gradescope may be given this result: only a verdict (see the
/// module's notes on ungradable runs).
pub fn is_gradable(report: &Report) -> bool {
    !matches!(report.outcome, Outcome::Ungradable(_))
}

#[cfg(test)]
mod tests {
    use super::super::lms::fixtures::*;
    use super::*;
    use serde_json::Value;

    fn json(report: &Report) -> Value {
        serde_json::from_str(&render(report)).unwrap()
    }

    #[test]
    fn a_graded_report_field_by_field() {
        let v = json(&graded());
        assert_eq!(v["score"], 1);
        assert_eq!(v["execution_time"], 3, "2.5 s, rounded up");
        for key in ["output_format", "test_output_format", "test_name_format"] {
            assert_eq!(v[key], "text", "{key}");
        }
        assert_eq!(v["visibility"], "visible");
        assert_eq!(v["stdout_visibility"], "hidden");
        assert!(v["output"].as_str().unwrap().contains("Score: 1/6"));
        assert_eq!(v["extra_data"]["gradable"], true);
        assert_eq!(v["extra_data"]["outcome"], "graded");
        assert_eq!(v["extra_data"]["seed"], 7);
        let tests = v["tests"].as_array().unwrap();
        let row = |i: usize| {
            let t = &tests[i];
            (
                t["name"].as_str().unwrap(),
                t["score"].as_u64().unwrap(),
                t["max_score"].as_u64().unwrap(),
                t["status"].as_str().unwrap(),
                t["visibility"].as_str().unwrap(),
            )
        };
        assert_eq!(row(0), ("echo_and_eof", 1, 1, "passed", "visible"));
        assert_eq!(row(1), ("sigterm_exits", 0, 2, "failed", "visible"));
        assert_eq!(
            row(2),
            ("secret_protocol", 0, 3, "failed", "after_published")
        );
        let out = tests[1]["output"].as_str().unwrap();
        assert!(out.contains("Expected: exit status 0"), "{out}");
        assert!(out.contains("Reproduce: cargo grade task1"), "{out}");
        assert_eq!(
            tests[2]["output"],
            "This is a hidden test: its details are not shown.\nHint: reread the protocol section"
        );
        // The keys are exactly those the specification lists.
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "execution_time",
                "extra_data",
                "output",
                "output_format",
                "score",
                "stdout_visibility",
                "test_name_format",
                "test_output_format",
                "tests",
                "visibility"
            ]
        );
        let mut test_keys: Vec<&str> = tests[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        test_keys.sort_unstable();
        assert_eq!(
            test_keys,
            [
                "max_score",
                "name",
                "output",
                "score",
                "status",
                "visibility"
            ]
        );
    }

    #[test]
    fn full_marks_is_the_maximum() {
        let v = json(&full_marks());
        assert_eq!(v["score"], 6);
        assert!(v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "passed" && t["score"] == t["max_score"]));
    }

    #[test]
    fn a_build_failure_is_a_graded_zero_with_the_compilers_errors() {
        let v = json(&build_failed());
        assert_eq!(v["score"], 0);
        assert_eq!(v["extra_data"]["gradable"], true);
        assert_eq!(v["extra_data"]["outcome"], "build_failed");
        let output = v["output"].as_str().unwrap();
        assert!(output.contains("does not compile"), "{output}");
        assert!(output.contains("error[E0425]"), "{output}");
        for t in v["tests"].as_array().unwrap() {
            assert_eq!(
                (t["score"].as_u64(), t["status"].as_str()),
                (Some(0), Some("failed"))
            );
            assert!(t["max_score"].as_u64().unwrap() > 0);
        }
    }

    #[test]
    fn ungradable_has_no_score_anywhere_and_says_so() {
        let report = ungradable();
        assert!(!is_gradable(&report));
        let v = json(&report);
        assert!(v.get("score").is_none(), "no invented score: {v:#}");
        for t in v["tests"].as_array().unwrap() {
            assert!(
                t.get("score").is_none() && t.get("max_score").is_none(),
                "{t}"
            );
        }
        assert_eq!(v["extra_data"]["gradable"], false);
        assert_eq!(v["extra_data"]["outcome"], "ungradable");
        assert!(v["output"].as_str().unwrap().starts_with("cargo-grade"));
        assert!(v["output"].as_str().unwrap().contains("COULD NOT GRADE"));
        assert!(is_gradable(&graded()) && is_gradable(&build_failed()));
    }
}
