//! The I/O fault-injection shim, loaded with `LD_PRELOAD` into real
//! programs: coreutils (`cat`, `dd`) and a small Rust probe built here.
//!
//! Every input that a decision depends on is fixed before the program
//! starts (a pipe filled and closed in advance), or is written with one
//! blocking call, so the number of calls, and hence the seeded faults, are
//! the same on every run.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use cargo_grade::shim::{self, IoFaults, Stats};
use wait_timeout::ChildExt;

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn course_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("grader/ has a parent")
        .to_owned()
}

fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-grade-shim-test")
}

/// The shim, built once for all the tests of this file.
fn shim_so() -> PathBuf {
    shim::ensure_built(&course_root(), &work_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// A small Rust program that does one kind of I/O on a path:
/// `write-once PATH` (one `write` of 100 000 bytes), `write-all PATH`,
/// `read-once PATH` (one `read` into a 60 000-byte buffer), `read-all PATH`.
fn probe() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-grade-shim-probe");
            fs::create_dir_all(dir.join("src")).unwrap();
            fs::write(
                dir.join("Cargo.toml"),
                "[package]\nname = \"shim-probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
            )
            .unwrap();
            fs::write(dir.join("src/main.rs"), PROBE_SRC).unwrap();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "--offline", "--release", "--quiet", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .env_remove("CARGO_TARGET_DIR")
                .stdin(Stdio::null())
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "cannot build the probe:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir.join("target/release/shim-probe")
        })
        .clone()
}

const PROBE_SRC: &str = r#"
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[2];
    let payload = vec![b'x'; 100_000];
    match args[1].as_str() {
        "write-once" => {
            let mut f = OpenOptions::new().write(true).open(path).unwrap();
            match f.write(&payload) {
                Ok(n) => println!("wrote {n}"),
                Err(e) => println!("error {e}"),
            }
        }
        "write-all" => {
            let mut f = OpenOptions::new().write(true).open(path).unwrap();
            match f.write_all(&payload) {
                Ok(()) => println!("wrote {}", payload.len()),
                Err(e) => println!("error {e}"),
            }
        }
        "read-once" => {
            let mut buf = vec![0u8; 60_000];
            match File::open(path).unwrap().read(&mut buf) {
                Ok(n) => println!("read {n}"),
                Err(e) => println!("error {e}"),
            }
        }
        "read-all" => {
            let mut buf = Vec::new();
            match File::open(path).unwrap().read_to_end(&mut buf) {
                Ok(n) => println!("read {n}"),
                Err(e) => println!("error {e}"),
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
"#;

/// Deterministic, non-repeating test data.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A pipe already holding `data` (at most 64 KiB, the pipe's capacity)
/// with its write end closed: every read's result is fixed in advance.
fn filled_pipe(data: &[u8]) -> OwnedFd {
    assert!(data.len() <= 65536);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    File::from(w).write_all(data).expect("fill the pipe");
    r
}

/// A FIFO in a fresh directory.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path
}

enum Input {
    Null,
    Bytes(Vec<u8>),
    Fd(OwnedFd),
}

struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Runs `cmd` to completion within [`CHILD_TIMEOUT`].
fn run(mut cmd: Command, input: Input) -> Run {
    let mut bytes = None;
    match input {
        Input::Null => cmd.stdin(Stdio::null()),
        Input::Bytes(b) => {
            bytes = Some(b);
            cmd.stdin(Stdio::piped())
        }
        Input::Fd(fd) => cmd.stdin(Stdio::from(fd)),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let writer = bytes.map(|b| {
        let mut stdin = child.stdin.take().expect("piped");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&b);
        })
    });
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = match child.wait_timeout(CHILD_TIMEOUT).expect("wait") {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {CHILD_TIMEOUT:?}");
        }
    };
    if let Some(w) = writer {
        w.join().unwrap();
    }
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
    }
}

