//! Building a submission.
//!
//! The submission's `src/` is copied into a staging crate whose manifest and
//! lock file are the task's starter's, never the student's, and built with
//! `cargo build --offline --locked` into one target directory shared by every
//! submission, so dependencies compile once. Only the student's own crate is
//! recompiled per submission. A compile error is a graded result
//! ([`BuildResult::Failed`]); only a failure of the machinery (cargo missing,
//! dependencies not fetchable) is a [`BuildError`].
//!
//! Compiling is running student code of a kind: `include_str!` and
//! `include_bytes!` read any file the compiler can. Where the kernel allows
//! it, cargo runs in a jail of its own ([`enter_jail`]): a mount namespace
//! in which the course's reference solutions and specs are covered by empty
//! mounts, no network, and a PID namespace with its own `/proc` (so that
//! `/proc/1/root` is the jail's root, not the host's). The student's
//! `build.rs`, manifest and anything outside `src/` are never used at all.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cargo_metadata::Message;
use nix::fcntl::{Flock, FlockArg};
use wait_timeout::ChildExt;

use crate::course::Course;
use crate::harness::sandbox::{check, cover, make_mounts_private};
use crate::spec::Spec;

/// Largest `src/` tree the grader accepts (files and bytes).
const MAX_SRC_FILES: usize = 500;
const MAX_SRC_BYTES: u64 = 8 << 20;

/// Cargo's own output kept for diagnostics.
const MAX_CARGO_OUTPUT: usize = 1 << 20;

/// What building a submission produced.
#[derive(Debug)]
pub enum BuildResult {
    /// The binary, copied out of the shared target directory.
    Built { binary: PathBuf, duration: Duration },
    /// The student's code did not build: the reason, for the student.
    Failed {
        diagnostics: String,
        duration: Duration,
    },
}

