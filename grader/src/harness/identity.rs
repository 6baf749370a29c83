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
//!
//! All three need the uid to be the round's alone, among every round of
//! every grader on the machine, however many run at once. A uid is
//! therefore leased ([`Lease`]), never computed: the round holds an
//! exclusive `flock` on a file named after it (`/run/cargo-grade/uids/UID`)
//! for as long as it lasts, and a uid whose file is locked is taken. A lock
//! cannot be leaked: the kernel drops it when the last descriptor of it
//! closes, so a killed grader's uids are free again once its processes are
//! gone. The round's namespace holder inherits the descriptor (see
//! [`super::sandbox`]): the uid of a killed grader stays taken until its
//! holder has killed every process of it. Before a uid is used, no process
//! may be running as it (a leftover of anything else that picked numbers
//! this high), as `/proc` showed at most half a second before. Graders
//! scan from a start of their own (a hash of the pid, the round and the
//! time), so they seldom meet on one file.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::deadline::{poll_until, Deadline};
use super::procfs;

/// The uid range the grader hands out: above any system or desktop user
/// (and above the usual subordinate-uid ranges), below `i32::MAX` so that
/// tools printing uids as signed numbers show them right.
const FIRST_UID: u32 = 0x7000_0000;
const UID_COUNT: u32 = 0x0fff_ffff;

/// Where the leases' lock files are: `/run` is the machine's (one tmpfs,
/// emptied at boot), whatever `TMPDIR` a grader has.
const LOCK_DIR: &str = "/run/cargo-grade/uids";

/// How many uids one lease looks at before it gives up (each look costs a
/// file and, when free, a look at the uids in use).
const MAX_LOOKS: u32 = 4096;

/// Leases taken by this process, for starting points of their own.
static LEASES: AtomicU64 = AtomicU64::new(0);

/// An unprivileged uid and gid that the round's processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// A uid held for one round: no other lease, in this grader or another,
/// gets it until this one is dropped (and every process that inherited its
/// descriptor is gone).
#[derive(Debug)]
pub struct Lease {
    identity: Identity,
    /// The lock file, open and locked.
    file: File,
    path: PathBuf,
}

impl Lease {
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The locked descriptor: a process that keeps it open keeps the uid
    /// taken (it is close-on-exec; a child that should keep it must clear
    /// that itself).
    pub fn lock_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The name goes first, while the lock is held: whoever opened the
        // file meanwhile finds, once it has the lock, that the name is no
        // longer its file, and starts again (see `Uids::try_uid`). Then
        // closing the file releases the lock.
        if same_file(&self.path, &self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(held)) => named.dev() == held.dev() && named.ino() == held.ino(),
        _ => false,
    }
}

/// A range of uids to lease, with the directory of their lock files.
#[derive(Debug, Clone)]
pub struct Uids {
    dir: PathBuf,
    first: u32,
    count: u32,
}

/// Why no uid could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot use the uid lock directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free uid among {looked} of {first}..{end} (each is leased or has processes)")]
    Exhausted { looked: u32, first: u32, end: u64 },
}

impl Uids {
    /// The grader's range, with the machine's lock directory.
    pub fn machine() -> Uids {
        Uids::new(Path::new(LOCK_DIR), FIRST_UID, UID_COUNT)
    }

    /// `count` uids from `first`, their lock files in `dir`.
    pub fn new(dir: &Path, first: u32, count: u32) -> Uids {
        Uids {
            dir: dir.to_owned(),
            first,
            count: count.max(1),
        }
    }

    /// Leases a uid of the range: the first one free from a start of this
    /// call's own, going round.
    pub fn lease(&self) -> Result<Lease, LeaseError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| LeaseError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        let n = LEASES.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let start = mix(u64::from(std::process::id()) << 32 ^ n ^ mix(nanos));
        let looks = self.count.min(MAX_LOOKS);
        for i in 0..looks {
            let offset = ((start + u64::from(i)) % u64::from(self.count)) as u32;
            let uid = self.first + offset;
            if let Some(lease) = self.try_uid(uid)? {
                return Ok(lease);
            }
        }
        Err(LeaseError::Exhausted {
            looked: looks,
            first: self.first,
            end: u64::from(self.first) + u64::from(self.count),
        })
    }

    /// `uid`'s lease, if its file is not locked and no process runs as it.
    fn try_uid(&self, uid: u32) -> Result<Option<Lease>, LeaseError> {
        let path = self.dir.join(uid.to_string());
        let lock_error = |source| LeaseError::Lock {
            path: path.clone(),
            source,
        };
        // A few times at most: each retry means the file was released and
        // removed between our open and our lock.
        for _ in 0..4 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(lock_error)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => Ok(None),
                    _ => Err(lock_error(err)),
                };
            }
            if !same_file(&path, &file) {
                continue;
            }
            let lease = Lease {
                identity: Identity { uid, gid: uid },
                file,
                path,
            };
            // Ours now; usable only if nothing runs as it already.
            return Ok((!has_processes(uid)).then_some(lease));
        }
        Ok(None)
    }
}

