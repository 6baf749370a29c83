//! Task 3 (shared-memory counter): starter. Read tasks/task3-shm-counter.md
//! first.
//!
//! The coordinator creates a POSIX shared memory object holding a counter and
//! a named POSIX semaphore with the same name, forks WORKERS worker
//! processes that each add 1 to the counter ITERATIONS times while holding
//! the semaphore, waits for them, prints the total and removes both names.
//!
//! Replace every `todo!()` (and the `_` prefixes of the parameters you start
//! using). The structure below is a suggestion; only the behaviour is graded.

use std::ffi::{CStr, CString};
use std::process::ExitCode;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::Pid;

// You will also need (add them as you go, unused imports are warnings):
//   use std::io;
//   use std::num::NonZeroUsize;
//   use std::os::fd::OwnedFd;
//   use std::sync::atomic::AtomicI32;
//   use nix::errno::Errno;
//   use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
//   use nix::sys::signal::{sigaction, SaFlags, SigAction, SigSet};
//   use nix::sys::stat::Mode;
//   use nix::sys::wait::{waitpid, WaitStatus};
//   use nix::unistd::{fork, ftruncate, read, ForkResult};

const USAGE: &str = "usage: task3-shm-counter NAME WORKERS ITERATIONS   (e.g. /cg-abc 4 20000)";

// TODO: the size of the shared memory object (the contract says 4096):
//   const SIZE: usize = 4096;

/// What the shared memory object holds (the contract). `repr(C)` keeps the
/// fields in this order with C's alignment: `count` at offset 0, `stop` at
/// offset 8.
#[repr(C)]
struct Shared {
    /// Only read or written while holding the semaphore.
    count: u64,
    /// 1 asks the workers to stop. Written by a signal handler, so atomic.
    stop: AtomicU32,
}

// TODO: the signal that interrupted the coordinator (0: none), for the exit
// status:
//   static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// `stop` in the shared memory, for the handler; null while not mapped.
static STOP: AtomicPtr<AtomicU32> = AtomicPtr::new(ptr::null_mut());

/// The coordinator's SIGINT and SIGTERM handler. It runs in the middle of
/// whatever the coordinator was doing, so it may only store into atomics:
/// record the signal in SIGNAL, and store 1 into `stop` through STOP (if
/// STOP is not null). Dereferencing the raw pointer needs `unsafe` and a
/// `// SAFETY:` comment.
extern "C" fn on_signal(_signal: libc::c_int) {
    todo!("record the signal and set `stop`")
}

/// Installs `handler` (a function, or SigHandler::SigIgn) for `signal` with
/// sigaction(2), without SA_RESTART.
fn install(_signal: Signal, _handler: SigHandler) -> nix::Result<()> {
    // TODO: as in task 1: SigAction::new(handler, SaFlags::empty(),
    // SigSet::empty()), then the `unsafe fn` sigaction with a SAFETY comment.
    todo!("install the handler")
}

/// This process's mapping of the shared memory object. After fork, the
/// child's copy of the pointer refers to the same physical memory
/// (MAP_SHARED).
struct Mapping {
    ptr: NonNull<Shared>,
}

impl Mapping {
    // TODO: fn new(fd: &OwnedFd) -> nix::Result<Mapping>
    //   mmap(None, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) (an
    //   `unsafe fn`), then Mapping { ptr: ptr.cast() }.

    fn stop(&self) -> &AtomicU32 {
        // SAFETY: ptr is page-aligned and SIZE bytes are mapped until
        // unmap(self), which cannot run while this borrow of self lives.
        unsafe { &(*self.ptr.as_ptr()).stop }
    }

    /// Reads `count`. Call it only while holding the semaphore.
    fn read_count(&self) -> u64 {
        // SAFETY: in bounds and aligned, as in stop(). Volatile: the compiler
        // must read the memory now, not reuse a value it read earlier.
        unsafe { ptr::read_volatile(&raw const (*self.ptr.as_ptr()).count) }
    }

    // TODO: fn write_count(&self, value: u64): like read_count, with
    //   ptr::write_volatile(&raw mut (*self.ptr.as_ptr()).count, value).

