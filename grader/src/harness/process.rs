//! A program under test: spawned in its own process group and scratch
//! directory, with piped stdin and captured stdout/stderr, and torn down
//! (SIGTERM, then SIGKILL, to the whole group) when the test ends.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::deadline::{poll_until, Deadline};
use super::identity::Identity;
use super::limits::ResourceLimit;
use super::output::CapturedStream;
use super::sandbox::JoinFds;
use super::spawn::{Child, Spawn, Stdio as SpawnStdio};

/// How to start a program.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The scratch directory it runs in (its cwd, HOME and TMPDIR).
    pub workdir: PathBuf,
    /// Extra environment on top of a minimal, fixed one.
    pub env: Vec<(String, String)>,
    pub output_limit: usize,
    /// The test's namespaces to join, if it has its own.
    pub sandbox: Option<JoinFds>,
    /// CPUs to run on (`sched_setaffinity`); `None` for any.
    pub cpus: Option<Vec<usize>>,
    /// Resource limits, set in the child before `exec`.
    pub limits: Vec<ResourceLimit>,
    /// The user to run as (the grader's own if `None`).
    pub user: Option<Identity>,
    /// `cgroup.procs` of each cgroup to join, open for writing.
    pub cgroups: Vec<std::os::fd::RawFd>,
}

impl SpawnOptions {
    /// `program` with `args` in `workdir`, nothing else special.
    pub fn new(program: &Path, args: &[String], workdir: &Path, output_limit: usize) -> Self {
        SpawnOptions {
            program: program.to_owned(),
            args: args.to_vec(),
            workdir: workdir.to_owned(),
            env: Vec::new(),
            output_limit,
            sandbox: None,
            cpus: None,
            limits: Vec::new(),
            user: None,
            cgroups: Vec::new(),
        }
    }
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitState {
    Code(i32),
    Signal(i32),
}

impl ExitState {
    fn from_status(status: ExitStatus) -> ExitState {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitState::Code(code),
            (None, Some(sig)) => ExitState::Signal(sig),
            (None, None) => ExitState::Code(-1),
        }
    }

    pub fn describe(self) -> String {
        match self {
            ExitState::Code(101) => {
                "exited with status 101 (a Rust panic: see its message on stderr)".into()
            }
            ExitState::Code(c) => format!("exited with status {c}"),
            ExitState::Signal(s) => {
                let name = crate::signals::describe(s);
                let why = match s {
                    libc::SIGSEGV => " (segmentation fault)",
                    libc::SIGABRT => {
                        " (aborted: a panic in a signal handler or a failed assertion aborts)"
                    }
                    libc::SIGPIPE => " (wrote to a pipe or socket with no reader)",
                    libc::SIGKILL => " (killed)",
                    _ => "",
                };
                format!("was killed by {name}{why}")
            }
        }
    }
}

/// A running (or finished) program under test.
pub struct Program {
    pub name: String,
    child: Child,
    pid: Pid,
    stdin: Option<ChildStdin>,
    pub stdout: Arc<CapturedStream>,
    pub stderr: Arc<CapturedStream>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitState>,
}

/// The fixed environment of every program under test: nothing of the
/// grader's environment leaks in, so runs are reproducible.
fn base_env(workdir: &Path) -> Vec<(String, String)> {
    let dir = workdir.display().to_string();
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), dir.clone()),
        ("TMPDIR".into(), dir),
        ("LANG".into(), "C.UTF-8".into()),
        ("RUST_BACKTRACE".into(), "0".into()),
    ]
}