/// How old the machine's uids in use may be when a lease consults them.
///
/// Reading them means reading every process's `/proc/PID/status` (about
/// 2.5 ms with a hundred processes, most of a lease's cost), and a batch
/// starts about forty rounds a second: one reading serves every lease of
/// the next half second instead. That is no weaker a check: it is about
/// processes the grader did not start (the rounds' own are kept apart by
/// the locks), and one of those that starts just after a check is missed
/// however fresh the check was. A round whose processes outlived
/// [`Identity::kill_all`] forgets the reading (see [`forget_uids_in_use`]).
const IN_USE_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(500);

/// Every uid some process has (real, effective, saved or filesystem), as
/// read at `read_at`.
struct UidsInUse {
    read_at: std::time::Instant,
    uids: HashSet<u32>,
}

static UIDS_IN_USE: Mutex<Option<UidsInUse>> = Mutex::new(None);

/// Whether any process (zombies included: they still count against the
/// user's process limit) has `uid` as its real, effective, saved or
/// filesystem uid, as `/proc` showed at most [`IN_USE_MAX_AGE`] ago.
fn has_processes(uid: u32) -> bool {
    let mut in_use = UIDS_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    if in_use
        .as_ref()
        .is_none_or(|r| r.read_at.elapsed() > IN_USE_MAX_AGE)
    {
        let read_at = std::time::Instant::now();
        let uids = procfs::pids()
            .into_iter()
            .filter_map(|pid| procfs::uids(&procfs::status(pid)?))
            .flatten()
            .collect();
        *in_use = Some(UidsInUse { read_at, uids });
    }
    in_use.as_ref().is_some_and(|r| r.uids.contains(&uid))
}

