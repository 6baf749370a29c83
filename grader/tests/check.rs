//! `cargo grade check` and `cargo grade schema`: a spec is validated without
//! running anything, every error of a file in one run, each at its line and
//! column; the JSON Schema agrees with the grader on the shipped specs and
//! rejects what a schema can express, checked by a third-party validator
//! (check-jsonschema, from PyPI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::course_root;
use predicates::prelude::*;

/// `cargo-grade ARGS` in `dir`, without colours.
fn grader_in(dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").expect("the grader binary");
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    cmd
}

/// What a run printed, both streams.
fn output(cmd: &mut assert_cmd::Command) -> (i32, String) {
    let out = cmd.output().expect("run the grader");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("an exit status"), text)
}

const TASK: &str = "[task]\nid = \"task9\"\nslug = \"task9-broken\"\ntitle = \"Broken\"\nbinary = \"task9-broken\"\nhandout = \"tasks/task9-broken.md\"\n";

/// Writes `text` as `task9-broken.toml` in a fresh directory that is not a
/// course's `specs/` (so only the spec itself is checked).
fn spec_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task9-broken.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Five mistakes of five kinds, one per line 13 to 22.
fn five_mistakes() -> String {
    format!(
        "{TASK}
[[test]]
name = \"first\"
points = 1
steps = [
  {{ start = \"main\" }},
  {{ expect = '^ready$', timout = 500 }},
  {{ signal = \"SIGTREM\" }},
  {{ expect = '^count (\\d+$' }},
]

[[test]]
name = \"first\"
points = 2
steps = [
  {{ start = \"main\" }},
  {{ send_line = \"hi\", process = \"mian\" }},
]
"
    )
}

#[test]
fn a_syntax_error_is_reported_at_its_line_and_column() {
    let (dir, _) = spec_file(&format!(
        "{TASK}\n[[test]]\nname = \"a\"\npoints = = 1\nsteps = [{{ start = \"m\" }}]\n"
    ));
    let (code, out) = output(&mut grader_in(dir.path(), &["check", "task9-broken.toml"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("error: TOML syntax: "), "{out}");
    // `points = = 1` is line 10; the second `=` is column 10.
    assert!(out.contains("task9-broken.toml:10:10"), "{out}");
    assert!(out.contains("10 | points = = 1"), "{out}");
    assert!(
        out.contains("\n   |          ^"),
        "the marker under the spot: {out}"
    );
}

#[test]
fn every_error_of_a_file_in_one_run_each_with_line_and_column() {
    let (dir, _) = spec_file(&five_mistakes());
    let (code, out) = output(&mut grader_in(dir.path(), &["check", "task9-broken.toml"]));
    assert_eq!(code, 2, "{out}");
    for (place, message) in [
        ("13:25", "error: unknown key `timout` in a step"),
        ("14:14", "error: signal: unknown signal \"SIGTREM\""),
        (
            "15:14",
            "error: `expect` is not a valid regex: found open group without closing ')'",
        ),
        (
            "19:8",
            "error: name: another test already has this name (line 8)",
        ),
        (
            "23:33",
            "error: process \"mian\" is not started by an earlier step",
        ),
    ] {
        assert!(out.contains(message), "{message}: {out}");
        assert!(
            out.contains(&format!("task9-broken.toml:{place}")),
            "{message} at {place}: {out}"
        );
    }
    // The offending line with a marker and the near misses' suggestions.
    assert!(
        out.contains("13 |   { expect = '^ready$', timout = 500 },"),
        "{out}"
    );
    assert!(out.contains("^^^^^^ did you mean `timeout_ms`?"), "{out}");
    assert!(out.contains("did you mean `SIGTERM`?"), "{out}");
    assert!(out.contains("did you mean `main`?"), "{out}");
    assert!(out.contains("note: in test \"first\", step 3"), "{out}");
    assert!(out.contains("task9-broken.toml: 5 errors"), "{out}");
    assert!(
        out.contains("cargo grade check: 5 errors in 1 of 1 spec"),
        "{out}"
    );
}

/// `grade` (and every command that loads a spec) runs the same checks
/// first and reports all the errors, not the first.
#[test]
fn grading_with_a_broken_spec_reports_every_error_and_runs_nothing() {
    let course = tempfile::tempdir().unwrap();
    std::fs::create_dir(course.path().join("specs")).unwrap();
    std::fs::write(
        course.path().join("specs/task9-broken.toml"),
        five_mistakes(),
    )
    .unwrap();
    let (code, out) =
        output(grader_in(course.path(), &["grade", "task9", "--course"]).arg(course.path()));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cargo grade: error: invalid spec (6 errors); nothing was run"),
        "{out}"
    );
    for message in [
        "unknown key `timout`",
        "unknown signal \"SIGTREM\"",
        "is not a valid regex",
        "another test already has this name",
        "process \"mian\" is not started",
        // The sixth: the course has no starter for it.
        "no starter crate: starter/task9-broken/Cargo.toml does not exist",
    ] {
        assert!(out.contains(message), "{message}: {out}");
    }
}

#[test]
fn the_shipped_specs_pass() {
    grader_in(&course_root(), &["check"])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("ok  specs/task1-signals.toml")
                .and(predicate::str::contains(
                    "ok  specs/task5-msg-dispatcher.toml",
                ))
                .and(predicate::str::contains("specs valid")),
        );
    // By id, by slug and by path, from elsewhere with --course.
    let elsewhere = tempfile::tempdir().unwrap();
    let root = course_root();
    let spec = root.join("specs/task2-fifo-chat.toml");
    let mut cmd = grader_in(elsewhere.path(), &["check", "task1", "task3-shm-counter"]);
    cmd.arg(&spec).arg("--course").arg(&root);
    cmd.assert()
        .code(0)
        .stdout(predicate::str::contains("3 specs valid"));
}

/// A copy of task1's spec, starter and solution in a fresh course, for
/// mistakes in what the spec names outside itself.
fn task1_course() -> tempfile::TempDir {
    let root = course_root();
    let course = tempfile::tempdir().unwrap();
    let c = course.path();
    for dir in ["specs", "starter", "solutions"] {
        std::fs::create_dir(c.join(dir)).unwrap();
    }
    std::fs::copy(
        root.join("specs/task1-signals.toml"),
        c.join("specs/task1-signals.toml"),
    )
    .unwrap();
    for dir in ["starter/task1-signals", "solutions/task1-signals"] {
        cargo_grade::selfcheck::copy_crate(&root.join(dir), &c.join(dir)).unwrap();
    }
    course
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_starters_binary_and_the_mutants_are_checked_too() {
    let course = task1_course();
    let c = course.path();
    edit(
        &c.join("specs/task1-signals.toml"),
        "binary = \"task1-signals\"",
        "binary = \"task1-signal\"",
    );
    let mutants = c.join("solutions/task1-signals/mutants.toml");
    edit(
        &mutants,
        "catches = [\"sigint_not_fatal\"",
        "catches = [\"sigint_not_fatl\"",
    );
    edit(&mutants, "file = \"src/main.rs\"", "file = \"src/nope.rs\"");
    let (code, out) = output(grader_in(c, &["check", "--course"]).arg(c));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("[task].binary \"task1-signal\" is not a binary of the starter crate starter/task1-signals (it builds: task1-signals)"),
        "{out}"
    );
    assert!(out.contains("did you mean `task1-signals`?"), "{out}");
    assert!(
        out.contains("catches unknown test \"sigint_not_fatl\""),
        "{out}"
    );
    assert!(out.contains("did you mean `sigint_not_fatal`?"), "{out}");
    assert!(
        out.contains("file = \"src/nope.rs\" does not exist"),
        "{out}"
    );
    assert!(
        out.contains("solutions/task1-signals/mutants.toml:"),
        "errors of the mutants file name it: {out}"
    );
    // selfcheck runs the same checks first: nothing is built.
    let (code, out) = output(grader_in(c, &["selfcheck", "task1", "--course"]).arg(c));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid spec (3 errors)"), "{out}");
}

#[test]
fn the_committed_schema_is_what_the_command_prints() {
    for (args, file) in [
        (&["schema"][..], "specs/spec.schema.json"),
        (&["schema", "--mutants"][..], "specs/mutants.schema.json"),
    ] {
        let committed = std::fs::read_to_string(course_root().join(file)).unwrap();
        grader_in(&course_root(), args)
            .assert()
            .code(0)
            .stdout(predicate::eq(committed));
    }
}

#[test]
fn editors_are_pointed_at_the_schema() {
    let root = course_root();
    let taplo = std::fs::read_to_string(root.join(".taplo.toml")).expect(".taplo.toml");
    assert!(taplo.contains("specs/spec.schema.json"), "{taplo}");
    for entry in std::fs::read_dir(root.join("specs")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("#:schema ./spec.schema.json\n"),
                "{} must start with the schema directive",
                path.display()
            );
        }
    }
}

/// `check-jsonschema`, installed with pip if it is missing (CI installs it
/// in `.ci/run`).
fn check_jsonschema() -> PathBuf {
    let found = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = found("check-jsonschema") {
        return p;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "check-jsonschema"])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "check-jsonschema is missing and `python3 -m pip install check-jsonschema` failed: install it"
    );
    found("check-jsonschema").expect("check-jsonschema is on PATH after pip installed it")
}

/// A TOML file as JSON, as a schema validator sees it.
fn as_json(toml_text: &str) -> String {
    let value: toml::Table = toml_text.parse().expect("valid TOML");
    serde_json::to_string_pretty(&value).unwrap()
}

/// Runs check-jsonschema on `files` (TOML, converted to JSON); its exit
/// status and output.
fn validate(schema: &str, files: &[(String, String)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(check_jsonschema());
    cmd.arg("--schemafile").arg(course_root().join(schema));
    for (name, text) in files {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, as_json(text)).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().expect("run check-jsonschema");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_third_party_validator_accepts_the_shipped_specs_and_rejects_what_a_schema_can() {
    let root = course_root();
    let mut specs = Vec::new();
    let mut mutants = Vec::new();
    for entry in std::fs::read_dir(root.join("specs")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            specs.push((stem.clone(), std::fs::read_to_string(&path).unwrap()));
            let m = root.join("solutions").join(&stem).join("mutants.toml");
            mutants.push((stem, std::fs::read_to_string(m).unwrap()));
        }
    }
    assert!(specs.len() >= 5);
    specs.push((
        "fixture".into(),
        std::fs::read_to_string(root.join("grader/tests/fixtures/course/specs/task9-shell.toml"))
            .unwrap(),
    ));
    let (code, out) = validate("specs/spec.schema.json", &specs);
    assert_eq!(code, 0, "the shipped specs must validate: {out}");
    let (code, out) = validate("specs/mutants.schema.json", &mutants);
    assert_eq!(code, 0, "the shipped mutants files must validate: {out}");

    // Each broken spec alone, each rejected.
    let test = |body: &str| format!("{TASK}\n[[test]]\nname = \"a\"\n{body}\n");
    for (name, text) in [
        (
            "misspelt_step_key",
            test("points = 1\nsteps = [{ start = \"m\" }, { expect = 'x', timout = 5 }]"),
        ),
        (
            "misspelt_test_key",
            test("points = 1\ntimout_ms = 5\nsteps = [{ start = \"m\" }]"),
        ),
        (
            "wrong_type",
            test("points = \"two\"\nsteps = [{ start = \"m\" }]"),
        ),
        ("missing_points", test("steps = [{ start = \"m\" }]")),
        (
            "option_of_another_action",
            test("points = 1\nsteps = [{ start = \"m\" }, { expect = 'x', count = 2 }]"),
        ),
        (
            "two_actions",
            test("points = 1\nsteps = [{ start = \"m\" }, { expect = 'x', expect_exit = 0 }]"),
        ),
        (
            "out_of_range",
            test("points = 1\nrounds = 0\nsteps = [{ start = \"m\" }]"),
        ),
        (
            "unknown_signal",
            test("points = 1\nsteps = [{ start = \"m\" }, { signal = 'SIGTREM' }]"),
        ),
    ] {
        // The grader rejects it too.
        let (dir, _) = spec_file(&text);
        let (code, out) = output(&mut grader_in(dir.path(), &["check", "task9-broken.toml"]));
        assert_eq!(code, 2, "{name}: {out}");
        let (code, out) = validate("specs/spec.schema.json", &[(name.to_owned(), text)]);
        assert_eq!(code, 1, "{name} must be rejected by the schema: {out}");
    }
}
