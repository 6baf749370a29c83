//! Hostile submissions (issue 5): each case replaces the task1 starter's
//! `src/main.rs` with a small program from `tests/hostile/` (a fork bomb, a
//! busy loop, an output flood, ...) and grades it with the real grader. For
//! every case: the grader exits 0 with a JSON report within [`BUDGET`], the
//! score is right (never full marks), nothing the program started is still
//! running, nothing is left in the host's /dev/shm or System V IPC, and the
//! grader's own peak memory stays under [`MAX_GRADER_RSS_KIB`].
//!
//! Every program names itself `cgh-<short>` with PR_SET_NAME before it does
//! anything else (forked copies inherit the name), so survivors are found by
//! /proc/PID/comm. Every program also bounds itself (a deadline of at most
//! 60 s, caps on processes, bytes and objects) so that even a grader without
//! a sandbox cannot lose the machine to it.
//!
//! A harness of its own (`harness = false`): cases run two at a time, a
//! case that leaves IPC objects runs alone (so that what it leaves is not
//! blamed on another case), and after the last case any process named
//! `cgh-*` is killed and fails the run.
//!
//! `cargo test -p cargo-grade --test hostile -- fork` runs the cases whose
//! name contains `fork`. To a test runner it lists one test, `all` (see
//! `--list` below): nextest runs the whole harness as one process.

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cargo_grade::harness::deadline::{poll_until, Deadline};
use serde_json::Value;
use wait_timeout::ChildExt;

/// Wall-clock budget of one grading, from spawn to exit.
const BUDGET: Duration = Duration::from_secs(120);
/// How long killed processes get to disappear before they count as left
/// running.
const SETTLE: Duration = Duration::from_secs(5);
/// Bound on the grader's own peak resident memory (VmHWM).
const MAX_GRADER_RSS_KIB: u64 = 256 * 1024;
/// Bound on the size of the JSON report: it shows what a program printed,
/// but never all of a flood.
const MAX_REPORT_BYTES: usize = 16 << 20;
/// What is kept of the grader's stdout and stderr (enough to parse an
/// oversized report and say how large it is).
const MAX_CAPTURE: usize = 256 << 20;
/// System V keys the IPC flood uses: `0x6367_0000 + i`.
const SYSV_KEYS: std::ops::Range<i64> = 0x6367_0000..0x6367_0000 + 1000;
/// Prefix of every hostile process name.
const COMM_PREFIX: &str = "cgh-";

const FORK_BOMB: &str = include_str!("hostile/fork_bomb.rs");
const SHARED_MEMORY_HOG: &str = include_str!("hostile/shared_memory_hog.rs");
const PHONES_HOME: &str = include_str!("hostile/phones_home.rs");
const INFINITE_LOOP: &str = include_str!("hostile/infinite_loop.rs");
const IGNORES_SIGTERM: &str = include_str!("hostile/ignores_sigterm.rs");
const DOUBLE_FORK_DAEMON: &str = include_str!("hostile/double_fork_daemon.rs");
const OUTPUT_FLOOD: &str = include_str!("hostile/output_flood.rs");
const MEMORY_HOG: &str = include_str!("hostile/memory_hog.rs");
const DISK_FILLER: &str = include_str!("hostile/disk_filler.rs");
const WRITES_OUTSIDE: &str = include_str!("hostile/writes_outside.rs");
const READS_REFERENCE: &str = include_str!("hostile/reads_reference.rs");
const READS_REFERENCE_AT_COMPILE_TIME: &str =
    include_str!("hostile/reads_reference_at_compile_time.rs");
const FAKE_PERFECT_SCORE: &str = include_str!("hostile/fake_perfect_score.rs");
const KILLS_PARENT: &str = include_str!("hostile/kills_parent.rs");
const IPC_FLOOD: &str = include_str!("hostile/ipc_flood.rs");
const MALICIOUS_BUILD_RS: &str = include_str!("hostile/malicious_build.rs");

const TASK: &str = "task1";
/// The tests each hostile submission is graded with.
const HOSTILE_TESTS: [&str; 3] = ["handlers_before_ready", "echo_and_eof", "sigterm_graceful"];
const SLUG: &str = "task1-signals";

/// What a case's own check needs.
struct Ctx {
    course: PathBuf,
    /// Unique to this run of the suite: names of the files programs try to
    /// create.
    nonce: String,
    /// Number of tests graded (`HOSTILE_TESTS`, all in the task's spec): a
    /// full report lists every one of them.
    spec_tests: usize,
    reaper: Reaper,
}

/// The check a case's setup leaves for after grading: it owns whatever the
/// setup created (a canary, a marker path) and cleans it up.
type Check = Box<dyn FnOnce(&Ctx, &Graded, &mut Vec<String>) + Send>;

struct Case {
    name: &'static str,
    /// The program names itself `cgh-<short>`; no short is a prefix of
    /// another.
    short: &'static str,
    /// Runs with no other case at the same time.
    alone: bool,
    /// `outcome.kind` of the report.
    outcome: &'static str,
    /// The program never behaves like a solution: it must score 0.
    scores_zero: bool,
    /// The grader itself is SIGKILLed once the program's daemon runs: what
    /// the program started must die with it (no report is expected).
    kill_grader: bool,
    /// Writes the submission into the crate directory (a copy of the
    /// starter) and returns the case's own check.
    setup: fn(&Ctx, &Path) -> Result<Check, String>,
}

