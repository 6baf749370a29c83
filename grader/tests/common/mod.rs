//! Helpers shared by the grader's end-to-end tests: they run the real
//! `cargo-grade` binary on the real course (specs, starters, solutions).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The course repository this grader lives in.
pub fn course_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("grader/ has a parent")
        .to_owned()
}

/// `cargo-grade grade ARGS --course ROOT`, run from the course root.
pub fn grader(args: &[&str]) -> assert_cmd::Command {
    let mut cmd =
        assert_cmd::Command::cargo_bin("cargo-grade").expect("the grader binary is built");
    cmd.arg("grade")
        .args(args)
        .arg("--course")
        .arg(course_root())
        .current_dir(course_root());
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Grades with `--format json` and returns the exit status and the report.
pub fn grade_json(args: &[&str]) -> (i32, Value) {
    let out = grader(args)
        .arg("--format")
        .arg("json")
        .output()
        .expect("run the grader");
    let code = out.status.code().expect("the grader exits normally");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}); exit {code}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// The named test of a JSON report.
pub fn test<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["tests"]
        .as_array()
        .expect("tests[]")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in the report"))
}

/// Score and maximum of a report.
pub fn score(report: &Value) -> (u64, u64) {
    (
        report["score"].as_u64().expect("score"),
        report["max_score"].as_u64().expect("max_score"),
    )
}

/// The report header's protections as lines: `NAME: DETAIL`, or
/// `NOT ACTIVE: NAME: WHY` for one this machine did not allow.
pub fn protection_lines(report: &Value) -> Vec<String> {
    report["environment"]["protections"]
        .as_array()
        .expect("environment.protections[]")
        .iter()
        .map(|p| {
            let line = format!(
                "{}: {}",
                p["name"].as_str().unwrap_or(""),
                p["detail"].as_str().unwrap_or("")
            );
            if p["active"] == true {
                line
            } else {
                format!("NOT ACTIVE: {line}")
            }
        })
        .collect()
}

/// Why a test lost points, from the report's structured fields: the step's
/// expectation and observation, or the note on why it was not run.
pub fn explanation(t: &Value) -> String {
    match (&t["failure"], t["note"].as_str()) {
        (Value::Object(f), _) => format!(
            "Expected: {}\nObserved: {}",
            f["expected"].as_str().unwrap_or(""),
            f["observed"].as_str().unwrap_or("")
        ),
        (_, Some(note)) => note.to_owned(),
        _ => String::new(),
    }
}

/// Names of the tests that lost points, with their status, for messages.
pub fn lost(report: &Value) -> Vec<String> {
    report["tests"]
        .as_array()
        .expect("tests[]")
        .iter()
        .filter(|t| t["score"] != t["max_score"])
        .map(|t| format!("{} ({}): {}", t["name"], t["status"], explanation(t)))
        .collect()
}

/// Copies a crate directory (without target/) into a fresh temporary one.
pub fn copy_crate(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("grade-test-")
        .tempdir()
        .expect("tempdir");
    cargo_grade::selfcheck::copy_crate(from, dir.path()).expect("copy the crate");
    dir
}

/// A task's mutants, from `solutions/<slug>/mutants.toml`.
pub fn mutants(task: &str) -> Vec<cargo_grade::selfcheck::Mutant> {
    use cargo_grade::selfcheck;
    let course = cargo_grade::course::Course {
        root: course_root(),
    };
    let spec = course.task(task).unwrap();
    selfcheck::load_mutants(&selfcheck::mutants_path(&course, &spec), &spec).unwrap()
}

/// The mutant's crate: the reference solution `slug` with the mutant's patch.
pub fn mutant_crate(slug: &str, mutant: &cargo_grade::selfcheck::Mutant) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let solution = course_root().join("solutions").join(slug);
    cargo_grade::selfcheck::materialise(mutant, &solution, dir.path()).unwrap();
    dir
}

/// Submissions graded at once by the suite's batches: more than the
/// machine's cores, so verdicts are checked under load, as a class is
/// graded (and the waits of many tests overlap).
pub const SUITE_JOBS: usize = 4;

/// Grades crates with `cargo grade batch` at each seed (the seeds' batches
/// side by side), returning the full result of each crate per seed.
pub fn batch_grade(
    task: &str,
    crates: &[(String, PathBuf)],
    seeds: &[u64],
) -> Vec<(u64, std::collections::BTreeMap<String, Value>)> {
    batch_grade_only(task, crates, seeds, &[])
}

