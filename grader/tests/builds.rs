//! Builds of different submissions at once (issue 11): one task prepared
//! once, then the task3 reference, the starter, a copy that does not
//! compile and a copy that reads cargo's variables, built by four threads
//! at the same time, each with the right result; the reference's binary
//! runs and counts. And what a build must not see: another build's files.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use cargo_grade::builder::{self, BuildResult, Prepared};
use cargo_grade::course::Course;

const TASK: &str = "task3";
const SLUG: &str = "task3-shm-counter";

/// The tests of this file one at a time (each builds in parallel itself),
/// so that what one finds in the builds' directory is its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn course() -> Course {
    Course {
        root: common::course_root(),
    }
}

/// Where the task's builds make their directories (and keep their cache).
fn builds_dir(course: &Course) -> PathBuf {
    course
        .work_dir()
        .canonicalize()
        .unwrap()
        .join("builds")
        .join(SLUG)
}

/// A copy of `from` whose `src/main.rs` gets `extra` appended.
fn variant(from: &Path, extra: &str) -> tempfile::TempDir {
    let dir = common::copy_crate(from);
    let main = dir.path().join("src").join("main.rs");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&main)
        .unwrap();
    f.write_all(extra.as_bytes()).unwrap();
    dir
}

/// Runs the task3 binary as one counter of 2 workers and 500 increments.
fn counts(binary: &Path) -> String {
    let name = format!("/cg-builds-{}", std::process::id());
    let mut child = Command::new(binary)
        .args([name.as_str(), "2", "500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn four_submissions_build_at_once_each_with_its_own_result() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let course = course();
    let spec = course.task(TASK).unwrap();
    let prepared = Arc::new(Prepared::new(&course, &spec).expect("the task prepares"));
    let root = common::course_root();
    let reference = root.join("solutions").join(SLUG);
    let starter = root.join("starter").join(SLUG);
    let broken = variant(&reference, "\nfn not_a_number() -> u32 { \"seven\" }\n");
    // What cargo tells a crate, the replay must tell it too.
    let with_env = variant(
        &starter,
        r#"
const _: () = assert!(!env!("CARGO_PKG_NAME").is_empty());
#[allow(dead_code)]
const NAME: &str = env!("CARGO_PKG_NAME");
#[allow(dead_code)]
const MANIFEST: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
#[allow(dead_code)]
const OWN: &str = include_str!("main.rs");
const _: () = assert!(NAME.len() == "task3-shm-counter".len());
"#,
    );
    let submissions: Vec<(&str, PathBuf)> = vec![
        ("reference", reference),
        ("starter", starter),
        ("broken", broken.path().to_owned()),
        ("with_env", with_env.path().to_owned()),
    ];
    let outs: Vec<tempfile::TempDir> = submissions
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let start = Arc::new(Barrier::new(submissions.len()));
    let results: Vec<(&str, BuildResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = submissions
            .iter()
            .zip(&outs)
            .map(|((name, path), out)| {
                let prepared = prepared.clone();
                let start = start.clone();
                s.spawn(move || {
                    start.wait();
                    let result = prepared
                        .build(path, out.path())
                        .expect("no machinery failure");
                    (*name, result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (name, result) in &results {
        match (*name, result) {
            ("reference" | "starter" | "with_env", BuildResult::Built { binary, .. }) => {
                assert!(binary.is_file(), "{name}: {}", binary.display());
            }
            ("broken", BuildResult::Failed { diagnostics, .. }) => {
                assert!(
                    diagnostics.contains("error[E0308]: mismatched types")
                        && diagnostics.contains("--> src/main.rs:"),
                    "the compiler's error, rendered as cargo shows it: {diagnostics}"
                );
            }
            (name, result) => panic!("{name}: {result:?}"),
        }
    }
    let BuildResult::Built { binary, .. } = &results[0].1 else {
        unreachable!()
    };
    let output = counts(binary);
    assert!(
        output.contains("ready") && output.contains("count 1000"),
        "the reference counts: {output}"
    );
    // Nothing of any build is left in the builds' directory.
    let builds = builds_dir(&course);
    let left: Vec<_> = std::fs::read_dir(&builds)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            n.starts_with(&format!("{}-", std::process::id())) && !n.contains("-other-")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_shared_build_path_gives_the_same_results() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let course = course();
    let spec = course.task(TASK).unwrap();
    let out = tempfile::tempdir().unwrap();
    let reference = common::course_root().join("solutions").join(SLUG);
    let no_main = tempfile::tempdir().unwrap();
    std::fs::create_dir(no_main.path().join("src")).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| builder::build(&course, &spec, &reference, out.path()));
        let b = s.spawn(|| builder::build(&course, &spec, no_main.path(), out.path()));
        assert!(matches!(a.join().unwrap(), Ok(BuildResult::Built { .. })));
        match b.join().unwrap() {
            Ok(BuildResult::Failed { diagnostics, .. }) => {
                assert!(diagnostics.contains("has no src/main.rs"), "{diagnostics}")
            }
            other => panic!("{other:?}"),
        }
    });
    let first = Prepared::shared(&course, &spec).unwrap();
    let again = Prepared::shared(&course, &spec).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "prepared once per process");
}

/// A build that succeeded is kept and given again for the same sources
/// (the grader's own copy is what is handed out, which the test marks to
/// tell it from a new build), never for other sources, other hidden
/// directories or a build that failed.
#[test]
fn the_same_sources_are_built_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let course = course();
    let spec = course.task(TASK).unwrap();
    let prepared = Prepared::new(&course, &spec).unwrap();
    let reference = common::course_root().join("solutions").join(SLUG);
    // Sources, and a binary, of this run's own (in the usage message), so
    // that no earlier run or other test kept them.
    let unique = |extra: &str| {
        let dir = common::copy_crate(&reference);
        let main = dir.path().join("src").join("main.rs");
        let text = std::fs::read_to_string(&main).unwrap();
        let marked = text.replacen(
            "(e.g. /cg-abc 4 20000)",
            &format!(
                "(e.g. /cg-abc 4 20000) {}{extra}",
                std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
            ),
            1,
        );
        assert_ne!(text, marked, "the reference's usage line moved");
        std::fs::write(&main, marked).unwrap();
        dir
    };
    let a = unique("");
    let build = |dir: &Path, hidden: &[PathBuf]| {
        let out = tempfile::tempdir().unwrap();
        match prepared.build_hiding(dir, out.path(), hidden).unwrap() {
            BuildResult::Built { binary, .. } => (std::fs::read(binary).unwrap(), out),
            BuildResult::Failed { diagnostics, .. } => panic!("{diagnostics}"),
        }
    };
    let (first, _out) = build(a.path(), &[]);
    let cache = builds_dir(&course).join("cache");
    let kept: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == first))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the build is kept once in {}",
        cache.display()
    );
    let mut marked = first.clone();
    marked.extend_from_slice(b"kept by the build cache");
    std::fs::write(&kept[0], &marked).unwrap();

    let (again, out) = build(a.path(), &[]);
    assert!(again == marked, "the same sources are not built again");
    let output = counts(&out.path().join("task3-shm-counter"));
    assert!(
        output.contains("count 1000"),
        "the kept binary runs: {output}"
    );
    let b = unique(" b");
    let (other, _) = build(b.path(), &[]);
    assert!(other != marked, "other sources are built");
    let hidden = tempfile::tempdir().unwrap();
    let (hiding, _) = build(a.path(), &[hidden.path().to_owned()]);
    assert!(
        hiding != marked,
        "a build hiding other directories is built"
    );

    let broken = variant(a.path(), "fn broken() -> u32 { \"no\" }\n");
    let before = std::fs::read_dir(&cache).unwrap().count();
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let result = prepared.build(broken.path(), out.path()).unwrap();
        assert!(matches!(result, BuildResult::Failed { .. }), "{result:?}");
    }
    assert!(std::fs::read_dir(&cache).unwrap().count() <= before);
}

