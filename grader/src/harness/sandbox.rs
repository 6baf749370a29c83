//! Per-test isolation of IPC: where the kernel allows it, every test runs in
//! a fresh IPC namespace (its own System V queues, semaphores and segments)
//! and a fresh mount namespace with a private tmpfs on `/dev/shm` (its own
//! POSIX shared memory and named semaphores). Parallel grading runs then
//! cannot see or break each other's objects, nothing leaks to the host, and
//! whatever a test leaves behind dies with it.
//!
//! The namespaces are held open by a small *holder* process (the grader's
//! own binary, `cargo-grade peer hold`, which waits for its stdin to close).
//! Every process of the test joins them with `setns` before `exec`, so a
//! submission and the grader's peers see the same objects. The grader
//! itself stays in the host namespaces: it reads the test's `/dev/shm`
//! through `/proc/HOLDER/root/dev/shm` and its System V objects from a
//! short-lived thread that joins the IPC namespace.
//!
//! Where namespaces cannot be created (no `CAP_SYS_ADMIN`, say), the test
//! runs in the host namespaces and isolation rests on names alone: every
//! name and key a spec hands to a program contains a token unique to the run
//! (`{run}`, `{key}`). The report says which isolation was used.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Which isolation a test ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Fresh IPC and mount namespaces with a private `/dev/shm`.
    Namespaces,
    /// The host's namespaces; names unique to the run keep tests apart.
    UniqueNames,
}

impl Isolation {
    pub fn describe(self) -> &'static str {
        match self {
            Isolation::Namespaces => {
                "private IPC and mount namespaces per test (own System V IPC, own /dev/shm)"
            }
            Isolation::UniqueNames => {
                "host namespaces (namespaces unavailable): IPC names and keys unique to each run"
            }
        }
    }
}

/// Set once namespaces have failed, so later tests do not try again.
static NAMESPACES_FAILED: AtomicBool = AtomicBool::new(false);

/// The file descriptors a child needs to join a sandbox (`setns`).
#[derive(Debug, Clone, Copy)]
pub struct JoinFds {
    pub ipc: RawFd,
    pub mnt: RawFd,
}

/// One test's sandbox.
pub struct Sandbox {
    isolation: Isolation,
    /// Why namespaces were not used, when they were not.
    fallback_reason: Option<String>,
    holder: Option<Child>,
    ipc: Option<OwnedFd>,
    mnt: Option<OwnedFd>,
    dev_shm: PathBuf,
}

impl Sandbox {
    /// The host's namespaces, no holder.
    pub fn host() -> Sandbox {
        Sandbox {
            isolation: Isolation::UniqueNames,
            fallback_reason: None,
            holder: None,
            ipc: None,
            mnt: None,
            dev_shm: PathBuf::from("/dev/shm"),
        }
    }

    /// A fresh sandbox: namespaces if they can be made (and
    /// `CARGO_GRADE_ISOLATION` is not `none`), else the host.
    /// `helper` is the grader binary, which runs the holder.
    pub fn new(helper: &Path) -> Sandbox {
        if std::env::var_os("CARGO_GRADE_ISOLATION").is_some_and(|v| v == "none") {
            let mut s = Sandbox::host();
            s.fallback_reason = Some("CARGO_GRADE_ISOLATION=none".into());
            return s;
        }
        if NAMESPACES_FAILED.load(Ordering::Relaxed) {
            let mut s = Sandbox::host();
            s.fallback_reason = Some("namespaces failed earlier in this run".into());
            return s;
        }
        match Sandbox::with_namespaces(helper) {
            Ok(s) => s,
            Err(e) => {
                NAMESPACES_FAILED.store(true, Ordering::Relaxed);
                let mut s = Sandbox::host();
                s.fallback_reason = Some(e);
                s
            }
        }
    }