/// As [`batch_grade`], grading only the tests `only` selects.
pub fn batch_grade_only(
    task: &str,
    crates: &[(String, PathBuf)],
    seeds: &[u64],
    only: &[String],
) -> Vec<(u64, std::collections::BTreeMap<String, Value>)> {
    let subs = class_of(crates);
    std::thread::scope(|scope| {
        let runs: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let subs = subs.path();
                scope.spawn(move || (seed, batch_in(task, subs, seed, only, SUITE_JOBS)))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a batch thread"))
            .collect()
    })
}

/// A class directory holding a copy of each crate under its name.
fn class_of(crates: &[(String, PathBuf)]) -> tempfile::TempDir {
    let subs = tempfile::Builder::new()
        .prefix("grade-test-class-")
        .tempdir()
        .expect("tempdir");
    for (name, dir) in crates {
        cargo_grade::selfcheck::copy_crate(dir, &subs.path().join(name)).expect("copy the crate");
    }
    subs
}

/// `cargo grade batch` of `crates` at `seed` and `--jobs jobs`, on the tests
/// `only` selects: each crate's full result, by name.
fn run_batch(
    task: &str,
    crates: &[(String, PathBuf)],
    seed: u64,
    only: &[String],
    jobs: usize,
) -> std::collections::BTreeMap<String, Value> {
    let subs = class_of(crates);
    batch_in(task, subs.path(), seed, only, jobs)
}

/// `cargo grade batch` of the class directory `subs`.
fn batch_in(
    task: &str,
    subs: &Path,
    seed: u64,
    only: &[String],
    jobs: usize,
) -> std::collections::BTreeMap<String, Value> {
    let out = tempfile::tempdir().expect("tempdir");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-grade"))
        .args(["batch", task])
        .arg(subs)
        .arg("--out")
        .arg(out.path())
        .args(["--jobs", &jobs.to_string(), "--seed", &seed.to_string()])
        .args(only.iter().flat_map(|t| ["--only", t.as_str()]))
        .arg("--course")
        .arg(course_root())
        .current_dir(course_root())
        .output()
        .expect("run the batch");
    assert!(
        o.status.success(),
        "batch of {task} at seed {seed}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut results = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(out.path().join(".results"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "json") {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            results.insert(v["submission_id"].as_str().unwrap().to_owned(), v);
        }
    }
    results
}

/// Each report of `results` is graded with full marks.
fn assert_all_full_marks(what: &str, runs: &[(u64, std::collections::BTreeMap<String, Value>)]) {
    for (seed, results) in runs {
        for (name, report) in results {
            assert_eq!(
                report["outcome"]["kind"],
                "graded",
                "{what} {name} at seed {seed}: {} {:#?}",
                report["outcome"],
                lost(report)
            );
            let (score, max) = score(report);
            assert_eq!(
                score,
                max,
                "{what} {name}, seed {seed}: {:#?}",
                lost(report)
            );
            assert_eq!(report["seed"].as_u64(), Some(*seed));
            assert!(max >= 10, "a task is worth at least 10 points, got {max}");
        }
    }
}

/// The reference solution of `task` gets full marks at each seed.
pub fn assert_reference_full_marks(task: &str, slug: &str, seeds: &[u64]) {
    let reference = course_root().join("solutions").join(slug);
    // A seed may be listed twice (the same seed twice must agree): one
    // crate per listing.
    let crates: Vec<(String, PathBuf)> = vec![("reference".into(), reference)];
    let mut distinct = seeds.to_vec();
    distinct.sort_unstable();
    let repeats = distinct.len() - {
        distinct.dedup();
        distinct.len()
    };
    let mut crates = crates;
    for i in 0..repeats {
        crates.push((format!("reference-again-{i}"), crates[0].1.clone()));
    }
    let runs = batch_grade(task, &crates, &distinct);
    assert_eq!(
        runs.iter().map(|(_, r)| r.len()).sum::<usize>(),
        crates.len() * distinct.len()
    );
    assert_all_full_marks("reference", &runs);
}

/// Every alternative solution of `task` (`solutions/<slug>/alternatives/*`,
/// correct programs of other designs) gets full marks at each seed; there
/// are at least `min` of them.
pub fn assert_alternatives_full_marks(task: &str, slug: &str, min: usize, seeds: &[u64]) {
    let dir = course_root()
        .join("solutions")
        .join(slug)
        .join("alternatives");
    let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().join("src").is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    crates.sort();
    assert!(
        crates.len() >= min,
        "{task} needs {min} alternative solutions: {crates:?}"
    );
    let runs = batch_grade(task, &crates, seeds);
    for (seed, results) in &runs {
        assert_eq!(results.len(), crates.len(), "seed {seed}");
    }
    assert_all_full_marks("alternative", &runs);
}

