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

/// A reader that stops early ends a command that only prints as it ends
/// `ls`: by SIGPIPE, with no panic on stderr. The pipe's read end is closed
/// before the grader starts, so its first write fails, whatever the timing.
#[test]
fn a_closed_stdout_ends_a_printing_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["list"][..], &["schema"], &["check"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-grade"))
            .args(args)
            .current_dir(course_root())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
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

/// Grades with `--format FORMAT`, returning the exit status and stdout.
fn grade_as(format: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = grader(args);
    cmd.args(["--format", format]).env_remove("GITHUB_OUTPUT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the grader");
    (
        out.status.code().expect("exits normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn classroom_result(encoded: &str) -> serde_json::Value {
    let bytes = cargo_grade::report::classroom::decode_base64(encoded.trim()).expect("base64");
    serde_json::from_slice(&bytes).expect("JSON inside")
}

const ONE_TEST: &[&str] = &[
    "task1",
    "--path",
    "solutions/task1-signals",
    "--only",
    "echo_and_eof",
];

#[test]
fn lms_formats_of_one_grade() {
    let (code, out) = grade_as("gradescope", ONE_TEST, &[]);
    assert_eq!(code, 0, "{out}");
    let gs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (gs["score"].as_u64(), gs["tests"][0]["status"].as_str()),
        (Some(1), Some("passed"))
    );
    assert_eq!(gs["tests"][0]["name"], "echo_and_eof");

    let (code, out) = grade_as("prairielearn", ONE_TEST, &[]);
    assert_eq!(code, 0, "{out}");
    let pl: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (pl["gradable"].as_bool(), pl["score"].as_f64()),
        (Some(true), Some(1.0))
    );

    let (code, out) = grade_as("junit", ONE_TEST, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("<?xml"), "{out}");
    assert_eq!(
        out.matches("<testcase name=\"echo_and_eof\"").count(),
        1,
        "{out}"
    );

    // GitHub Classroom: the base64 line on stdout and in $GITHUB_OUTPUT.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("github_output");
    let (code, out) = grade_as(
        "github-classroom",
        ONE_TEST,
        &[("GITHUB_OUTPUT", output.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{out}");
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(written, format!("result={}", out));
    let result = classroom_result(&out);
    assert_eq!(
        (result["version"].as_u64(), result["status"].as_str()),
        (Some(1), Some("pass"))
    );
    assert_eq!(result["max_score"], 1);
    assert_eq!(result["tests"][0]["score"], 1);
}

#[test]
fn lms_formats_of_a_build_failure_are_graded_zeros() {
    let broken = copy_crate(&course_root().join("starter/task1-signals"));
    std::fs::write(
        broken.path().join("src/main.rs"),
        "fn main() { undefined_thing(); }\n",
    )
    .unwrap();
    let path = broken.path().to_str().unwrap();
    let args = ["task1", "--path", path, "--only", "echo_and_eof"];
    let (code, out) = grade_as("gradescope", &args, &[]);
    assert_eq!(code, 0, "a build failure is a verdict: {out}");
    let gs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(gs["score"].as_u64(), Some(0));
    assert!(
        gs["output"].as_str().unwrap().contains("undefined_thing"),
        "{gs:#}"
    );
    let (_, out) = grade_as("prairielearn", &args, &[]);
    let pl: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (pl["gradable"].as_bool(), pl["score"].as_f64()),
        (Some(true), Some(0.0))
    );
    let (_, out) = grade_as("github-classroom", &args, &[]);
    let gc = classroom_result(&out);
    assert_eq!(
        (gc["status"].as_str(), gc["max_score"].as_u64()),
        (Some("fail"), Some(1))
    );
}

#[test]
fn lms_formats_never_turn_a_machine_fault_into_a_zero() {
    // cargo cannot be run: the grader cannot build, which is not the
    // student's fault.
    let env = [("CARGO", "/nonexistent/cargo")];
    let (code, out) = grade_as("gradescope", ONE_TEST, &env);
    assert_eq!(code, 2, "{out}");
    let gs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(gs.get("score").is_none(), "{gs:#}");
    assert!(gs["output"].as_str().unwrap().contains("COULD NOT GRADE"));
    let (code, out) = grade_as("prairielearn", ONE_TEST, &env);
    assert_eq!(code, 2);
    let pl: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pl["gradable"], false);
    assert!(pl.get("score").is_none(), "{pl:#}");
    let (code, out) = grade_as("github-classroom", ONE_TEST, &env);
    assert_eq!(code, 2);
    let gc = classroom_result(&out);
    assert_eq!(
        (gc["status"].as_str(), gc["max_score"].as_u64()),
        (Some("error"), Some(0))
    );
}

#[test]
fn selfcheck_accepts_only_its_own_formats() {
    grader(&["selfcheck", "task1", "--format", "gradescope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("human").and(predicate::str::contains("json")));
}

#[test]
fn an_overlays_hidden_test_is_in_no_lms_format() {
    // The reference fails the hidden test at its last step, so the failure
    // has the secret input in its steps, the secret expectation, and the
    // program's echo of the input in its output: all there to leak.
    let overlay = tempfile::tempdir().unwrap();
    std::fs::write(
        overlay.path().join("task1-signals.toml"),
        "[[test]]\nname = \"instructor_echo\"\npoints = 2\ndescription = \"OVERLAYSECRETDESC\"\n\
         steps = [\n  { start = \"main\" },\n  { expect = '^ready$' },\n\
         \x20 { send_line = \"OVERLAYSECRETINPUT\" },\n  { expect = '^OVERLAYSECRETEXPECT$' },\n]\n",
    )
    .unwrap();
    let ov = overlay.path().to_str().unwrap();
    let args = [
        "task1",
        "--path",
        "solutions/task1-signals",
        "--instructor-specs",
        ov,
        "--only",
        "instructor_echo",
    ];
    for format in ["gradescope", "prairielearn", "github-classroom", "junit"] {
        let (code, out) = grade_as(format, &args, &[]);
        assert_eq!(code, 0, "{format}: {out}");
        let shown = if format == "github-classroom" {
            classroom_result(&out).to_string()
        } else {
            out
        };
        assert!(shown.contains("instructor_echo"), "{format}: {shown}");
        assert!(!shown.contains("OVERLAYSECRET"), "{format} leaks: {shown}");
    }
    // Even asked for the instructor's view, a student-facing LMS format
    // stays one.
    let mut with_instructor = args.to_vec();
    with_instructor.push("--instructor");
    let (_, out) = grade_as("gradescope", &with_instructor, &[]);
    assert!(!out.contains("OVERLAYSECRET"), "{out}");
    let (_, out) = grade_as("json", &with_instructor, &[]);
    for secret in [
        "OVERLAYSECRETDESC",
        "OVERLAYSECRETINPUT",
        "OVERLAYSECRETEXPECT",
    ] {
        assert!(
            out.contains(secret),
            "the instructor's JSON has {secret}: {out}"
        );
    }
}
