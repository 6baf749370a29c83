//! The I/O fault-injection shim, from the grader's side.
//!
//! The shim (`grader/shim`, `libcargo_grade_shim.so`) is loaded with
//! `LD_PRELOAD` into a submission's processes and makes some of their
//! `read`/`write`/`readv`/`writev`/`recv`/`send`/`recvfrom`/`sendto` calls on
//! FIFOs and sockets come back short or fail with `EINTR`, per a seed; see
//! its crate documentation for what it guarantees. This module builds it
//! ([`ensure_built`]), configures it for a child ([`IoFaults::env`]) and
//! reads what it did ([`parse_log`]).
//!
//! A test runs a child with the faults of its spec like this:
//!
//! ```no_run
//! # fn demo(course_root: &std::path::Path, work_dir: &std::path::Path) -> Result<(), String> {
//! use cargo_grade::shim::{self, IoFaults};
//! let faults = IoFaults { short_reads: 0.0, short_writes: 1.0, eintr: 0.2 };
//! let so = shim::ensure_built(course_root, work_dir)?;
//! let log = work_dir.join("faults.log");
//! let mut cmd = std::process::Command::new("./submission");
//! cmd.env("LD_PRELOAD", &so).envs(faults.env(42, Some(&log)));
//! // ... run it, then:
//! let stats = shim::parse_log(&std::fs::read_to_string(&log).unwrap_or_default());
//! println!("{}", stats.describe());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cargo_metadata::Message;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use wait_timeout::ChildExt;

/// The shim's package in the course workspace.
pub const PACKAGE: &str = "cargo-grade-shim";
/// The shim's library target name.
const LIB_TARGET: &str = "cargo_grade_shim";
/// The shim's file name.
pub const FILE_NAME: &str = "libcargo_grade_shim.so";
/// The variable that configures the shim.
pub const ENV_FAULTS: &str = "CARGO_GRADE_FAULTS";
/// The variable naming the shim's log file.
pub const ENV_LOG: &str = "CARGO_GRADE_FAULTS_LOG";

/// Longest a build of the shim may take (the first one compiles libc).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of cargo's stderr quoted when the build fails.
const STDERR_TAIL_LINES: usize = 30;

/// The I/O faults of a test: probabilities, 0.0 to 1.0, for each eligible
/// call (on a FIFO or socket, not on the grader's stdio pipes).
///
/// In a spec: `io_faults = { short_writes = 1.0, eintr = 0.2 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IoFaults {
    /// A read asks the kernel for fewer bytes than the caller did.
    pub short_reads: f64,
    /// A write asks the kernel to write fewer bytes than the caller gave
    /// (never a write of `PIPE_BUF` bytes or less to a pipe, which POSIX
    /// makes atomic).
    pub short_writes: f64,
    /// A call fails with `EINTR` without doing anything (never twice in a
    /// row in the same direction).
    pub eintr: f64,
}

impl IoFaults {
    /// Whether any fault can happen.
    pub fn is_active(&self) -> bool {
        self.short_reads > 0.0 || self.short_writes > 0.0 || self.eintr > 0.0
    }

    /// What is injected, for reports, e.g. "short writes (100%), EINTR
    /// (20%) injected into read/write on FIFOs and sockets".
    pub fn describe(&self) -> String {
        let kinds: Vec<String> = [
            ("short reads", self.short_reads),
            ("short writes", self.short_writes),
            ("EINTR", self.eintr),
        ]
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(name, p)| format!("{name} ({})", percent(*p)))
        .collect();
        if kinds.is_empty() {
            "no I/O faults".to_owned()
        } else {
            format!(
                "{} injected into read/write on FIFOs and sockets",
                kinds.join(", ")
            )
        }
    }

    /// The variables that configure the shim in a child, to add to its
    /// environment along with `LD_PRELOAD` (the path [`ensure_built`]
    /// returns). `log` (an absolute path) collects one line per process
    /// that exits normally; read it with [`parse_log`].
    pub fn env(&self, seed: u64, log: Option<&Path>) -> Vec<(String, String)> {
        let mut vars = vec![(
            ENV_FAULTS.to_owned(),
            format!(
                "seed={seed},short_reads={},short_writes={},eintr={}",
                self.short_reads, self.short_writes, self.eintr
            ),
        )];
        if let Some(log) = log {
            vars.push((ENV_LOG.to_owned(), log.display().to_string()));
        }
        vars
    }
}

