//! `cargo grade batch` on a real class of task3 submissions: references in
//! every form an LMS exports (a crate directory, a course checkout, a .zip,
//! a .tar.gz), the starter, mutants, one that does not compile, one that
//! loops forever, and hostile archives. Scores and statuses must be right at
//! `--jobs 1` and `--jobs 4` alike, with byte-identical `grades.csv`; a
//! grader killed mid-batch resumes to the same files and leaves nothing
//! running; the outputs are read by third-party readers (Python's
//! junitparser, a headless Chromium).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cargo_grade::harness::deadline::poll_until;
use cargo_grade::harness::Deadline;

use common::*;

const TASK: &str = "task3";
const SLUG: &str = "task3-shm-counter";

/// What each submission of the class must get.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Full,
    /// Graded, at most this percent.
    AtMost(f64),
    /// Graded, losing points in each of these tests.
    Loses(Vec<String>),
    BuildFailed,
    /// Rejected, the reason containing this.
    Rejected(&'static str),
}

fn python(script: &str, args: &[&Path]) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "python3 {script}");
}

fn copy_src(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    cargo_grade::selfcheck::copy_crate(from, to).unwrap();
}

/// Builds the class in `dir`; returns what each must get.
fn make_class(dir: &Path) -> BTreeMap<String, Want> {
    let root = course_root();
    let reference = root.join("solutions").join(SLUG);
    let mut want = BTreeMap::new();

    copy_src(&reference, &dir.join("ref-dir"));
    want.insert("ref-dir".into(), Want::Full);

    // A checkout of the course repository with the work in the starter.
    let checkout = dir.join("ref-checkout");
    std::fs::create_dir_all(checkout.join("tasks")).unwrap();
    std::fs::write(checkout.join("README.md"), "my course copy\n").unwrap();
    copy_src(&reference, &checkout.join("starter").join(SLUG));
    want.insert("ref-checkout".into(), Want::Full);

    // The same crate as an LMS exports it: zipped inside a folder, and as
    // a tarball.
    let staged = tempfile::tempdir().unwrap();
    copy_src(&reference, &staged.path().join("alice-main"));
    python(
        "import sys, shutil; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2])",
        &[&dir.join("ref-zip"), staged.path()],
    );
    python(
        "import sys, shutil; shutil.make_archive(sys.argv[1], 'gztar', sys.argv[2])",
        &[&dir.join("ref-tgz"), staged.path()],
    );
    want.insert("ref-zip".into(), Want::Full);
    want.insert("ref-tgz".into(), Want::Full);

    copy_src(&root.join("starter").join(SLUG), &dir.join("starter"));
    want.insert("starter".into(), Want::AtMost(10.0));

    // Mutants whose bugs are not races: their scores, like every correct
    // program's, must not depend on the load (a race mutant may lose points
    // in a test it does not list, run to run).
    let deterministic = ["early_return_keeps_lock", "no_unlink", "stale_reused"];
    for m in mutants(TASK)
        .iter()
        .filter(|m| deterministic.contains(&m.name.as_str()))
    {
        let name = format!("mutant-{}", m.name.replace('_', "-"));
        let d = dir.join(&name);
        cargo_grade::selfcheck::materialise(m, &reference, &d).unwrap();
        want.insert(name, Want::Loses(m.catches.clone()));
    }

    let broken = dir.join("broken");
    copy_src(&reference, &broken);
    std::fs::write(
        broken.join("src/main.rs"),
        "fn main() { let n: u32 = \"not a number\"; }\n",
    )
    .unwrap();
    want.insert("broken".into(), Want::BuildFailed);

    let looping = dir.join("loops");
    copy_src(&reference, &looping);
    // It hangs without burning a core (the hostile suite has the busy loop).
    std::fs::write(
        looping.join("src/main.rs"),
        "fn main() { loop { std::thread::park(); } }\n",
    )
    .unwrap();
    want.insert("loops".into(), Want::AtMost(0.0));

    // Hostile archives.
    python(
        "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1], 'w')\n\
         z.writestr('x/src/main.rs', 'fn main() {}')\n\
         z.writestr('../../evil-traversal', 'gotcha')\n\
         z.close()",
        &[&dir.join("traversal.zip")],
    );
    python(
        "import sys, tarfile, io\n\
         t = tarfile.open(sys.argv[1], 'w:gz')\n\
         i = tarfile.TarInfo('x/src/main.rs'); data = b'fn main() {}'; i.size = len(data); t.addfile(i, io.BytesIO(data))\n\
         l = tarfile.TarInfo('x/src/lib.rs'); l.type = tarfile.SYMTYPE; l.linkname = '/etc/passwd'; t.addfile(l)\n\
         t.close()",
        &[&dir.join("symlink.tar.gz")],
    );
    python(
        "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n\
         z.writestr('x/src/main.rs', 'fn main() {}')\n\
         z.writestr('x/src/huge.rs', b'\\0' * (300 << 20))\n\
         z.close()",
        &[&dir.join("bomb.zip")],
    );
    python(
        "import sys, tarfile, io\n\
         t = tarfile.open(sys.argv[1], 'w:gz')\n\
         i = tarfile.TarInfo('x/src/main.rs'); data = b'fn main() {}'; i.size = len(data); t.addfile(i, io.BytesIO(data))\n\
         h = tarfile.TarInfo('x/src/other.rs'); h.type = tarfile.LNKTYPE; h.linkname = '/etc/shadow'; t.addfile(h)\n\
         t.close()",
        &[&dir.join("hardlink.tgz")],
    );
    want.insert("hardlink".into(), Want::Rejected("link"));
    want.insert("traversal".into(), Want::Rejected(".."));
    want.insert("symlink".into(), Want::Rejected("link"));
    want.insert("bomb".into(), Want::Rejected(""));
    want
}

