//! Proving that a round is stuck for good, so that a wait for output or an
//! exit can stop at once instead of at its deadline.
//!
//! A deadlocked submission (a worker that leaves holding the semaphore, a
//! coordinator that waits for a child that waits for it) never answers: the
//! grader used to learn that only when the step's deadline passed, seconds
//! per test, and then said no more than "still running (stuck or
//! deadlocked?)". Here the grader proves it, in a tenth of a second, and says
//! where every process waits.
//!
//! The proof, while the grader itself is passive (waiting for a line or an
//! exit: it sends nothing, signals nothing, and no background fault runs):
//!
//! 1. every thread of every process of the round (every process of the
//!    round's own uid, the grader's peers included) is asleep (`S`) in a call
//!    that only another process, a signal or a timer can end: a futex wait or
//!    System V semaphore or queue wait without a timeout (`sem_wait`, a
//!    mutex, a condition variable, `msgrcv`), `wait4`/`waitid`, `pause`,
//!    `sigsuspend`, `sigtimedwait` without a timeout, or a `read` of a stdin
//!    pipe that only the grader can write to;
//! 2. no process has a POSIX timer (`/proc/PID/timers`), and none catches
//!    SIGALRM, blocks it or waits for it in `sigwait` (its alarm may be
//!    set);
//! 3. two such looks, apart in time, see the same threads in the same calls
//!    with the same context-switch counts: no thread ran in between, so
//!    there was an instant at which all of them were asleep at once.
//!
//! At that instant nothing inside the round can wake anything (every waker
//! would itself have to run), nothing outside it can reach its objects (its
//! own uid, IPC namespace and /dev/shm), and the grader will not: the state
//! lasts until the deadline. A wait that can end by itself (a poll or sleep
//! with a timeout, `nanosleep`, a read of a socket, anything this list does
//! not name) is never taken as stuck: the grader then waits for the deadline
//! as before. What `/proc` cannot show is an `alarm()` or `setitimer` whose
//! signal is not caught: its default action ends the process, and a parent
//! in `wait4` could then go on. That is the one assumption, documented in
//! specs/README.md: no correct program relies on being killed by its own
//! alarm.
//!
//! Without a uid of the round's own (the grader not root) the round's
//! processes cannot all be found, and nothing is ever taken as stuck.

use std::fmt::Write as _;

use super::cgroup::Census;
use super::procfs;

/// What a thread waits for, in a call only another process, a signal or a
/// timer can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wait {
    /// A futex without a timeout: `sem_wait`, a mutex, a condition variable,
    /// a join.
    Futex,
    /// `wait4` or `waitid`: a child to change state.
    Child,
    /// `pause`, `sigsuspend`, `sigtimedwait` without a timeout.
    Signal,
    /// `msgrcv` (System V message queue).
    Message,
    /// `semop` (System V semaphore) without a timeout.
    Semaphore,
    /// `read` of a stdin pipe the grader holds and does not write to now.
    Stdin,
}

impl Wait {
    fn describe(self) -> &'static str {
        match self {
            Wait::Futex => "futex (sem_wait, a lock, a condition variable or a join)",
            Wait::Child => "wait4/waitid, for a child",
            Wait::Signal => "pause/sigsuspend, for a signal",
            Wait::Message => "msgrcv, for a message",
            Wait::Semaphore => "semop, on a System V semaphore",
            Wait::Stdin => "read of its stdin, which the grader is not writing to",
        }
    }
}

/// One thread seen asleep in an indefinite wait.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Asleep {
    pid: i32,
    tid: i32,
    wait: Wait,
    /// Voluntary and involuntary context switches: unchanged between two
    /// looks means the thread did not run in between.
    switches: (u64, u64),
}

/// Every thread of the round, asleep in indefinite waits, at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    threads: Vec<Asleep>,
}