/// "100%", "20%", "2.5%".
fn percent(p: f64) -> String {
    let pct = (p * 1000.0).round() / 10.0;
    if pct.fract() == 0.0 {
        format!("{pct:.0}%")
    } else {
        format!("{pct}%")
    }
}

/// What the shim injected, summed over the processes that logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub short_reads: u64,
    pub short_writes: u64,
    pub eintr: u64,
    /// Processes that wrote a line (those that exited normally).
    pub processes: u64,
}

impl Stats {
    /// Whether anything was injected.
    pub fn any(&self) -> bool {
        self.short_reads + self.short_writes + self.eintr > 0
    }

    /// E.g. "3 short reads, 12 short writes, 1 EINTR injected".
    pub fn describe(&self) -> String {
        if !self.any() {
            return "no I/O faults injected".to_owned();
        }
        let mut parts = Vec::new();
        let mut count = |n: u64, one: &str, many: &str| {
            if n > 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        };
        count(self.short_reads, "short read", "short reads");
        count(self.short_writes, "short write", "short writes");
        count(self.eintr, "EINTR", "EINTRs");
        format!("{} injected", parts.join(", "))
    }
}

/// Sums the shim's log lines (`pid=N short_reads=N short_writes=N
/// eintr=N`); lines that are not such (a line cut short, say) are skipped.
pub fn parse_log(text: &str) -> Stats {
    let mut stats = Stats::default();
    for line in text.lines() {
        let mut fields = [None; 4];
        let mut ok = true;
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                ok = false;
                break;
            };
            let slot = match key {
                "pid" => 0,
                "short_reads" => 1,
                "short_writes" => 2,
                "eintr" => 3,
                _ => continue,
            };
            match value.parse::<u64>() {
                Ok(n) => fields[slot] = Some(n),
                Err(_) => ok = false,
            }
        }
        if let (true, [Some(_), Some(r), Some(w), Some(e)]) = (ok, fields) {
            stats.short_reads += r;
            stats.short_writes += w;
            stats.eintr += e;
            stats.processes += 1;
        }
    }
    stats
}

/// Reads and sums a log file; a missing file is no faults.
pub fn read_log(path: &Path) -> Stats {
    fs::read_to_string(path)
        .map(|text| parse_log(&text))
        .unwrap_or_default()
}

type Built = Result<PathBuf, String>;

/// Builds the shim from the course workspace at `course_root` (once per
/// process for each pair of directories) and returns the path of a copy in
/// `work_dir`, which a running child never sees half-written.
///
/// The build is `cargo build --release --locked -p cargo-grade-shim` into
/// `<work_dir>/shim-build`, serialised across grader processes by a lock on
/// `<work_dir>/shim.lock`; when nothing changed it is cargo's quick no-op.
pub fn ensure_built(course_root: &Path, work_dir: &Path) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Mutex<HashMap<(PathBuf, PathBuf), Built>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .entry((course_root.to_owned(), work_dir.to_owned()))
        .or_insert_with(|| build(course_root, work_dir))
        .clone()
}

/// The shim crate's manifest: the course's copy of the grader sources when
/// there is one, else the sources this grader was built from (a fixture or
/// a course laid out without `grader/`).
fn shim_manifest(course_root: &Path) -> PathBuf {
    let in_course = course_root.join("grader/shim/Cargo.toml");
    if in_course.is_file() {
        in_course
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("shim/Cargo.toml")
    }
}

