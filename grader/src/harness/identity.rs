//! A user of its own for each test round, when the grader runs as root.
//!
//! Root is exempt from `RLIMIT_NPROC`, may signal any process, may read
//! any file and `/proc/PID/root` of any process: student code must never
//! run as root. A fresh, unprivileged uid per round (no name in
//! `/etc/passwd` is needed: the kernel only counts numbers) gives three
//! things at once:
//!
//! - the process limit counts exactly this round's processes and threads,
//!   so a fork bomb stops at the round's budget and parallel rounds do not
//!   share one budget;
//! - the round's processes can signal each other but not the grader, other
//!   rounds or the rest of the machine, and cannot read root's files or
//!   `/proc` entries;
//! - "every process of this round" is "every process of this uid", even a
//!   double-forked, `setsid` daemon that left every process group: the
//!   round ends with [`Identity::kill_all`].

use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::deadline::{poll_until, Deadline};
use super::procfs;

/// The uid range the grader hands out: above any system or desktop user
/// (and above the usual subordinate-uid ranges), below `i32::MAX` so that
/// tools printing uids as signed numbers show them right.
const FIRST_UID: u32 = 0x7000_0000;

/// Rounds started by this grader process, for uids unique within it.
static ROUNDS: AtomicU32 = AtomicU32::new(0);

/// An unprivileged uid and gid that the round's processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    /// A uid of the round's own, when the grader is root (and
    /// `CARGO_GRADE_USER` is not `keep`); `None` otherwise: a non-root
    /// grader cannot change users, and student code then runs as the
    /// grader's user.
    pub fn for_round() -> Option<Identity> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0
            || std::env::var_os("CARGO_GRADE_USER").is_some_and(|v| v == "keep")
        {
            return None;
        }
        // Unique among live graders (their pids differ) and among this
        // grader's recent rounds; a round's uid is free again once the round
        // has killed every process of it.
        let pid = std::process::id() & 0x003f_ffff;
        let n = ROUNDS.fetch_add(1, Ordering::Relaxed) & 0x3f;
        let uid = FIRST_UID + (pid << 6 | n);
        Some(Identity { uid, gid: uid })
    }

    /// Becomes this user: no supplementary groups, then gid, then uid (real,
    /// effective and saved alike, so nothing can be regained).
    ///
    /// # Safety
    /// For a forked child before `exec` (or `_exit`): raw system calls only.
    pub unsafe fn become_in_child(self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(self.gid, self.gid, self.gid))?;
        check(libc::setresuid(self.uid, self.uid, self.uid))
    }

    /// Live processes of this user (not zombies), with their process groups.
    pub fn processes(self) -> Vec<(Pid, Pid)> {
        procfs::processes_of_user(self.uid)
            .into_iter()
            .filter(|&(_, _, state)| state != 'Z')
            .map(|(pid, pgid, _)| (pid, pgid))
            .collect()
    }

    /// Kills every process of this user and waits (up to `within`) until
    /// none is left, reaping the ones that were re-parented to the grader.
    /// Returns how many were alive at the start.
    ///
    /// A child of the grader becomes the user and calls `kill(-1, SIGKILL)`,
    /// which the kernel applies to every process that user may signal,
    /// exactly the round's processes, in one pass, with no pid-reuse race.
    /// A process forked meanwhile is caught by the next pass.
    pub fn kill_all(self, within: std::time::Duration) -> usize {
        let first = self.processes();
        if first.is_empty() {
            return 0;
        }
        let deadline = Deadline::after(within);
        poll_until(deadline, || {
            self.kill_pass();
            self.processes().is_empty().then_some(())
        });
        // The dead whose parents died too were re-parented to the grader (a
        // subreaper): reap them, or a long batch collects zombies.
        for (pid, _, state) in procfs::processes_of_user(self.uid) {
            if state == 'Z' {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
        first.len()
    }

    fn kill_pass(self) {
        // SAFETY: the child makes raw system calls only (setgroups, setresgid,
        // setresuid, kill, _exit), all async-signal-safe.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => unsafe {
                let code = match self.become_in_child() {
                    Ok(()) if libc::kill(-1, libc::SIGKILL) == 0 => 0,
                    _ => 1,
                };
                libc::_exit(code);
            },
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
            }
            Err(_) => {
                // No fork (the machine is out of processes): one by one.
                for (pid, _) in self.processes() {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}
