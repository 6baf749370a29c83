//! task3 (semaphore-guarded shared-memory counter) graded end to end: the
//! real reference solution, starter and mutants, with the grader as a fellow
//! worker on the real shared memory and semaphore.

mod common;

use common::*;

#[test]
fn reference_gets_full_marks_at_seeds_1_to_5() {
    assert_reference_full_marks("task3", "task3-shm-counter", &[1, 2, 3, 4, 5]);
}

#[test]
fn alternative_designs_get_full_marks() {
    // Reaping with waitpid(WNOHANG) between waits in sigsuspend(2), and the go
    // line read with std's read_until (which retries EINTR): the handout
    // allows both, and no test may tie the spec to the reference's blocking
    // waitpid(2) and raw read(2).
    assert_alternatives_full_marks("task3", "task3-shm-counter", 1, &[1, 2]);
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task3", "task3-shm-counter");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    // Many mutants, and the ones that hang cost a step's deadline in every
    // test they fail: each is graded on the tests it lists only, at one
    // seed. `cargo grade selfcheck task3 --seed N` grades them all on the
    // whole spec at any seed (done at 1 to 10 for issue 10).
    assert_every_mutant_caught_in_its_tests("task3", "task3-shm-counter", 10, &[1]);
}

#[test]
fn tests_run_at_once_give_the_report_of_tests_run_one_at_a_time() {
    // The deadlocking mutant (its tests proved stuck while others run) and
    // the starter (most tests failing fast): the same tests, in the spec's
    // order, with the same statuses and scores at any --jobs.
    let mutant = common::mutants("task3")
        .into_iter()
        .find(|m| m.name == "early_return_keeps_lock")
        .expect("the mutant early_return_keeps_lock");
    let crate_dir = common::mutant_crate("task3-shm-counter", &mutant);
    let mutant_path = crate_dir.path().to_str().unwrap().to_owned();
    let starter = common::course_root().join("starter/task3-shm-counter");
    for path in [mutant_path.as_str(), starter.to_str().unwrap()] {
        let verdicts = |jobs: &str| {
            let (_, report) = common::grade_json(&["task3", "--path", path, "--jobs", jobs]);
            let tests: Vec<(String, String, u64)> = report["tests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap().to_owned(),
                        t["status"].as_str().unwrap().to_owned(),
                        t["score"].as_u64().unwrap(),
                    )
                })
                .collect();
            (common::score(&report), tests)
        };
        let one = verdicts("1");
        assert!(one.0 .0 < one.0 .1, "{path}: {one:?}");
        assert_eq!(verdicts("3"), one, "{path}");
    }
}
