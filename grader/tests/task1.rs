//! task1 (signal handler) graded end to end: the real reference solution,
//! the real starter and the real mutants, as real processes.

mod common;

use cargo_grade::course::Course;
use cargo_grade::selfcheck::{self, Mutant};
use common::*;

#[test]
fn reference_gets_full_marks_every_time() {
    for _ in 0..3 {
        let (code, report) = grade_json(&["task1", "--path", "solutions/task1-signals"]);
        assert_eq!(code, 0);
        let (score, max) = score(&report);
        assert_eq!(score, max, "lost points: {:#?}", lost(&report));
        assert_eq!(report["outcome"]["kind"], "graded");
        assert_eq!(report["seed"], 1);
        assert!(max >= 10, "task1 is worth at least 10 points, got {max}");
    }
}

#[test]
fn reference_gets_full_marks_at_other_seeds() {
    for seed in ["2", "3", "4", "5"] {
        let (_, report) =
            grade_json(&["task1", "--path", "solutions/task1-signals", "--seed", seed]);
        let (score, max) = score(&report);
        assert_eq!(score, max, "seed {seed}: {:#?}", lost(&report));
        assert_eq!(report["seed"].to_string(), seed);
    }
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    // No --path: the default submission is the starter crate.
    let (code, report) = grade_json(&["task1"]);
    assert_eq!(code, 0);
    assert_eq!(
        report["outcome"]["kind"], "graded",
        "the starter must compile"
    );
    let (score, max) = score(&report);
    assert!(score * 10 <= max, "starter scored {score}/{max}");
    assert_eq!(report["submission"], "starter/task1-signals");
}

/// task1's mutants, from `solutions/task1-signals/mutants.toml`.
fn mutants() -> Vec<Mutant> {
    let course = Course {
        root: course_root(),
    };
    let spec = course.task("task1").unwrap();
    selfcheck::load_mutants(&selfcheck::mutants_path(&course, &spec), &spec).unwrap()
}

/// The mutant's crate: the reference solution with the mutant's patch.
fn mutant_crate(mutant: &Mutant) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let solution = course_root().join("solutions/task1-signals");
    selfcheck::materialise(mutant, &solution, dir.path()).unwrap();
    dir
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    let mutants = mutants();
    assert!(mutants.len() >= 3, "task1 needs at least three mutants");
    for mutant in &mutants {
        let dir = mutant_crate(mutant);
        let path = dir.path().to_str().unwrap();
        let (code, report) = grade_json(&["task1", "--path", path]);
        assert_eq!(code, 0, "mutant {}", mutant.name);
        assert_eq!(
            report["outcome"]["kind"], "graded",
            "mutant {} must compile",
            mutant.name
        );
        for name in &mutant.catches {
            let t = test(&report, name);
            assert!(
                t["score"].as_u64() < t["max_score"].as_u64(),
                "mutant {} was not caught by {name}: {t:#}",
                mutant.name
            );
            assert!(
                !t["output"].as_str().unwrap().is_empty(),
                "a lost point is explained"
            );
        }
    }
}

#[test]
fn failure_is_explained_with_hint_and_reproduce_command() {
    let mutants = mutants();
    let mutant = mutants
        .iter()
        .find(|m| m.name == "no_sigterm_handler")
        .expect("mutant no_sigterm_handler");
    let dir = mutant_crate(mutant);
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
    let out = grader(&["selfcheck", "task1", "--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let check: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let subjects: Vec<&str> = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects[..2], ["reference", "starter"]);
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
