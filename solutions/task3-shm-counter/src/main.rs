//! Task 3 (shared-memory counter): reference solution.
//!
//! The coordinator creates a POSIX shared memory object holding a counter and
//! a named POSIX semaphore with the same name, forks WORKERS worker
//! processes that each add 1 to the counter ITERATIONS times while holding
//! the semaphore, waits for them, prints the total and removes both names.

use std::ffi::{CStr, CString};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ftruncate, read, ForkResult, Pid};

const USAGE: &str = "usage: task3-shm-counter NAME WORKERS ITERATIONS   (e.g. /cg-abc 4 20000)";

/// Size of the shared memory object, in bytes.
const SIZE: usize = 4096;

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

/// The signal (SIGINT or SIGTERM) that interrupted the coordinator; 0: none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `stop` in the shared memory, for the handler; null while not mapped.
static STOP: AtomicPtr<AtomicU32> = AtomicPtr::new(ptr::null_mut());

/// The coordinator's SIGINT and SIGTERM handler. Async-signal-safe: it only
/// stores into atomics. The workers see `stop` at their next turn; the
/// coordinator's blocked waitpid returns EINTR and it simply waits again.
extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    let stop = STOP.load(Ordering::SeqCst);
    if !stop.is_null() {
        // SAFETY: STOP is only non-null while the mapping exists (it is
        // cleared before munmap). The handler runs on the coordinator's only
        // thread, so munmap cannot happen while it runs.
        unsafe { (*stop).store(1, Ordering::SeqCst) };
    }
}

/// Installs `handler` for `signal`, without SA_RESTART.
fn install(signal: Signal, handler: SigHandler) -> nix::Result<()> {
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: on_signal only touches atomics; SIG_IGN runs no code.
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

/// This process's mapping of the shared memory object. After fork, the
/// child's copy of the pointer refers to the same physical memory
/// (MAP_SHARED).
struct Mapping {
    ptr: NonNull<Shared>,
}

impl Mapping {
    /// Maps SIZE bytes of the object `fd`, shared, for reading and writing.
    fn new(fd: &OwnedFd) -> nix::Result<Mapping> {
        let len = NonZeroUsize::new(SIZE).expect("SIZE is not 0");
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: the kernel picks a fresh address (None), so the mapping
        // overlaps no memory Rust already uses.
        let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd, 0) }?;
        Ok(Mapping { ptr: ptr.cast() })
    }

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

    /// Writes `count`. Call it only while holding the semaphore.
    fn write_count(&self, value: u64) {
        // SAFETY: as in read_count().
        unsafe { ptr::write_volatile(&raw mut (*self.ptr.as_ptr()).count, value) }
    }

    fn unmap(self) -> nix::Result<()> {
        // SAFETY: self is consumed, so nothing can use the mapping afterwards
        // (the handler's STOP pointer is cleared before this is called).
        unsafe { munmap(self.ptr.cast(), SIZE) }
    }
}

/// A named POSIX semaphore (nix has no wrapper for sem_open: this uses libc).
struct Semaphore(*mut libc::sem_t);

impl Semaphore {
    /// sem_open(name, flags, 0600, 1): with O_CREAT, a new semaphore starts
    /// at 1 (unlocked).
    fn open(name: &CStr, flags: libc::c_int) -> nix::Result<Semaphore> {
        // SAFETY: name is NUL-terminated; with O_CREAT sem_open reads two more
        // (variadic) arguments, the mode and the initial value, as unsigned
        // ints, which is what we pass.
        let sem = unsafe {
            libc::sem_open(
                name.as_ptr(),
                flags,
                0o600 as libc::c_uint,
                1 as libc::c_uint,
            )
        };
        if sem == libc::SEM_FAILED {
            return Err(Errno::last());
        }
        Ok(Semaphore(sem))
    }

    /// Takes the lock: waits until the value is above 0 and decrements it.
    fn wait(&self) -> nix::Result<()> {
        loop {
            // SAFETY: self.0 came from sem_open and is valid until close(self).
            if unsafe { libc::sem_wait(self.0) } == 0 {
                return Ok(());
            }
            // A handler (installed without SA_RESTART) ran while we waited:
            // we do not hold the semaphore, so wait again.
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
    }

    /// Releases the lock: increments the value, waking one waiter.
    fn post(&self) -> nix::Result<()> {
        // SAFETY: as in wait().
        Errno::result(unsafe { libc::sem_post(self.0) }).map(drop)
    }

    fn close(self) -> nix::Result<()> {
        // SAFETY: self is consumed; nothing uses the pointer afterwards.
        Errno::result(unsafe { libc::sem_close(self.0) }).map(drop)
    }
}

fn sem_unlink(name: &CStr) -> nix::Result<()> {
    // SAFETY: name is NUL-terminated.
    Errno::result(unsafe { libc::sem_unlink(name.as_ptr()) }).map(drop)
}

/// Creates the shared memory object NAME (removing a stale one first),
/// sizes it and maps it. A new object is all zero bytes: count 0, stop 0.
fn create_shm(name: &str, flags: OFlag) -> nix::Result<Mapping> {
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let fd = match shm_open(name, flags, mode) {
        Err(Errno::EEXIST) => {
            // A crashed earlier run left it: its contents mean nothing now.
            shm_unlink(name)?;
            println!("removed stale shared memory {name}");
            shm_open(name, flags, mode)?
        }
        other => other?,
    };
    let mapping = ftruncate(&fd, SIZE as libc::off_t).and_then(|()| Mapping::new(&fd));
    if mapping.is_err() {
        let _ = shm_unlink(name);
    }
    // fd is closed here; the mapping stays valid without it.
    mapping
}

/// Creates the semaphore NAME at 1 (removing a stale one first).
fn create_sem(name: &CStr, flags: libc::c_int) -> nix::Result<Semaphore> {
    match Semaphore::open(name, flags) {
        Err(Errno::EEXIST) => {
            // Possibly left locked (value 0) by a run that crashed holding it.
            sem_unlink(name)?;
            println!("removed stale semaphore {}", name.to_string_lossy());
            Semaphore::open(name, flags)
        }
        other => other,
    }
}

/// One worker's life, in the forked child. Never returns.
fn worker(shared: &Mapping, sem: &Semaphore, iterations: u64) -> ! {
    let status = match work(shared, sem, iterations) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("task3-shm-counter: worker: {e}");
            1
        }
    };
    // SAFETY: _exit ends this process at once. Returning would run the
    // coordinator's code in the child (printing `count`, unlinking the names).
    unsafe { libc::_exit(status) }
}