/// Cases only a root grader can stop: they need a user of the test's own
/// (signalling the grader, finding a daemon that left every group, killing
/// it when the grader dies) or namespaces (a private /tmp and network, the
/// course out of sight, IPC of the test's own, the build's jail). A grader
/// that is not root says so in its report (`NOT ACTIVE: ...`); here they
/// are skipped, said so, when the suite does not run as root.
const NEEDS_ROOT: &[&str] = &[
    "ipc_flood",
    "double_fork_daemon",
    "grader_killed_mid_test",
    "writes_outside",
    "reads_reference",
    "reads_reference_at_compile_time",
    "kills_parent",
    "phones_home",
];

fn cases() -> Vec<Case> {
    let case = |name, short, setup| Case {
        name,
        short,
        alone: false,
        outcome: "graded",
        scores_zero: true,
        kill_grader: false,
        setup,
    };
    vec![
        Case {
            alone: true,
            ..case("ipc_flood", "ipc", |_, dir| plain(dir, IPC_FLOOD))
        },
        case("fork_bomb", "fork", |_, dir| {
            // The process limit stops it, not its own cap of 1885.
            stopped_by(
                dir,
                FORK_BOMB,
                "fork refused: Resource temporarily unavailable",
            )
        }),
        case("infinite_loop", "loop", |_, dir| plain(dir, INFINITE_LOOP)),
        case("ignores_sigterm", "noterm", |_, dir| {
            plain(dir, IGNORES_SIGTERM)
        }),
        case("double_fork_daemon", "daemon", |_, dir| {
            plain(dir, DOUBLE_FORK_DAEMON)
        }),
        Case {
            kill_grader: true,
            ..case("grader_killed_mid_test", "killed", |_, dir| {
                plain(dir, &DOUBLE_FORK_DAEMON.replace("cgh-daemon", "cgh-killed"))
            })
        },
        case("output_flood", "flood", |_, dir| plain(dir, OUTPUT_FLOOD)),
        case("shared_memory_hog", "shmem", setup_shared_memory_hog),
        case("memory_hog", "mem", |_, dir| {
            // The memory limit stops it, not its own cap of 4 GiB.
            stopped_by(dir, MEMORY_HOG, "allocation refused")
        }),
        case("disk_filler", "disk", setup_disk_filler),
        case("writes_outside", "escape", setup_writes_outside),
        case("reads_reference", "peek", setup_reads_reference),
        Case {
            outcome: "build_failed",
            ..case(
                "reads_reference_at_compile_time",
                "embed",
                setup_reads_reference_at_compile_time,
            )
        },
        case("fake_perfect_score", "fake", |_, dir| {
            plain(dir, FAKE_PERFECT_SCORE)
        }),
        case("kills_parent", "parent", |_, dir| plain(dir, KILLS_PARENT)),
        case("phones_home", "net", setup_phones_home),
        Case {
            scores_zero: false,
            ..case("malicious_build_rs", "buildrs", setup_malicious_build_rs)
        },
    ]
}

// ---------------------------------------------------------------- setups

fn write_main(dir: &Path, source: &str) -> Result<(), String> {
    let main = dir.join("src").join("main.rs");
    std::fs::write(&main, source).map_err(|e| format!("cannot write {}: {e}", main.display()))
}

/// A program with nothing to fill in and no check of its own.
fn plain(dir: &Path, source: &str) -> Result<Check, String> {
    write_main(dir, source)?;
    Ok(Box::new(|_, _, _| {}))
}

/// Shared memory escapes the per-process limit; the test's memory cgroup
/// (where the grader could make one) stops the program before its own cap.
fn setup_shared_memory_hog(_: &Ctx, dir: &Path) -> Result<Check, String> {
    write_main(dir, SHARED_MEMORY_HOG)?;
    Ok(Box::new(|_, graded, failures| {
        let report = &graded.stdout;
        if !report.contains("touched 256 MiB") {
            failures.push("the report does not show the program at work".into());
        }
        // The test's limit is 2048 MiB in all: never a chunk past it.
        let limited = report.contains("(a memory cgroup)");
        let most = said_after(report, "touched ")
            .iter()
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if limited && most > 2048 {
            failures.push(format!(
                "the program took {most} MiB of shared memory: no limit stopped it"
            ));
        }
    }))
}

/// A program that says `evidence` (on stderr, which the report quotes) when
/// a limit of the sandbox stops it; the report must show it.
fn stopped_by(dir: &Path, source: &str, evidence: &'static str) -> Result<Check, String> {
    write_main(dir, source)?;
    Ok(Box::new(move |_, graded, failures| {
        if !graded.stdout.contains(evidence) {
            failures.push(format!(
                "the report does not show {evidence:?}: no limit stopped the program"
            ));
        }
    }))
}

