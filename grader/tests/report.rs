//! The report a student reads: a cause that took many tests down is said
//! once, and a submission's own bytes never reach the terminal as anything
//! but visible text (run under a real pseudo-terminal, so colours are on).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

/// Every untouched starter's human report names each of its panics once,
/// however many tests it took down.
#[test]
fn each_starter_report_names_its_root_cause_once() {
    let pid = regex::Regex::new(r"\(\d+\)").unwrap();
    let starters = [
        ("task1", "task1-signals"),
        ("task2", "task2-fifo-chat"),
        ("task3", "task3-shm-counter"),
        ("task4", "task4-echo-server"),
        ("task5", "task5-msg-dispatcher"),
    ];
    // The five grades at once: each mostly waits for its starter's tests
    // to fail, and none depends on another.
    let reports: Vec<String> = std::thread::scope(|s| {
        let grades: Vec<_> = starters
            .iter()
            .map(|(task, _)| s.spawn(move || grader(&[task]).output().unwrap()))
            .collect();
        grades
            .into_iter()
            .map(|g| String::from_utf8_lossy(&g.join().unwrap().stdout).into_owned())
            .collect()
    });
    for ((task, slug), text) in starters.iter().zip(&reports) {
        assert!(text.contains(&format!("starter/{slug}")), "{text}");
        let mut panics: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines().filter(|l| l.contains("panicked at")) {
            *panics
                .entry(pid.replace_all(line, "").into_owned())
                .or_default() += 1;
        }
        assert!(
            !panics.is_empty(),
            "{task}: the starter panics in todo!(): {text}"
        );
        for (line, n) in &panics {
            assert_eq!(*n, 1, "{task}: {line:?} shown {n} times:\n{text}");
        }
        assert!(
            text.contains("tests failed for one cause"),
            "{task}: {text}"
        );
    }
}

const NASTY: &str = r#"
fn main() {
    use std::io::Write;
    let bytes: &[u8] = b"\x1b[2J\x1b[H\x1b]0;pwned\x07\rOVERWRITTEN \xff\xfe end\n";
    std::io::stdout().write_all(bytes).unwrap();
    std::io::stderr().write_all(bytes).unwrap();
    std::process::exit(3);
}
"#;

#[test]
fn a_submissions_escape_sequences_never_reach_the_terminal() {
    let root = course_root();
    let work = copy_crate(&root.join("starter/task1-signals"));
    std::fs::write(work.path().join("src/main.rs"), NASTY).unwrap();
    let shown = tempfile::tempdir().unwrap();
    let log = shown.path().join("tty.out");
    // Python's pty gives the grader a real terminal: anstream keeps the
    // grader's colours on, and anything the submission's bytes did would
    // be there too.
    let grader = env!("CARGO_BIN_EXE_cargo-grade");
    let script = r#"
import os, pty, sys
out = open(sys.argv[1], 'wb')
def read(fd):
    data = os.read(fd, 65536)
    out.write(data)
    return data
pty.spawn(sys.argv[2:], read)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&log)
        .arg(grader)
        .args(["grade", "task1", "--only", "echo_and_eof", "--path"])
        .arg(work.path())
        .arg("--course")
        .arg(&root)
        .current_dir(&root)
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("FAIL"), "{text}");
    // The grader's colours are on: it is a terminal.
    assert!(
        bytes.windows(2).any(|w| w == b"\x1b["),
        "no colour at all: {text}"
    );
    // Every escape sequence is one of the grader's own: SGR colours.
    let sgr = regex::bytes::Regex::new(r"^\x1b\[[0-9;]*m").unwrap();
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == 0x1b) {
        assert!(
            sgr.is_match(&bytes[i..]),
            "a non-colour escape sequence reached the terminal at byte {i}: {:?}",
            String::from_utf8_lossy(&bytes[i..(i + 12).min(bytes.len())])
        );
    }
    for raw in [&b"\x07"[..], b"\rOVERWRITTEN", b"\xff\xfe"] {
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw),
            "{raw:?} from the submission reached the terminal"
        );
    }
    // What it printed is shown, escaped.
    for visible in [
        r"\x1b[2J",
        r"\x1b]0;pwned\x07",
        r"\rOVERWRITTEN",
        r"\xff\xfe",
    ] {
        assert!(text.contains(visible), "{visible} not shown: {text}");
    }
}
