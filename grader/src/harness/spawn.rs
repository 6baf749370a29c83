//! Starting a process without copying the grader.
//!
//! `std::process::Command` forks whenever it has a `pre_exec` closure, and
//! every process a test starts has one (namespaces, cgroups, limits, the
//! round's user). A fork copies the grader's page tables, the child's
//! `execve` then tears the copy down again, and every page the grader
//! writes afterwards takes a copy-on-write fault: measured (perf) over a
//! 40-submission task3 batch, about a third of the grader process's CPU,
//! 7% of the whole batch's. (The build's jail still forks through std: one
//! process per build, whose child forks again for a PID namespace.)
//!
//! `posix_spawn` itself (`nix::spawn`) takes no code to run in the child,
//! and these need some (joining namespaces and cgroups, limits, the change
//! of user). So the grader starts them the way `posix_spawn` does inside:
//! `clone(CLONE_VM | CLONE_VFORK)`, a child that borrows the grader's memory
//! on a stack of its own while the spawning thread waits for its `execve`.
//! Nothing is copied. The price is what the child may do before `execve`:
//! it shares every byte with the grader, so it makes raw system calls on
//! data prepared before the clone and nothing else (no allocation, no lock,
//! no write to memory; errors are returned, never panicked), and every
//! signal handler of the grader is reset first, so that no handler runs on
//! the grader's memory in it. The set-up closures passed here already kept
//! those rules for the forked child (a fork of a threaded program is held
//! to async-signal-safe calls); the change of user uses raw system calls
//! ([`super::identity::Identity::become_in_child`]), since glibc's wrappers
//! would try to apply it to the grader's threads too.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// What a standard stream of the child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// The grader's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe to the grader ([`Child::stdin`] and the others).
    Piped,
}

/// A process to start: a program by path (no `PATH` search), its
/// arguments, environment, directory and standard streams.
#[derive(Debug)]
pub struct Spawn {
    program: CString,
    argv: Vec<CString>,
    /// `None`: the grader's own environment.
    env: Option<Vec<CString>>,
    cwd: Option<CString>,
    stdio: [Stdio; 3],
    process_group: bool,
}

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

impl Spawn {
    /// `program` by path, or by name looked up in `path` (a `PATH`: the
    /// child's, not the grader's). Its `argv[0]` is `program` as given.
    pub fn new(program: &Path, path: &OsStr) -> io::Result<Spawn> {
        let found = find_program(program, path)?;
        Ok(Spawn {
            program: cstring(found.as_os_str().as_bytes(), "a program's path")?,
            argv: vec![cstring(program.as_os_str().as_bytes(), "a program's name")?],
            env: None,
            cwd: None,
            stdio: [Stdio::Inherit; 3],
            process_group: false,
        })
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> io::Result<&mut Spawn> {
        self.argv
            .push(cstring(arg.as_ref().as_bytes(), "an argument")?);
        Ok(self)
    }

    /// The whole environment (nothing of the grader's). A variable given
    /// twice has its last value, as with `Command::envs`.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        &mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> io::Result<&mut Spawn> {
        let vars: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = vars
            .into_iter()
            .map(|(k, v)| {
                (
                    k.as_ref().as_bytes().to_vec(),
                    v.as_ref().as_bytes().to_vec(),
                )
            })
            .collect();
        let mut env = Vec::new();
        for (mut var, value) in vars {
            var.push(b'=');
            var.extend_from_slice(&value);
            env.push(cstring(&var, "an environment variable")?);
        }
        self.env = Some(env);
        Ok(self)
    }

    pub fn current_dir(&mut self, dir: &Path) -> io::Result<&mut Spawn> {
        self.cwd = Some(cstring(dir.as_os_str().as_bytes(), "a working directory")?);
        Ok(self)
    }

