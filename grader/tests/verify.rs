//! `cargo grade new` and `cargo grade verify`, for real: a task scaffolded
//! into a fresh course passes `check` and `verify` as it is; verify names a
//! mutant that does not compile, lists the tests a mutant loses without
//! declaring them, reports per-test rates over `--repeat` seeds as JSON, and
//! fails a spec whose reference loses points. Everything here grades the
//! scaffolded task (three small tests), not the course's big ones, so the
//! file runs in seconds.

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use serde_json::Value;

/// `cargo-grade ARGS --course COURSE`, run in the course, without colours.
fn grader(course: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").expect("the grader binary");
    cmd.args(args)
        .arg("--course")
        .arg(course)
        .current_dir(course)
        .env("NO_COLOR", "1")
        .env_remove("CARGO_GRADE_COURSE")
        .env_remove("CARGO_GRADE_INSTRUCTOR_SPECS");
    cmd
}

/// Exit status, stdout and stderr of a run.
fn run(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run the grader");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh course with nothing in it but `specs/` (so that the scaffold
/// alone is what is checked and verified), and `task9-demo` scaffolded into
/// it by `cargo grade new`.
fn course_with_new_task() -> tempfile::TempDir {
    let course = tempfile::Builder::new()
        .prefix("grade-test-course-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(course.path().join("specs")).unwrap();
    let (code, out, err) = run(&mut grader(course.path(), &["new", "task9-demo"]));
    assert_eq!(code, 0, "{out}{err}");
    for file in [
        "tasks/task9-demo.md",
        "specs/task9-demo.toml",
        "starter/task9-demo/Cargo.toml",
        "starter/task9-demo/Cargo.lock",
        "starter/task9-demo/src/main.rs",
        "solutions/task9-demo/Cargo.toml",
        "solutions/task9-demo/Cargo.lock",
        "solutions/task9-demo/src/main.rs",
        "solutions/task9-demo/mutants.toml",
    ] {
        assert!(course.path().join(file).is_file(), "{file} missing: {out}");
        assert!(out.contains(&format!("created {file}\n")), "{out}");
    }
    course
}

/// Appends `text` to the scaffolded task's mutants file.
fn add_mutants(course: &Path, text: &str) {
    let path = course.join("solutions/task9-demo/mutants.toml");
    let mut mutants = std::fs::read_to_string(&path).unwrap();
    mutants.push_str(text);
    std::fs::write(path, mutants).unwrap();
}

/// `verify ARGS --format json`: the exit status and the verification.
fn verify_json(course: &Path, args: &[&str]) -> (i32, Value) {
    let mut cmd = grader(course, &["verify"]);
    cmd.args(args).args(["--format", "json"]);
    let (code, out, err) = run(&mut cmd);
    let value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}); exit {code}\n{out}\n{err}"));
    (code, value)
}

fn subject<'v>(task: &'v Value, name: &str) -> &'v Value {
    task["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == name)
        .unwrap_or_else(|| panic!("no subject {name}: {task:#}"))
}

fn rates<'v>(task: &'v Value, test: &str) -> &'v Value {
    task["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["test"] == test)
        .unwrap_or_else(|| panic!("no test {test}: {task:#}"))
}

