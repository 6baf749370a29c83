//! task1 (signal handler) graded end to end: the real reference solution,
//! the real starter and the real mutants, as real processes.

mod common;

use common::*;

#[test]
fn reference_gets_full_marks_every_time() {
    assert_reference_full_marks("task1", "task1-signals", &[1, 1, 1]);
}

#[test]
fn reference_gets_full_marks_at_other_seeds() {
    assert_reference_full_marks("task1", "task1-signals", &[2, 3, 4, 5]);
}

#[test]
fn alternative_designs_get_full_marks() {
    // ppoll with a signal mask, and the self-pipe trick: the handout allows
    // both, and no test may tie the spec to the reference's read(2).
    assert_alternatives_full_marks("task1", "task1-signals", 2, &[1, 2]);
}

#[test]
fn a_flood_that_ignores_its_flags_loses_points_every_time() {
    let mutants = mutants("task1");
    let mutant = mutants
        .iter()
        .find(|m| m.name == "flood_ignores_flags")
        .expect("mutant flood_ignores_flags");
    let dir = mutant_crate("task1-signals", mutant);
    let path = dir.path().to_str().unwrap();
    // Graded on the two tests asserted on (a test it fails waits out its
    // step's deadline), the three seeds at once.
    let tests = ["sigterm_stops_flood", "sigusr1_during_flood"];
    std::thread::scope(|s| {
        for seed in ["1", "2", "3"] {
            s.spawn(move || {
                let mut args = vec!["task1", "--path", path, "--seed", seed];
                for name in tests {
                    args.extend(["--only", name]);
                }
                let (code, report) = grade_json(&args);
                assert_eq!(code, 0);
                for name in tests {
                    let t = test(&report, name);
                    assert_eq!(t["score"], 0, "seed {seed}: {name} passed: {t:#}");
                }
                let (score, max) = score(&report);
                assert!(score < max, "seed {seed}");
            });
        }
    });
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task1", "task1-signals");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    assert_every_mutant_caught_in_its_tests("task1", "task1-signals", 3, &[1]);
}

#[test]
fn failure_is_explained_with_hint_and_reproduce_command() {
    let mutants = mutants("task1");
    let mutant = mutants
        .iter()
        .find(|m| m.name == "no_sigterm_handler")
        .expect("mutant no_sigterm_handler");
    let dir = mutant_crate("task1-signals", mutant);
    let path = dir.path().to_str().unwrap();

    let out = grader(&["task1", "--path", path, "--only", "sigterm_graceful"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "NO_COLOR output has no escape codes:\n{text}"
    );
    assert!(text.contains("FAIL  sigterm_graceful"), "{text}");
    assert!(text.contains("What the grader did:"), "{text}");
    assert!(text.contains("sent SIGTERM"), "{text}");
    assert!(
        text.contains("Expected: the next line to match /^bye 2$/"),
        "{text}"
    );
    assert!(text.contains("was killed by SIGTERM"), "{text}");
    assert!(text.contains("Hint: "), "{text}");
    let reproduce =
        format!("Reproduce: cargo grade task1 --path {path} --only sigterm_graceful --seed 1");
    assert!(text.contains(&reproduce), "{text}");
    assert!(
        text.contains("Score: 0/2"),
        "only the selected test counts:\n{text}"
    );
}

#[test]
fn selfcheck_command_passes_and_reports_every_subject() {
    // Its subjects several at once, as many as the suite's batches grade.
    let jobs = SUITE_JOBS.to_string();
    let out = grader(&["selfcheck", "task1", "--format", "json", "--jobs", &jobs])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let verification: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // `selfcheck` is `verify`'s alias: one task, one run (seed 1).
    assert_eq!(verification["seeds"], serde_json::json!([1]));
    let check = &verification["tasks"][0]["runs"][0];
    assert_eq!(check["task"], "task1");
    let subjects: Vec<&str> = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects[..4],
        [
            "reference",
            "alternative ppoll",
            "alternative self-pipe",
            "starter"
        ]
    );
    assert!(
        subjects.iter().filter(|s| s.starts_with("mutant ")).count() >= 3,
        "{subjects:?}"
    );
    assert!(check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
}
