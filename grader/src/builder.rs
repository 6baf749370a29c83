//! Building a submission.
//!
//! The submission's `src/` is compiled against the task's starter's
//! manifest and lock file, never the student's: its `build.rs`, manifest
//! and anything outside `src/` are never used at all. A compile error is a
//! graded result ([`BuildResult::Failed`]); only a failure of the machinery
//! (cargo or rustc missing, dependencies not fetchable, the build killed
//! from outside) is a [`BuildError`].
//!
//! Builds are meant to run many at once (threads of one grader, and several
//! graders on one machine) while the dependencies compile once, so a build
//! has two parts:
//!
//! - [`Prepared::new`], once per task: the starter's dependencies are built
//!   by cargo (offline, locked) in a target directory of the task's own
//!   (`target/cargo-grade/prepared/<slug>-<key>`, the key a digest of the
//!   manifest, the lock file, the toolchain and the variables that change a
//!   build), and cargo's exact `rustc` command for the binary crate is
//!   recorded ([`invocation`]). That directory is made under a lock and
//!   never changed once made, so concurrent graders share it: the first one
//!   prepares it, the others wait for it and read it.
//! - [`Prepared::build`], per submission: `src/` is copied into a stage
//!   directory of this build's own (unique, removed after it), and the
//!   recorded command compiles it there with `rustc`, into that directory.
//!   No lock is taken and no shared file is written, so builds of different
//!   submissions run in parallel, and each costs what compiling the crate
//!   costs: there is no cargo in it to read manifests, fingerprints and the
//!   registry again.
//!
//! Why `rustc` directly rather than one cargo target directory per build
//! slot, seeded with hard links of the dependencies: that still pays cargo's
//! start-up, resolution and fingerprint checks per build (about as much as
//! compiling a small crate), and it needs slots managed across processes;
//! the recorded command is exactly what cargo would run (nothing rebuilt
//! from its internals), and the dependency libraries it reads are never
//! written again.
//!
//! A build that succeeded is kept ([`BuildCache`]): the same sources, built
//! against the same prepared dependencies with the same files hidden, give
//! the same binary, so a student's regrade with another `--seed`, `--only`
//! or `--hint`, and `verify --repeat`'s later seeds, do not compile again.
//!
//! Compiling is running student code of a kind (`include_str!` reads any
//! file the compiler can), so cargo and rustc run in a jail ([`jail`]): the
//! solutions and specs hidden, and, for a submission, every other build
//! hidden as well.

mod invocation;
mod jail;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cargo_metadata::Message;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use crate::course::Course;
use crate::harness::deadline::{poll_until, Deadline};
use crate::spec::Spec;
use invocation::{Invocation, Recording};
use jail::Jail;

/// Largest `src/` tree the grader accepts (files and bytes).
const MAX_SRC_FILES: usize = 500;
const MAX_SRC_BYTES: u64 = 8 << 20;

/// Cargo's and rustc's output kept for diagnostics.
const MAX_CARGO_OUTPUT: usize = 1 << 20;

/// Version of the prepared directory's layout: a grader that changes it
/// changes every key.
const PREPARED_FORMAT: u32 = 1;

/// What building a submission produced.
#[derive(Debug)]
pub enum BuildResult {
    /// The binary, copied out of the build's directory.
    Built { binary: PathBuf, duration: Duration },
    /// The student's code did not build: the reason, for the student.
    Failed {
        diagnostics: String,
        duration: Duration,
    },
}

impl BuildResult {
    /// The same result, timed as `duration`.
    pub fn took(self, duration: Duration) -> BuildResult {
        match self {
            BuildResult::Built { binary, .. } => BuildResult::Built { binary, duration },
            BuildResult::Failed { diagnostics, .. } => BuildResult::Failed {
                diagnostics,
                duration,
            },
        }
    }
}

