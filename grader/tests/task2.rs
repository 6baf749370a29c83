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
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task2", "task2-fifo-chat");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    assert_every_mutant_caught("task2", "task2-fifo-chat", 4, &[1, 2]);
}