    // TODO: fn unmap(self) -> nix::Result<()>: munmap(self.ptr.cast(), SIZE).
}

/// A named POSIX semaphore. nix has no wrapper for sem_open: use libc's
/// sem_open, sem_wait, sem_post, sem_close and sem_unlink.
struct Semaphore(*mut libc::sem_t);

impl Semaphore {
    // TODO: fn open(name: &CStr, flags: libc::c_int) -> nix::Result<Semaphore>
    //   libc::sem_open(name.as_ptr(), flags, 0o600 as libc::c_uint,
    //   1 as libc::c_uint); it returns libc::SEM_FAILED on error (then
    //   Errno::last() says why).

    /// Takes the lock: waits until the value is above 0 and decrements it.
    fn wait(&self) -> nix::Result<()> {
        // TODO: libc::sem_wait(self.0). It returns -1 with EINTR when a signal
        // handler (installed without SA_RESTART) ran while it waited: then it
        // does not hold the semaphore; wait again. Any other error: return it.
        todo!("sem_wait")
    }

    /// Releases the lock: increments the value, waking one waiter.
    fn post(&self) -> nix::Result<()> {
        // SAFETY: self.0 came from sem_open and is valid until it is closed.
        nix::errno::Errno::result(unsafe { libc::sem_post(self.0) }).map(drop)
    }

    // TODO: fn close(self) -> nix::Result<()>: libc::sem_close(self.0).
}

// TODO: fn sem_unlink(name: &CStr) -> nix::Result<()>: libc::sem_unlink.

/// Creates the shared memory object NAME with `flags` (0600), sizes it to
/// SIZE bytes and maps it.
fn create_shm(_name: &str, _flags: OFlag) -> nix::Result<Mapping> {
    // TODO: shm_open. If it fails with EEXIST, a crashed earlier run left
    // the object: shm_unlink it, print `removed stale shared memory NAME`,
    // and shm_open again. Then ftruncate to SIZE (a new object is all zero
    // bytes: count 0, stop 0) and Mapping::new. The file descriptor may be
    // closed (dropped) once the object is mapped.
    todo!("create the shared memory")
}

/// Creates the semaphore NAME with `flags` (0600, value 1).
fn create_sem(_name: &CStr, _flags: libc::c_int) -> nix::Result<Semaphore> {
    // TODO: Semaphore::open. If it fails with EEXIST: sem_unlink, print
    // `removed stale semaphore NAME`, and open again.
    todo!("create the semaphore")
}

/// Waits for one line (or end of input) on stdin. Returns false when SIGINT
/// or SIGTERM came first.
fn wait_for_go() -> bool {
    // TODO: as in task 1, read(2) stdin (nix::unistd::read), not std's
    // read_line, so that a signal interrupts the wait (EINTR). Return true
    // at end of input or once a b'\n' arrived; false as soon as SIGNAL is
    // set.
    todo!("wait for the go line")
}

/// Forks the workers. Returns their pids in fork order (worker I is
/// pids[I]) and false if a fork failed.
fn start_workers(
    _shared: &Mapping,
    _sem: &Semaphore,
    _workers: u32,
    _iterations: u64,
) -> (Vec<Pid>, bool) {
    // TODO: `workers` times: fork() (an `unsafe fn`: this program has a
    // single thread, which makes it fine; say so in a SAFETY comment).
    // In the parent, push the child's pid. In the child (a worker):
    //   - ignore SIGINT and SIGTERM (install(..., SigHandler::SigIgn));
    //   - `iterations` times: sem.wait(); if `stop` is set, sem.post() and
    //     leave the loop; else read the count, write count + 1; sem.post();
    //   - end with `unsafe { libc::_exit(0) }` (1 after an error), never by
    //     returning: the child would run the coordinator's code.
    todo!("fork the workers")
}