/// The build machinery itself failed; the submission could not be graded.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or directory of the grader's could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The starter (its manifest, lock file or sources) is unusable.
    #[error("the starter in {}: {why}", dir.display())]
    Starter { dir: PathBuf, why: String },
    /// The locked dependencies are not in cargo's cache and cannot be
    /// fetched.
    #[error("cannot fetch the task's dependencies (is the network or the cargo cache available?):\n{output}")]
    Fetch { output: String },
    /// Cargo could not build the starter against its dependencies.
    #[error("cannot build the task's dependencies with the starter:\n{output}")]
    Dependencies { output: String },
    /// Another grader has been preparing the task for too long.
    #[error("another grader has been preparing {slug} for more than {} s (lock {})", waited.as_secs(), lock.display())]
    Busy {
        slug: String,
        waited: Duration,
        lock: PathBuf,
    },
    /// The build was killed from outside (not by its own limits).
    #[error("the build was killed by signal {signal}; the compiler said:\n{output}")]
    Killed { signal: i32, output: String },
    /// Anything else the grader's side of the build could not do.
    #[error("{0}")]
    Machinery(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// Builds `submission` (a crate directory with `src/main.rs`) for `spec`,
/// and copies the binary into `out_dir`.
///
/// The task's prepared state is made on the first call in this process (or
/// read from disk, where another grader made it) and kept for the next ones;
/// see [`Prepared`] to hold it explicitly.
pub fn build(
    course: &Course,
    spec: &Spec,
    submission: &Path,
    out_dir: &Path,
) -> Result<BuildResult, BuildError> {
    let started = Instant::now();
    let prepared = Prepared::shared(course, spec)?;
    Ok(prepared.build(submission, out_dir)?.took(started.elapsed()))
}

/// A task's toolchain, prepared once: the starter's dependencies compiled,
/// and the command that compiles a copy of the binary crate against them.
///
/// Safe to use from many threads at once; builds share nothing but the
/// dependencies, which they only read.
#[derive(Debug)]
pub struct Prepared {
    course: Course,
    slug: String,
    binary: String,
    timeout: Duration,
    /// The staged manifest (the starter's, made a workspace of its own) and
    /// lock file, copied beside each build's `src/`.
    manifest: String,
    lock: Vec<u8>,
    invocation: Invocation,
    /// The grader's work directory (canonical): hidden from a build but for
    /// `deps` and the build's own directory.
    work: PathBuf,
    /// The dependencies' target directory.
    deps: PathBuf,
    /// Where builds make their directories.
    builds: PathBuf,
}

// Builds run from many threads at once.
const _: fn() = || {
    fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Prepared>();
};

/// What the prepared directory records, once complete.
#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    key: String,
    invocation: Invocation,
}

/// The starter's files, as every build uses them.
struct Starter {
    dir: PathBuf,
    manifest: String,
    lock: Vec<u8>,
    package: String,
}

impl Starter {
    fn read(course: &Course, spec: &Spec) -> Result<Starter, BuildError> {
        let dir = course.starter_dir(spec);
        let bad = |why: String| BuildError::Starter {
            dir: dir.clone(),
            why,
        };
        let manifest = fs::read_to_string(dir.join("Cargo.toml"))
            .map_err(|e| bad(format!("cannot read Cargo.toml: {e}")))?;
        let lock = fs::read(dir.join("Cargo.lock"))
            .map_err(|e| bad(format!("cannot read Cargo.lock: {e}")))?;
        let table = manifest
            .parse::<toml::Table>()
            .map_err(|e| bad(format!("Cargo.toml is not valid TOML: {e}")))?;
        let package = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| bad("Cargo.toml has no [package] name".into()))?
            .to_owned();
        // A manifest of its own workspace, so that the course workspace
        // above it (the work directory is in its target/) does not claim it.
        let manifest = if table.contains_key("workspace") {
            manifest
        } else {
            format!("{manifest}\n[workspace]\n")
        };
        Ok(Starter {
            dir,
            manifest,
            lock,
            package,
        })
    }

    /// Writes the manifest and lock file into `dir`.
    fn write_into(manifest: &str, lock: &[u8], dir: &Path) -> Result<(), BuildError> {
        fs::write(dir.join("Cargo.toml"), manifest).map_err(io_error(format!(
            "cannot write {}/Cargo.toml",
            dir.display()
        )))?;
        fs::write(dir.join("Cargo.lock"), lock).map_err(io_error(format!(
            "cannot write {}/Cargo.lock",
            dir.display()
        )))
    }
}