/// `source` with each `"@NAME@"` (quotes included) replaced by a Rust string
/// literal of its value; every placeholder must be there.
fn fill(source: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = source.to_owned();
    for (name, value) in values {
        let placeholder = format!("\"@{name}@\"");
        if !out.contains(&placeholder) {
            return Err(format!("the program has no placeholder {placeholder}"));
        }
        out = out.replace(&placeholder, &format!("{value:?}"));
    }
    Ok(out)
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn solution_main(ctx: &Ctx) -> PathBuf {
    ctx.course
        .join("solutions")
        .join(SLUG)
        .join("src")
        .join("main.rs")
}

fn spec_file(ctx: &Ctx) -> PathBuf {
    ctx.course.join("specs").join(format!("{SLUG}.toml"))
}

fn setup_disk_filler(_: &Ctx, dir: &Path) -> Result<Check, String> {
    write_main(dir, DISK_FILLER)?;
    Ok(Box::new(|_, graded, failures| {
        // Limits stopped it, not its own cap of 1 GiB: a file stopped at
        // the file-size limit (EFBIG), and, with namespaces, the scratch
        // tmpfs full (ENOSPC).
        let report = &graded.stdout;
        if !report.contains("File too large") {
            failures.push("no file of the disk filler was refused as too large".into());
        }
        let private = report.contains("scratch directory is a");
        if private && !report.contains("No space left on device") {
            failures.push("the disk filler never filled its scratch tmpfs".into());
        }
        // The program says where it wrote; whatever of that the host sees
        // must hold none of its files any more.
        for fill_dir in said_after(&graded.stdout, "fill dir: ") {
            let Ok(entries) = std::fs::read_dir(&fill_dir) else {
                continue;
            };
            let left: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("cgh-fill-"))
                .map(|e| e.path())
                .collect();
            if !left.is_empty() {
                failures.push(format!(
                    "the disk filler's files are still on the host: {left:?}"
                ));
                for path in left {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }))
}

/// The distinct values of `<prefix>VALUE` in the report's text (JSON string
/// contents: a value ends at a quote, a backslash or white space).
fn said_after(report: &str, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (at, _) in report.match_indices(prefix) {
        let rest = &report[at + prefix.len()..];
        let end = rest
            .find(|c: char| c == '"' || c == '\\' || c.is_whitespace())
            .unwrap_or(rest.len());
        let value = rest[..end].to_owned();
        if !value.is_empty() && !found.contains(&value) {
            found.push(value);
        }
    }
    found
}

const CANARY_TEXT: &str = "canary of the hostile-submission suite: must stay as it is\n";

/// A TCP listener on every address of the host; the program tries to reach
/// it on loopback and on the host's own address. No connection may arrive:
/// the program has no network but its own loopback.
fn setup_phones_home(_: &Ctx, dir: &Path) -> Result<Check, String> {
    let listener = std::net::TcpListener::bind("0.0.0.0:0")
        .map_err(|e| format!("cannot listen on TCP: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?
        .port();
    let mut targets = vec![format!("127.0.0.1:{port}")];
    // The host's own address: the one a datagram socket would send from
    // (no packet is sent by connect on UDP).
    let own = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|()| s))
        .and_then(|s| s.local_addr());
    if let Ok(addr) = own {
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            targets.push(format!("{}:{port}", addr.ip()));
        }
    }
    let targets = targets.join(",");
    write_main(dir, &fill(PHONES_HOME, &[("TARGETS", &targets)])?)?;
    Ok(Box::new(move |_, graded, failures| {
        // The program ran and was refused (the report quotes its output).
        if !graded.stdout.contains("connect 127.0.0.1:") {
            failures.push("the report does not show the program's attempts: did it run?".into());
        }
        if graded.stdout.contains(": connected") {
            failures.push("the program says it connected".into());
        }
        // A connection that was made waits in the backlog even unaccepted.
        if listener.set_nonblocking(true).is_err() {
            failures.push("cannot check the listener".into());
            return;
        }
        let mut arrived = Vec::new();
        while let Ok((_, from)) = listener.accept() {
            arrived.push(from.to_string());
        }
        if !arrived.is_empty() {
            failures.push(format!(
                "the program reached the host's network ({targets}): connections from {}",
                arrived.join(", ")
            ));
        }
    }))
}

fn setup_writes_outside(ctx: &Ctx, dir: &Path) -> Result<Check, String> {
    let canary = tempfile::Builder::new()
        .prefix("cgh-canary-")
        .tempdir()
        .map_err(|e| format!("cannot create the canary directory: {e}"))?;
    let canary_file = canary.path().join("canary.txt");
    let prepared = std::fs::set_permissions(canary.path(), std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::write(&canary_file, CANARY_TEXT))
        .and_then(|()| {
            std::fs::set_permissions(&canary_file, std::fs::Permissions::from_mode(0o644))
        });
    prepared.map_err(|e| format!("cannot prepare the canary: {e}"))?;
    let source = fill(
        WRITES_OUTSIDE,
        &[
            ("CANARY_DIR", path_str(canary.path())?),
            ("COURSE", path_str(&ctx.course)?),
            ("NONCE", &ctx.nonce),
        ],
    )?;
    write_main(dir, &source)?;
    Ok(Box::new(move |ctx, _, failures| {
        let file = canary.path().join("canary.txt");
        match std::fs::read_to_string(&file) {
            Ok(text) if text == CANARY_TEXT => {}
            Ok(text) => failures.push(format!("the canary was overwritten: now {text:?}")),
            Err(e) => failures.push(format!("the canary cannot be read any more: {e}")),
        }
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
        if !matches!(mode(&file), Ok(0o644)) || !matches!(mode(canary.path()), Ok(0o755)) {
            failures.push(format!(
                "the canary's modes changed: file {:?}, directory {:?}",
                mode(&file),
                mode(canary.path())
            ));
        }
        let extra: Vec<String> = std::fs::read_dir(canary.path())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "canary.txt")
                    .collect()
            })
            .unwrap_or_default();
        if !extra.is_empty() {
            failures.push(format!("files appeared in the canary directory: {extra:?}"));
        }
        let escapes = [
            PathBuf::from(format!("/tmp/cgh-escape-{}", ctx.nonce)),
            PathBuf::from(format!("/var/tmp/cgh-escape-{}", ctx.nonce)),
            ctx.course.join(format!("cgh-escape-{}", ctx.nonce)),
        ];
        for path in escapes {
            if path.exists() {
                failures.push(format!(
                    "the submission created {} on the host",
                    path.display()
                ));
                let _ = std::fs::remove_file(&path);
            }
        }
        drop(canary);
    }))
}