    pub fn stdio(&mut self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> &mut Spawn {
        self.stdio = [stdin, stdout, stderr];
        self
    }

    /// A process group of its own, led by the child.
    pub fn process_group(&mut self) -> &mut Spawn {
        self.process_group = true;
        self
    }

    /// Starts the process; `setup` runs in the child just before `execve`.
    /// Returns once the child has called `execve` (or failed before it).
    ///
    /// # Safety
    /// `setup` runs in a child that shares the grader's memory: it may only
    /// make raw system calls on data prepared beforehand, must not
    /// allocate, take a lock, write to memory or panic, and reports a
    /// failure as an `io::Error` of an OS error code.
    pub unsafe fn spawn(&self, setup: &dyn Fn() -> io::Result<()>) -> io::Result<Child> {
        let mut ends = Ends::default();
        let mut child_fds = [-1 as RawFd; 3];
        let null = if self.stdio.contains(&Stdio::Null) {
            Some(OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")?,
            ))
        } else {
            None
        };
        let mut keep: Vec<OwnedFd> = Vec::new();
        for (i, how) in self.stdio.iter().enumerate() {
            match how {
                Stdio::Inherit => {}
                Stdio::Null => child_fds[i] = null.as_ref().map_or(-1, AsRawFd::as_raw_fd),
                Stdio::Piped => {
                    let (read, write) = pipe()?;
                    let (ours, theirs) = if i == 0 { (write, read) } else { (read, write) };
                    child_fds[i] = theirs.as_raw_fd();
                    keep.push(theirs);
                    ends.set(i, ours);
                }
            }
        }
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let envp: Option<Vec<*const libc::c_char>> = self.env.as_ref().map(|env| {
            env.iter()
                .map(|v| v.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        });
        let args = ChildArgs {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ref().map_or(std::ptr::null(), |e| e.as_ptr()),
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            fds: child_fds,
            process_group: self.process_group,
            setup,
            error: AtomicI32::new(0),
        };
        let pid = clone_vfork(child_main, std::ptr::from_ref(&args).cast_mut().cast());
        drop(keep);
        let pid = pid?;
        let error = args.error.load(Ordering::SeqCst);
        if error != 0 {
            let _ = wait_for(pid);
            return Err(io::Error::from_raw_os_error(error));
        }
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        Ok(Child {
            pid,
            pidfd: (pidfd >= 0).then(|| OwnedFd::from_raw_fd(pidfd as RawFd)),
            status: None,
            stdin: ends.stdin.map(ChildStdin::from),
            stdout: ends.stdout.map(ChildStdout::from),
            stderr: ends.stderr.map(ChildStderr::from),
        })
    }
}

/// `program` itself if it is a path, else the first executable file of
/// that name in a directory of `path`.
fn find_program(program: &Path, path: &OsStr) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_owned());
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no program {} in {}",
                    program.display(),
                    path.to_string_lossy()
                ),
            )
        })
}

#[derive(Default)]
struct Ends {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

impl Ends {
    fn set(&mut self, i: usize, fd: OwnedFd) {
        match i {
            0 => self.stdin = Some(fd),
            1 => self.stdout = Some(fd),
            _ => self.stderr = Some(fd),
        }
    }
}

/// A close-on-exec pipe whose ends are above the standard streams (so that
/// putting one end in place never overwrites another).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which are then owned here.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read, write] = fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicates a descriptor owned here into a new one, owned here.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The child's own stack, with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
}

/// Enough for the set-up closures (unoptimised builds have large frames).
const STACK_BYTES: usize = 256 * 1024;

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: a fresh anonymous mapping, owned by the Stack.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, 16-byte aligned.
        unsafe { self.base.cast::<u8>().add(STACK_BYTES).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used (the child has
        // exec'd or exited).
        unsafe { libc::munmap(self.base, STACK_BYTES) };
    }
}

struct ChildArgs<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [RawFd; 3],
    process_group: bool,
    setup: &'a dyn Fn() -> io::Result<()>,
    /// The errno of the step that failed; 0 while none has.
    error: AtomicI32,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// The kernel's `struct sigaction` (for `rt_sigaction`, which, unlike