/// The build machinery itself failed; the submission could not be graded.
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// Builds `submission` (a crate directory with `src/main.rs`) for `spec`,
/// and copies the binary into `out_dir`.
pub fn build(
    course: &Course,
    spec: &Spec,
    submission: &Path,
    out_dir: &Path,
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
    let starter = course.starter_dir(spec);
    let manifest = fs::read_to_string(starter.join("Cargo.toml")).map_err(|e| {
        BuildError(format!(
            "cannot read the starter's Cargo.toml in {}: {e}",
            starter.display()
        ))
    })?;
    let lock = fs::read(starter.join("Cargo.lock")).map_err(|e| {
        BuildError(format!(
            "cannot read the starter's Cargo.lock in {}: {e}",
            starter.display()
        ))
    })?;

    let work = course.work_dir();
    let stage = work.join("stage").join(&spec.task.slug);
    fs::create_dir_all(&stage)
        .map_err(|e| BuildError(format!("cannot create {}: {e}", stage.display())))?;
    // One build per task at a time: the staging crate and the binary's
    // place in the shared target directory are per task.
    let lock_file = fs::File::create(work.join("stage").join(format!("{}.lock", spec.task.slug)))
        .map_err(|e| BuildError(format!("cannot create the build lock: {e}")))?;
    let _guard = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| BuildError(format!("cannot lock the staging directory: {e}")))?;

    // A manifest of its own workspace, so the course workspace above it
    // (the stage lives in its target/) does not claim it.
    let has_workspace = manifest
        .parse::<toml::Table>()
        .map_err(|e| BuildError(format!("the starter's Cargo.toml is not valid TOML: {e}")))?
        .contains_key("workspace");
    let staged_manifest = if has_workspace {
        manifest
    } else {
        format!("{manifest}\n[workspace]\n")
    };
    let write = |name: &str, bytes: &[u8]| {
        fs::write(stage.join(name), bytes)
            .map_err(|e| BuildError(format!("cannot write staged {name}: {e}")))
    };
    write("Cargo.toml", staged_manifest.as_bytes())?;
    write("Cargo.lock", &lock)?;
    let staged_src = stage.join("src");
    if staged_src.exists() {
        fs::remove_dir_all(&staged_src)
            .map_err(|e| BuildError(format!("cannot clear {}: {e}", staged_src.display())))?;
    }
    let mut budget = CopyBudget::default();
    if let Err(why) = copy_tree(&src, &staged_src, &mut budget) {
        return Ok(failed(format!("cannot take the submission's src/: {why}")));
    }

    let staged_manifest = stage.join("Cargo.toml");
    let target_dir = work.join("build");
    fetch(&staged_manifest, &target_dir)?;

    let command = || {
        let mut cmd = Command::new(cargo());
        cmd.args([
            "build",
            "--offline",
            "--locked",
            "--message-format=json",
            "--bin",
            &spec.task.binary,
        ])
        .arg("--manifest-path")
        .arg(&staged_manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        cmd
    };
    let mut child = spawn_jailed(command, course, spec.limits.build_timeout_s)?;
    let out_reader = read_capped(child.stdout.take().expect("piped"));
    let err_reader = read_capped(child.stderr.take().expect("piped"));
    let timeout = Duration::from_secs(spec.limits.build_timeout_s);
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Ok(failed(format!(
                "the build took longer than {} s and was stopped",
                timeout.as_secs()
            )));
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();

    let mut executable = None;
    let mut diagnostics = String::new();
    for message in Message::parse_stream(&stdout[..]).flatten() {
        match message {
            Message::CompilerArtifact(artifact) if artifact.target.name == spec.task.binary => {
                executable = artifact.executable.map(PathBuf::from);
            }
            Message::CompilerMessage(msg) => {
                let is_error = matches!(
                    msg.message.level,
                    cargo_metadata::diagnostic::DiagnosticLevel::Error
                );
                if is_error {
                    if let Some(rendered) = &msg.message.rendered {
                        diagnostics.push_str(rendered);
                    }
                }
            }
            _ => {}
        }
    }
    match (status.success(), executable) {
        (true, Some(exe)) => {
            fs::create_dir_all(out_dir)
                .map_err(|e| BuildError(format!("cannot create {}: {e}", out_dir.display())))?;
            let binary = out_dir.join(&spec.task.binary);
            fs::copy(&exe, &binary)
                .map_err(|e| BuildError(format!("cannot copy the built binary: {e}")))?;
            Ok(BuildResult::Built {
                binary,
                duration: started.elapsed(),
            })
        }
        _ => {
            // Cargo itself killed (or the jail's process 1, whose death is
            // passed on as 128 + the signal): the machinery failed, and
            // that is no verdict on the student's code. (A compiler that
            // dies, say of the memory limit, is reported by cargo, which
            // then exits 101.)
            let killed = status
                .signal()
                .or_else(|| status.code().filter(|&c| c >= 128).map(|c| c - 128));
            if let (Some(signal), true) = (killed, diagnostics.is_empty()) {
                return Err(BuildError(format!(
                    "the build was killed by signal {signal}; cargo said:\n{}",
                    String::from_utf8_lossy(&stderr)
                )));
            }
            if diagnostics.is_empty() {
                // Not a compile error: cargo's own complaint (a lock file
                // problem, say) is on its stderr.
                diagnostics = String::from_utf8_lossy(&stderr).into_owned();
            }
            Ok(failed(diagnostics))
        }
    }
}

/// Set once a jail could not be made, with the reason.
static JAIL_FAILED: AtomicBool = AtomicBool::new(false);

/// How builds are contained on this machine, for the report header.
pub fn isolation() -> crate::result::Protection {
    use crate::result::Protection;
    if JAIL_FAILED.load(Ordering::Relaxed) {
        Protection::missing("a jail for the build", "no namespaces: the compiler can read any file the grader's user can; the build is bounded by its timeout and by limits on CPU, memory and file size")
    } else {
        Protection::active("a jail for the build", "only src/ is taken (never build.rs or a manifest of the student's), compiled offline in private mount, network and PID namespaces with the reference solutions and specs hidden, under limits on time, CPU, memory and file size")
    }
}

