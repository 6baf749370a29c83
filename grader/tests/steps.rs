//! The spec step language against real processes: a fixture task whose
//! "submission" runs its argument as a shell script. Every test of the
//! fixture spec is named for the status it must get (pass_, fail_,
//! timeout_), so the spec reads as the behaviour it checks.

mod common;

use std::path::PathBuf;

use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/course")
}

fn grade_fixture(seed: &str) -> Value {
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").unwrap();
    cmd.args([
        "grade", "task9", "--format", "json", "--seed", seed, "--course",
    ])
    .arg(fixture());
    // Keep the fixture's builds apart from the course's.
    cmd.env(
        "CARGO_GRADE_TARGET_DIR",
        common::course_root().join("target/cargo-grade-fixture"),
    );
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_step_passes_fails_or_times_out_as_its_name_says() {
    let report = grade_fixture("1");
    assert_eq!(report["outcome"]["kind"], "graded", "{report:#}");
    for t in report["tests"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let want = match name.split('_').next().unwrap() {
            "pass" => "passed",
            "fail" => "failed",
            "timeout" => "timeout",
            other => panic!("fixture test {name} has no status prefix ({other})"),
        };
        assert_eq!(
            t["status"],
            want,
            "{name}: {}",
            t["output"].as_str().unwrap()
        );
        if want != "passed" {
            let output = t["output"].as_str().unwrap();
            assert!(
                output.contains("Expected: ") && output.contains("Observed: "),
                "{name}: {output}"
            );
        }
    }
}

#[test]
fn failures_say_what_was_observed() {
    let report = grade_fixture("1");
    let observed = |name: &str| -> String {
        let t = common::test(&report, name);
        t["failure"]["observed"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(observed("fail_wrong_line").contains("\"world\""));
    assert!(observed("fail_wrong_exit_status").contains("exited with status 4"));
    assert!(observed("fail_killed_instead_of_exit").contains("SIGABRT"));
    assert!(observed("fail_number_out_of_bounds").contains("9 is more than 3"));
    assert!(observed("fail_missing_handler").contains("no handler for SIGUSR2"));
    assert!(observed("fail_numbered_gap").contains("\"12\""));
    assert!(observed("timeout_line_never_comes").contains("still running"));
    assert!(observed("timeout_busy_instead_of_read").contains("user space"));
    let storm = common::test(&report, "pass_background_storm_is_counted");
    assert_eq!(
        storm["faults"][0],
        "sent SIGCONT ×50, spread over ~20 ms with seeded gaps"
    );
}