impl Program {
    pub fn spawn(name: &str, opts: &SpawnOptions) -> std::io::Result<Program> {
        let env: Vec<(String, String)> = base_env(&opts.workdir)
            .into_iter()
            .chain(opts.env.iter().cloned())
            .collect();
        // The child's PATH (the last one set wins, as in the environment).
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(String::new(), |(_, v)| v.clone());
        let mut cmd = Spawn::new(&opts.program, std::ffi::OsStr::new(&path))?;
        for arg in &opts.args {
            cmd.arg(arg)?;
        }
        cmd.current_dir(&opts.workdir)?
            .env(env.iter().map(|(k, v)| (k, v)))?
            .stdio(SpawnStdio::Piped, SpawnStdio::Piped, SpawnStdio::Piped)
            // Its own process group: signals and the final kill reach every
            // process it forks, and terminal Ctrl-C does not reach it.
            .process_group();
        let sandbox = opts.sandbox;
        let cwd = std::ffi::CString::new(opts.workdir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("working directory contains a NUL byte"))?;
        let limits = opts.limits.clone();
        let user = opts.user;
        let cgroups = opts.cgroups.clone();
        // SAFETY: a cpu_set_t is plain bits; zeroed is the empty set.
        let mut cpu_set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let pin = opts.cpus.as_ref().map(|cpus| {
            for &cpu in cpus {
                // SAFETY: CPU_SET on an owned set, cpu < CPU_SETSIZE checked.
                if cpu < libc::CPU_SETSIZE as usize {
                    unsafe { libc::CPU_SET(cpu, &mut cpu_set) };
                }
            }
        });
        // SAFETY: the closure runs in the child before exec, on the grader's
        // memory (see `spawn`), and only makes raw system calls (prctl,
        // sigprocmask, signal, setns, chdir, setrlimit, sched_setaffinity,
        // setgroups, setresgid, setresuid) on data prepared before it.
        let setup = || -> std::io::Result<()> {
            unsafe {
                if let Some(fds) = sandbox {
                    super::sandbox::join_in_child(fds, &cwd)?;
                }
                for &fd in &cgroups {
                    super::cgroup::join_in_child(fd)?;
                }
                for limit in &limits {
                    let rl = libc::rlimit {
                        rlim_cur: limit.value,
                        rlim_max: limit.value,
                    };
                    if libc::setrlimit(limit.resource, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if pin.is_some()
                    && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpu_set)
                        != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Namespaces and limits first: they need root, which
                // this gives up for good.
                if let Some(user) = user {
                    user.become_in_child()?;
                }
                // Die with the grader: a killed grader must not leave
                // student programs running. (After the change of user,
                // which clears the parent-death signal.)
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Start from a clean signal state whatever the grader's threads did.
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                Ok(())
            }
        };
        // SAFETY: as above.
        let mut child = unsafe { cmd.spawn(&setup)? };
        let pid = Pid::from_raw(child.id() as i32);
        let (stdout, h1) = CapturedStream::spawn(
            child.stdout.take().expect("piped stdout"),
            opts.output_limit,
        );
        let (stderr, h2) = CapturedStream::spawn(
            child.stderr.take().expect("piped stderr"),
            opts.output_limit,
        );
        Ok(Program {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            pid,
            stdout,
            stderr,
            readers: vec![h1, h2],
            exit: None,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The inode of the pipe on the program's stdin while the grader holds
    /// its end (none once closed): a read of it waits for the grader alone.
    pub fn stdin_pipe(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let fd = self.stdin.as_ref()?.as_raw_fd();
        // SAFETY: fstat fills a plain struct from a descriptor we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
    }

    /// Writes `line` and a newline to stdin.
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin already closed")
        })?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin.write_all(&bytes)?;
        stdin.flush()
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal to the program's main process.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.exit.is_some() {
            return Err(Errno::ESRCH);
        }
        nix::sys::signal::kill(self.pid, signal)
    }

    /// The exit state, if it has exited (does not block).
    pub fn try_exit(&mut self) -> Option<ExitState> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(ExitState::from_status(status));
            }
        }
        self.exit
    }

    /// Waits for the program to exit, until `deadline`.
    pub fn wait_exit(&mut self, deadline: Deadline) -> Option<ExitState> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.wait_timeout(deadline.remaining()) {
                self.exit = Some(ExitState::from_status(status));
            }
        }
        self.exit
    }

    /// Ends the program and everything in its process group: SIGTERM, a
    /// grace period for the group to empty, then SIGKILL. Reaps the main
    /// process and any group member the grader inherited as subreaper, and
    /// joins the capture threads. Returns how the main process ended.
    pub fn terminate(&mut self, grace: Duration) -> ExitState {
        self.terminate_unless_settled(grace, &mut || false)
    }

    /// [`Program::terminate`], cutting the grace period short once
    /// `settled` says that nothing will act on the SIGTERM any more (every
    /// process left is stuck for good): the SIGKILL then comes at once, as it
    /// would at the end of the grace.
    pub fn terminate_unless_settled(
        &mut self,
        grace: Duration,
        settled: &mut dyn FnMut() -> bool,
    ) -> ExitState {
        let pgid = self.pid;
        // A stream a test stopped reading must drain again, or its reader
        // would never see end of file.
        self.stdout.set_paused(false);
        self.stderr.set_paused(false);
        let _ = killpg(pgid, Signal::SIGTERM);
        // SIGSTOPped members would never act on SIGTERM.
        let _ = killpg(pgid, Signal::SIGCONT);
        // `Some(true)`: the group emptied; `Some(false)`: it settled.
        let ended = poll_until(Deadline::after(grace), || {
            // Reap group members only once std has reaped the main process,
            // so that its exit status is not stolen.
            if self.try_exit().is_some() {
                reap_group(pgid);
                if group_is_empty(pgid) {
                    return Some(true);
                }
            }
            settled().then_some(false)
        });
        if ended != Some(true) {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let state = match self.wait_exit(Deadline::after(Duration::from_secs(5))) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().ok();
                status.map_or(ExitState::Signal(libc::SIGKILL), ExitState::from_status)
            }
        };
        // Killed members become zombies until reaped; wait for the group to
        // be gone entirely, reaping the ones that were reparented to us.
        poll_until(Deadline::after(Duration::from_secs(5)), || {
            reap_group(pgid);
            group_is_empty(pgid).then_some(())
        });
        self.close_stdin();
        // A grandchild that escaped the group may still hold the pipes open;
        // the capture threads then finish when it dies, and are left to do so.
        for reader in self.readers.drain(..) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        state
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if self.exit.is_none() || !group_is_empty(self.pid) {
            self.terminate(Duration::from_millis(200));
        }
    }
}

/// Whether no process (zombies included) remains in the group.
pub fn group_is_empty(pgid: Pid) -> bool {
    matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Reaps exited members of the group that are the grader's children (the
/// grader is a child subreaper, so orphans of the group come to it).
fn reap_group(pgid: Pid) {
    while let Ok(status) = waitpid(Pid::from_raw(-pgid.as_raw()), Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}