fn work(shared: &Mapping, sem: &Semaphore, iterations: u64) -> nix::Result<()> {
    // Ctrl+C in a terminal signals the whole process group: only the
    // coordinator reacts, by setting `stop`. (Until these two calls the
    // child still has the coordinator's handler, which only sets `stop`.)
    install(Signal::SIGINT, SigHandler::SigIgn)?;
    install(Signal::SIGTERM, SigHandler::SigIgn)?;
    for _ in 0..iterations {
        sem.wait()?;
        if shared.stop().load(Ordering::SeqCst) != 0 {
            sem.post()?;
            break;
        }
        // Read, then write: without the semaphore, another process can write
        // between the two and its increment is lost.
        let count = shared.read_count();
        shared.write_count(count + 1);
        sem.post()?;
    }
    Ok(())
}

/// Waits for one line (or end of input) on stdin. Returns false when SIGINT
/// or SIGTERM came first, or with the line: then no worker may start.
fn wait_for_go() -> bool {
    let mut buf = [0u8; 256];
    loop {
        if SIGNAL.load(Ordering::SeqCst) != 0 {
            return false;
        }
        match read(io::stdin(), &mut buf) {
            Ok(0) => break,
            Ok(n) if buf[..n].contains(&b'\n') => break,
            // The handler ran (no SA_RESTART: read returns EINTR): the check
            // above sees it.
            Ok(_) | Err(Errno::EINTR) => {}
            // Unreadable stdin: as good as end of input.
            Err(_) => break,
        }
    }
    // A signal handled while read() returned the line (or end of input).
    SIGNAL.load(Ordering::SeqCst) == 0
}

/// Waits for every worker, reporting those that ended abnormally. Returns
/// true when all of them exited with status 0.
fn wait_for_workers(shared: &Mapping, pids: &[Pid]) -> bool {
    let mut all_ok = true;
    let mut left = pids.len();
    while left > 0 {
        let status = match waitpid(None, None) {
            Ok(status) => status,
            // A handler ran (it has set `stop`): keep waiting.
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("task3-shm-counter: waitpid: {e}");
                return false;
            }
        };
        let (pid, how): (Pid, Option<String>) = match status {
            WaitStatus::Exited(pid, 0) => (pid, None),
            WaitStatus::Exited(pid, code) => (pid, Some(format!("exited with status {code}"))),
            WaitStatus::Signaled(pid, signal, _) => {
                (pid, Some(format!("killed by {}", signal.as_str())))
            }
            // Stopped/continued: not reported without WUNTRACED/WCONTINUED.
            _ => continue,
        };
        let Some(i) = pids.iter().position(|&p| p == pid) else {
            continue; // not a worker (we have no other children)
        };
        left -= 1;
        if let Some(how) = how {
            println!("worker {i} {how}");
            // If it died holding the semaphore, nobody gets it again (out of
            // scope here); otherwise the others leave at their next turn.
            shared.stop().store(1, Ordering::SeqCst);
            all_ok = false;
        }
    }
    all_ok
}

/// Forks the workers. Returns their pids in fork order (worker I is
/// pids[I]) and false if a fork failed.
fn start_workers(
    shared: &Mapping,
    sem: &Semaphore,
    workers: u32,
    iterations: u64,
) -> (Vec<Pid>, bool) {
    let mut pids = Vec::new();
    for _ in 0..workers {
        // SAFETY: this program has a single thread, so the child may run any
        // code (in a multithreaded program only async-signal-safe calls
        // would be allowed in the child).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => worker(shared, sem, iterations),
            Ok(ForkResult::Parent { child }) => pids.push(child),
            Err(e) => {
                eprintln!("task3-shm-counter: fork: {e}");
                // The workers already running leave at their next turn.
                shared.stop().store(1, Ordering::SeqCst);
                return (pids, false);
            }
        }
    }
    (pids, true)
}

/// The coordinator's exit status.
fn exit_status(all_ok: bool) -> u8 {
    if !all_ok {
        return 1;
    }
    // Like a shell: 128 + the signal's number (130 for SIGINT, 143 for
    // SIGTERM).
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 0,
        signal => 128 + signal as u8,
    }
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

/// Cleaning up goes on after an error: it is only reported.
fn warn_on_error(what: &str, result: nix::Result<()>) {
    if let Err(e) = result {
        eprintln!("task3-shm-counter: {what}: {e}");
    }
}

/// Closes the semaphore and removes its name.
fn remove_sem(name: &CStr, sem: Semaphore) {
    warn_on_error("sem_close", sem.close());
    warn_on_error("sem_unlink", sem_unlink(name));
}

/// Unmaps the shared memory and removes its name.
fn remove_shm(name: &str, shared: Mapping) {
    // The handler must not touch the mapping once it is gone.
    STOP.store(ptr::null_mut(), Ordering::SeqCst);
    warn_on_error("munmap", shared.unmap());
    warn_on_error("shm_unlink", shm_unlink(name));
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
