//! task2 (FIFO chat) graded end to end: the real reference solution, starter
//! and mutants, as real processes talking through real FIFOs, with faults
//! injected into their own read/write calls.

mod common;

use common::*;

#[test]
fn reference_gets_full_marks_at_seeds_1_to_5() {
    assert_reference_full_marks("task2", "task2-fifo-chat", &[1, 2, 3, 4, 5]);
}

#[test]
fn alternative_designs_get_full_marks() {
    // One thread waiting in poll(2) on non-blocking FIFOs (after the blocking
    // opens in the documented order), SIGINT through a self-pipe once
    // connected: the handout allows it, and no test may tie the spec to the
    // reference's two threads blocked in read(2).
    assert_alternatives_full_marks("task2", "task2-fifo-chat", 1, &[1, 2]);
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task2", "task2-fifo-chat");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    // Many mutants, and the ones that hang cost a step's deadline in every
    // test they fail: each is graded on the tests it lists only, at one
    // seed. `cargo grade selfcheck task2 --seed N` grades them all on the
    // whole spec at any seed (done at 1 to 10 for issue 10).
    assert_every_mutant_caught_in_its_tests("task2", "task2-fifo-chat", 10, &[1]);
}