/// glibc's `sigaction`, reaches every signal, glibc's own among them).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Puts every handled signal back to its default, and SIGPIPE too (the Rust
/// runtime ignores it): no handler of the grader's may run in a child on
/// its memory.
///
/// # Safety
/// Raw system calls only; for a child started by this module.
unsafe fn reset_signal_handlers() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old: KernelSigaction = std::mem::zeroed();
        let none = std::ptr::null::<KernelSigaction>();
        if libc::syscall(libc::SYS_rt_sigaction, sig, none, &mut old, 8) != 0 {
            continue;
        }
        let handled = old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN;
        if handled || sig == libc::SIGPIPE {
            let default: KernelSigaction = std::mem::zeroed();
            let old = std::ptr::null_mut::<KernelSigaction>();
            libc::syscall(libc::SYS_rt_sigaction, sig, &default, old, 8);
        }
    }
}

/// Runs `work` in a child process on the grader's memory, as [`Spawn`]
/// runs its set-up, and returns the child's exit status (`work`'s value).
///
/// # Safety
/// As the set-up of [`Spawn::spawn`]: raw system calls only, no
/// allocation, no lock, no write to memory, no panic.
pub unsafe fn run_in_child(work: &dyn Fn() -> i32) -> io::Result<i32> {
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the closure the spawning thread keeps alive
        // until this child has exited (CLONE_VFORK); raw system calls only.
        unsafe {
            reset_signal_handlers();
            let work = &*arg.cast::<&dyn Fn() -> i32>();
            libc::_exit(work())
        }
    }
    let pid = clone_vfork(child, std::ptr::from_ref(&work).cast_mut().cast())?;
    Ok(wait_for(pid)?.code().unwrap_or(-1))
}

/// Starts `entry(arg)` in a child on the grader's memory and a stack of its
/// own, and returns its pid once it has exec'd or exited (CLONE_VFORK).
/// Every signal is blocked in the calling thread meanwhile: the child
/// borrows this thread's memory, and resets the handlers before it
/// unblocks any.
///
/// # Safety
/// `entry` keeps this module's rules for a child; `arg` outlives the call.
unsafe fn clone_vfork(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> io::Result<libc::pid_t> {
    let stack = Stack::new()?;
    let mut all: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    let pid = libc::clone(
        entry,
        stack.top(),
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        arg,
    );
    let clone_error = io::Error::last_os_error();
    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// Waits for (and reaps) the child `pid`, through interruptions.
fn wait_for(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: waitpid on our own child, into a plain int.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(ExitStatus::from_raw(status))
}

/// The child, before `execve`: on the grader's memory, raw system calls
/// only. A failure stores its errno for the grader and exits.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the spawning thread keeps alive until
    // this child has exec'd or exited (CLONE_VFORK).
    let args = unsafe { &*arg.cast::<ChildArgs>() };
    let fail = |error: i32| -> libc::c_int {
        args.error.store(
            if error == 0 { libc::EINVAL } else { error },
            Ordering::SeqCst,
        );
        // SAFETY: ends the child without running anything of the grader's.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: raw system calls on the prepared, borrowed data.
    unsafe {
        reset_signal_handlers();
        for (target, &fd) in args.fds.iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, target as RawFd) < 0 {
                return fail(errno());
            }
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            return fail(errno());
        }
        if args.process_group && libc::setpgid(0, 0) != 0 {
            return fail(errno());
        }
        if let Err(e) = (args.setup)() {
            return fail(e.raw_os_error().unwrap_or(libc::EINVAL));
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let old = std::ptr::null_mut::<libc::sigset_t>();
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &empty, old, 8);
        if args.envp.is_null() {
            libc::execv(args.program, args.argv);
        } else {
            libc::execve(args.program, args.argv, args.envp);
        }
        fail(errno())
    }
}