/// A program that tries to read the reference solution and the spec, whose
/// paths it is given.
fn write_peeker(ctx: &Ctx, dir: &Path, program: &str) -> Result<(), String> {
    let source = fill(
        program,
        &[
            ("SOLUTION", path_str(&solution_main(ctx))?),
            ("SPEC", path_str(&spec_file(ctx))?),
        ],
    )?;
    write_main(dir, &source)
}

fn setup_reads_reference(ctx: &Ctx, dir: &Path) -> Result<Check, String> {
    write_peeker(ctx, dir, READS_REFERENCE)?;
    Ok(Box::new(|_, graded, failures| {
        no_leak(graded, failures);
        if !graded.stdout.contains("peek denied") && !graded.stdout.contains("LEAK:") {
            failures.push(
                "the report shows neither `LEAK:` nor `peek denied`: did the program run?".into(),
            );
        }
    }))
}

/// No `LEAK: <text>` in the report. (`LEAK: {` is the program's source, which
/// compiler diagnostics may quote.)
fn no_leak(graded: &Graded, failures: &mut Vec<String>) {
    let leaks: Vec<String> = said_after(&graded.stdout, "LEAK: ")
        .into_iter()
        .filter(|text| !text.starts_with('{'))
        .collect();
    if !leaks.is_empty() {
        failures.push(format!(
            "the program read the reference and the report shows it: LEAK: {leaks:?}"
        ));
    }
}

fn setup_reads_reference_at_compile_time(ctx: &Ctx, dir: &Path) -> Result<Check, String> {
    write_peeker(ctx, dir, READS_REFERENCE_AT_COMPILE_TIME)?;
    Ok(Box::new(|_, graded, failures| {
        no_leak(graded, failures);
        let passed: Vec<&str> = tests(&graded.report)
            .iter()
            .filter(|t| t["status"] == "passed" || t["score"].as_u64().unwrap_or(0) > 0)
            .filter_map(|t| t["name"].as_str())
            .collect();
        if !passed.is_empty() {
            failures.push(format!(
                "tests passed with the reference embedded: {passed:?}"
            ));
        }
    }))
}

fn setup_malicious_build_rs(ctx: &Ctx, dir: &Path) -> Result<Check, String> {
    let marker = PathBuf::from(format!("/tmp/cgh-buildrs-{}", ctx.nonce));
    let build_rs = fill(MALICIOUS_BUILD_RS, &[("MARKER", path_str(&marker)?)])?;
    std::fs::write(dir.join("build.rs"), build_rs).map_err(|e| format!("build.rs: {e}"))?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("Cargo.toml: {e}"))?;
    if !text.contains("[package]\n") {
        return Err("the starter's Cargo.toml has no [package] line".into());
    }
    let text = text.replacen("[package]\n", "[package]\nbuild = \"build.rs\"\n", 1);
    std::fs::write(&manifest, text).map_err(|e| format!("Cargo.toml: {e}"))?;
    Ok(Box::new(move |ctx, graded, failures| {
        if marker.exists() {
            failures.push(format!(
                "the submission's build.rs ran: it created {}",
                marker.display()
            ));
            let _ = std::fs::remove_file(&marker);
        }
        // The same score as the untouched starter, graded the same way.
        let starter = common::copy_crate(&ctx.course.join("starter").join(SLUG));
        match grade(ctx, starter.path()) {
            Ok(baseline) => {
                let got = graded.report["score"].as_u64();
                let want = baseline.report["score"].as_u64();
                if baseline.code != Some(0) || want.is_none() || got != want {
                    failures.push(format!(
                        "score {got:?}, but the untouched starter scores {want:?} (exit {:?})",
                        baseline.code
                    ));
                }
            }
            Err(e) => failures.push(format!("cannot grade the untouched starter: {e}")),
        }
    }))
}

// ---------------------------------------------------------------- grading

/// One run of the grader.
struct Graded {
    /// Exit status; None when it was killed (by us at the deadline, or by
    /// the submission).
    code: Option<i32>,
    signal: Option<i32>,
    /// Spawn to exit.
    elapsed: Duration,
    timed_out: bool,
    stdout: String,
    stderr: String,
    /// The parsed report, Null when stdout is not one.
    report: Value,
    /// Why stdout and stderr were not complete, if they were not.
    capture_note: Option<String>,
}

/// Reads `pipe` to its end into a shared buffer (the first MAX_CAPTURE
/// bytes; the rest is read and dropped) and says when it has.
fn drain(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let (done, finished) = mpsc::channel();
    let kept = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 64 << 10];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let mut kept = kept.lock().unwrap();
                    let room = MAX_CAPTURE.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    (buffer, finished)
}

/// `cargo-grade grade task1 --path DIR --course ROOT --format json`, as the
/// leader of its own process group, with no stdin.
fn grader_command(ctx: &Ctx, dir: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("cargo-grade"));
    cmd.args(["grade", TASK, "--path"])
        .arg(dir)
        .arg("--course")
        .arg(&ctx.course)
        .args(["--format", "json"])
        // Three tests are enough to see each hostile program run, be
        // contained and score nothing; the whole spec would only repeat it.
        .args(HOSTILE_TESTS.iter().flat_map(|t| ["--only", t]))
        .current_dir(&ctx.course)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