/// Drops the last reading of the uids in use: the next lease reads them
/// afresh.
fn forget_uids_in_use() {
    *UIDS_IN_USE.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// SplitMix64's finaliser: spreads nearby inputs far apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Identity {
    /// A uid of the round's own, when the grader is root (and
    /// `CARGO_GRADE_USER` is not `keep`); `None` otherwise: a non-root
    /// grader cannot change users, and student code then runs as the
    /// grader's user. The uid is the round's until the lease is dropped.
    /// An error when the grader is root but no uid can be leased: student
    /// code never falls back to running as root.
    pub fn for_round() -> Result<Option<Lease>, LeaseError> {
        if !Identity::rounds_have_own_users() {
            return Ok(None);
        }
        Uids::machine().lease().map(Some)
    }

    /// Whether rounds run as users of their own ([`Identity::for_round`]
    /// leases one): the grader is root and `CARGO_GRADE_USER` is not
    /// `keep`.
    pub fn rounds_have_own_users() -> bool {
        // SAFETY: geteuid cannot fail.
        (unsafe { libc::geteuid() }) == 0
            && std::env::var_os("CARGO_GRADE_USER").is_none_or(|v| v != "keep")
    }

    /// Becomes this user: no supplementary groups, then gid, then uid (real,
    /// effective and saved alike, so nothing can be regained).
    ///
    /// # Safety
    /// For a child before `exec` (or `_exit`), forked or started by
    /// `spawn`: raw system calls only.
    pub unsafe fn become_in_child(self) -> std::io::Result<()> {
        // Raw system calls, not glibc's wrappers: those apply a change of
        // user to every thread of the process they think they are in, and a
        // child started by `spawn` runs on the grader's memory, where glibc
        // sees the grader's threads.
        let check = |rc: libc::c_long| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let (uid, gid) = (self.uid, self.gid);
        check(libc::syscall(
            libc::SYS_setgroups,
            0,
            std::ptr::null::<libc::gid_t>(),
        ))?;
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
        check(libc::syscall(libc::SYS_setresuid, uid, uid, uid))
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
        let all_dead = poll_until(deadline, || {
            self.kill_pass();
            self.processes().is_empty().then_some(())
        });
        if all_dead.is_none() {
            // They may outlive the lease: no reading taken before them
            // may vouch for this uid.
            forget_uids_in_use();
        }
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
        // setresuid, kill), on the grader's memory (see `run_in_child`).
        let pass = || unsafe {
            match self.become_in_child() {
                Ok(()) if libc::kill(-1, libc::SIGKILL) == 0 => 0,
                _ => 1,
            }
        };
        // SAFETY: as above.
        match unsafe { super::spawn::run_in_child(&pass) } {
            Ok(_) => {}
            Err(_) => {
                // No fork (the machine is out of processes): one by one.
                for (pid, _) in self.processes() {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::*;

    /// Far from the grader's range (rounds of graders running on this
    /// machine meanwhile) and from every real user.
    const TEST_FIRST: u32 = 0x6e00_0000;

    const HELPER_DIR: &str = "CARGO_GRADE_TEST_UID_DIR";
    const HELPER_RANGE: &str = "CARGO_GRADE_TEST_UID_RANGE";
    const HELPER_COUNT: &str = "CARGO_GRADE_TEST_UID_COUNT";

    #[test]
    fn two_hundred_leases_held_at_once_are_all_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let uids = Uids::new(dir.path(), TEST_FIRST, 1000);
        let leases: Vec<Lease> = (0..200).map(|_| uids.lease().unwrap()).collect();
        let distinct: HashSet<u32> = leases.iter().map(|l| l.identity().uid).collect();
        assert_eq!(distinct.len(), 200);
        assert!(distinct
            .iter()
            .all(|&uid| (TEST_FIRST..TEST_FIRST + 1000).contains(&uid)));
        assert!(leases.iter().all(|l| l.identity().gid == l.identity().uid));
        drop(leases);
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 0, "released leases remove their files");
    }

    #[test]
    fn a_released_uid_is_leased_again() {
        let dir = tempfile::tempdir().unwrap();
        let uids = Uids::new(dir.path(), TEST_FIRST + 5000, 1);
        let first = uids.lease().unwrap();
        assert_eq!(first.identity().uid, TEST_FIRST + 5000);
        assert!(matches!(uids.lease(), Err(LeaseError::Exhausted { .. })));
        drop(first);
        assert_eq!(uids.lease().unwrap().identity().uid, TEST_FIRST + 5000);
    }

    #[test]
    fn a_process_started_after_a_reading_of_the_uids_is_seen_once_it_is_forgotten() {
        let uid = TEST_FIRST + 7000;
        assert!(!has_processes(uid), "nothing runs as {uid} yet");
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return; // only root can start a process as another user
        }
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .uid(uid)
            .gid(uid)
            .spawn()
            .unwrap();
        forget_uids_in_use();
        let seen = has_processes(uid);
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(seen, "a fresh reading sees the process running as {uid}");
    }

    #[test]
    fn a_uid_that_processes_run_as_is_not_leased() {
        // SAFETY: getuid cannot fail.
        let mine = unsafe { libc::getuid() };
        let dir = tempfile::tempdir().unwrap();
        let uids = Uids::new(dir.path(), mine, 2);
        for _ in 0..4 {
            let lease = uids.lease().unwrap();
            assert_ne!(lease.identity().uid, mine, "this test runs as {mine}");
        }
    }

    /// Not a test by itself: the other process of
    /// `two_processes_lease_disjoint_uids`, run by it (and a no-op
    /// otherwise). Prints `leased-uid=N` per lease, then `leases-held`
    /// (libtest may print on the same line), and keeps them
    /// until its stdin closes.
    #[test]
    #[ignore]
    fn lease_helper() {
        let (Some(dir), Some(range), Some(count)) = (
            std::env::var_os(HELPER_DIR),
            std::env::var(HELPER_RANGE).ok(),
            std::env::var(HELPER_COUNT).ok(),
        ) else {
            return;
        };
        let uids = Uids::new(Path::new(&dir), TEST_FIRST, range.parse().unwrap());
        let leases: Vec<Lease> = (0..count.parse::<usize>().unwrap())
            .map(|_| uids.lease().unwrap())
            .collect();
        for lease in &leases {
            println!("leased-uid={}", lease.identity().uid);
        }
        println!("leases-held");
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        drop(leases);
    }

    #[test]
    fn two_processes_lease_disjoint_uids_and_a_dead_ones_are_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let uids = Uids::new(dir.path(), TEST_FIRST, 300);
        let mine: Vec<Lease> = (0..150).map(|_| uids.lease().unwrap()).collect();
        let mut other = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "harness::identity::tests::lease_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_DIR, dir.path())
            .env(HELPER_RANGE, "300")
            .env(HELPER_COUNT, "150")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut theirs = HashSet::new();
        for line in BufReader::new(other.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some((_, uid)) = line.split_once("leased-uid=") {
                theirs.insert(uid.trim().parse::<u32>().unwrap());
            }
            if line.contains("leases-held") {
                break;
            }
        }
        assert_eq!(theirs.len(), 150, "the other process holds 150 uids");
        let ours: HashSet<u32> = mine.iter().map(|l| l.identity().uid).collect();
        assert!(
            ours.is_disjoint(&theirs),
            "{:?}",
            ours.intersection(&theirs)
        );
        // The range is full: nothing is left while both hold theirs.
        assert!(matches!(uids.lease(), Err(LeaseError::Exhausted { .. })));
        // A killed grader's leases go with it (its files stay, unlocked).
        other.kill().unwrap();
        other.wait().unwrap();
        let again = uids.lease().unwrap();
        assert!(theirs.contains(&again.identity().uid));
    }
}