fn build(course_root: &Path, work_dir: &Path) -> Built {
    fs::create_dir_all(work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let lock_path = work_dir.join("shim.lock");
    let lock_file = fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    let _guard = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;

    let manifest = shim_manifest(course_root);
    let mut child = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            PACKAGE,
            "--message-format=json",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(work_dir.join("shim-build"))
        .env("CARGO_TERM_COLOR", "never")
        // Should the grader itself run under the shim, cargo must not.
        .env_remove(ENV_FAULTS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo to build the I/O fault shim: {e}"))?;
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = match child.wait_timeout(BUILD_TIMEOUT) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "building the I/O fault shim took longer than {} s",
                BUILD_TIMEOUT.as_secs()
            ));
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let failed = |what: &str| {
        format!(
            "{what} (cargo build -p {PACKAGE} --manifest-path {}):\n{}",
            manifest.display(),
            tail(&String::from_utf8_lossy(&stderr), STDERR_TAIL_LINES)
        )
    };
    if !status.success() {
        return Err(failed(&format!(
            "cannot build the I/O fault shim: cargo {status}"
        )));
    }
    let library = Message::parse_stream(&stdout[..])
        .flatten()
        .filter_map(|message| match message {
            Message::CompilerArtifact(artifact) if artifact.target.name == LIB_TARGET => {
                Some(artifact.filenames)
            }
            _ => None,
        })
        .flatten()
        .find(|file| file.file_name() == Some(FILE_NAME))
        .ok_or_else(|| failed(&format!("cargo built no {FILE_NAME}")))?;

    // Copy, then rename: a child starting meanwhile maps either the old
    // file or the new one, never a half-written one.
    let dest = work_dir.join(FILE_NAME);
    let staging = work_dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    fs::copy(&library, &staging)
        .and_then(|_| fs::rename(&staging, &dest))
        .map_err(|e| {
            let _ = fs::remove_file(&staging);
            format!("cannot copy {library} to {}: {e}", dest.display())
        })?;
    Ok(dest)
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Reads a pipe to the end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_faults() {
        let f = IoFaults {
            short_writes: 1.0,
            eintr: 0.2,
            ..IoFaults::default()
        };
        assert_eq!(
            f.describe(),
            "short writes (100%), EINTR (20%) injected into read/write on FIFOs and sockets"
        );
        let f = IoFaults {
            short_reads: 0.025,
            ..IoFaults::default()
        };
        assert!(f.describe().starts_with("short reads (2.5%) injected"));
        assert_eq!(IoFaults::default().describe(), "no I/O faults");
        assert!(!IoFaults::default().is_active());
    }

    #[test]
    fn deserialises_a_spec_table_strictly() {
        let f: IoFaults = toml::from_str("short_writes = 1.0\neintr = 0.2").unwrap();
        assert_eq!(
            f,
            IoFaults {
                short_reads: 0.0,
                short_writes: 1.0,
                eintr: 0.2
            }
        );
        assert!(toml::from_str::<IoFaults>("short_write = 1.0").is_err());
    }

    #[test]
    fn configures_the_child() {
        let f = IoFaults {
            short_reads: 0.5,
            short_writes: 1.0,
            eintr: 0.2,
        };
        assert_eq!(
            f.env(42, Some(Path::new("/tmp/x.log"))),
            vec![
                (
                    "CARGO_GRADE_FAULTS".to_owned(),
                    "seed=42,short_reads=0.5,short_writes=1,eintr=0.2".to_owned()
                ),
                ("CARGO_GRADE_FAULTS_LOG".to_owned(), "/tmp/x.log".to_owned()),
            ]
        );
        assert_eq!(f.env(0, None).len(), 1);
    }

    #[test]
    fn sums_the_log() {
        let log = "pid=10 short_reads=1 short_writes=2 eintr=3\n\
                   pid=11 short_reads=0 short_writes=5 eintr=0\n\
                   pid=12 short_rea\n\
                   garbage\n";
        let stats = parse_log(log);
        assert_eq!(
            stats,
            Stats {
                short_reads: 1,
                short_writes: 7,
                eintr: 3,
                processes: 2
            }
        );
        assert_eq!(
            stats.describe(),
            "1 short read, 7 short writes, 3 EINTRs injected"
        );
        assert_eq!(parse_log("").describe(), "no I/O faults injected");
    }
}