/// Where the kernel gives the build a jail, nothing else of the grader's
/// work directory is in it: a file beside the build directories (where
/// another submission's sources are, while it builds) cannot be embedded.
#[test]
fn a_build_cannot_read_another_builds_files() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let course = course();
    let spec = course.task(TASK).unwrap();
    let prepared = Prepared::new(&course, &spec).unwrap();
    let builds = builds_dir(&course);
    let other = tempfile::Builder::new()
        .prefix(&format!("{}-other-", std::process::id()))
        .tempdir_in(&builds)
        .unwrap();
    let secret = other.path().join("main.rs");
    std::fs::write(&secret, "another submission's source").unwrap();
    let peeker = variant(
        &common::course_root().join("starter").join(SLUG),
        &format!(
            "\n#[allow(dead_code)]\nconst OTHER: &str = include_str!({:?});\n",
            secret.to_str().unwrap()
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let result = prepared.build(peeker.path(), out.path()).unwrap();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !builder::isolation().active {
        assert!(!root, "a root grader must get a jail for its builds");
        eprintln!("skipped: this machine gives builds no jail");
        return;
    }
    match result {
        BuildResult::Failed { diagnostics, .. } => {
            assert!(diagnostics.contains("couldn't read"), "{diagnostics}")
        }
        BuildResult::Built { .. } => panic!("the build read {}", secret.display()),
    }
}