/// 64-bit FNV-1a: a digest stable across builds of the grader (std's
/// hashers promise no such thing), for names of directories.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Variables that change what cargo builds: part of the prepared key. (The
/// toolchain itself is in it by its `-vV`, however it was chosen.)
fn changes_the_build(name: &str) -> bool {
    matches!(
        name,
        "RUSTC" | "RUSTC_WRAPPER" | "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS"
    ) || name.starts_with("CARGO_BUILD_")
        || name.starts_with("CARGO_PROFILE_")
}

/// `PROGRAM -vV`: the toolchain's identity.
fn version_of(program: &Path, cwd: &Path) -> Result<String, BuildError> {
    let out = Command::new(program)
        .arg("-vV")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError::Spawn {
            program: program.display().to_string(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(BuildError::Machinery(format!(
            "{} -vV failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rustc() -> PathBuf {
    std::env::var_os("RUSTC").map_or_else(|| PathBuf::from("rustc"), PathBuf::from)
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Takes the exclusive lock on `path`, waiting up to `within` for another
/// holder (another thread or grader preparing the same task) to finish.
fn lock_exclusive(
    path: &Path,
    within: Duration,
    slug: &str,
) -> Result<Flock<fs::File>, BuildError> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_error(format!("cannot open the lock {}", path.display())))
    };
    let mut file = Some(open()?);
    let got = poll_until(Deadline::after(within), || {
        let f = file.take().expect("put back after each look");
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Some(Ok(lock)),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) | Err((f, nix::errno::Errno::EINTR)) => {
                file = Some(f);
                None
            }
            Err((_, e)) => Some(Err(BuildError::Io {
                what: format!("cannot lock {}", path.display()),
                source: e.into(),
            })),
        }
    });
    got.unwrap_or_else(|| {
        Err(BuildError::Busy {
            slug: slug.to_owned(),
            waited: within,
            lock: path.to_owned(),
        })
    })
}

/// Prepared tasks of this process, by what makes them differ.
type Slot = Arc<Mutex<Option<Arc<Prepared>>>>;
static SHARED: Mutex<BTreeMap<String, Slot>> = Mutex::new(BTreeMap::new());

impl Prepared {
    /// Prepares `spec`'s task: reads the prepared directory if a grader made
    /// it already, else makes it (building the dependencies, which is the
    /// only step that may use the network: `cargo fetch` of the starter's
    /// locked dependencies, before any student code is compiled).
    pub fn new(course: &Course, spec: &Spec) -> Result<Prepared, BuildError> {
        let starter = Starter::read(course, spec)?;
        let work = course.work_dir();
        let prepared_root = work.join("prepared");
        fs::create_dir_all(&prepared_root).map_err(io_error(format!(
            "cannot create {}",
            prepared_root.display()
        )))?;
        let work = fs::canonicalize(&work)
            .map_err(io_error(format!("cannot resolve {}", work.display())))?;
        let prepared_root = work.join("prepared");
        let slug = &spec.task.slug;
        let timeout = Duration::from_secs(spec.limits.build_timeout_s);

        // Everything that changes what the directory holds is in its key;
        // the full text is kept in it and compared, the digest names it.
        let mut key = format!(
            "format {PREPARED_FORMAT}\nslug {slug}\nbinary {}\n--- cargo\n{}--- rustc\n{}",
            spec.task.binary,
            version_of(&cargo(), &work)?,
            version_of(&rustc(), &work)?,
        );
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| changes_the_build(k))
            .collect();
        vars.sort();
        for (k, v) in vars {
            key.push_str(&format!("env {k}={v}\n"));
        }
        key.push_str(&format!(
            "--- Cargo.toml\n{}\n--- Cargo.lock\n",
            starter.manifest
        ));
        key.push_str(&String::from_utf8_lossy(&starter.lock));
        let name = format!("{slug}-{:016x}", fnv1a(key.as_bytes()));
        let dir = prepared_root.join(&name);

        // Waiting covers another grader's fetch and build, each bounded by
        // the build timeout.
        let lock_path = prepared_root.join(format!("{name}.lock"));
        let _lock = lock_exclusive(&lock_path, timeout * 2 + Duration::from_secs(60), slug)?;
        let invocation = match load(&dir, &key) {
            Some(invocation) => invocation,
            None => prepare(course, spec, &starter, &dir, &key)?,
        };

        let builds = work.join("builds").join(slug);
        fs::create_dir_all(&builds)
            .map_err(io_error(format!("cannot create {}", builds.display())))?;
        remove_stale_builds(&builds);
        Ok(Prepared {
            course: course.clone(),
            slug: slug.clone(),
            binary: spec.task.binary.clone(),
            timeout,
            manifest: starter.manifest,
            lock: starter.lock,
            invocation,
            work,
            deps: dir.join("target"),
            builds,
        })
    }

    /// The task prepared once for the whole process: the same value for
    /// every caller with the same course, task and starter, made by the
    /// first (a failure is not kept: the next caller tries again).
    pub fn shared(course: &Course, spec: &Spec) -> Result<Arc<Prepared>, BuildError> {
        let starter = Starter::read(course, spec)?;
        let mut digest = starter.manifest.into_bytes();
        digest.extend_from_slice(&starter.lock);
        let key = format!(
            "{}\0{}\0{}\0{}\0{}\0{:016x}",
            course.root.display(),
            course.work_dir().display(),
            spec.task.slug,
            spec.task.binary,
            spec.limits.build_timeout_s,
            fnv1a(&digest)
        );
        let slot = SHARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prepared) = slot.as_ref() {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(Prepared::new(course, spec)?);
        *slot = Some(prepared.clone());
        Ok(prepared)
    }

    /// The task this was prepared for.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The bare compiler command a build runs for the crate in `crate_dir`
    /// (its `Cargo.toml` and `src/`), writing `output`: no jail, no limits,
    /// no copying. For measuring what the build adds to compiling the crate.
    pub fn compiler_command(&self, crate_dir: &Path, output: &Path) -> Command {
        self.invocation.command(crate_dir, output)
    }

    /// Builds `submission` (a crate directory with `src/main.rs`) and copies
    /// the binary into `out_dir`.
    pub fn build(&self, submission: &Path, out_dir: &Path) -> Result<BuildResult, BuildError> {
        self.build_hiding(submission, out_dir, &[])
    }

    /// As [`Prepared::build`], with `hidden` (existing directories) also out
    /// of the compiler's sight: a batch hides the other submissions and the
    /// results, so that no build can read another student's sources.
    pub fn build_hiding(
        &self,
        submission: &Path,
        out_dir: &Path,
        hidden: &[PathBuf],
    ) -> Result<BuildResult, BuildError> {
        let started = Instant::now();
        let failed = |diagnostics: String| BuildResult::Failed {
            diagnostics,
            duration: started.elapsed(),
        };
        let src = submission.join("src");
        if !src.join("main.rs").is_file() {
            return Ok(failed(format!(
                "{} has no src/main.rs",
                submission.display()
            )));
        }
        // This build's own directory: the crate (the starter's manifest and
        // lock, the submission's src/) and the compiler's output. Named
        // after this grader, so that the next one removes it if this one is
        // killed.
        let stage = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&self.builds)
            .map_err(io_error(format!(
                "cannot create a build directory in {}",
                self.builds.display()
            )))?;
        Starter::write_into(&self.manifest, &self.lock, stage.path())?;
        let mut budget = CopyBudget::default();
        if let Err(why) = copy_tree(&src, &stage.path().join("src"), &mut budget) {
            return Ok(failed(format!("cannot take the submission's src/: {why}")));
        }
        // Keyed by the copy, which is what is compiled: a submission changed
        // meanwhile cannot get another's binary.
        let cache = BuildCache::new(&self.builds);
        let key = cache.key(&self.deps, &self.binary, stage.path(), hidden);
        let binary = out_dir.join(&self.binary);
        if let Some(key) = &key {
            if cache.take(key, out_dir, &binary) {
                return Ok(BuildResult::Built {
                    binary,
                    duration: started.elapsed(),
                });
            }
        }
        let out = stage.path().join("out");
        fs::create_dir(&out).map_err(io_error(format!("cannot create {}", out.display())))?;
        let output = out.join(&self.binary);

        let jail = Jail::for_course(&self.course)
            .also_hiding(hidden)
            .confine_to(&self.work, &[(&self.deps, true), (stage.path(), false)])?;
        let command = || {
            let mut cmd = self.invocation.command(stage.path(), &output);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            cmd
        };
        let child = jail::spawn(command, "rustc", &jail, self.timeout.as_secs())?;
        drop(jail);
        let Some((status, _, stderr)) = wait_capped(child, self.timeout) else {
            return Ok(failed(format!(
                "the build took longer than {} s and was stopped",
                self.timeout.as_secs()
            )));
        };

        let mut errors = String::new();
        let mut other = String::new();
        for line in String::from_utf8_lossy(&stderr).lines() {
            match serde_json::from_str::<RustcDiagnostic>(line) {
                Ok(d) if d.level.starts_with("error") => {
                    errors.push_str(d.rendered.as_deref().unwrap_or(&d.message));
                }
                Ok(_) => {}
                Err(_) => {
                    other.push_str(line);
                    other.push('\n');
                }
            }
        }
        if status.success() {
            if !output.is_file() {
                return Err(BuildError::Machinery(format!(
                    "rustc succeeded but wrote no {}",
                    output.display()
                )));
            }
            fs::create_dir_all(out_dir)
                .map_err(io_error(format!("cannot create {}", out_dir.display())))?;
            // Kept first: the move takes the output away.
            if let Some(key) = &key {
                cache.keep(key, &output);
            }
            move_binary(&output, &binary)?;
            return Ok(BuildResult::Built {
                binary,
                duration: started.elapsed(),
            });
        }
        if !errors.is_empty() {
            return Ok(failed(errors));
        }
        match killed_by(status) {
            // Sent from outside (an administrator, the machine's
            // out-of-memory killer): no verdict on the student's code.
            Some(signal) if is_sent_from_outside(signal) => Err(BuildError::Killed {
                signal,
                output: other,
            }),
            // A fault or a limit of the compiler's own, on this code (a
            // macro or const-evaluation bomb, say).
            Some(signal) => Ok(failed(format!(
                "the compiler was stopped by signal {signal} ({}) while compiling this code\n{other}",
                signal_name(signal)
            ))),
            None if other.trim().is_empty() => Ok(failed(format!(
                "the compiler failed ({status}) without saying why"
            ))),
            None => Ok(failed(other)),
        }
    }
}

