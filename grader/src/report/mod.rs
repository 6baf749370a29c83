//! Reporters: each renders a [`Report`](crate::result::Report) for one
//! audience and decides nothing about the verdict.

pub mod human;
pub mod json;

use std::fmt::Write;

use crate::result::{Status, TestResult};
use crate::spec::Visibility;

/// The plain-text explanation of one test result: what the grader did, what
/// it expected, what it observed, the hint, and how to reproduce it. This is
/// the `output` of the JSON report (and of the gradebook formats to come);
/// the human reporter shows the same parts with colour.
pub fn explain(result: &TestResult) -> String {
    let mut out = String::new();
    match result.status {
        Status::Passed => return out,
        Status::NotRun => return result.output.clone(),
        _ => {}
    }
    if result.visibility == Visibility::Hidden {
        let _ = writeln!(out, "This is a hidden test: its details are not shown.");
        if !result.hint.is_empty() {
            let _ = writeln!(out, "Hint: {}", result.hint);
        }
        return out;
    }
    if let Some(f) = &result.failure {
        let _ = writeln!(out, "What the grader did:");
        for (i, action) in f.actions.iter().enumerate() {
            let _ = writeln!(out, "  {}. {action}", i + 1);
        }
        let _ = writeln!(out, "Expected: {}", f.expected);
        let _ = writeln!(out, "Observed: {}", f.observed);
        if !result.faults.is_empty() {
            let _ = writeln!(out, "Faults injected: {}", result.faults.join("; "));
        }
        if !result.leftovers.is_empty() {
            let _ = writeln!(out, "Left behind (the grader removed it):");
            for line in &result.leftovers {
                let _ = writeln!(out, "  - {line}");
            }
        }
        for (label, tail) in [("stdout", &f.stdout_tail), ("stderr", &f.stderr_tail)] {
            if !tail.is_empty() {
                let _ = writeln!(out, "Last lines of {label}:");
                for line in tail {
                    let _ = writeln!(out, "  | {line}");
                }
            }
        }
    } else {
        let _ = writeln!(out, "{}", result.output);
    }
    if !result.hint.is_empty() {
        let _ = writeln!(out, "Hint: {}", result.hint);
    }
    let _ = writeln!(out, "Reproduce: {}", result.reproduce);
    out
}