fn batch(subs: &Path, out: &Path, jobs: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-grade"));
    cmd.args(["batch", TASK])
        .arg(subs)
        .arg("--out")
        .arg(out)
        .args(["--jobs", jobs, "--course"])
        .arg(course_root())
        .args(extra)
        .current_dir(course_root())
        .env("NO_COLOR", "1");
    cmd
}

fn run_batch(subs: &Path, out: &Path, jobs: &str) {
    let o = batch(subs, out, jobs, &[]).output().unwrap();
    assert!(
        o.status.success(),
        "batch --jobs {jobs}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Not a terminal: one plain line per finished submission.
    let stderr = String::from_utf8_lossy(&o.stderr);
    let full = regex::Regex::new(r"\] ref-dir: (\d+)/(\d+) in ").unwrap();
    let caps = full.captures(&stderr).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(caps[1], caps[2], "{stderr}");
}

fn reports(out: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_dir(out.join(".results"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            (v["submission_id"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn check_verdicts(out: &Path, want: &BTreeMap<String, Want>) {
    let got = reports(out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "every submission has a result"
    );
    for (name, w) in want {
        let r = &got[name];
        let kind = r["outcome"]["kind"].as_str().unwrap();
        let (score, max) = score(r);
        let ctx = format!("{name}: {kind} {score}/{max} {:#?}", lost(r));
        match w {
            Want::Full => assert_eq!((kind, score), ("graded", max), "{ctx}"),
            Want::AtMost(p) => {
                assert_eq!(kind, "graded", "{ctx}");
                assert!(score as f64 * 100.0 <= p * max as f64, "{ctx}");
            }
            Want::Loses(tests) => {
                assert_eq!(kind, "graded", "{ctx}");
                for t in tests {
                    let t = test(r, t);
                    assert!(t["score"].as_u64() < t["max_score"].as_u64(), "{ctx}");
                }
            }
            Want::BuildFailed => assert_eq!((kind, score), ("build_failed", 0), "{ctx}"),
            Want::Rejected(why) => {
                assert_eq!((kind, score), ("rejected", 0), "{ctx}");
                let reason = r["outcome"]["reason"].as_str().unwrap();
                assert!(reason.contains(why), "{name}: {reason}");
            }
        }
        // The student's feedback beside it, text and JSON.
        let txt = std::fs::read_to_string(out.join(name).join("report.txt")).unwrap();
        assert!(txt.contains("Score: "), "{name}: {txt}");
        assert!(!txt.contains('\x1b'), "no terminal codes in report.txt");
        let _: cargo_grade::result::Report = serde_json::from_str(
            &std::fs::read_to_string(out.join(name).join("report.json")).unwrap(),
        )
        .unwrap();
    }
}

fn no_evil_outside(subs: &Path) {
    for dir in [
        subs.to_owned(),
        subs.parent().unwrap().to_owned(),
        std::env::temp_dir(),
    ] {
        assert!(
            !dir.join("evil-traversal").exists(),
            "an archive wrote outside its scratch directory: {}",
            dir.display()
        );
    }
}

#[test]
fn a_class_gets_the_same_right_verdicts_at_jobs_1_and_jobs_4() {
    let class = tempfile::tempdir().unwrap();
    let subs = class.path().join("subs");
    std::fs::create_dir(&subs).unwrap();
    let want = make_class(&subs);
    assert!(want.len() >= 14, "{}", want.len());

    // Both at once: the machine is loaded (five grades on two cores), and
    // the verdicts must not care.
    let out4 = class.path().join("out4");
    let out1 = class.path().join("out1");
    std::thread::scope(|s| {
        s.spawn(|| run_batch(&subs, &out4, "4"));
        s.spawn(|| run_batch(&subs, &out1, "1"));
    });
    check_verdicts(&out4, &want);
    check_verdicts(&out1, &want);
    let csv = |out: &Path| std::fs::read(out.join("grades.csv")).unwrap();
    assert_eq!(
        String::from_utf8(csv(&out1)).unwrap(),
        String::from_utf8(csv(&out4)).unwrap(),
        "grades.csv does not depend on --jobs"
    );
    no_evil_outside(&subs);

    let text = String::from_utf8(csv(&out4)).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("submission,score,max_score,percent,status,reason,"),
        "{header}"
    );
    assert!(
        regex::Regex::new(r"\nbroken,0,\d+,0\.0,build_failed,")
            .unwrap()
            .is_match(&text),
        "{text}"
    );
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "rows sorted by name");

    junit_is_read_by_junitparser(&out4, &want);
    summary_page_renders_in_a_browser(&out4);
}

/// Python's junitparser (a third-party JUnit reader) reads `junit.xml` with
/// a suite per submission and the right counts.
fn junit_is_read_by_junitparser(out: &Path, want: &BTreeMap<String, Want>) {
    if !python_module("junitparser") {
        return;
    }
    let script = r#"
import sys, json, junitparser
x = junitparser.JUnitXml.fromfile(sys.argv[1])
out = {}
for s in x:
    cases = list(s)
    kind = lambda c, k: bool(c.result) and isinstance(c.result[0], k)
    out[s.name] = {
        'tests': len(cases),
        'failed': sum(1 for c in cases if kind(c, junitparser.Failure)),
        'skipped': sum(1 for c in cases if kind(c, junitparser.Skipped)),
        'passed': sum(1 for c in cases if c.is_passed),
    }
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(out.join("junit.xml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = reports(out);
    assert_eq!(parsed.as_object().unwrap().len(), want.len());
    for (name, r) in &results {
        let suite = &parsed[name.as_str()];
        let tests = r["tests"].as_array().unwrap();
        let count = |status: &[&str]| {
            tests
                .iter()
                .filter(|t| status.contains(&t["status"].as_str().unwrap()))
                .count() as u64
        };
        assert_eq!(suite["tests"].as_u64(), Some(tests.len() as u64), "{name}");
        assert_eq!(suite["passed"].as_u64(), Some(count(&["passed"])), "{name}");
        assert_eq!(
            suite["failed"].as_u64(),
            Some(count(&["failed", "timeout"])),
            "{name}"
        );
        assert_eq!(
            suite["skipped"].as_u64(),
            Some(count(&["not_run"])),
            "{name}"
        );
    }
}

/// Whether a Python module is importable, installing it from PyPI if not
/// (as root, as in CI); false, said so, where it cannot be had.
fn python_module(name: &str) -> bool {
    let has = || {
        Command::new("python3")
            .args(["-c", &format!("import {name}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has() {
        return true;
    }
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if has() {
        return true;
    }
    eprintln!("SKIPPED: the Python module {name} is not installed and cannot be installed here");
    false
}

/// The summary page, opened in a real headless Chromium, shows the
/// histogram (the screenshot is kept beside the page).
fn summary_page_renders_in_a_browser(out: &Path) {
    let html = std::fs::read_to_string(out.join("summary.html")).unwrap();
    assert!(html.contains("<svg id=\"histogram\""), "{html}");
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("http://") || html.matches("http://").all(|_| true));
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: no Chromium here, and none could be installed (apt-get install chromium)"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = out.join("summary.png");
    let page = format!("file://{}", out.join("summary.html").display());
    let o = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The DOM as the browser built it has the histogram's bars.
    let dom = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&page)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.matches("class=\"hist\"").count() == 11, "{dom}");
    // The screenshot is not blank: the bars' blue is in it.
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 2000, "a {} byte screenshot", png.len());
}

fn chromium() -> Option<PathBuf> {
    let found = || {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = found() {
        return Some(p);
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    found()
}

#[test]
fn a_killed_batch_resumes_to_the_same_files_and_leaves_nothing_running() {
    let class = tempfile::tempdir().unwrap();
    let subs = class.path().join("subs");
    std::fs::create_dir(&subs).unwrap();
    let reference = course_root().join("solutions").join(SLUG);
    for name in ["a", "b", "c", "d", "e", "f"] {
        copy_src(&reference, &subs.join(name));
    }
    copy_src(&course_root().join("starter").join(SLUG), &subs.join("g"));

    // The uninterrupted run.
    let whole = class.path().join("whole");
    let o = batch(&subs, &whole, "2", &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A run killed with SIGKILL once two results are on disk.
    let out = class.path().join("out");
    let mut cmd = batch(&subs, &out, "2", &[]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(120));
    let finished = |out: &Path| {
        std::fs::read_dir(out.join(".results"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let two = poll_until(deadline, || (finished(&out) >= 2).then_some(()));
    assert!(two.is_some(), "no two results within 120 s");
    assert!(child.try_wait().unwrap().is_none(), "the batch ended early");
    let pid = child.id() as i32;
    // The users the grader's rounds run as, seen while it runs.
    let users = round_users_below(pid);
    // SAFETY: kill on our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(finished(&out) < 7, "killed before the end");
    // Nothing of any submission outlives the grader: the rounds' holders
    // kill their users' processes when the grader dies.
    let gone = poll_until(Deadline::after_ms(10_000), || {
        alive_of_users(&users).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "processes outlived the grader: {:?}",
        alive_of_users(&users)
    );

    let o = batch(&subs, &out, "2", &["--resume"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("kept from the earlier run"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("grades.csv")).unwrap(),
        std::fs::read_to_string(whole.join("grades.csv")).unwrap(),
        "a resumed batch writes what an uninterrupted one does"
    );

    // A changed submission is graded again on resume; the rest is kept.
    std::fs::write(
        subs.join("a/src/main.rs"),
        "fn main() { std::process::exit(3) }\n",
    )
    .unwrap();
    let o = batch(&subs, &out, "2", &["--resume"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("(6 kept from an earlier run)"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("grades.csv")).unwrap();
    assert!(csv.contains("\na,0,"), "{csv}");
}

/// (pid, ppid, uid, state line) of every process.
fn processes() -> Vec<(i32, i32, u32, String)> {
    let field = |status: &str, key: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let ppid = field(&status, "PPid:").parse().ok()?;
            let uid = field(&status, "Uid:")
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((pid, ppid, uid, field(&status, "State:")))
        })
        .collect()
}

/// The uids (other than root's) of the processes descended from `pid`.
fn round_users_below(pid: i32) -> Vec<u32> {
    let all = processes();
    let mut tree = vec![pid];
    let mut grew = true;
    while grew {
        grew = false;
        for (p, pp, _, _) in &all {
            if tree.contains(pp) && !tree.contains(p) {
                tree.push(*p);
                grew = true;
            }
        }
    }
    let mut users: Vec<u32> = all
        .iter()
        .filter(|(p, _, uid, _)| tree.contains(p) && *uid != 0)
        .map(|(_, _, uid, _)| *uid)
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// Live (not zombie) processes of these users.
fn alive_of_users(users: &[u32]) -> Vec<String> {
    processes()
        .into_iter()
        .filter(|(_, _, uid, state)| users.contains(uid) && !state.starts_with('Z'))
        .map(|(pid, _, uid, state)| format!("pid {pid} uid {uid} {state}"))
        .collect()
}

#[test]
fn ctrl_c_stops_cleanly_keeps_results_and_says_how_to_resume() {
    let class = tempfile::tempdir().unwrap();
    let subs = class.path().join("subs");
    let reference = course_root().join("solutions").join(SLUG);
    for name in ["a", "b", "c", "d", "e"] {
        copy_src(&reference, &subs.join(name));
    }
    let out = class.path().join("out");
    let child = batch(&subs, &out, "1", &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = poll_until(Deadline::after(Duration::from_secs(120)), || {
        out.join(".results/a.json").is_file().then_some(())
    });
    assert!(first.is_some(), "no result within 120 s");
    // SAFETY: kill on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let kept = std::fs::read_dir(out.join(".results"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert!((1..5).contains(&kept), "{kept} results kept");
    let report = std::fs::read_to_string(out.join("a/report.txt")).unwrap();
    let full = regex::Regex::new(r"Score: (\d+)/(\d+)").unwrap();
    let caps = full.captures(&report).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(caps[1], caps[2], "{report}");
}
