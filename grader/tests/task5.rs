//! task5 (System V message-type dispatcher) graded end to end: the real
//! reference solution, starter and mutants, with the grader's own clients on
//! a real message queue (in the test's private IPC namespace where the
//! kernel allows).

mod common;

use common::*;

#[test]
fn reference_gets_full_marks_at_seeds_1_to_5() {
    assert_reference_full_marks("task5", "task5-msg-dispatcher", &[1, 2, 3, 4, 5]);
}

#[test]
fn alternative_designs_get_full_marks() {
    // The handout's poll design (msgrcv with IPC_NOWAIT, then a nanosleep):
    // it never blocks in msgrcv, so no test may wait for that call.
    assert_alternatives_full_marks("task5", "task5-msg-dispatcher", 1, &[1, 2]);
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task5", "task5-msg-dispatcher");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    // Each mutant graded on the tests it lists only, at one seed: the ones
    // that hang cost a step's deadline in every test they fail. `cargo grade
    // selfcheck task5 --seed N` grades them all on the whole spec at any
    // seed (done at 1 to 10 for issue 10).
    assert_every_mutant_caught_in_its_tests("task5", "task5-msg-dispatcher", 15, &[1]);
}