/// `program ARGS` under the shim with the raw configuration `faults`
/// (`None`: the shim loaded but not configured), logging to `log`.
fn shimmed(program: impl AsRef<std::ffi::OsStr>, faults: Option<&str>, log: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LD_PRELOAD", shim_so())
        .env(shim::ENV_LOG, log)
        .env_remove(shim::ENV_FAULTS);
    if let Some(faults) = faults {
        cmd.env(shim::ENV_FAULTS, faults);
    }
    cmd
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn cat_copies_everything_through_every_kind_of_fault() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let input = data(1 << 20);
    let cmd = shimmed(
        "cat",
        Some("seed=1,short_reads=1.0,short_writes=1.0,eintr=0.3,stdio=1"),
        &log,
    );
    let out = run(cmd, Input::Bytes(input.clone()));
    assert!(out.status.success(), "cat failed: {}", out.stderr);
    assert!(out.stdout == input, "cat's output differs from its input");
    let stats = shim::read_log(&log);
    assert_eq!(stats.processes, 1, "{stats:?}");
    assert!(
        stats.short_reads > 0 && stats.short_writes > 0 && stats.eintr > 0,
        "{stats:?}"
    );
}

#[test]
fn the_grader_configuration_targets_fifos_but_not_stdio() {
    // As the grader configures a child: no stdio=1, so cat's reads from the
    // FIFO it opens (fd 3) are shortened but its writes to stdout are not.
    let dir = tempdir();
    let log = dir.path().join("log");
    let fifo = fifo(dir.path());
    let input = data(1 << 20);
    let faults = IoFaults {
        short_reads: 1.0,
        short_writes: 1.0,
        eintr: 0.3,
    };
    let mut cmd = shimmed("cat", None, &log);
    cmd.arg(&fifo).envs(faults.env(5, Some(&log)));
    let writer = {
        let (fifo, input) = (fifo.clone(), input.clone());
        std::thread::spawn(move || File::create(fifo).and_then(|mut f| f.write_all(&input)))
    };
    let out = run(cmd, Input::Null);
    writer.join().unwrap().expect("write the FIFO");
    assert!(out.status.success(), "cat failed: {}", out.stderr);
    assert!(out.stdout == input, "cat's output differs from its input");
    let stats = shim::read_log(&log);
    assert!(stats.short_reads > 0 && stats.eintr > 0, "{stats:?}");
    assert_eq!(stats.short_writes, 0, "stdout was touched: {stats:?}");
}

#[test]
fn a_single_read_gets_a_partial_record() {
    // dd bs=N count=1 copies what one read(2) returns. From a pipe already
    // holding 60 000 bytes one read gets them all; a short read gets fewer.
    let dd = |faults: Option<&str>| {
        let dir = tempdir();
        let log = dir.path().join("log");
        let mut cmd = shimmed("dd", faults, &log);
        cmd.args(["bs=60000", "count=1"]);
        let out = run(cmd, Input::Fd(filled_pipe(&data(60_000))));
        assert!(out.status.success(), "dd failed: {}", out.stderr);
        (out, shim::read_log(&log))
    };
    let (out, stats) = dd(None);
    assert_eq!(out.stdout.len(), 60_000);
    assert!(out.stderr.contains("1+0 records in"), "{}", out.stderr);
    assert_eq!(stats, Stats::default());

    let (out, stats) = dd(Some("seed=3,short_reads=1.0,stdio=1"));
    assert!(
        (1..60_000).contains(&out.stdout.len()),
        "{}",
        out.stdout.len()
    );
    assert_eq!(out.stdout, data(60_000)[..out.stdout.len()]);
    assert!(out.stderr.contains("0+1 records in"), "{}", out.stderr);
    assert_eq!((stats.short_reads, stats.processes), (1, 1), "{stats:?}");
}

/// Runs the probe writing 100 000 bytes into a FIFO this test reads.
fn probe_write(mode: &str, faults: &IoFaults, seed: u64) -> (String, Vec<u8>, Stats) {
    let dir = tempdir();
    let log = dir.path().join("log");
    let fifo = fifo(dir.path());
    let mut cmd = shimmed(probe(), None, &log);
    cmd.arg(mode).arg(&fifo).envs(faults.env(seed, Some(&log)));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            File::open(fifo)
                .and_then(|mut f| f.read_to_end(&mut got))
                .map(|_| got)
        })
    };
    let out = run(cmd, Input::Null);
    assert!(out.status.success(), "probe failed: {}", out.stderr);
    let got = reader.join().unwrap().expect("read the FIFO");
    (out.stdout_text(), got, shim::read_log(&log))
}

