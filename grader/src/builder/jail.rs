//! The jail a build runs in, where the kernel allows one.
//!
//! Compiling is running student code of a kind: `include_str!` and
//! `include_bytes!` read any file the compiler can. The compiler therefore
//! runs in mount, network and PID namespaces of its own:
//!
//! - the course's reference solutions and specs are covered by empty mounts;
//! - for a submission's build, the grader's whole work directory (every
//!   other build, in flight or left over, and the binaries built before) is
//!   covered too, and only two directories of it are put back: the task's
//!   prepared dependencies, read-only, and this build's own stage;
//! - no network, and a PID namespace with its own `/proc`, so that
//!   `/proc/1/root` is the jail's root, not the host's, and no other
//!   process of the machine is in sight.
//!
//! Where namespaces cannot be made, the build runs without a jail (and the
//! report says so, see [`super::isolation`]), bounded by its timeout and
//! limits all the same.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::BuildError;
use crate::course::Course;
use crate::harness::sandbox::{check, cover, make_mounts_private};

/// Set once a jail could not be made.
static JAIL_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether builds on this machine have run without a jail.
pub(super) fn failed() -> bool {
    JAIL_FAILED.load(Ordering::Relaxed)
}

/// What a jail hides and what it keeps in sight.
#[derive(Default)]
pub(super) struct Jail {
    /// Directories covered by empty read-only mounts.
    hidden: Vec<CString>,
    /// A directory covered as a whole, with some of its subdirectories put
    /// back (see [`Jail::confine_to`]).
    confined: Option<Confined>,
}

struct Confined {
    /// The covered directory.
    dir: CString,
    /// Directories to create in the empty mount, outermost first, down to
    /// every target of `binds`.
    parents: Vec<CString>,
    /// What is put back: `/proc/self/fd/N` of a descriptor opened before
    /// the cover (the directory is out of sight after it), the target, and
    /// whether it is read-only.
    binds: Vec<(CString, CString, bool)>,
    /// The descriptors `binds` name; open until the child has made its
    /// mounts (the child inherits them; they are closed on exec).
    _fds: Vec<OwnedFd>,
}

impl Jail {
    /// The course's reference solutions and specs hidden.
    pub(super) fn for_course(course: &Course) -> Jail {
        let hidden = ["solutions", "specs"]
            .iter()
            .map(|d| course.root.join(d))
            .filter_map(|p| fs::canonicalize(p).ok())
            .filter_map(|p| cstring(&p).ok())
            .collect();
        Jail {
            hidden,
            confined: None,
        }
    }

    /// Also covers `dir` (canonical) as a whole and puts back each of
    /// `keep` (canonical, under `dir`), read-only where asked.
    pub(super) fn confine_to(
        mut self,
        dir: &Path,
        keep: &[(&Path, bool)],
    ) -> Result<Jail, BuildError> {
        let mut parents: Vec<CString> = Vec::new();
        let mut binds = Vec::new();
        let mut fds = Vec::new();
        for &(path, readonly) in keep {
            let inside = path.strip_prefix(dir).map_err(|_| {
                BuildError::Machinery(format!("{} is not under {}", path.display(), dir.display()))
            })?;
            let mut at = dir.to_path_buf();
            for part in inside.components() {
                at.push(part);
                let c = cstring(&at)?;
                if !parents.contains(&c) {
                    parents.push(c);
                }
            }
            let fd = open(
                path,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| BuildError::Io {
                what: format!("cannot open {}", path.display()),
                source: e.into(),
            })?;
            let source = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .expect("no NUL in a number");
            binds.push((source, cstring(path)?, readonly));
            fds.push(fd);
        }
        self.confined = Some(Confined {
            dir: cstring(dir)?,
            parents,
            binds,
            _fds: fds,
        });
        Ok(self)
    }
}

fn cstring(path: &Path) -> Result<CString, BuildError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| BuildError::Machinery(format!("{} contains a NUL byte", path.display())))
}