/// Waits for every worker, reporting those that ended abnormally. Returns
/// true when all of them exited with status 0.
fn wait_for_workers(_shared: &Mapping, _pids: &[Pid]) -> bool {
    // TODO: waitpid(None, None) until every worker is reaped; on EINTR
    // (a handler ran) wait again. For a worker that did not exit with
    // status 0, print `worker I killed by SIGNAME` or `worker I exited with
    // status S` (I: its index in `pids`), and set `stop`.
    todo!("wait for the workers")
}

/// The coordinator's exit status.
fn exit_status(_all_ok: bool) -> u8 {
    // TODO: 1 if a worker ended abnormally, else 130 after SIGINT, 143 after
    // SIGTERM (128 + the signal's number), else 0.
    todo!("exit status")
}

/// Everything between creating the objects and removing them. Returns the
/// exit status.
fn coordinate(shared: &Mapping, sem: &Semaphore, workers: u32, iterations: u64) -> nix::Result<u8> {
    println!("ready");
    let mut pids = Vec::new();
    let mut all_ok = true;
    if wait_for_go() {
        (pids, all_ok) = start_workers(shared, sem, workers, iterations);
        println!("started {} workers", pids.len());
    }
    all_ok &= wait_for_workers(shared, &pids);

    sem.wait()?;
    let count = shared.read_count();
    sem.post()?;
    println!("count {count}");
    Ok(exit_status(all_ok))
}

/// Closes the semaphore and removes its name.
fn remove_sem(_name: &CStr, _sem: Semaphore) {
    // TODO: sem_close, sem_unlink. Report errors on stderr and carry on.
    todo!("remove the semaphore")
}

/// Unmaps the shared memory and removes its name.
fn remove_shm(_name: &str, _shared: Mapping) {
    // TODO: first set STOP back to null (the handler must not touch the
    // mapping once it is gone), then munmap, shm_unlink. Report errors on
    // stderr and carry on.
    todo!("remove the shared memory")
}

fn run(name: &str, workers: u32, iterations: u64) -> Result<u8, String> {
    let cname = CString::new(name).map_err(|e| e.to_string())?;
    // Handlers first: a SIGINT that comes once the objects exist must not
    // kill us before we can remove them.
    install(Signal::SIGINT, SigHandler::Handler(on_signal))
        .map_err(|e| format!("sigaction: {e}"))?;
    install(Signal::SIGTERM, SigHandler::Handler(on_signal))
        .map_err(|e| format!("sigaction: {e}"))?;

    // O_EXCL: fail with EEXIST instead of opening an object that a crashed
    // earlier run left behind.
    let shm_flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
    let sem_flags = libc::O_CREAT | libc::O_EXCL;

    let shared = create_shm(name, shm_flags).map_err(|e| format!("shared memory {name}: {e}"))?;
    // From now on the handler can set `stop` (remove_shm clears this).
    STOP.store(ptr::from_ref(shared.stop()).cast_mut(), Ordering::SeqCst);
    let sem = match create_sem(&cname, sem_flags) {
        Ok(sem) => sem,
        Err(e) => {
            remove_shm(name, shared);
            return Err(format!("semaphore {name}: {e}"));
        }
    };

    let outcome = coordinate(&shared, &sem, workers, iterations);

    // Only the coordinator gets here (workers _exit). The names would
    // otherwise outlive every process, in /dev/shm.
    remove_sem(&cname, sem);
    remove_shm(name, shared);
    outcome.map_err(|e| format!("sem_wait: {e}"))
}

/// A decimal number: digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// NAME WORKERS ITERATIONS, checked.
fn parse_args(args: &[String]) -> Option<(&str, u32, u64)> {
    let [name, workers, iterations] = args else {
        return None;
    };
    let rest = name.strip_prefix('/')?;
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    let workers: u32 = number(workers)?;
    let iterations: u64 = number(iterations)?;
    (workers >= 1).then_some((name.as_str(), workers, iterations))
}

fn main() -> ExitCode {
    let args: Option<Vec<String>> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect();
    let Some((name, workers, iterations)) = args.as_deref().and_then(parse_args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(name, workers, iterations) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("task3-shm-counter: {e}");
            ExitCode::FAILURE
        }
    }
}
