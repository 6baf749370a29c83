//! PrairieLearn's external-grader `results.json`, as its documentation
//! specifies it ("External Grading", section "Grading results", source
//! `docs/externalGrading.md` of PrairieLearn/PrairieLearn): `gradable`,
//! `score` from 0.0 to 1.0, `message`, `output`, and `tests[]` with
//! `name`, `description`, `points`, `max_points`, `message` and `output`
//! (what `<pl-external-grader-results>` renders); `format_errors` when not
//! gradable.
//!
//! An ungradable run (a fault of the grader or the machine) is
//! `"gradable": false`, with no score: PrairieLearn then marks the
//! submission "invalid, not gradable", awards and takes no points and does
//! not count the attempt. It is never a 0. A build failure is, as in every
//! format of this grader, a graded 0 with the compiler's errors.

use serde::{Deserialize, Serialize};

use crate::result::Report;
use crate::spec::Visibility;

use super::lms;

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub gradable: bool,
    /// From 0.0 to 1.0; absent when not gradable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub message: String,
    /// The compiler's errors, when the build failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Why it could not be graded, when it could not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub format_errors: Vec<String>,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    pub description: String,
    pub points: u32,
    pub max_points: u32,
    pub message: String,
    pub output: String,
}

/// `report` as PrairieLearn's results, as a student may see it.
pub fn results(report: &Report) -> Results {
    let view = lms::student_view(report);
    let message = lms::summary(&view);
    if !view.outcome.is_verdict() {
        return Results {
            gradable: false,
            score: None,
            format_errors: vec![message.clone()],
            message,
            output: String::new(),
            tests: Vec::new(),
        };
    }
    let score = if view.max_score == 0 {
        0.0
    } else {
        f64::from(view.score) / f64::from(view.max_score)
    };
    Results {
        gradable: true,
        score: Some(score.clamp(0.0, 1.0)),
        // The summary already carries the compiler's errors of a failed build.
        message,
        output: String::new(),
        format_errors: Vec::new(),
        tests: view
            .tests
            .iter()
            .map(|t| Test {
                name: t.name.clone(),
                description: match t.visibility {
                    Visibility::Visible => t.description.trim().to_owned(),
                    Visibility::Hidden => "A hidden test.".into(),
                },
                points: t.score,
                max_points: t.max_score,
                message: lms::test_message(t),
                output: lms::test_feedback(&view, t),
            })
            .collect(),
    }
}

/// `results.json`'s text.
pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(&results(report)).expect("the results always serialise")
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
        assert_eq!(v["gradable"], true);
        assert!((v["score"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
        assert!(v["message"].as_str().unwrap().contains("Score: 1/6"));
        assert!(v.get("format_errors").is_none());
        let tests = v["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 3);
        let t = &tests[1];
        assert_eq!(t["name"], "sigterm_exits");
        assert_eq!(t["description"], "sigterm_exits does its thing");
        assert_eq!(
            (t["points"].as_u64(), t["max_points"].as_u64()),
            (Some(0), Some(2))
        );
        assert_eq!(
            t["message"],
            "failed at step 3: expected exit status 0; observed killed by SIGTERM"
        );
        assert!(t["output"]
            .as_str()
            .unwrap()
            .contains("Observed: killed by SIGTERM"));
        let hidden = &tests[2];
        assert_eq!(hidden["name"], "secret_protocol");
        assert_eq!(hidden["description"], "A hidden test.");
        assert_eq!(
            (hidden["points"].as_u64(), hidden["max_points"].as_u64()),
            (Some(0), Some(3))
        );
        let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "description",
                "max_points",
                "message",
                "name",
                "output",
                "points"
            ]
        );
        assert_eq!(json(&full_marks())["score"], 1.0);
    }

    #[test]
    fn a_build_failure_is_a_graded_zero_with_the_compilers_errors() {
        let v = json(&build_failed());
        assert_eq!(v["gradable"], true);
        assert_eq!(v["score"], 0.0);
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("does not compile"), "{message}");
        assert!(message.contains("error[E0425]"), "{message}");
        assert!(v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["points"] == 0 && t["max_points"].as_u64() > Some(0)));
    }

    #[test]
    fn ungradable_is_not_gradable_never_a_zero() {
        let v = json(&ungradable());
        assert_eq!(v["gradable"], false);
        assert!(v.get("score").is_none(), "{v:#}");
        assert!(v["message"].as_str().unwrap().contains("COULD NOT GRADE"));
        assert!(v["format_errors"][0]
            .as_str()
            .unwrap()
            .contains("not a verdict on your code"));
        assert_eq!(v["tests"], Value::Array(vec![]));
    }
}