/// Starts `command` in `jail`, or, where the kernel refuses namespaces,
/// without one (remembering that, for [`super::isolation`]). `program`
/// names the command in errors.
pub(super) fn spawn(
    command: impl Fn() -> Command,
    program: &str,
    jail: &Jail,
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
    let spawn_error = |e: std::io::Error| BuildError::Spawn {
        program: program.to_owned(),
        source: e,
    };
    if !failed() {
        let hidden = jail.hidden.clone();
        let confined = jail
            .confined
            .as_ref()
            .map(|c| (c.dir.clone(), c.parents.clone(), c.binds.clone()));
        let mut cmd = command();
        // SAFETY: the closure runs in the forked child before exec and makes
        // raw system calls only, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                set_limits()?;
                enter_jail(&hidden, confined.as_ref())
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
            Err(e) => return Err(spawn_error(e)),
        }
    }
    let mut cmd = command();
    // SAFETY: as above.
    unsafe { cmd.pre_exec(set_limits) };
    cmd.spawn().map_err(spawn_error)
}

type ConfinedPlan = (CString, Vec<CString>, Vec<(CString, CString, bool)>);

/// Puts the child that will exec the compiler into the build's jail: new
/// mount, network and PID namespaces, `hidden` covered by empty read-only
/// mounts, and `confined` (a directory covered as a whole, with some of it
/// put back by binds) applied.
///
/// A new PID namespace takes effect for children, so the child forks: its
/// child, process 1 of the namespace, mounts its own `/proc` and forks once
/// more; that grandchild goes on to exec the compiler. Process 1 and the
/// child only wait, each exiting with the status of the one below (a death
/// by signal passed on as 128 + the signal), so the grader sees the
/// compiler's exit as usual. The compiler is not process 1, which the
/// kernel would shield from signals it sends itself (`abort`) and from
/// limits (`SIGXCPU`). All die with the grader (parent-death signal), and
/// process 1's death takes every process of the namespace with it.
///
/// # Safety
/// For `pre_exec` only: raw system calls on prepared data.
unsafe fn enter_jail(hidden: &[CString], confined: Option<&ConfinedPlan>) -> std::io::Result<()> {
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
    check(libc::unshare(
        libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID,
    ))?;
    make_mounts_private()?;
    for dir in hidden {
        cover(dir)?;
    }
    if let Some((dir, parents, binds)) = confined {
        confine(dir, parents, binds)?;
    }
    // The grader's signal handlers are still installed here (there is no
    // exec in this process): the SIGCHLD handler of `wait-timeout` writes to
    // the grader's self-pipe, which must not run when the compiler exits.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    let pid = raw_fork()?;
    if pid != 0 {
        // This process only waits: it must not keep the grader's other
        // pipes (the stdin of a namespace holder, say) open.
        wait_and_pass_on(pid);
    }
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
    check(libc::mount(
        c"proc".as_ptr(),
        c"/proc".as_ptr(),
        c"proc".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        std::ptr::null(),
    ))?;
    let pid = raw_fork()?;
    if pid != 0 {
        wait_and_pass_on(pid);
    }
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))
}

/// Covers `dir` with an empty tmpfs, creates `parents` in it, binds each of
/// `binds` (a source reached through `/proc/self/fd`, a target, read-only
/// or not) and makes the tmpfs read-only.
///
/// # Safety
/// For `pre_exec` only: raw system calls on prepared data.
unsafe fn confine(
    dir: &CString,
    parents: &[CString],
    binds: &[(CString, CString, bool)],
) -> std::io::Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    check(libc::mount(
        c"tmpfs".as_ptr(),
        dir.as_ptr(),
        c"tmpfs".as_ptr(),
        flags,
        c"mode=0755,size=64k".as_ptr().cast(),
    ))?;
    for parent in parents {
        if libc::mkdir(parent.as_ptr(), 0o755) != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
        }
    }
    for (source, target, readonly) in binds {
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
        if *readonly {
            check(libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
        }
    }
    check(libc::mount(
        std::ptr::null(),
        dir.as_ptr(),
        std::ptr::null(),
        libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        std::ptr::null(),
    ))
}

/// A raw fork: no atfork handlers run in this child of a threaded parent.
///
/// # Safety
/// For `pre_exec` only.
unsafe fn raw_fork() -> std::io::Result<libc::pid_t> {
    let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid as libc::pid_t)
}

/// Closes every descriptor but stdio, waits for `pid` and exits with its
/// status (a death by signal as 128 + the signal).
///
/// # Safety
/// For `pre_exec` only.
unsafe fn wait_and_pass_on(pid: libc::pid_t) -> ! {
    libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, 0);
    let mut status = 0;
    loop {
        let rc = libc::waitpid(pid, &mut status, 0);
        if rc == pid {
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
