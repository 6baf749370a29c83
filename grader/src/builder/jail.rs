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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};

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

#[derive(Clone)]
struct Confined {
    /// The covered directory.
    dir: CString,
    /// Directories to create in the empty mount, outermost first, down to
    /// every directory of `keep`.
    parents: Vec<CString>,
    /// What is put back, each at its own place, and whether read-only.
    keep: Vec<(CString, bool)>,
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

    /// Also covers each of `dirs` (those that exist) with an empty mount.
    pub(super) fn also_hiding(mut self, dirs: &[std::path::PathBuf]) -> Jail {
        self.hidden.extend(
            dirs.iter()
                .filter_map(|p| fs::canonicalize(p).ok())
                .filter_map(|p| cstring(&p).ok()),
        );
        self
    }

    /// Also covers `dir` (canonical) as a whole and puts back each of
    /// `keep` (canonical, under `dir`), read-only where asked.
    pub(super) fn confine_to(
        mut self,
        dir: &Path,
        keep: &[(&Path, bool)],
    ) -> Result<Jail, BuildError> {
        if keep.len() > MAX_KEPT {
            return Err(BuildError::Machinery(format!(
                "a jail keeps at most {MAX_KEPT} directories"
            )));
        }
        let mut parents: Vec<CString> = Vec::new();
        let mut kept = Vec::new();
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
            kept.push((cstring(path)?, readonly));
        }
        self.confined = Some(Confined {
            dir: cstring(dir)?,
            parents,
            keep: kept,
        });
        Ok(self)
    }
}

/// Most directories a jail puts back (the child keeps their descriptors in
/// an array: no allocation after the fork).
const MAX_KEPT: usize = 4;

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
        let confined = jail.confined.clone();
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
unsafe fn enter_jail(hidden: &[CString], confined: Option<&Confined>) -> std::io::Result<()> {
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
    check(libc::unshare(
        libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID,
    ))?;
    make_mounts_private()?;
    for dir in hidden {
        cover(dir)?;
    }
    if let Some(confined) = confined {
        confine(confined)?;
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

/// Covers the directory with an empty tmpfs, creates the parents in it,
/// puts back each directory to keep (a bind of itself, through a
/// descriptor opened before the cover, here in the new mount namespace:
/// a bind's source must be a mount of the caller's namespace) and makes
/// the tmpfs read-only.
///
/// # Safety
/// For `pre_exec` only: raw system calls on prepared data.
unsafe fn confine(confined: &Confined) -> std::io::Result<()> {
    let mut fds = [-1; MAX_KEPT];
    for (fd, (path, _)) in fds.iter_mut().zip(&confined.keep) {
        *fd = libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if *fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    check(libc::mount(
        c"tmpfs".as_ptr(),
        confined.dir.as_ptr(),
        c"tmpfs".as_ptr(),
        flags,
        c"mode=0755,size=64k".as_ptr().cast(),
    ))?;
    for parent in &confined.parents {
        if libc::mkdir(parent.as_ptr(), 0o755) != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
        }
    }
    for (&fd, (target, readonly)) in fds.iter().zip(&confined.keep) {
        let source = FdPath::new(fd);
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
        libc::close(fd);
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
        confined.dir.as_ptr(),
        std::ptr::null(),
        libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        std::ptr::null(),
    ))
}

/// `/proc/self/fd/N` as a C string, made without allocating (for a forked
/// child).
struct FdPath([u8; 32]);

impl FdPath {
    fn new(fd: libc::c_int) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 10];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            buf[prefix.len() + i] = *d;
        }
        FdPath(buf)
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.0.as_ptr().cast()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_paths_are_spelled_out() {
        let path = |fd| {
            let p = FdPath::new(fd);
            // SAFETY: FdPath is NUL-terminated (its buffer is zeroed).
            unsafe { std::ffi::CStr::from_ptr(p.as_ptr()) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(path(0), "/proc/self/fd/0");
        assert_eq!(path(7), "/proc/self/fd/7");
        assert_eq!(path(1234567890), "/proc/self/fd/1234567890");
    }
}