/// Puts the built binary at `to` without this process ever holding it open
/// for writing. A descriptor open for writing is inherited by every child
/// another thread forks meanwhile (until that child's exec closes it), and
/// while any process holds one, executing the file fails with ETXTBSY: with
/// several grades at once (a batch's --jobs, a self-check), a copy made here
/// while another grade started a program made this grade's first program
/// fail to start, and the submission ungradable, on about one run in a few
/// hundred grades. A rename involves no descriptor; across file systems (a
/// tmpfs /tmp) the copy is made by [`copy_executable`].
fn move_binary(from: &Path, to: &Path) -> Result<(), BuildError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_executable(from, to),
        Err(e) => Err(BuildError::Io {
            what: format!("cannot move the built binary to {}", to.display()),
            source: e,
        }),
    }
}

/// Copies a binary that is about to be run in a child process (`cp`), never
/// in the grader itself (see [`move_binary`]): a descriptor that only a
/// short-lived child ever holds cannot leak into the grader's other
/// children, and the file is closed for good once `cp` has exited.
fn copy_executable(from: &Path, to: &Path) -> Result<(), BuildError> {
    let out = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| BuildError::Spawn {
            program: "cp".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BuildError::Machinery(format!(
            "cannot copy the built binary {} to {}: cp {}: {}",
            from.display(),
            to.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// One line of rustc's JSON diagnostics.
#[derive(Deserialize)]
struct RustcDiagnostic {
    message: String,
    level: String,
    rendered: Option<String>,
}

/// The signal that ended a build: its own death, or that of the jail's
/// process below, passed on as 128 + the signal.
fn killed_by(status: ExitStatus) -> Option<i32> {
    status
        .signal()
        .or_else(|| status.code().filter(|&c| c > 128).map(|c| c - 128))
}

fn is_sent_from_outside(signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
    )
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Waits up to `timeout` for `child` and reads its output (capped). `None`
/// if it ran out of time: then its process group has been killed.
fn wait_capped(mut child: Child, timeout: Duration) -> Option<(ExitStatus, Vec<u8>, Vec<u8>)> {
    let out_reader = read_capped(child.stdout.take().expect("piped"));
    let err_reader = read_capped(child.stderr.take().expect("piped"));
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return None;
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Some((status, stdout, stderr))
}

/// The saved invocation in `dir`, if the directory is complete, made for
/// `key`, and everything the invocation names is still there.
fn load(dir: &Path, key: &str) -> Option<Invocation> {
    let text = fs::read_to_string(dir.join("prepared.json")).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    (saved.format == PREPARED_FORMAT
        && saved.key == key
        && saved.invocation.needs().iter().all(|p| p.exists()))
    .then_some(saved.invocation)
}

/// Makes the prepared directory `dir`: the starter staged in `dir/crate`,
/// its dependencies built by cargo into `dir/target` with the recorder as
/// the workspace's compiler wrapper, and the recorded command saved (last,
/// atomically: a directory without `prepared.json` is incomplete).
fn prepare(
    course: &Course,
    spec: &Spec,
    starter: &Starter,
    dir: &Path,
    key: &str,
) -> Result<Invocation, BuildError> {
    let crate_dir = dir.join("crate");
    let target = dir.join("target");
    let record = dir.join("record");
    if crate_dir.exists() {
        fs::remove_dir_all(&crate_dir)
            .map_err(io_error(format!("cannot clear {}", crate_dir.display())))?;
    }
    for d in [&crate_dir, &record] {
        fs::create_dir_all(d).map_err(io_error(format!("cannot create {}", d.display())))?;
    }
    Starter::write_into(&starter.manifest, &starter.lock, &crate_dir)?;
    copy_tree(
        &starter.dir.join("src"),
        &crate_dir.join("src"),
        &mut CopyBudget::default(),
    )
    .map_err(|why| BuildError::Starter {
        dir: starter.dir.clone(),
        why: format!("cannot copy src/: {why}"),
    })?;
    let script = record.join("record-rustc.sh");
    let crate_name = spec.task.binary.replace('-', "_");
    fs::write(&script, invocation::recorder_script(&crate_name, &record))
        .map_err(io_error(format!("cannot write {}", script.display())))?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).map_err(io_error(format!(
        "cannot make {} executable",
        script.display()
    )))?;
    Recording::clear(&record).map_err(io_error("cannot clear the previous recording"))?;
    // An interrupted preparation may have compiled the crate already: its
    // fingerprints go, so that cargo compiles it (through the recorder)
    // again. The dependencies' stay, and are not rebuilt.
    let fingerprints = target.join("debug").join(".fingerprint");
    if let Ok(entries) = fs::read_dir(&fingerprints) {
        let prefix = format!("{}-", starter.package);
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    let manifest = crate_dir.join("Cargo.toml");
    let timeout = Duration::from_secs(spec.limits.build_timeout_s);
    fetch(&manifest, &target, timeout)?;
    let command = || {
        let mut cmd = Command::new(cargo());
        // What the recorder finds of cargo's variables is what cargo set,
        // not what the grader was given (under `cargo test`, say).
        for name in invocation::inherited_cargo_variables() {
            cmd.env_remove(name);
        }
        cmd.args([
            "build",
            "--offline",
            "--locked",
            "--message-format=json",
            "--bin",
            &spec.task.binary,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&crate_dir)
        .env("RUSTC_WORKSPACE_WRAPPER", &script)
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        cmd
    };
    let child = jail::spawn(
        command,
        "cargo",
        &Jail::for_course(course),
        timeout.as_secs(),
    )?;
    let Some((status, stdout, stderr)) = wait_capped(child, timeout) else {
        return Err(BuildError::Dependencies {
            output: format!(
                "cargo took longer than {} s and was stopped",
                timeout.as_secs()
            ),
        });
    };
    if !status.success() {
        let mut output = String::new();
        for message in Message::parse_stream(&stdout[..]).flatten() {
            if let Message::CompilerMessage(msg) = message {
                if let Some(rendered) = &msg.message.rendered {
                    output.push_str(rendered);
                }
            }
        }
        output.push_str(&String::from_utf8_lossy(&stderr));
        return Err(BuildError::Dependencies { output });
    }
    let recording = Recording::read(&record)
        .map_err(BuildError::Machinery)?
        .ok_or_else(|| {
            BuildError::Machinery(format!(
                "cargo built {} without compiling it through the recorder {}",
                spec.task.binary,
                script.display()
            ))
        })?;
    let mut invocation =
        Invocation::from_recording(&recording, &crate_dir).map_err(BuildError::Machinery)?;
    invocation.rustc = toolchain_rustc(&invocation.rustc, &recording.env);
    if let Some(missing) = invocation.needs().into_iter().find(|p| !p.exists()) {
        return Err(BuildError::Machinery(format!(
            "the recorded compiler command names {}, which does not exist",
            missing.display()
        )));
    }
    let saved = Saved {
        format: PREPARED_FORMAT,
        key: key.to_owned(),
        invocation,
    };
    let json = serde_json::to_string_pretty(&saved).expect("plain data serialises");
    let partial = dir.join("prepared.json.partial");
    fs::write(&partial, json).map_err(io_error(format!("cannot write {}", partial.display())))?;
    fs::rename(&partial, dir.join("prepared.json"))
        .map_err(io_error(format!("cannot complete {}", dir.display())))?;
    Ok(saved.invocation)
}

/// The toolchain's own `rustc` behind `recorded` (which may be a rustup
/// proxy, choosing a toolchain per directory and variables): its sysroot's
/// `bin/rustc`, so that every build uses the compiler the dependencies were
/// built with, and no proxy runs per build.
fn toolchain_rustc(recorded: &Path, env: &[(String, String)]) -> PathBuf {
    let sysroot = Command::new(recorded)
        .args(["--print", "sysroot"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match sysroot.map(|s| s.join("bin").join("rustc")) {
        Some(real) if real.is_file() => real,
        _ => recorded.to_owned(),
    }
}

/// Removes the build directories (`PID-XXXXXX`) of graders that are gone.
/// Binaries of builds that succeeded, in `builds/<slug>/cache/<key>`, the
/// key a SHA-256 of everything that decides the binary: the prepared
/// dependencies (their directory is named by a digest of the manifest, lock
/// file, toolchain and build variables), the binary's name, the digest of
/// the staged `src/` ([`crate::intake::digest`]), the directories hidden
/// from the compiler, and the grader's version. Failed builds are not kept:
/// their messages are cheap to remake and a timeout depends on the load.
///
/// Written by rename, so a reader never sees half a binary; the directory is
/// the grader's (hidden from every test process). The newest
/// [`BuildCache::KEEP`] stay; a hit counts as new.
struct BuildCache {
    dir: PathBuf,
}

impl BuildCache {
    const KEEP: usize = 32;

    fn new(builds: &Path) -> BuildCache {
        BuildCache {
            dir: builds.join("cache"),
        }
    }

    /// `None` when the staged sources cannot be digested (past the intake's
    /// caps, say): such a build is simply not kept.
    fn key(&self, deps: &Path, binary: &str, stage: &Path, hidden: &[PathBuf]) -> Option<String> {
        let sources = crate::intake::digest(stage, &crate::intake::Caps::default()).ok()?;
        let mut hidden: Vec<&[u8]> = hidden.iter().map(|h| h.as_os_str().as_bytes()).collect();
        hidden.sort();
        let mut what = b"cargo-grade build cache 1".to_vec();
        for part in [
            env!("CARGO_PKG_VERSION").as_bytes(),
            deps.as_os_str().as_bytes(),
            binary.as_bytes(),
            sources.as_bytes(),
        ]
        .into_iter()
        .chain(hidden)
        {
            // Lengths first: no two lists of parts make the same bytes.
            what.extend_from_slice(&part.len().to_le_bytes());
            what.extend_from_slice(part);
        }
        Some(crate::spec::sha256_hex(&what))
    }

    /// Copies the kept binary of `key` to `binary` (in `out_dir`); false if
    /// there is none.
    fn take(&self, key: &str, out_dir: &Path, binary: &Path) -> bool {
        let kept = self.dir.join(key);
        // Not fs::copy: see [`copy_executable`].
        if !kept.is_file() || fs::create_dir_all(out_dir).is_err() {
            return false;
        }
        if copy_executable(&kept, binary).is_err() {
            return false;
        }
        if let Ok(file) = fs::File::options().write(true).open(&kept) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        true
    }

    /// Keeps `output` as `key`'s binary, and drops the oldest past
    /// [`BuildCache::KEEP`]. A failure only means the next build compiles.
    fn keep(&self, key: &str, output: &Path) {
        if fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let partial = self.dir.join(format!(".{key}.{}", std::process::id()));
        if fs::copy(output, &partial).is_err() || fs::rename(&partial, self.dir.join(key)).is_err()
        {
            let _ = fs::remove_file(&partial);
            return;
        }
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().as_bytes().starts_with(b"."))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if kept.len() > Self::KEEP {
            kept.sort();
            for (_, old) in &kept[..kept.len() - Self::KEEP] {
                let _ = fs::remove_file(old);
            }
        }
    }
}

fn remove_stale_builds(builds: &Path) {
    let Ok(entries) = fs::read_dir(builds) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if crate::harness::scratch::gone(pid) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// How builds are contained on this machine, for the report header.
pub fn isolation() -> crate::result::Protection {
    use crate::result::Protection;
    if jail::failed() {
        Protection::missing("a jail for the build", "no namespaces: the compiler can read any file the grader's user can; the build is bounded by its timeout and by limits on CPU, memory and file size")
    } else {
        Protection::active("a jail for the build", "only src/ is taken (never build.rs or a manifest of the student's), compiled offline in private mount, network and PID namespaces with the reference solutions, specs and other builds hidden, under limits on time, CPU, memory and file size")
    }
}

/// Makes sure the locked dependencies are in cargo's cache. This is the only
/// step that may use the network, and it runs the starter's trusted
/// manifest, before any student code is compiled.
fn fetch(manifest: &Path, target_dir: &Path, timeout: Duration) -> Result<(), BuildError> {
    let child = Command::new(cargo())
        .args(["fetch", "--locked", "--quiet", "--manifest-path"])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| BuildError::Spawn {
            program: "cargo".into(),
            source: e,
        })?;
    match wait_capped(child, timeout) {
        Some((status, _, _)) if status.success() => Ok(()),
        Some((_, _, stderr)) => Err(BuildError::Fetch {
            output: String::from_utf8_lossy(&stderr).into_owned(),
        }),
        None => Err(BuildError::Fetch {
            output: format!(
                "cargo fetch took longer than {} s and was stopped",
                timeout.as_secs()
            ),
        }),
    }
}

/// Reads a pipe to the end on a thread, keeping at most [`MAX_CARGO_OUTPUT`].
fn read_capped(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = MAX_CARGO_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

#[derive(Default)]
struct CopyBudget {
    files: usize,
    bytes: u64,
}

/// Copies regular files and directories only: a symlink in a submission
/// could otherwise pull any file of the machine into the build.
fn copy_tree(from: &Path, to: &Path, budget: &mut CopyBudget) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest, budget)?;
        } else if kind.is_file() {
            budget.files += 1;
            budget.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            if budget.files > MAX_SRC_FILES || budget.bytes > MAX_SRC_BYTES {
                return Err(format!(
                    "src/ is larger than {MAX_SRC_FILES} files or {} MiB",
                    MAX_SRC_BYTES >> 20
                ));
            }
            fs::copy(entry.path(), &dest)
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        } else if kind.is_symlink() || kind.is_fifo() || kind.is_socket() {
            return Err(format!(
                "{} is not a regular file (symbolic links, FIFOs and sockets are not accepted in src/)",
                entry.path().display()
            ));
        }
    }
    Ok(())
}