/// One look at the round: `Some` when every thread of every process of
/// `uid` is asleep in an indefinite wait (`stdin_pipes`: the inodes of the
/// stdin pipes the grader holds), no process has a timer or catches
/// SIGALRM; `None` as soon as one thread or process is not, or cannot be
/// read. `started`, the processes the test started, are looked at first:
/// while one of them works, as nearly always, no sweep of the machine's
/// processes is needed. With the round's `census`, its live processes are
/// all there is to look at (a zombie neither runs nor wakes anyone);
/// without, every process on the machine is read for its user.
pub fn look(
    uid: u32,
    started: &[i32],
    stdin_pipes: &[u64],
    census: Option<&Census>,
) -> Option<Snapshot> {
    for &pid in started {
        if let Some(status) = procfs::status(pid) {
            if procfs::uids(&status).is_some_and(|ids| ids[0] == uid) {
                asleep(pid, &status, stdin_pipes, &mut Vec::new())?;
            }
        }
    }
    let mut threads = Vec::new();
    let round = census.and_then(Census::live).unwrap_or_else(procfs::pids);
    for pid in round {
        let Some(status) = procfs::status(pid) else {
            continue;
        };
        if procfs::uids(&status).is_none_or(|ids| ids[0] != uid) {
            continue;
        }
        asleep(pid, &status, stdin_pipes, &mut threads)?;
    }
    if threads.is_empty() {
        // Nothing left to run: the round's processes are gone, which the
        // wait itself sees (an end of output, an exit).
        return None;
    }
    threads.sort();
    Some(Snapshot { threads })
}

/// Adds the threads of process `pid` (its `status` text) to `threads` when
/// every one is asleep in an indefinite wait and nothing can wake the
/// process by itself; `None` otherwise.
fn asleep(pid: i32, status: &[u8], stdin_pipes: &[u64], threads: &mut Vec<Asleep>) -> Option<()> {
    let alarm = 1u64 << (libc::SIGALRM - 1);
    let caught = procfs::status_mask_of(status, b"SigCgt:")?;
    if caught & alarm != 0 || has_timers(pid)? {
        return None;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks {
        let tid: i32 = task.ok()?.file_name().to_str()?.parse().ok()?;
        // Gone between the listing and now: it exited, which is progress
        // of a kind; look again later.
        let status = std::fs::read(format!("/proc/{pid}/task/{tid}/status")).ok()?;
        // A thread that blocks SIGALRM may be waiting for it in `sigwait`,
        // its alarm invisible here: no proof.
        if procfs::status_mask_of(&status, b"SigBlk:")? & alarm != 0 {
            return None;
        }
        match procfs::state_of(&status)? {
            // An exited thread waits for nothing.
            'Z' | 'X' => continue,
            'S' => {}
            _ => return None,
        }
        let call = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
        let wait = indefinite(pid, &call, stdin_pipes)?;
        threads.push(Asleep {
            pid,
            tid,
            wait,
            switches: procfs::switches_of(&status)?,
        });
    }
    Some(())
}

impl Snapshot {
    /// Whether `later` is the same threads, in the same waits, none of which
    /// ran in between: the round was asleep as a whole at some instant.
    pub fn unchanged(&self, later: &Snapshot) -> bool {
        self == later
    }

    /// Where every process waits, grouped by wait, with `name` naming the
    /// processes the test started (the rest are processes they started).
    pub fn describe(&self, name: impl Fn(i32) -> Option<String>) -> String {
        let mut by_wait: Vec<(Wait, Vec<i32>)> = Vec::new();
        for t in &self.threads {
            match by_wait.iter_mut().find(|(w, _)| *w == t.wait) {
                Some((_, pids)) if pids.contains(&t.pid) => {}
                Some((_, pids)) => pids.push(t.pid),
                None => by_wait.push((t.wait, vec![t.pid])),
            }
        }
        let mut out = String::new();
        for (i, (wait, pids)) in by_wait.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let shown: Vec<String> = pids
                .iter()
                .map(|&pid| match name(pid) {
                    Some(n) => format!("{n} (pid {pid})"),
                    None => format!("pid {pid}"),
                })
                .collect();
            let _ = write!(out, "{} in {}", shown.join(", "), wait.describe());
        }
        out
    }
}

/// Whether the process has a POSIX timer (`None`: cannot tell, which is no
/// proof of anything).
fn has_timers(pid: i32) -> Option<bool> {
    let text = std::fs::read(format!("/proc/{pid}/timers")).ok()?;
    Some(!text.iter().all(u8::is_ascii_whitespace))
}

