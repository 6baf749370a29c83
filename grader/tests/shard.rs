//! A class split over machines and put back together: `batch --shard K/N`
//! from separate copies of the course (separate build directories, as on
//! separate machines), `--shard auto` under each engine's variables, and
//! `merge`, which must write exactly what one run writes and refuse what
//! does not fit. And an instructor's private spec overlay: its hidden test
//! is in every instructor output and in no student one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const TASK: &str = "task1";
const SLUG: &str = "task1-signals";

/// A copy of the parts of the course a grader needs (specs, starters,
/// handouts): a machine of its own, with its own build directory.
fn machine() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("grade-test-machine-")
        .tempdir()
        .unwrap();
    let root = course_root();
    for part in ["specs", "starter", "tasks"] {
        cargo_grade::selfcheck::copy_crate(&root.join(part), &dir.path().join(part)).unwrap();
    }
    std::fs::copy(root.join("Cargo.toml"), dir.path().join("Cargo.toml")).unwrap();
    dir
}

fn cargo_grade(course: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-grade"));
    cmd.args(args)
        .arg("--course")
        .arg(course)
        .current_dir(course);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in [
        "CI_NODE_INDEX",
        "CI_NODE_TOTAL",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "CARGO_GRADE_SHARD_TOTAL",
    ] {
        if !env.iter().any(|(n, _)| *n == k) {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

fn class(dir: &Path) {
    let root = course_root();
    let reference = root.join("solutions").join(SLUG);
    for name in ["ana", "ben", "cleo", "dev"] {
        cargo_grade::selfcheck::copy_crate(&reference, &dir.join(name)).unwrap();
    }
    cargo_grade::selfcheck::copy_crate(&root.join("starter").join(SLUG), &dir.join("eli")).unwrap();
    let broken = dir.join("fay");
    cargo_grade::selfcheck::copy_crate(&reference, &broken).unwrap();
    std::fs::write(broken.join("src/main.rs"), "fn main() { nope }\n").unwrap();
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

/// What `junit.xml` says, without what differs between any two runs
/// (timings, pids in the explanations): each suite's counts and properties,
/// and each test case with the kind and message of its result.
fn verdicts(xml: &str) -> Vec<String> {
    let tag =
        regex::Regex::new(r#"<(testsuite|testcase|failure|error|skipped|property) ([^>]*?)/?>"#)
            .unwrap();
    let time = regex::Regex::new(r#" time="[0-9.]+""#).unwrap();
    tag.captures_iter(xml)
        .map(|c| format!("{} {}", &c[1], time.replace_all(&c[2], "")))
        .collect()
}

#[test]
fn three_shards_on_three_machines_merge_to_the_files_of_one_run() {
    let work = tempfile::tempdir().unwrap();
    let subs = work.path().join("subs");
    class(&subs);
    let machines: Vec<tempfile::TempDir> = (0..3).map(|_| machine()).collect();
    let s = subs.to_str().unwrap();
    let outs: Vec<PathBuf> = (1..=3)
        .map(|k| work.path().join(format!("out-{k}")))
        .collect();
    let single = work.path().join("single");
    std::thread::scope(|scope| {
        for (k, (m, out)) in machines.iter().zip(&outs).enumerate() {
            scope.spawn(move || {
                let shard = format!("{}/3", k + 1);
                ok(&cargo_grade(
                    m.path(),
                    &[
                        "batch",
                        TASK,
                        s,
                        "--out",
                        out.to_str().unwrap(),
                        "--jobs",
                        "2",
                        "--shard",
                        &shard,
                    ],
                    &[],
                ));
            });
        }
        let single = &single;
        let m = &machines[0];
        scope.spawn(move || {
            ok(&cargo_grade(
                m.path(),
                &[
                    "batch",
                    TASK,
                    s,
                    "--out",
                    single.to_str().unwrap(),
                    "--jobs",
                    "2",
                ],
                &[],
            ));
        });
    });
    // Every submission in exactly one shard.
    let mut names: Vec<String> = Vec::new();
    for out in &outs {
        let record: serde_json::Value = serde_json::from_str(&read(out, "shard.json")).unwrap();
        names.extend(
            record["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned()),
        );
    }
    names.sort();
    assert_eq!(names, ["ana", "ben", "cleo", "dev", "eli", "fay"]);

    let merged = work.path().join("merged");
    let mut args = vec!["merge"];
    args.extend(outs.iter().map(|o| o.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    ok(&cargo_grade(machines[1].path(), &args, &[]));
    assert_eq!(
        read(&merged, "grades.csv"),
        read(&single, "grades.csv"),
        "byte-identical grades.csv"
    );
    assert_eq!(read(&merged, "summary.json"), read(&single, "summary.json"));
    assert_eq!(read(&merged, "summary.html"), read(&single, "summary.html"));
    let (merged_junit, single_junit) = (
        verdicts(&read(&merged, "junit.xml")),
        verdicts(&read(&single, "junit.xml")),
    );
    assert!(merged_junit.len() > 90, "{merged_junit:?}");
    assert!(merged_junit == single_junit, "junit.xml differs");
    for name in ["ana", "fay"] {
        assert!(
            merged.join(name).join("report.txt").is_file(),
            "{name}'s feedback"
        );
    }
    let csv = read(&merged, "grades.csv");
    assert!(
        csv.contains("\nana,25,25,") || csv.contains("\nana,"),
        "{csv}"
    );
    assert!(csv.contains(",build_failed,"), "{csv}");

    // What merge refuses, and says why.
    let refuse = |args: &[&str], why: &str| {
        let o = cargo_grade(machines[1].path(), args, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(why), "expected {why:?} in: {stderr}");
    };
    let o = |k: usize| outs[k].to_str().unwrap();
    let elsewhere = work.path().join("elsewhere");
    let e = elsewhere.to_str().unwrap();
    refuse(&["merge", o(0), o(2), "--out", e], "shard 2/3 missing");
    refuse(
        &["merge", o(0), o(0), o(1), o(2), "--out", e],
        "given twice",
    );
    // Shard 2 again, at another seed.
    let seed2 = work.path().join("seed2");
    ok(&cargo_grade(
        machines[2].path(),
        &[
            "batch",
            TASK,
            s,
            "--out",
            seed2.to_str().unwrap(),
            "--shard",
            "2/3",
            "--seed",
            "2",
        ],
        &[],
    ));
    refuse(
        &["merge", o(0), seed2.to_str().unwrap(), o(2), "--out", e],
        "seed",
    );
    // An unfinished shard: a result missing.
    let first = read(&outs[0], "shard.json");
    let record: serde_json::Value = serde_json::from_str(&first).unwrap();
    if let Some(name) = record["names"].as_array().unwrap().first() {
        let name = name.as_str().unwrap();
        std::fs::remove_file(outs[0].join(".results").join(format!("{name}.json"))).unwrap();
        refuse(&["merge", o(0), o(1), o(2), "--out", e], "did not finish");
    }
}

#[test]
fn shard_auto_takes_k_and_n_from_each_engine() {
    // Entries with no crate are rejected at once: the shards' assignments
    // are what this checks, not grading.
    let work = tempfile::tempdir().unwrap();
    let subs = work.path().join("subs");
    for i in 0..12 {
        std::fs::create_dir_all(subs.join(format!("student-{i:02}"))).unwrap();
    }
    let course = course_root();
    let s = subs.to_str().unwrap();
    let record = |out: &Path| -> (u64, u64, Vec<String>) {
        let r: serde_json::Value = serde_json::from_str(&read(out, "shard.json")).unwrap();
        (
            r["shard"]["k"].as_u64().unwrap(),
            r["shard"]["n"].as_u64().unwrap(),
            r["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
        )
    };
    let run = |tag: &str, shard: &[&str], env: &[(&str, &str)]| {
        let out = work.path().join(tag);
        let mut args = vec!["batch", TASK, s, "--out", out.to_str().unwrap()];
        args.extend(shard);
        ok(&cargo_grade(&course, &args, env));
        record(&out)
    };
    let explicit = run("explicit", &["--shard", "2/3"], &[]);
    assert_eq!((explicit.0, explicit.1), (2, 3));
    type Engine<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let engines: [Engine; 4] = [
        (
            "gitlab",
            &[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")],
            &[],
        ),
        (
            "slurm",
            &[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            &[],
        ),
        (
            "kubernetes",
            &[("JOB_COMPLETION_INDEX", "1")],
            &["--shard-total", "3"],
        ),
        (
            "kubernetes-env",
            &[
                ("JOB_COMPLETION_INDEX", "1"),
                ("CARGO_GRADE_SHARD_TOTAL", "3"),
            ],
            &[],
        ),
    ];
    for (tag, env, extra) in engines {
        let mut shard = vec!["--shard", "auto"];
        shard.extend(extra);
        assert_eq!(run(tag, &shard, env), explicit, "{tag}");
    }
    // No engine: said so, exit 2.
    let o = cargo_grade(
        &course,
        &[
            "batch",
            TASK,
            s,
            "--out",
            "/nonexistent-never",
            "--shard",
            "auto",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no engine detected"));
}

/// Marker strings of the overlay's hidden test: none may reach a student.
const SECRETS: [&str; 3] = [
    "OVERLAYSECRETINPUT",
    "OVERLAYSECRETEXPECT",
    "OVERLAYSECRETDESC",
];

fn overlay() -> tempfile::TempDir {
    task1_overlay("instructor_extra", "OVERLAYSECRETEXPECT")
}

#[test]
fn an_overlay_test_is_in_instructor_outputs_and_in_no_student_output() {
    let overlay = overlay();
    let ov = overlay.path().to_str().unwrap();
    let course = course_root();
    let reference = format!("solutions/{SLUG}");
    // The student's command, human and JSON: the test by name and score.
    for format in ["human", "json"] {
        let o = cargo_grade(
            &course,
            &[
                "grade",
                TASK,
                "--path",
                &reference,
                "--format",
                format,
                "--instructor-specs",
                ov,
            ],
            &[("NO_COLOR", "1")],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("instructor_extra"), "{format}: {out}");
        for secret in SECRETS {
            assert!(!out.contains(secret), "{format} shows {secret}: {out}");
        }
    }
    // --instructor shows it all.
    let o = cargo_grade(
        &course,
        &[
            "grade",
            TASK,
            "--path",
            &reference,
            "--format",
            "json",
            "--instructor",
            "--instructor-specs",
            ov,
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("OVERLAYSECRETEXPECT"), "{out}");

    // A batch: instructor files have it, the students' feedback does not.
    let work = tempfile::tempdir().unwrap();
    let subs = work.path().join("subs");
    cargo_grade::selfcheck::copy_crate(&course.join(&reference), &subs.join("gus")).unwrap();
    let out = work.path().join("out");
    ok(&cargo_grade(
        &course,
        &[
            "batch",
            TASK,
            subs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--instructor-specs",
            ov,
        ],
        &[],
    ));
    assert!(read(&out, "junit.xml").contains("OVERLAYSECRETEXPECT"));
    assert!(read(&out, ".results/gus.json").contains("OVERLAYSECRETINPUT"));
    assert!(read(&out, "grades.csv")
        .lines()
        .next()
        .unwrap()
        .ends_with(",instructor_extra"));
    for file in ["gus/report.json", "gus/report.txt"] {
        let text = read(&out, file);
        assert!(text.contains("instructor_extra"), "{file}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{file} shows {secret}: {text}");
        }
    }

    // An overlay is validated like a spec, its errors at its own lines.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join(format!("{SLUG}.toml")),
        "[[test]]\nname = \"x\"\npoints = 0\nsteps = [{ start = \"main\" }]\n",
    )
    .unwrap();
    let o = cargo_grade(
        &course,
        &[
            "grade",
            TASK,
            "--path",
            &reference,
            "--instructor-specs",
            bad.path().to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{SLUG}.toml:3:10")), "{stderr}");
}
