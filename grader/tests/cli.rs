//! The command line's contract: exit statuses, errors that name what is
//! wrong, build failures as graded zeros, and report formats.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn list_shows_every_task() {
    grader(&["list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("task1").and(predicate::str::contains("task1-signals")));
}

#[test]
fn task_by_slug_equals_task_by_id() {
    let (_, by_id) = grade_json(&[
        "task1",
        "--path",
        "solutions/task1-signals",
        "--only",
        "echo_and_eof",
    ]);
    let (_, by_slug) = grade_json(&[
        "task1-signals",
        "--path",
        "solutions/task1-signals",
        "--only",
        "echo_and_eof",
    ]);
    assert_eq!(by_id["task"], by_slug["task"]);
    assert_eq!(score(&by_id), (1, 1));
    assert_eq!(score(&by_slug), (1, 1));
}

#[test]
fn unknown_task_is_a_usage_error() {
    grader(&["task42"]).assert().code(2).stderr(
        predicate::str::contains("unknown task \"task42\"")
            .and(predicate::str::contains("task1-signals")),
    );
}

#[test]
fn missing_submission_directory_is_an_error() {
    grader(&["task1", "--path", "no/such/dir"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such/dir"));
}

#[test]
fn only_that_matches_nothing_lists_the_tests() {
    grader(&[
        "task1",
        "--path",
        "solutions/task1-signals",
        "--only",
        "nope",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("storm_while_writing"));
}

#[test]
fn fail_under_sets_exit_status_one() {
    // The starter scores (almost) nothing: below 50% means exit 1, but the
    // report is still printed.
    grader(&["task1", "--fail-under", "50", "--only", "echo_and_eof"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("Score: 0/1"));
    grader(&[
        "task1",
        "--path",
        "solutions/task1-signals",
        "--fail-under",
        "100",
        "--only",
        "echo_and_eof",
    ])
    .assert()
    .code(0);
}

#[test]
fn compile_error_is_a_graded_zero_with_the_compilers_message() {
    let dir = copy_crate(&course_root().join("solutions/task1-signals"));
    std::fs::write(
        dir.path().join("src/main.rs"),
        "fn main() { let x: u32 = \"not a number\"; }\n",
    )
    .unwrap();
    let (code, report) = grade_json(&["task1", "--path", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "a build failure is a verdict, not a grader error");
    assert_eq!(report["outcome"]["kind"], "build_failed");
    assert_eq!(report["score"], 0);
    assert!(report["max_score"].as_u64().unwrap() > 0);
    let diagnostics = report["build"]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("mismatched types"), "{diagnostics}");
    assert!(report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "not_run"));
}

#[test]
fn json_report_has_the_documented_fields() {
    let (_, report) = grade_json(&[
        "task1",
        "--path",
        "solutions/task1-signals",
        "--only",
        "sigint_not_fatal",
        "--seed",
        "7",
    ]);
    for key in [
        "task",
        "score",
        "max_score",
        "seed",
        "tests",
        "outcome",
        "build",
        "environment",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    assert_eq!(report["seed"], 7);
    let t = test(&report, "sigint_not_fatal");
    for key in [
        "name",
        "score",
        "max_score",
        "status",
        "hints",
        "faults",
        "leftovers",
    ] {
        assert!(t.get(key).is_some(), "test is missing {key}");
    }
    assert_eq!(t["status"], "passed");
    for key in [
        "schema_version",
        "submission_id",
        "spec_digest",
        "grader_version",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    // The JSON report is the result model: it reads back as one.
    let back: cargo_grade::result::Report = serde_json::from_value(report.clone()).unwrap();
    assert_eq!(back.seed, 7);
    assert_eq!(
        back.reproduce("sigint_not_fatal"),
        "cargo grade task1 --path solutions/task1-signals --only sigint_not_fatal --seed 7"
    );
}

#[test]
fn invalid_spec_names_file_line_and_key() {
    let course = tempfile::tempdir().unwrap();
    std::fs::create_dir(course.path().join("specs")).unwrap();
    std::fs::write(
        course.path().join("specs/task9-broken.toml"),
        "[task]\nid = \"task9\"\nslug = \"task9-broken\"\ntitle = \"t\"\nbinary = \"b\"\nhandout = \"h\"\n\n\
         [[test]]\nname = \"a\"\npoints = 1\nsteps = [\n  { start = \"main\" },\n  { expct = 'x' },\n]\n",
    )
    .unwrap();
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").unwrap();
    cmd.args(["grade", "task9", "--course"]).arg(course.path());
    cmd.assert().code(2).stderr(
        predicate::str::contains("task9-broken.toml:13").and(predicate::str::contains("expct")),
    );
}

#[test]
fn installed_form_and_alias_form_agree() {
    // Cargo runs an installed subcommand as `cargo-grade grade ARGS`; the
    // leading `grade` is optional for a direct call.
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").unwrap();
    cmd.arg("list").arg("--course").arg(course_root());
    cmd.assert()
        .success()
        .stdout(predicate::str::contains("task1-signals"));
}