/// The indefinite wait a `/proc/PID/task/TID/syscall` text shows, if it is
/// one: the call's number and arguments (hex) while it is blocked.
fn indefinite(pid: i32, call: &str, stdin_pipes: &[u64]) -> Option<Wait> {
    let mut fields = call.split_ascii_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let mut args = [0u64; 6];
    for arg in &mut args {
        *arg = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    let awaits_alarm = |set: u64| {
        use std::os::unix::fs::FileExt;
        // The set a `sigtimedwait` waits for is unblocked while it waits,
        // so only its argument shows whether SIGALRM is in it.
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
        let mut bytes = [0u8; 8];
        mem.read_exact_at(&mut bytes, set).ok()?;
        Some(u64::from_ne_bytes(bytes) & (1 << (libc::SIGALRM - 1)) != 0)
    };
    classify(nr, &args, awaits_alarm, |fd| {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        let ino = link
            .to_str()?
            .strip_prefix("pipe:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        Some(stdin_pipes.contains(&ino))
    })
}

/// The indefinite wait system call `nr` with `args` is, if it is one;
/// `awaits_alarm(set)` tells whether the signal set at that address holds
/// SIGALRM, `is_stdin(fd)` whether a descriptor is one of the grader's stdin
/// pipes.
fn classify(
    nr: i64,
    args: &[u64; 6],
    awaits_alarm: impl Fn(u64) -> Option<bool>,
    is_stdin: impl Fn(u64) -> Option<bool>,
) -> Option<Wait> {
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_LOCK_PI: u64 = 6;
    const FUTEX_WAIT_BITSET: u64 = 9;
    const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
    const FUTEX_LOCK_PI2: u64 = 13;
    const FUTEX_CMD_MASK: u64 = !(128 | 256);
    const IPC_NOWAIT: u64 = 0o4000;
    let wait = match nr {
        libc::SYS_futex => {
            let cmd = args[1] & FUTEX_CMD_MASK;
            let waits = matches!(
                cmd,
                FUTEX_WAIT
                    | FUTEX_LOCK_PI
                    | FUTEX_WAIT_BITSET
                    | FUTEX_WAIT_REQUEUE_PI
                    | FUTEX_LOCK_PI2
            );
            (waits && args[3] == 0).then_some(Wait::Futex)?
        }
        libc::SYS_futex_waitv => (args[3] == 0).then_some(Wait::Futex)?,
        libc::SYS_wait4 | libc::SYS_waitid => Wait::Child,
        libc::SYS_rt_sigsuspend => Wait::Signal,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_pause => Wait::Signal,
        libc::SYS_rt_sigtimedwait => {
            (args[2] == 0 && !awaits_alarm(args[0])?).then_some(Wait::Signal)?
        }
        libc::SYS_msgrcv => (args[4] & IPC_NOWAIT == 0).then_some(Wait::Message)?,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_semop => Wait::Semaphore,
        libc::SYS_semtimedop => (args[3] == 0).then_some(Wait::Semaphore)?,
        libc::SYS_read => is_stdin(args[0])?.then_some(Wait::Stdin)?,
        _ => return None,
    };
    Some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(nr: i64, args: [u64; 6]) -> Option<Wait> {
        // The set a `sigtimedwait` waits for: SIGALRM at address 14.
        classify(nr, &args, |set| Some(set == 14), |fd| Some(fd == 0))
    }

    #[test]
    fn waits_without_a_timeout_are_indefinite_and_the_rest_are_not() {
        // sem_wait: FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, no timeout.
        assert_eq!(
            with(libc::SYS_futex, [1, 9 | 128, 0, 0, 0, 0]),
            Some(Wait::Futex)
        );
        // sem_timedwait: a timeout.
        assert_eq!(with(libc::SYS_futex, [1, 9 | 128, 0, 0x7ff0, 0, 0]), None);
        // A wake is not a wait.
        assert_eq!(with(libc::SYS_futex, [1, 1 | 128, 1, 0, 0, 0]), None);
        assert_eq!(with(libc::SYS_wait4, [0; 6]), Some(Wait::Child));
        assert_eq!(
            with(libc::SYS_rt_sigtimedwait, [1, 0, 0, 8, 0, 0]),
            Some(Wait::Signal)
        );
        assert_eq!(
            with(libc::SYS_rt_sigtimedwait, [1, 0, 0x7ff0, 8, 0, 0]),
            None
        );
        // A `sigwait` for an alarm (unseen in /proc) may end by itself.
        assert_eq!(with(libc::SYS_rt_sigtimedwait, [14, 0, 0, 8, 0, 0]), None);
        assert_eq!(
            with(libc::SYS_msgrcv, [3, 1, 64, 0, 0, 0]),
            Some(Wait::Message)
        );
        assert_eq!(with(libc::SYS_read, [0, 1, 64, 0, 0, 0]), Some(Wait::Stdin));
        // Any other descriptor (a socket, a FIFO another process may open,
        // a timerfd) can be woken from outside the proof.
        assert_eq!(with(libc::SYS_read, [3, 1, 64, 0, 0, 0]), None);
        assert_eq!(with(libc::SYS_clock_nanosleep, [0; 6]), None);
        assert_eq!(with(libc::SYS_ppoll, [0; 6]), None);
    }
}