/// Grades `dir`, killing the grader with its process group at the deadline.
fn grade(ctx: &Ctx, dir: &Path) -> Result<Graded, String> {
    let mut cmd = grader_command(ctx, dir);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = ctx
        .reaper
        .spawn(&mut cmd)
        .map_err(|e| format!("cannot run the grader: {e}"))?;
    let pid = child.id() as i32;
    let (out, out_done) = drain(child.stdout.take().expect("piped"));
    let (err, err_done) = drain(child.stderr.take().expect("piped"));
    let waited = child.wait_timeout(BUDGET);
    let (status, timed_out) = match waited {
        Ok(Some(status)) => (Some(status), false),
        Ok(None) | Err(_) => {
            // SAFETY: the grader's own process group (it was spawned as its
            // leader); never 0 or 1.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            (child.wait().ok(), waited.is_ok())
        }
    };
    let elapsed = started.elapsed();
    ctx.reaper.forget(pid);
    // The grader has exited: its output is complete once every copy of the
    // pipes is closed. A process it left behind may hold one.
    let until = Instant::now() + SETTLE;
    let mut capture_note = None;
    for (name, done) in [("stdout", &out_done), ("stderr", &err_done)] {
        let left = until.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            capture_note = Some(format!(
                "the grader's {name} was still open {} s after it exited (a process it left holds it)",
                SETTLE.as_secs()
            ));
        }
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let stdout = text(&out);
    let stderr = text(&err);
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Ok(Graded {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        elapsed,
        timed_out,
        stdout,
        stderr,
        report,
        capture_note,
    })
}

fn tests(report: &Value) -> &[Value] {
    report["tests"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

// ---------------------------------------------------------------- processes

/// Reaps what is re-parented to this process (it is a child subreaper),
/// never the graders it waits for itself.
struct Reaper {
    graders: Mutex<HashSet<i32>>,
}

impl Reaper {
    /// Spawns and registers under one lock, so that a grader is never
    /// mistaken for an orphan.
    fn spawn(&self, cmd: &mut Command) -> std::io::Result<std::process::Child> {
        let mut graders = self.graders.lock().unwrap();
        let child = cmd.spawn()?;
        graders.insert(child.id() as i32);
        Ok(child)
    }

    fn forget(&self, pid: i32) {
        self.graders.lock().unwrap().remove(&pid);
    }

    /// Reaps every exited child that is not a grader.
    fn reap_orphans(&self) {
        let graders = self.graders.lock().unwrap();
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        for proc in processes() {
            if proc.ppid == me && !graders.contains(&proc.pid) {
                let mut status = 0;
                // SAFETY: one child of ours, by pid; does not block.
                unsafe { libc::waitpid(proc.pid, &mut status, libc::WNOHANG) };
            }
        }
    }
}

struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
    state: char,
}

/// Every process of /proc, as far as it can be read (one may end while it
/// is read).
fn processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_owned();
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                comm,
                state,
            })
        })
        .collect()
}

/// Live (not zombie) processes whose name starts with `prefix`.
fn named(prefix: &str) -> Vec<Proc> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    processes()
        .into_iter()
        .filter(|p| p.comm.starts_with(prefix) && !matches!(p.state, 'Z' | 'X'))
        .filter(|p| p.pid > 1 && p.pid != me)
        .collect()
}

fn describe(procs: &[Proc]) -> String {
    let mut shown: Vec<String> = procs
        .iter()
        .take(10)
        .map(|p| format!("{} {} ({}, parent {})", p.pid, p.comm, p.state, p.ppid))
        .collect();
    if procs.len() > shown.len() {
        shown.push(format!("and {} more", procs.len() - shown.len()));
    }
    shown.join(", ")
}

/// Waits up to SETTLE for every process named `prefix*` to be gone; those
/// still there are SIGKILLed (by pid) and described.
fn await_none_named(reaper: &Reaper, prefix: &str) -> Option<String> {
    let gone = poll_until(Deadline::after(SETTLE), || {
        reaper.reap_orphans();
        named(prefix).is_empty().then_some(())
    });
    if gone.is_some() {
        return None;
    }
    let live = named(prefix);
    let found = format!("{} process(es): {}", live.len(), describe(&live));
    kill_named(reaper, prefix);
    Some(found)
}

/// SIGKILLs every process named `prefix*`, by pid, until none is left or
/// SETTLE has passed (a fork bomb may still be forking).
fn kill_named(reaper: &Reaper, prefix: &str) {
    poll_until(Deadline::after(SETTLE), || {
        reaper.reap_orphans();
        let live = named(prefix);
        for p in &live {
            // SAFETY: one process by pid, above 1 and not this one (named()).
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        live.is_empty().then_some(())
    });
}

// ---------------------------------------------------------------- IPC

enum Ipc {
    File(PathBuf),
    Sysv {
        kind: &'static str,
        key: i64,
        id: i32,
    },
}

/// What hostile programs may leave in the host's IPC namespace: /dev/shm
/// entries named `cgh-*` or `sem.cgh-*`, System V objects with keys in
/// SYSV_KEYS.
fn ipc_leftovers() -> Vec<Ipc> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("cgh-") || name.starts_with("sem.cgh-") {
                found.push(Ipc::File(entry.path()));
            }
        }
    }
    for kind in ["msg", "shm", "sem"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let key = cols.next().and_then(|k| k.parse::<i64>().ok());
            let id = cols.next().and_then(|i| i.parse::<i32>().ok());
            if let (Some(key), Some(id)) = (key, id) {
                if SYSV_KEYS.contains(&key) {
                    found.push(Ipc::Sysv { kind, key, id });
                }
            }
        }
    }
    found
}