    fn with_namespaces(helper: &Path) -> Result<Sandbox, String> {
        let mut cmd = Command::new(helper);
        cmd.args(["peer", "hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: runs in the forked child before exec; it makes raw system
        // calls (prctl, unshare, mount) with static C strings only.
        unsafe {
            cmd.pre_exec(|| {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                check(libc::unshare(libc::CLONE_NEWIPC | libc::CLONE_NEWNS))?;
                // Mounts made here must not propagate back to the host.
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev/shm".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777,size=64m".as_ptr().cast(),
                ))?;
                Ok(())
            });
        }
        let mut holder = cmd
            .spawn()
            .map_err(|e| format!("cannot create IPC and mount namespaces: {e}"))?;
        // The holder says `ready` once it runs (after exec), so its
        // namespaces are in place when the grader opens them.
        let ready = holder.stdout.take().map(|out| {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).map(|_| line)
        });
        if !matches!(ready, Some(Ok(ref l)) if l.trim() == "ready") {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err("the namespace holder did not start".into());
        }
        let pid = holder.id();
        let open = |ns: &str| -> Result<OwnedFd, String> {
            File::open(format!("/proc/{pid}/ns/{ns}"))
                .map(OwnedFd::from)
                .map_err(|e| format!("cannot open /proc/{pid}/ns/{ns}: {e}"))
        };
        let (ipc, mnt) = match (open("ipc"), open("mnt")) {
            (Ok(i), Ok(m)) => (i, m),
            (Err(e), _) | (_, Err(e)) => {
                let _ = holder.kill();
                let _ = holder.wait();
                return Err(e);
            }
        };
        Ok(Sandbox {
            isolation: Isolation::Namespaces,
            fallback_reason: None,
            dev_shm: PathBuf::from(format!("/proc/{pid}/root/dev/shm")),
            holder: Some(holder),
            ipc: Some(ipc),
            mnt: Some(mnt),
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Why namespaces are not in use, if they are not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// What children must join, if anything.
    pub fn join_fds(&self) -> Option<JoinFds> {
        match (&self.ipc, &self.mnt) {
            (Some(ipc), Some(mnt)) => Some(JoinFds {
                ipc: ipc.as_raw_fd(),
                mnt: mnt.as_raw_fd(),
            }),
            _ => None,
        }
    }

    /// The test's `/dev/shm`, as the grader can reach it.
    pub fn dev_shm(&self) -> &Path {
        &self.dev_shm
    }

    /// Runs `f` in the test's IPC namespace (on a thread of its own, which
    /// joins the namespace; the grader's other threads stay where they are).
    /// Fails only if the thread cannot join it.
    pub fn in_ipc_namespace<T: Send>(
        &self,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, nix::errno::Errno> {
        let Some(ipc) = &self.ipc else {
            return Ok(f());
        };
        let fd = ipc.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd; CLONE_NEWIPC moves
                // only the calling thread, which ends with this scope.
                if unsafe { libc::setns(fd, libc::CLONE_NEWIPC) } != 0 {
                    return Err(nix::errno::Errno::last());
                }
                Ok(f())
            })
            .join()
            .unwrap_or(Err(nix::errno::Errno::EIO))
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut holder) = self.holder.take() {
            drop(holder.stdin.take());
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// Joins the sandbox from a forked child before `exec`, then returns to
/// `cwd` (joining a mount namespace moves the caller to its root).
///
/// # Safety
/// Only for `pre_exec`: makes raw, async-signal-safe system calls.
pub unsafe fn join_in_child(fds: JoinFds, cwd: &std::ffi::CStr) -> std::io::Result<()> {
    for (fd, kind) in [(fds.ipc, libc::CLONE_NEWIPC), (fds.mnt, libc::CLONE_NEWNS)] {
        if libc::setns(fd, kind) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if libc::chdir(cwd.as_ptr()) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The holder's side (`cargo-grade peer hold`): announce, then wait for
/// stdin to close (or the grader to die: PDEATHSIG).
pub fn hold() -> i32 {
    println!("ready");
    let mut sink = Vec::new();
    match std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink) {
        Ok(_) => 0,
        Err(e) if e.kind() == ErrorKind::Interrupted => 0,
        Err(_) => 1,
    }
}
