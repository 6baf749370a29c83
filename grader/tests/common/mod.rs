//! Helpers shared by the grader's end-to-end tests: they run the real
//! `cargo-grade` binary on the real course (specs, starters, solutions).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The course repository this grader lives in.
pub fn course_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("grader/ has a parent")
        .to_owned()
}

/// `cargo-grade grade ARGS --course ROOT`, run from the course root.
pub fn grader(args: &[&str]) -> assert_cmd::Command {
    let mut cmd =
        assert_cmd::Command::cargo_bin("cargo-grade").expect("the grader binary is built");
    cmd.arg("grade")
        .args(args)
        .arg("--course")
        .arg(course_root())
        .current_dir(course_root());
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Grades with `--format json` and returns the exit status and the report.
pub fn grade_json(args: &[&str]) -> (i32, Value) {
    let out = grader(args)
        .arg("--format")
        .arg("json")
        .output()
        .expect("run the grader");
    let code = out.status.code().expect("the grader exits normally");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}); exit {code}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// The named test of a JSON report.
pub fn test<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["tests"]
        .as_array()
        .expect("tests[]")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in the report"))
}

/// Score and maximum of a report.
pub fn score(report: &Value) -> (u64, u64) {
    (
        report["score"].as_u64().expect("score"),
        report["max_score"].as_u64().expect("max_score"),
    )
}

/// Names of the tests that lost points, with their status, for messages.
pub fn lost(report: &Value) -> Vec<String> {
    report["tests"]
        .as_array()
        .expect("tests[]")
        .iter()
        .filter(|t| t["score"] != t["max_score"])
        .map(|t| {
            format!(
                "{} ({}): {}",
                t["name"],
                t["status"],
                t["output"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Copies a crate directory (without target/) into a fresh temporary one.
pub fn copy_crate(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("grade-test-")
        .tempdir()
        .expect("tempdir");
    cargo_grade::selfcheck::copy_crate(from, dir.path()).expect("copy the crate");
    dir
}