/// Every file of a directory tree with its contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_new_task_passes_check_and_verify_by_id_and_by_slug() {
    let course = course_with_new_task();
    let c = course.path();
    grader(c, &["check"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "ok  specs/task9-demo.toml (2 tests, 3 points)",
        ));
    let spec = std::fs::read_to_string(c.join("specs/task9-demo.toml")).unwrap();
    assert!(spec.starts_with("#:schema ./spec.schema.json\n"), "{spec}");
    assert!(spec.contains("title = \"Demo\""), "{spec}");

    // By id, in the text for a person.
    let (code, out, err) = run(&mut grader(c, &["verify", "task9"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verify task9 (task9-demo), seed 1: 3 subjects"),
        "{out}"
    );
    for line in [
        "ok    reference                   3/3    full marks",
        "ok    starter                     0/3    0% (at most 10% allowed)",
        "ok    mutant lines_not_counted    2/3    caught by bye_at_end_of_input",
        "all 3 checks passed",
        "verify: 1 task passed (seed 1)",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // By slug, as JSON; both names of one task verify it once.
    let (code, v) = verify_json(c, &["task9-demo", "task9"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["passed"], true);
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["tasks"][0]["slug"], "task9-demo");
    assert_eq!(v["tasks"][0]["errors"], serde_json::json!([]));
}

#[test]
fn new_refuses_bad_ids_and_never_overwrites() {
    let course = course_with_new_task();
    let c = course.path();
    let before = snapshot(c);
    let (code, _, err) = run(&mut grader(c, &["new", "task9 demo"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid task id \"task9 demo\": ' ' (character 6) is not allowed"),
        "{err}"
    );
    let (code, _, err) = run(&mut grader(c, &["new", "task9"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("give the task id and a name, like task9-demo"),
        "{err}"
    );
    // The same id, under another name: `cargo grade task9` would be ambiguous.
    for id in ["task9-demo", "task9-other"] {
        let (code, _, err) = run(&mut grader(c, &["new", id]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("the course already has a task task9: specs/task9-demo.toml"),
            "{err}"
        );
    }
    // Without the spec, the other files still stop it, each named.
    std::fs::remove_file(c.join("specs/task9-demo.toml")).unwrap();
    let (code, _, err) = run(&mut grader(c, &["new", "task9-demo", "--title", "Other"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to overwrite what exists: starter/task9-demo, solutions/task9-demo, tasks/task9-demo.md"),
        "{err}"
    );
    assert!(!c.join("specs/task9-demo.toml").exists(), "nothing written");
    let after = snapshot(c);
    let gone = c.join("specs/task9-demo.toml");
    let before: Vec<_> = before.into_iter().filter(|(p, _)| *p != gone).collect();
    assert!(before == after, "no file changed");
}

#[test]
fn verify_names_a_mutant_that_does_not_compile_and_lists_undeclared_losses() {
    let course = course_with_new_task();
    let c = course.path();
    // A `find` that does not occur: named with its mutant and file, before
    // anything is built.
    add_mutants(
        c,
        "\n[[mutant]]\nname = \"stale_find\"\ndescription = \"x\"\nfile = \"src/main.rs\"\n\
         find = \"no such text\"\nreplace = \"\"\ncatches = [\"uppercases_lines\"]\n",
    );
    let (code, _, err) = run(&mut grader(c, &["verify", "task9"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`find` occurs 0 times in src/main.rs (it must occur exactly once)")
            && err.contains("mutant \"stale_find\""),
        "{err}"
    );
    let path = c.join("solutions/task9-demo/mutants.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        &text[..text.find("\n[[mutant]]\nname = \"stale_find\"").unwrap()],
    )
    .unwrap();

    add_mutants(
        c,
        // Lower case breaks both tests (the second expects `ONE`), and
        // declares only the first.
        "\n[[mutant]]\nname = \"lowercase\"\ndescription = \"Lower case instead of upper case.\"\n\
         file = \"src/main.rs\"\nfind = \"line.to_ascii_uppercase()\"\n\
         replace = \"line.to_ascii_lowercase()\"\ncatches = [\"uppercases_lines\"]\n\
         \n[[mutant]]\nname = \"broken\"\ndescription = \"Does not compile.\"\n\
         file = \"src/main.rs\"\nfind = \"count += 1;\"\nreplace = \"count += ;\"\n\
         catches = [\"bye_at_end_of_input\"]\n",
    );
    let (code, out, err) = run(&mut grader(c, &["verify", "task9"]));
    assert_eq!(
        code, 2,
        "a mutant that does not compile is an error: {out}{err}"
    );
    for line in [
        "error: mutant broken does not compile: error: expected expression, found `;` (src/main.rs:",
        "ok    mutant lowercase            0/3    caught by uppercases_lines; also lost points in: bye_at_end_of_input",
        "FAIL  mutant broken ",
        "1 of 5 checks failed, 1 error",
        "verify: 1 of 1 task failed: task9",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    let (code, v) = verify_json(c, &["task9"]);
    assert_eq!(code, 2);
    let task = &v["tasks"][0];
    assert_eq!(task["passed"], false);
    let errors = task["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{task:#}");
    assert!(errors[0]
        .as_str()
        .unwrap()
        .starts_with("mutant broken does not compile: error"));
    assert_eq!(
        subject(task, "mutant lowercase")["also_lost"],
        serde_json::json!(["bye_at_end_of_input"])
    );
    assert_eq!(subject(task, "mutant lowercase")["ok_runs"], 1);
    assert_eq!(subject(task, "mutant broken")["ok_runs"], 0);
    assert!(subject(task, "mutant lines_not_counted")
        .get("also_lost")
        .is_none());
    assert_eq!(
        rates(task, "bye_at_end_of_input")["also_lost"],
        serde_json::json!([{ "subject": "lowercase", "count": 1 }])
    );
}

#[test]
fn repeat_reports_per_test_rates_as_json() {
    let course = course_with_new_task();
    let c = course.path();
    let (code, v) = verify_json(c, &["task9", "--repeat", "2", "--seed", "7", "--jobs", "2"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["seeds"], serde_json::json!([7, 8]));
    let task = &v["tasks"][0];
    assert_eq!(task["seeds"], serde_json::json!([7, 8]));
    let seeds: Vec<u64> = task["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [7, 8]);
    for s in task["subjects"].as_array().unwrap() {
        assert_eq!(
            (s["ok_runs"].as_u64(), s["runs"].as_u64()),
            (Some(2), Some(2)),
            "{s:#}"
        );
    }
    let up = rates(task, "uppercases_lines");
    assert_eq!(
        (
            up["runs"].as_u64(),
            up["reference_passed"].as_u64(),
            up["points"].as_u64()
        ),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(up["caught"], serde_json::json!([]));
    let bye = rates(task, "bye_at_end_of_input");
    assert_eq!(bye["reference_passed"], 2);
    assert_eq!(
        bye["caught"],
        serde_json::json!([{ "subject": "lines_not_counted", "count": 2 }])
    );
    assert_eq!(task["disagreements"], serde_json::json!([]));

    // The same as text: per-test rates and no disagreement.
    let (code, out, err) = run(&mut grader(c, &["verify", "task9", "--repeat", "2"]));
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "verify task9 (task9-demo), seeds 1 to 2: 3 subjects, 6 grades",
        "ok    reference                 2/2 runs   full marks",
        "bye_at_end_of_input  reference 2/2; caught: lines_not_counted 2/2",
        "no verdict differed across seeds",
        "all 3 checks passed at every seed",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
}

#[test]
fn a_reference_that_loses_points_fails_verify_with_the_test_named() {
    let course = course_with_new_task();
    let c = course.path();
    let spec = c.join("specs/task9-demo.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("'^IPC 101$'", "'^IPC 102$'")).unwrap();
    let (code, v) = verify_json(c, &["task9-demo"]);
    assert_eq!(code, 1, "a check that does not hold: {v:#}");
    let task = &v["tasks"][0];
    let reference = subject(task, "reference");
    assert_eq!(reference["ok_runs"], 0);
    assert_eq!(reference["failed_seeds"], serde_json::json!([1]));
    assert!(
        reference["detail"]
            .as_str()
            .unwrap()
            .starts_with("lost points in uppercases_lines (failed)"),
        "{reference:#}"
    );
    assert_eq!(rates(task, "uppercases_lines")["reference_passed"], 0);
    assert_eq!(rates(task, "bye_at_end_of_input")["reference_passed"], 1);
}

/// `.ci/run` formats and lints every crate under starter/ and solutions/: a
/// scaffolded task committed as it is must pass both.
#[test]
fn the_scaffolded_crates_are_formatted_and_lint_clean() {
    let course = course_with_new_task();
    let c = course.path();
    let target = tempfile::tempdir().unwrap();
    for krate in ["starter/task9-demo", "solutions/task9-demo"] {
        let manifest = c.join(krate).join("Cargo.toml");
        // `cargo SUBCOMMAND --manifest-path M REST`.
        let cargo = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO"))
                .arg(args[0])
                .arg("--manifest-path")
                .arg(&manifest)
                .args(&args[1..])
                .env("CARGO_TARGET_DIR", target.path())
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "cargo {args:?} on {krate}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        cargo(&["fmt", "--check"]);
        cargo(&[
            "clippy",
            "--locked",
            "--offline",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ]);
    }
}