/// Describes and removes what [`ipc_leftovers`] found.
fn remove_ipc(found: &[Ipc]) -> String {
    let mut files = 0;
    let mut sysv: Vec<String> = Vec::new();
    for item in found {
        match item {
            Ipc::File(path) => {
                files += 1;
                let _ = std::fs::remove_file(path);
            }
            Ipc::Sysv { kind, key, id } => {
                sysv.push(format!("{kind} {key:#x}"));
                // SAFETY: IPC_RMID of one object by id; no buffer is read.
                unsafe {
                    match *kind {
                        "msg" => libc::msgctl(*id, libc::IPC_RMID, std::ptr::null_mut()),
                        "shm" => libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut()),
                        _ => libc::semctl(*id, 0, libc::IPC_RMID),
                    }
                };
            }
        }
    }
    let shown: Vec<&String> = sysv.iter().take(5).collect();
    format!(
        "{files} /dev/shm entries named cgh-*/sem.cgh-*, {} System V objects ({shown:?}...); removed",
        sysv.len()
    )
}

// ---------------------------------------------------------------- one case

struct Outcome {
    failures: Vec<String>,
    summary: String,
}

fn run_case(ctx: &Ctx, case: &Case) -> Outcome {
    let mut failures = Vec::new();
    let dir = common::copy_crate(&ctx.course.join("starter").join(SLUG));
    let check = match (case.setup)(ctx, dir.path()) {
        Ok(check) => check,
        Err(e) => {
            return Outcome {
                failures: vec![format!("setup: {e}")],
                summary: String::from("not graded"),
            }
        }
    };
    if case.kill_grader {
        return kill_grader_mid_test(ctx, case, dir.path());
    }
    let graded = match grade(ctx, dir.path()) {
        Ok(graded) => graded,
        Err(e) => {
            return Outcome {
                failures: vec![e],
                summary: String::from("not graded"),
            }
        }
    };
    let report = &graded.report;
    if let Some(keep) = std::env::var_os("HOSTILE_REPORTS") {
        // For debugging: HOSTILE_REPORTS=DIR keeps every report.
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::write(
            Path::new(&keep).join(format!("{}.json", case.name)),
            &graded.stdout,
        );
    }

    if graded.timed_out {
        failures.push(format!(
            "no verdict within {} s: the grader was killed",
            BUDGET.as_secs()
        ));
    } else if graded.elapsed > BUDGET {
        failures.push(format!(
            "the verdict took {} ms, over the budget of {} s",
            graded.elapsed.as_millis(),
            BUDGET.as_secs()
        ));
    }
    match (graded.code, graded.signal) {
        (Some(0), _) => {}
        (Some(code), _) => failures.push(format!("the grader exited with status {code}")),
        (None, signal) => failures.push(format!("the grader was killed by signal {signal:?}")),
    }
    if let Some(note) = &graded.capture_note {
        failures.push(note.clone());
    }
    if graded.stdout.len() > MAX_REPORT_BYTES {
        failures.push(format!(
            "the JSON report is {} bytes, over {MAX_REPORT_BYTES}: it repeats the program's output without bound",
            graded.stdout.len()
        ));
    }
    let (score, max) = (report["score"].as_u64(), report["max_score"].as_u64());
    if report.is_null() {
        let tail = |s: &str| {
            s.chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        };
        failures.push(format!(
            "no JSON report on stdout ({} bytes); stdout ends: {:?}; stderr ends: {:?}",
            graded.stdout.len(),
            tail(&graded.stdout),
            tail(&graded.stderr)
        ));
    } else {
        let kind = report["outcome"]["kind"].as_str().unwrap_or("?");
        if kind != case.outcome {
            failures.push(format!(
                "outcome {kind} ({}), expected {}",
                report["outcome"], case.outcome
            ));
        }
        match (score, max) {
            (Some(score), Some(max)) => {
                if score >= max {
                    failures.push(format!("full marks: {score}/{max}"));
                }
                if case.scores_zero && score != 0 {
                    failures.push(format!("scored {score}/{max}, expected 0"));
                }
            }
            _ => failures.push("the report has no score or max_score".into()),
        }
        let listed = tests(report).len();
        if listed != ctx.spec_tests {
            failures.push(format!(
                "the report lists {listed} tests, {} were graded",
                ctx.spec_tests
            ));
        }
        match report["environment"]["grader_peak_rss_kib"].as_u64() {
            Some(kib) if kib < MAX_GRADER_RSS_KIB => {}
            Some(kib) => failures.push(format!(
                "the grader's peak RSS was {kib} KiB, over {MAX_GRADER_RSS_KIB} KiB"
            )),
            None => failures.push(
                "environment.grader_peak_rss_kib is missing from the report: the grader's own \
                 peak memory (VmHWM) cannot be checked"
                    .into(),
            ),
        }
    }

    check(ctx, &graded, &mut failures);

    let comm = format!("{COMM_PREFIX}{}", case.short);
    nothing_left(ctx, &comm, "the verdict", &mut failures);

    let protections = match &report["environment"]["protections"] {
        Value::Array(items) => {
            let lines: Vec<&Value> = items.iter().collect();
            let missing: Vec<&str> = items
                .iter()
                .filter(|p| p["active"] == false)
                .filter_map(|p| p["name"].as_str())
                .collect();
            format!(
                "{} active{}",
                lines.len() - missing.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(", {}", missing.join("; "))
                }
            )
        }
        _ => format!(
            "(not reported; isolation: {})",
            report["environment"]["isolation"].as_str().unwrap_or("?")
        ),
    };
    let summary = format!(
        "verdict in {} ms (grader duration_ms {}), score {}/{}, outcome {}, grader peak RSS {} KiB, report {} bytes, protections {protections}",
        graded.elapsed.as_millis(),
        report["duration_ms"],
        score.map_or("?".into(), |s| s.to_string()),
        max.map_or("?".into(), |m| m.to_string()),
        report["outcome"]["kind"].as_str().unwrap_or("?"),
        report["environment"]["grader_peak_rss_kib"],
        graded.stdout.len(),
    );
    Outcome { failures, summary }
}