/// The untouched starter (the default submission) compiles and gets at
/// most 10%.
pub fn assert_starter_scores_little(task: &str, slug: &str) {
    let (code, report) = grade_json(&[task]);
    assert_eq!(code, 0);
    assert_eq!(
        report["outcome"]["kind"], "graded",
        "the starter must compile"
    );
    let (score, max) = score(&report);
    assert!(score * 10 <= max, "starter scored {score}/{max}");
    assert_eq!(report["submission"], format!("starter/{slug}"));
}

/// Every mutant of `task` loses points in each test of its `catches`, at
/// each of `seeds`, and each lost point is explained. Each mutant is graded
/// on the tests of its own `catches` only: those are the only tests asserted
/// on, and a mutant that hangs costs a step's deadline in every test it
/// fails (graded on the union of every mutant's catches, task5's
/// `replies_to_type` took 46 s for the 3.4 s of its one test). `cargo grade
/// selfcheck TASK --seed N` grades every mutant on the whole spec.
pub fn assert_every_mutant_caught_in_its_tests(
    task: &str,
    slug: &str,
    min_mutants: usize,
    seeds: &[u64],
) {
    let mutants = mutants(task);
    assert!(
        mutants.len() >= min_mutants,
        "{task} needs at least {min_mutants} mutants"
    );
    let dirs: Vec<tempfile::TempDir> = mutants.iter().map(|m| mutant_crate(slug, m)).collect();
    // One batch per mutant (its own --only). The ones with the most tests
    // to fail start first: a mutant that hangs waits out a deadline in each
    // of them, and started last it would end the test alone.
    let mut groups: Vec<Group> = mutants
        .iter()
        .zip(&dirs)
        .map(|(m, d)| {
            (
                m.catches.clone(),
                vec![(m.name.clone(), d.path().to_owned())],
            )
        })
        .collect();
    groups.sort_by_key(|(catches, crates)| (std::cmp::Reverse(catches.len()), crates[0].0.clone()));
    for &seed in seeds {
        let results = batch_grade_groups(task, &groups, seed);
        for mutant in &mutants {
            let report = &results[&mutant.name];
            assert_eq!(
                report["outcome"]["kind"], "graded",
                "mutant {} must compile",
                mutant.name
            );
            for name in &mutant.catches {
                let t = test(report, name);
                assert!(
                    t["score"].as_u64() < t["max_score"].as_u64(),
                    "mutant {} was not caught by {name} at seed {seed}: {t:#}",
                    mutant.name
                );
                assert!(!explanation(t).is_empty(), "a lost point is explained");
            }
        }
    }
}

/// Crates graded together on the same tests: the tests (`--only` each),
/// and each crate's name and directory.
pub type Group = (Vec<String>, Vec<(String, PathBuf)>);

/// Grades each group's crates on the group's tests only (a batch per group,
/// `--only` each test), in the order given, [`SUITE_JOBS`] batches at a
/// time: a pool of that many threads, each running one group's batch at
/// `--jobs 1`, so the load is what the suite's other batches put on the
/// machine. Returns every crate's result.
pub fn batch_grade_groups(
    task: &str,
    groups: &[Group],
    seed: u64,
) -> std::collections::BTreeMap<String, Value> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let all = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..SUITE_JOBS.min(groups.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((only, crates)) = groups.get(i) else {
                    break;
                };
                let results = run_batch(task, crates, seed, only, 1);
                all.lock().unwrap().extend(results);
            });
        }
    });
    all.into_inner().unwrap()
}

/// An instructor's overlay directory for task1 with one hidden test whose
/// description, input and expectation are marker strings (`OVERLAYSECRET...`)
/// that must never reach a student. `name` names the test; `expect` is the
/// line it waits for (a line the reference prints, or one it never does).
pub fn task1_overlay(name: &str, expect: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("task1-signals.toml"),
        format!(
            "[[test]]\n\
             name = \"{name}\"\n\
             points = 2\n\
             description = \"OVERLAYSECRETDESC\"\n\
             hint = \"think about echo\"\n\
             steps = [\n\
             \x20 {{ start = \"main\" }},\n\
             \x20 {{ expect = '^ready$' }},\n\
             \x20 {{ send_line = \"OVERLAYSECRETINPUT\" }},\n\
             \x20 {{ expect = '^{expect}$' }},\n\
             ]\n"
        ),
    )
    .unwrap();
    dir
}
