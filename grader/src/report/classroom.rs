//! GitHub Classroom: the result that the
//! `classroom-resources/autograding-grading-reporter` action reads.
//!
//! Matched against that action's source (v1):
//! - `src/main.js` reads, for each id in its `runners` input, the
//!   environment variable `<ID upper-cased>_RESULTS`, base64-decodes it and
//!   parses it as JSON; the run fails ("Some tests failed." / "Some tests
//!   errored.") when a runner's top-level `status` is `fail` / `error`;
//! - `src/notify-classroom.js` (`NotifyClassroom`) grades: it skips a
//!   runner whose `max_score` is 0 or absent, else adds `max_score` to the
//!   maximum and every `tests[].score` to the points, and posts
//!   "Points X/Y" only when the maximum is not 0;
//! - `src/console-results.js` (`ConsoleResults`) prints each test by
//!   `name` and `status` (`pass`, `fail`, `error`: then its `message`), its
//!   `line_no` unless it is 0 (so 0 it is), and its `test_code` when not
//!   empty.
//!
//! The object is the one the official runners emit
//! (`classroom-resources/autograding-command-grader`, `src/main.js`,
//! `generateResult`): `{version: 1, status, max_score, tests: [{name,
//! status, score, message, test_code, filename, line_no, duration}]}`.
//!
//! An ungradable run has `status` `error` and `max_score` 0 with one test
//! in `error` that says why: the reporter then fails the run loudly and
//! posts no points at all, never a 0. A build failure is a graded 0.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::result::{Report, Status};
use crate::spec::Visibility;

use super::lms;

/// What one runner reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub version: u32,
    /// `pass`, `fail` or `error`.
    pub status: String,
    pub max_score: u32,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    /// `pass`, `fail` or `error`.
    pub status: String,
    pub score: u32,
    pub message: String,
    /// The command that reruns the test (visible tests that lost points).
    pub test_code: String,
    pub filename: String,
    pub line_no: u32,
    /// Milliseconds.
    pub duration: u64,
}

/// `report` as the reporter's runner result, as a student may see it.
pub fn results(report: &Report) -> Results {
    let view = lms::student_view(report);
    if !view.outcome.is_verdict() {
        return Results {
            version: 1,
            status: "error".into(),
            max_score: 0,
            tests: vec![Test {
                name: format!("{}: could not grade", view.task),
                status: "error".into(),
                score: 0,
                message: lms::summary(&view).replace('\n', " "),
                test_code: String::new(),
                filename: String::new(),
                line_no: 0,
                duration: view.duration_ms,
            }],
        };
    }
    let all_passed = view.tests.iter().all(|t| t.status == Status::Passed);
    Results {
        version: 1,
        status: if all_passed { "pass" } else { "fail" }.into(),
        max_score: view.max_score,
        tests: view
            .tests
            .iter()
            .map(|t| Test {
                name: t.name.clone(),
                status: if t.status == Status::Passed {
                    "pass"
                } else {
                    "fail"
                }
                .into(),
                score: t.score,
                message: lms::test_message(t),
                test_code: if t.status != Status::Passed && t.visibility == Visibility::Visible {
                    view.reproduce(&t.name)
                } else {
                    String::new()
                },
                filename: String::new(),
                line_no: 0,
                duration: t.duration_ms,
            })
            .collect(),
    }
}

/// The result as the reporter reads it: base64 of its JSON, one line.
pub fn encode(report: &Report) -> String {
    let json = serde_json::to_string(&results(report)).expect("the results always serialise");
    encode_base64(json.as_bytes())
}

/// Appends `result=<encoded>` to a GitHub Actions output file
/// (`$GITHUB_OUTPUT`), so a later step reads it as
/// `steps.<id>.outputs.result`.
pub fn append_output(path: &Path, encoded: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "result={encoded}")
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648, with padding), what Node's
/// `Buffer.from(s, "base64")` decodes.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (for checking what was encoded).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::lms::fixtures::*;
    use super::*;
    use serde_json::Value;

    fn decoded(report: &Report) -> Value {
        let encoded = encode(report);
        assert!(!encoded.contains('\n') && !encoded.contains(' '));
        serde_json::from_slice(&decode_base64(&encoded).unwrap()).unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_base64(plain.as_bytes()), coded);
            assert_eq!(decode_base64(coded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_base64(&encode_base64(&all)).unwrap(), all);
    }

    #[test]
    fn a_graded_report_field_by_field() {
        let v = decoded(&graded());
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "fail");
        assert_eq!(v["max_score"], 6);
        let tests = v["tests"].as_array().unwrap();
        let row = |i: usize| {
            let t = &tests[i];
            (
                t["name"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
                t["score"].as_u64().unwrap(),
                t["line_no"].as_u64().unwrap(),
            )
        };
        assert_eq!(row(0), ("echo_and_eof", "pass", 1, 0));
        assert_eq!(row(1), ("sigterm_exits", "fail", 0, 0));
        assert_eq!(row(2), ("secret_protocol", "fail", 0, 0));
        assert_eq!(
            tests[1]["test_code"],
            "cargo grade task1 --path subs/alice --only sigterm_exits --seed 7"
        );
        assert_eq!(tests[2]["test_code"], "", "nothing of a hidden test");
        assert_eq!(tests[0]["duration"], 120);
        // NotifyClassroom's sum: the points, out of max_score.
        let points: u64 = tests.iter().map(|t| t["score"].as_u64().unwrap()).sum();
        assert_eq!(points, 1);
        let mut keys: Vec<&str> = tests[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "duration",
                "filename",
                "line_no",
                "message",
                "name",
                "score",
                "status",
                "test_code"
            ]
        );
        let full = decoded(&full_marks());
        assert_eq!(full["status"], "pass");
        let points: u64 = full["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["score"].as_u64().unwrap())
            .sum();
        assert_eq!(points, 6);
    }

    #[test]
    fn a_build_failure_is_a_graded_zero() {
        let v = decoded(&build_failed());
        assert_eq!(v["status"], "fail");
        assert_eq!(v["max_score"], 6);
        for t in v["tests"].as_array().unwrap() {
            assert_eq!(
                (t["status"].as_str(), t["score"].as_u64()),
                (Some("fail"), Some(0))
            );
            assert_eq!(t["message"], "Not run: the build failed.");
        }
    }

    #[test]
    fn ungradable_is_an_error_with_no_points_posted() {
        let v = decoded(&ungradable());
        assert_eq!(v["status"], "error");
        // NotifyClassroom posts nothing for a runner whose max_score is 0.
        assert_eq!(v["max_score"], 0);
        let tests = v["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 1);
        assert_eq!(tests[0]["status"], "error");
        let message = tests[0]["message"].as_str().unwrap();
        assert!(message.contains("COULD NOT GRADE"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn the_output_file_gets_one_line_per_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github_output");
        std::fs::write(&path, "other=1\n").unwrap();
        append_output(&path, "Zm9v").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "other=1\nresult=Zm9v\n"
        );
    }
}