/// Starts grading, waits until the program's daemon has left its session
/// (no parent-death signal reaches it any more), SIGKILLs the grader alone,
/// and checks that every process of the program is gone soon after.
fn kill_grader_mid_test(ctx: &Ctx, case: &Case, dir: &Path) -> Outcome {
    let comm = format!("{COMM_PREFIX}{}", case.short);
    let mut cmd = grader_command(ctx, dir);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = match ctx.reaper.spawn(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            return Outcome {
                failures: vec![format!("cannot run the grader: {e}")],
                summary: String::from("not graded"),
            }
        }
    };
    let pid = child.id() as i32;
    // A daemon: a process of the program in a session of its own.
    let daemon = poll_until(Deadline::after(BUDGET), || {
        let grader_session = session_of(pid)?;
        let found = named(&comm)
            .into_iter()
            .find(|p| session_of(p.pid).is_some_and(|s| s != grader_session));
        match found {
            Some(p) => Some(Some(p)),
            // The grader finished (or failed) before any daemon appeared.
            None if child.try_wait().ok().flatten().is_some() => Some(None),
            None => None,
        }
    })
    .flatten();
    // SAFETY: the grader's pid, never 0 or 1; its process group is left
    // alone, so only the grader itself dies.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    ctx.reaper.forget(pid);
    let killed_at = Instant::now();
    let mut failures = Vec::new();
    let Some(daemon) = daemon else {
        failures.push("the program's daemon never appeared".into());
        return Outcome {
            failures,
            summary: String::from("not graded"),
        };
    };
    nothing_left(ctx, &comm, "the grader was killed", &mut failures);
    let gone_after = killed_at.elapsed();
    // The killed grader could not remove its scratch directories; the next
    // grader does.
    let scratch_of = |pid: i32| -> Vec<String> {
        let mine = [
            format!("cargo-grade-{pid}-"),
            format!("cargo-grade-bin-{pid}-"),
        ];
        std::fs::read_dir(std::env::temp_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| mine.iter().any(|m| name.starts_with(m.as_str())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let left_by_killed = scratch_of(pid);
    if left_by_killed.is_empty() {
        failures
            .push("the killed grader left no scratch directory: is it named after its pid?".into());
    }
    let mut next = grader_command(ctx, dir);
    next.args(["--only", "handlers_before_ready"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match next.status() {
        Ok(status) if status.success() => {
            let still = scratch_of(pid);
            if !still.is_empty() {
                failures.push(format!(
                    "the next grader did not remove the killed one's scratch: {still:?}"
                ));
            }
        }
        other => failures.push(format!("the next grade failed: {other:?}")),
    }
    nothing_left(ctx, &comm, "the next grade", &mut failures);
    Outcome {
        failures,
        summary: format!(
            "daemon {} seen, grader SIGKILLed; every {comm} process gone {} ms later",
            daemon.pid,
            gone_after.as_millis()
        ),
    }
}

/// Nothing named `comm` still runs (after a grace of SETTLE) and nothing is
/// left in the host's IPC; what is, is removed and is a failure.
fn nothing_left(ctx: &Ctx, comm: &str, since: &str, failures: &mut Vec<String>) {
    if let Some(left) = await_none_named(&ctx.reaper, comm) {
        failures.push(format!(
            "still running {} s after {since} (now SIGKILLed): {left}",
            SETTLE.as_secs()
        ));
    }
    let ipc = ipc_leftovers();
    if !ipc.is_empty() {
        failures.push(format!("left in the host's IPC: {}", remove_ipc(&ipc)));
    }
}

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- main

/// The name the harness lists itself by: `--exact all` runs every case.
const ALL: &str = "all";

struct Args {
    filter: Option<String>,
    exact: bool,
    list: bool,
    ignored: bool,
}

/// A name filter, and libtest's flags (ignored, except --list, --exact and
/// --ignored: no case is ignored).
fn parse_args() -> Args {
    let mut args = Args {
        filter: None,
        exact: false,
        list: false,
        ignored: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--list" => args.list = true,
            "--exact" => args.exact = true,
            "--ignored" => args.ignored = true,
            "--test-threads" | "--format" | "--color" | "--logfile" | "--skip" | "-Z"
            | "--shuffle-seed" => {
                argv.next();
            }
            flag if flag.starts_with('-') => {}
            name => args.filter = Some(name.to_owned()),
        }
    }
    args
}

fn main() -> ExitCode {
    let args = parse_args();
    if args.list {
        // One test to a test runner (nextest's `--list --format terse`
        // protocol, then `--exact all`): the unit this harness isolates is
        // the whole run (its start-up sweep would kill a concurrent run's
        // processes, its final sweep is of every case), so a runner that
        // starts a process per listed test must start one.
        if !args.ignored {
            println!("{ALL}: test");
        }
        return ExitCode::SUCCESS;
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let selected: Vec<Case> = cases()
        .into_iter()
        .filter(|_| !args.ignored)
        .filter(|c| {
            let skip = !root && NEEDS_ROOT.contains(&c.name);
            if skip {
                println!("test {} ... ignored (needs root: see NEEDS_ROOT)", c.name);
            }
            !skip
        })
        .filter(|c| match &args.filter {
            None => true,
            Some(f) if args.exact && f == ALL => true,
            Some(f) if args.exact => c.name == f,
            Some(f) => c.name.contains(f.as_str()),
        })
        .collect();
    let all = cases();
    for name in NEEDS_ROOT {
        assert!(
            all.iter().any(|c| c.name == *name),
            "NEEDS_ROOT names {name}, which is no case"
        );
    }
    for a in &all {
        for b in &all {
            assert!(
                a.name == b.name || !b.short.starts_with(a.short),
                "process names of {} and {} overlap",
                a.name,
                b.name
            );
        }
    }

    if let Err(e) = cargo_grade::become_subreaper() {
        eprintln!(
            "hostile: cannot become a child subreaper ({e}); escaped processes are not reaped here"
        );
    }
    let course = common::course_root();
    let spec_tests = match (cargo_grade::course::Course {
        root: course.clone(),
    })
    .task(TASK)
    {
        Ok(spec) => {
            let missing: Vec<&str> = HOSTILE_TESTS
                .iter()
                .copied()
                .filter(|t| !spec.tests.iter().any(|x| x.name == *t))
                .collect();
            if !missing.is_empty() {
                eprintln!("hostile: the {TASK} spec has no test {missing:?}");
                return ExitCode::FAILURE;
            }
            HOSTILE_TESTS.len()
        }
        Err(e) => {
            eprintln!("hostile: cannot read the {TASK} spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let ctx = Ctx {
        course,
        nonce: format!("{:x}-{nanos:x}", std::process::id()),
        spec_tests,
        reaper: Reaper {
            graders: Mutex::new(HashSet::new()),
        },
    };

    // Leftovers of an earlier, interrupted run would be blamed on a case.
    let stale = named(COMM_PREFIX);
    if !stale.is_empty() {
        eprintln!(
            "hostile: killing {} process(es) left by an earlier run: {}",
            stale.len(),
            describe(&stale)
        );
        kill_named(&ctx.reaper, COMM_PREFIX);
    }
    let stale = ipc_leftovers();
    if !stale.is_empty() {
        eprintln!("hostile: left by an earlier run: {}", remove_ipc(&stale));
    }

    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();
    let queue = Mutex::new(selected.into_iter().collect::<VecDeque<Case>>());
    let alone = RwLock::new(());
    let failed: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let passed = Mutex::new(0usize);
    let print = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let run = || {
                    // A panic of the suite itself is that case's failure,
                    // and the final sweep still runs.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&ctx, &case)))
                        .unwrap_or_else(|panic| Outcome {
                            failures: vec![format!(
                                "the suite panicked: {}",
                                panic
                                    .downcast_ref::<String>()
                                    .map(String::as_str)
                                    .or_else(|| panic.downcast_ref::<&str>().copied())
                                    .unwrap_or("?")
                            )],
                            summary: String::from("not graded"),
                        })
                };
                let outcome = if case.alone {
                    let _only = alone.write().unwrap_or_else(|e| e.into_inner());
                    run()
                } else {
                    let _shared = alone.read().unwrap_or_else(|e| e.into_inner());
                    run()
                };
                let _out = print.lock().unwrap();
                let ok = outcome.failures.is_empty();
                println!(
                    "test {} ... {}",
                    case.name,
                    if ok { "ok" } else { "FAILED" }
                );
                println!("    {}: {}", case.name, outcome.summary);
                for failure in &outcome.failures {
                    println!("    - {failure}");
                }
                if ok {
                    *passed.lock().unwrap() += 1;
                } else {
                    failed.lock().unwrap().push(case.name);
                }
            });
        }
    });

    // After the whole run, no process started by a hostile submission
    // remains.
    let mut failed = failed.into_inner().unwrap();
    let passed = passed.into_inner().unwrap();
    let survivors = named(COMM_PREFIX);
    if !survivors.is_empty() {
        println!(
            "after the whole run, processes of hostile submissions were still running (now SIGKILLed): {}",
            describe(&survivors)
        );
        kill_named(&ctx.reaper, COMM_PREFIX);
        failed.push("(no survivors after the run)");
    }
    let ipc = ipc_leftovers();
    if !ipc.is_empty() {
        println!(
            "after the whole run, left in the host's IPC: {}",
            remove_ipc(&ipc)
        );
        failed.push("(no IPC leftovers after the run)");
    }
    ctx.reaper.reap_orphans();

    println!();
    if !failed.is_empty() {
        println!("failures:");
        for name in &failed {
            println!("    {name}");
        }
        println!();
    }
    println!(
        "test result: {}. {passed} passed; {} failed; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