/// A started process: its pid, a pidfd to wait on where the kernel has
/// them, and the grader's ends of its piped streams.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Reaps the child if it has exited (does not block).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let mut status = 0;
            // SAFETY: waitpid on our own child, into a plain int.
            match unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } {
                0 => {}
                pid if pid == self.pid => self.status = Some(ExitStatus::from_raw(status)),
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(self.status)
    }

    /// Waits for the child to exit, for at most `within`.
    pub fn wait_timeout(&mut self, within: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = super::deadline::Deadline::after(within);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.remaining();
            if left.is_zero() {
                return Ok(None);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut poll = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                    // SAFETY: poll on one descriptor we own.
                    unsafe { libc::poll(&mut poll, 1, ms) };
                }
                // No pidfds (a kernel before 5.3): the child's exit is
                // polled for, until the deadline.
                None => {
                    super::deadline::poll_until(deadline, || self.try_wait().ok().flatten());
                }
            }
        }
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = wait_for(self.pid)?;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGKILL, unless it has been reaped already.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: a signal to our own unreaped child (its pid cannot have
        // been reused).
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn read_all(stream: Option<impl Read>) -> String {
        let mut text = String::new();
        stream.unwrap().read_to_string(&mut text).unwrap();
        text
    }

    fn sh(script: &str) -> Spawn {
        let mut s = Spawn::new(Path::new("sh"), OsStr::new("/nonexistent:/bin")).unwrap();
        s.arg("-c").unwrap().arg(script).unwrap();
        s
    }

    #[test]
    fn pipes_carry_stdin_to_stdout_and_the_exit_status_comes_back() {
        let mut s = sh("read line; echo \"got $line\"; echo oops >&2; exit 3");
        s.stdio(Stdio::Piped, Stdio::Piped, Stdio::Piped);
        let mut child = unsafe { s.spawn(&|| Ok(())) }.unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let out = read_all(child.stdout.take());
        let err = read_all(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(
            (out.as_str(), err.as_str(), status.code()),
            ("got hello\n", "oops\n", Some(3))
        );
    }

    #[test]
    fn the_environment_directory_and_process_group_are_the_ones_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sh("echo \"$ONLY $HOME $(pwd) $$ $(cut -d' ' -f5 /proc/$$/stat)\"");
        s.env([
            ("ONLY", "not this"),
            ("PATH", "/usr/bin:/bin"),
            ("ONLY", "this"),
        ])
        .unwrap()
        .current_dir(dir.path())
        .unwrap()
        .process_group()
        .stdio(Stdio::Null, Stdio::Piped, Stdio::Inherit);
        let mut child = unsafe { s.spawn(&|| Ok(())) }.unwrap();
        let out = read_all(child.stdout.take());
        child.wait().unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(words[..2], ["this", &cwd.display().to_string()]);
        assert_eq!(words[2], words[3], "leads a group of its own: {out}");
    }

    #[test]
    fn a_failing_setup_is_the_spawns_error_and_leaves_no_child() {
        let s = sh("exit 0");
        let err =
            unsafe { s.spawn(&|| Err(io::Error::from_raw_os_error(libc::EPERM))) }.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn work_in_a_child_returns_its_status_and_runs_in_another_process() {
        let parent = std::process::id() as i32;
        let code = unsafe { run_in_child(&|| i32::from(libc::getpid() != parent) * 7) }.unwrap();
        assert_eq!(code, 7);
    }

    #[test]
    fn a_missing_program_is_an_error_of_its_own() {
        let s = Spawn::new(Path::new("/nonexistent/program"), OsStr::new("/bin")).unwrap();
        let err = unsafe { s.spawn(&|| Ok(())) }.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = Spawn::new(Path::new("sh"), OsStr::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::NotFound,
            "looked up in the PATH given only"
        );
    }

    #[test]
    fn sigpipe_is_the_default_again_and_wait_timeout_returns_at_its_deadline() {
        // The grader (the Rust runtime) ignores SIGPIPE; the child must not
        // (a shell cannot undo an ignored SIGPIPE it started with). It
        // writes once its stdin ends, after its stdout's reader is gone.
        let mut s = sh("read _; echo x");
        s.stdio(Stdio::Piped, Stdio::Piped, Stdio::Null);
        let mut child = unsafe { s.spawn(&|| Ok(())) }.unwrap();
        drop(child.stdout.take());
        drop(child.stdin.take());
        let status = child
            .wait_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGPIPE));
        let mut s = sh("exec sleep 30");
        s.stdio(Stdio::Null, Stdio::Null, Stdio::Null);
        let mut child = unsafe { s.spawn(&|| Ok(())) }.unwrap();
        assert_eq!(child.wait_timeout(Duration::from_millis(50)).unwrap(), None);
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