#[test]
fn a_rust_write_that_ignores_its_count_is_caught() {
    let short = IoFaults {
        short_writes: 1.0,
        ..IoFaults::default()
    };
    // Without faults a single write of 100 000 bytes to a pipe writes all.
    let (said, got, _) = probe_write("write-once", &IoFaults::default(), 1);
    assert_eq!((said.as_str(), got.len()), ("wrote 100000", 100_000));
    // With certain short writes it never does, whatever the seed.
    for seed in 0..5 {
        let (said, got, stats) = probe_write("write-once", &short, seed);
        let n: usize = said
            .strip_prefix("wrote ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("probe said {said:?}"));
        assert!((1..100_000).contains(&n), "seed {seed}: {said}");
        assert_eq!(got.len(), n);
        assert_eq!(stats.short_writes, 1, "{stats:?}");
    }
    // write_all delivers everything through short writes and EINTR.
    let all = IoFaults {
        eintr: 0.5,
        ..short
    };
    let (said, got, stats) = probe_write("write-all", &all, 9);
    assert_eq!((said.as_str(), got), ("wrote 100000", vec![b'x'; 100_000]));
    assert!(stats.short_writes > 0 && stats.eintr > 0, "{stats:?}");
}

/// Runs the probe reading `/dev/stdin`, a pipe holding 60 000 bytes: the
/// probe opens it again, as fd 3, so the grader's configuration applies.
fn probe_read(mode: &str, faults: &IoFaults) -> (String, Stats) {
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut cmd = shimmed(probe(), None, &log);
    cmd.arg(mode)
        .arg("/dev/stdin")
        .envs(faults.env(2, Some(&log)));
    let out = run(cmd, Input::Fd(filled_pipe(&data(60_000))));
    assert!(out.status.success(), "probe failed: {}", out.stderr);
    (out.stdout_text(), shim::read_log(&log))
}

#[test]
fn eintr_fails_a_read_that_does_not_retry() {
    let eintr = IoFaults {
        eintr: 1.0,
        ..IoFaults::default()
    };
    let (said, stats) = probe_read("read-once", &eintr);
    assert_eq!(said, "error Interrupted system call (os error 4)");
    assert_eq!(stats.eintr, 1);
    // read_to_end retries EINTR; EINTR never comes twice in a row, so it
    // makes progress even at probability 1.
    let (said, stats) = probe_read("read-all", &eintr);
    assert_eq!(said, "read 60000");
    assert!(stats.eintr >= 2, "{stats:?}");
}

#[test]
fn a_rust_read_expecting_a_whole_message_is_caught() {
    let (said, _) = probe_read("read-once", &IoFaults::default());
    assert_eq!(said, "read 60000");
    let short = IoFaults {
        short_reads: 1.0,
        ..IoFaults::default()
    };
    let (said, stats) = probe_read("read-once", &short);
    let n: usize = said
        .strip_prefix("read ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("probe said {said:?}"));
    assert!((1..60_000).contains(&n), "{said}");
    assert_eq!(stats.short_reads, 1);
    let (said, _) = probe_read("read-all", &short);
    assert_eq!(said, "read 60000");
}

#[test]
fn the_same_seed_injects_the_same_faults() {
    let input = data(60_000);
    let cat = |seed: u64| {
        let dir = tempdir();
        let log = dir.path().join("log");
        let faults = format!("seed={seed},short_reads=0.7,short_writes=0.7,eintr=0.3,stdio=1");
        let out = run(
            shimmed("cat", Some(&faults), &log),
            Input::Fd(filled_pipe(&input)),
        );
        assert!(out.status.success(), "cat failed: {}", out.stderr);
        assert!(out.stdout == input, "cat's output differs from its input");
        shim::read_log(&log)
    };
    let first = cat(7);
    assert!(first.any(), "{first:?}");
    for _ in 0..3 {
        assert_eq!(cat(7), first);
    }
    let others: Vec<Stats> = (8..12).map(cat).collect();
    assert!(
        others.iter().any(|s| *s != first),
        "seeds 7..12 all gave {first:?}"
    );
}

#[test]
fn nothing_is_injected_without_a_valid_configuration() {
    let input = data(1 << 20);
    for faults in [None, Some("short_writes=2.0,stdio=1"), Some("bogus=1")] {
        let dir = tempdir();
        let log = dir.path().join("log");
        let out = run(shimmed("cat", faults, &log), Input::Bytes(input.clone()));
        assert!(
            out.status.success(),
            "{faults:?}: cat failed: {}",
            out.stderr
        );
        assert!(out.stdout == input, "{faults:?}: output differs");
        assert!(!log.exists(), "{faults:?}: the inactive shim logged");
    }
}