/// Starts the build in a jail, or, where the kernel refuses namespaces,
/// without one (remembering that, for [`isolation`]).
fn spawn_jailed(
    command: impl Fn() -> Command,
    course: &Course,
    timeout_s: u64,
) -> Result<Child, BuildError> {
    // Per process: cargo and each rustc. Memory is generous (a compiler
    // needs it) but bounded, against const-evaluation and macro bombs.
    let limits = [
        (libc::RLIMIT_CPU, timeout_s + 5),
        (libc::RLIMIT_DATA, 4 << 30),
        (libc::RLIMIT_FSIZE, 4 << 30),
        (libc::RLIMIT_CORE, 0),
    ];
    let set_limits = move || {
        for (resource, value) in limits {
            let rl = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit on a plain struct.
            if unsafe { libc::setrlimit(resource, &rl) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    let run = |mut cmd: Command| {
        cmd.spawn()
            .map_err(|e| BuildError(format!("cannot run cargo: {e}")))
    };
    if !JAIL_FAILED.load(Ordering::Relaxed) {
        let hidden: Vec<CString> = ["solutions", "specs"]
            .iter()
            .map(|d| course.root.join(d))
            .filter_map(|p| fs::canonicalize(p).ok())
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        let mut cmd = command();
        // SAFETY: the closure runs in the forked child before exec and makes
        // raw system calls only, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                set_limits()?;
                enter_jail(&hidden)
            });
        }
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                JAIL_FAILED.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(BuildError(format!("cannot run cargo: {e}"))),
        }
    }
    let mut cmd = command();
    // SAFETY: as above.
    unsafe { cmd.pre_exec(set_limits) };
    run(cmd)
}

/// Puts the child that will exec cargo into the build's jail: new mount,
/// network and PID namespaces, `hidden` covered by empty read-only mounts.
///
/// A new PID namespace takes effect for children, so the child forks once
/// more: the grandchild, process 1 of the namespace, mounts its own `/proc`
/// and goes on to exec cargo; the child waits for it and exits with its
/// status, so the grader sees cargo's exit as usual. Both die with the
/// grader (parent-death signal), and process 1's death takes every process
/// of the namespace with it.
///
/// # Safety
/// For `pre_exec` only: raw system calls on prepared data.
unsafe fn enter_jail(hidden: &[CString]) -> std::io::Result<()> {
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
    check(libc::unshare(
        libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID,
    ))?;
    make_mounts_private()?;
    for dir in hidden {
        cover(dir)?;
    }
    // The grader's signal handlers are still installed here (there is no
    // exec in this process): the SIGCHLD handler of `wait-timeout` writes to
    // the grader's self-pipe, which must not run when cargo exits below.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    // A raw fork: no atfork handlers run in this child of a threaded parent.
    let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        check(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))?;
        return Ok(());
    }
    // This process only waits: it must not keep the grader's other pipes
    // (the stdin of a namespace holder, say) open.
    libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, 0);
    let mut status = 0;
    loop {
        let rc = libc::waitpid(pid as libc::pid_t, &mut status, 0);
        if rc == pid as libc::pid_t {
            break;
        }
        if rc < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    libc::_exit(128 + libc::WTERMSIG(status));
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Makes sure the locked dependencies are in cargo's cache. This is the only
/// step that may use the network, and it runs the starter's trusted
/// manifest, before any student code is compiled.
fn fetch(manifest: &Path, target_dir: &Path) -> Result<(), BuildError> {
    let output = Command::new(cargo())
        .args(["fetch", "--locked", "--quiet", "--manifest-path"])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError(format!("cannot run cargo: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BuildError(format!(
            "cannot fetch the task's dependencies (is the network or the cargo cache available?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )))
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
