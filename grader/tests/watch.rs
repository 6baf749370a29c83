//! `cargo grade TASK --watch`, driven for real: a file change grades again
//! with the new score, a second change during a grade cancels and restarts
//! it, Ctrl-C leaves cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// Reads the grader's output lines until one contains `needle`, within
/// `within`; returns the lines read.
fn until(rx: &mpsc::Receiver<String>, needle: &str, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with {needle:?} within {within:?}; got:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn a_change_regrades_a_change_during_a_grade_restarts_it_and_ctrl_c_leaves() {
    let root = course_root();
    let work = copy_crate(&root.join("starter/task1-signals"));
    let reference =
        std::fs::read_to_string(root.join("solutions/task1-signals/src/main.rs")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cargo-grade"))
        .args(["grade", "task1", "--watch", "--path"])
        .arg(work.path())
        .arg("--course")
        .arg(&root)
        .current_dir(&root)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let minute = Duration::from_secs(120);

    // The starter, graded at once: a low score, summary first.
    let first = until(&rx, "watching", minute);
    let score = first
        .iter()
        .find(|l| l.starts_with("Score: "))
        .expect("a score line")
        .clone();
    assert!(!score.starts_with("Score: 25/25"), "{first:?}");
    assert!(
        first.iter().position(|l| l.starts_with("Score: "))
            < first.iter().position(|l| l.contains("FAIL"))
    );

    // A change: the reference's code, graded again, full marks.
    std::fs::write(work.path().join("src/main.rs"), &reference).unwrap();
    until(&rx, "sources changed", minute);
    let second = until(&rx, "watching", minute);
    let full = regex::Regex::new(r"^Score: (\d+)/(\d+)").unwrap();
    let caps = second
        .iter()
        .find_map(|l| full.captures(l))
        .unwrap_or_else(|| panic!("{second:?}"));
    assert_eq!(caps[1], caps[2], "{second:?}");

    // A change, then another while that grade runs: the first is
    // cancelled, only the last one's verdict is shown. (The first hangs
    // after `ready`, so its grade lasts for as long as its tests' deadlines:
    // the second change surely comes while it runs.)
    std::fs::write(
        work.path().join("src/main.rs"),
        "fn main() { println!(\"ready\"); loop { std::thread::park(); } }\n",
    )
    .unwrap();
    until(&rx, "sources changed", minute);
    // Once it is built, its sources were read: this change is surely one
    // made during the grade.
    until(&rx, "running the tests", minute);
    std::fs::write(work.path().join("src/main.rs"), "fn main() { nope }\n").unwrap();
    let restarted = until(&rx, "watching", minute);
    assert!(
        restarted
            .iter()
            .any(|l| l.contains("the running grade is cancelled")),
        "{restarted:?}"
    );
    assert!(
        restarted.iter().any(|l| l.contains("build failed")),
        "{restarted:?}"
    );
    assert_eq!(
        restarted
            .iter()
            .filter(|l| l.starts_with("Score: "))
            .count(),
        1,
        "the cancelled grade's verdict is never shown: {restarted:?}"
    );

    // Ctrl-C: out cleanly.
    // SAFETY: kill on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    until(&rx, "stopped watching", minute);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
