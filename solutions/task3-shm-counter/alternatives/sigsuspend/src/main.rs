//! Task 3 (shared-memory counter): an alternative solution that reaps its
//! workers with sigsuspend(2).
//!
//! The reference blocks in waitpid(2) and retries it after EINTR. This
//! coordinator instead keeps SIGCHLD, SIGINT and SIGTERM blocked while the
//! workers run, reaps whatever has ended with waitpid(WNOHANG), and waits
//! for the next signal in sigsuspend(2), which unblocks them for the wait
//! only, atomically: a worker that ends (SIGCHLD) or a Ctrl+C between the
//! reaping and the wait stays pending, and sigsuspend returns at once.
//!
//! It also reads the go line with std's `read_until`, which retries after
//! EINTR by itself: a signal that comes while it waits for the line is
//! noticed when the line (or end of input) comes, and then no worker
//! starts. The handout allows both.

use std::ffi::{CStr, CString};
use std::io::{self, BufRead};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::signal::{
    sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ftruncate, ForkResult, Pid};

const USAGE: &str = "usage: task3-shm-counter NAME WORKERS ITERATIONS   (e.g. /cg-abc 4 20000)";
const SIZE: usize = 4096;

/// The contract's layout: `count` at offset 0, `stop` at offset 8.
#[repr(C)]
struct Shared {
    count: u64,
    stop: AtomicU32,
}

/// SIGINT or SIGTERM, once one came; 0 before.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `stop` in the mapping, for the handler; null while unmapped.
static STOP: AtomicPtr<AtomicU32> = AtomicPtr::new(ptr::null_mut());

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    let stop = STOP.load(Ordering::SeqCst);
    if !stop.is_null() {
        // SAFETY: STOP is non-null only while the mapping exists; the
        // coordinator has one thread, so munmap cannot run meanwhile.
        unsafe { (*stop).store(1, Ordering::SeqCst) };
    }
}

/// SIGCHLD's handler does nothing: it is there so that a worker's end
/// interrupts sigsuspend (SIGCHLD's default action is to be discarded).
extern "C" fn on_child(_: libc::c_int) {}

fn install(signal: Signal, handler: SigHandler, flags: SaFlags) -> nix::Result<()> {
    let action = SigAction::new(handler, flags, SigSet::empty());
    // SAFETY: the handlers only store into atomics, or do nothing.
    unsafe { sigaction(signal, &action) }.map(drop)
}

/// The signals the coordinator only takes inside sigsuspend while it reaps.
fn reaping_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGINT, Signal::SIGTERM] {
        set.add(signal);
    }
    set
}

struct Mapping(NonNull<Shared>);

impl Mapping {
    fn stop(&self) -> &AtomicU32 {
        // SAFETY: SIZE bytes stay mapped until unmap(self).
        unsafe { &(*self.0.as_ptr()).stop }
    }

    fn count(&self) -> u64 {
        // SAFETY: in bounds, aligned; volatile: other processes write it.
        unsafe { ptr::read_volatile(&raw const (*self.0.as_ptr()).count) }
    }

    fn set_count(&self, value: u64) {
        // SAFETY: as in count().
        unsafe { ptr::write_volatile(&raw mut (*self.0.as_ptr()).count, value) }
    }

    fn unmap(self) -> nix::Result<()> {
        STOP.store(ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: consumed: nothing uses the mapping afterwards.
        unsafe { munmap(self.0.cast(), SIZE) }
    }
}

/// Creates (or, after removing a stale one, re-creates) the object and maps it.
fn create_shm(name: &str) -> nix::Result<Mapping> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let fd = match shm_open(name, flags, mode) {
        Err(Errno::EEXIST) => {
            shm_unlink(name)?;
            println!("removed stale shared memory {name}");
            shm_open(name, flags, mode)?
        }
        other => other?,
    };
    let len = NonZeroUsize::new(SIZE).expect("SIZE is not 0");
    let mapped = ftruncate(&fd, SIZE as libc::off_t).and_then(|()| {
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a fresh mapping where the kernel chooses.
        unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, &fd, 0) }
    });
    match mapped {
        Ok(ptr) => Ok(Mapping(ptr.cast())),
        Err(e) => {
            let _ = shm_unlink(name);
            Err(e)
        }
    }
}

struct Semaphore(*mut libc::sem_t);

impl Semaphore {
    fn create(name: &CStr) -> nix::Result<Semaphore> {
        let open = || {
            // SAFETY: NUL-terminated name; mode and value as c_uint.
            let sem = unsafe {
                libc::sem_open(
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL,
                    0o600 as libc::c_uint,
                    1 as libc::c_uint,
                )
            };
            if sem == libc::SEM_FAILED {
                Err(Errno::last())
            } else {
                Ok(Semaphore(sem))
            }
        };
        match open() {
            Err(Errno::EEXIST) => {
                // SAFETY: NUL-terminated name.
                Errno::result(unsafe { libc::sem_unlink(name.as_ptr()) })?;
                println!("removed stale semaphore {}", name.to_string_lossy());
                open()
            }
            other => other,
        }
    }

    fn wait(&self) -> nix::Result<()> {
        // SAFETY: a semaphore from sem_open, not closed yet.
        while unsafe { libc::sem_wait(self.0) } != 0 {
            match Errno::last() {
                Errno::EINTR => {}
                e => return Err(e),
            }
        }
        Ok(())
    }

    fn post(&self) -> nix::Result<()> {
        // SAFETY: as in wait().
        Errno::result(unsafe { libc::sem_post(self.0) }).map(drop)
    }
}

/// A worker's life; never returns.
fn worker(shared: &Mapping, sem: &Semaphore, iterations: u64, mask: &SigSet) -> ! {
    let run = || -> nix::Result<()> {
        install(Signal::SIGINT, SigHandler::SigIgn, SaFlags::empty())?;
        install(Signal::SIGTERM, SigHandler::SigIgn, SaFlags::empty())?;
        install(Signal::SIGCHLD, SigHandler::SigDfl, SaFlags::empty())?;
        // The coordinator forked with its signals blocked: give the worker
        // the mask the program started with.
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)?;
        for _ in 0..iterations {
            sem.wait()?;
            if shared.stop().load(Ordering::SeqCst) != 0 {
                sem.post()?;
                break;
            }
            let count = shared.count();
            shared.set_count(count + 1);
            sem.post()?;
        }
        Ok(())
    };
    let status = match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("task3-shm-counter: worker: {e}");
            1
        }
    };
    // SAFETY: ends the child without running the coordinator's code.
    unsafe { libc::_exit(status) }
}

/// Reaps every worker of `pids`; true if all of them exited with status 0.
fn reap(shared: &Mapping, pids: &[Pid], mask: &SigSet) -> bool {
    let mut all_ok = true;
    let mut left = pids.len();
    while left > 0 {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                // Nothing more has ended: wait for the next signal, with the
                // signals unblocked for the wait only. Its handler has run
                // when this returns (always with EINTR).
                let _ = mask.suspend();
                continue;
            }
            Ok(status) => {
                let (pid, how) = match status {
                    WaitStatus::Exited(pid, 0) => (pid, None),
                    WaitStatus::Exited(pid, code) => {
                        (pid, Some(format!("exited with status {code}")))
                    }
                    WaitStatus::Signaled(pid, signal, _) => {
                        (pid, Some(format!("killed by {}", signal.as_str())))
                    }
                    _ => continue,
                };
                let Some(i) = pids.iter().position(|&p| p == pid) else {
                    continue;
                };
                left -= 1;
                if let Some(how) = how {
                    println!("worker {i} {how}");
                    shared.stop().store(1, Ordering::SeqCst);
                    all_ok = false;
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("task3-shm-counter: waitpid: {e}");
                return false;
            }
        }
    }
    all_ok
}

/// Reads the go line (or end of input). False if a signal came first.
fn go_line() -> bool {
    let mut line = Vec::new();
    // read_until retries after EINTR: a signal while we wait here is seen
    // below, once the line or end of input has come.
    let _ = io::stdin().lock().read_until(b'\n', &mut line);
    SIGNAL.load(Ordering::SeqCst) == 0
}

fn coordinate(shared: &Mapping, sem: &Semaphore, workers: u32, iterations: u64) -> nix::Result<u8> {
    println!("ready");
    let original = SigSet::thread_get_mask()?;
    let mut pids = Vec::new();
    let mut all_ok = true;
    if go_line() {
        // Blocked from here until the last worker is reaped, except inside
        // sigsuspend.
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&reaping_signals()), None)?;
        for _ in 0..workers {
            // SAFETY: one thread, so the child may run any code.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => worker(shared, sem, iterations, &original),
                Ok(ForkResult::Parent { child }) => pids.push(child),
                Err(e) => {
                    eprintln!("task3-shm-counter: fork: {e}");
                    shared.stop().store(1, Ordering::SeqCst);
                    all_ok = false;
                    break;
                }
            }
        }
        println!("started {} workers", pids.len());
        all_ok &= reap(shared, &pids, &original);
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&original), None)?;
    }
    sem.wait()?;
    let count = shared.count();
    sem.post()?;
    println!("count {count}");
    Ok(match (all_ok, SIGNAL.load(Ordering::SeqCst)) {
        (false, _) => 1,
        (true, 0) => 0,
        (true, signal) => 128 + signal as u8,
    })
}

fn run(name: &str, workers: u32, iterations: u64) -> Result<u8, String> {
    let cname = CString::new(name).map_err(|e| e.to_string())?;
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        install(signal, SigHandler::Handler(on_signal), SaFlags::empty())
            .map_err(|e| format!("sigaction: {e}"))?;
    }
    install(
        Signal::SIGCHLD,
        SigHandler::Handler(on_child),
        SaFlags::SA_NOCLDSTOP,
    )
    .map_err(|e| format!("sigaction: {e}"))?;

    let shared = create_shm(name).map_err(|e| format!("shared memory {name}: {e}"))?;
    STOP.store(ptr::from_ref(shared.stop()).cast_mut(), Ordering::SeqCst);
    let sem = match Semaphore::create(&cname) {
        Ok(sem) => sem,
        Err(e) => {
            let _ = shared.unmap();
            let _ = shm_unlink(name);
            return Err(format!("semaphore {name}: {e}"));
        }
    };

    let outcome = coordinate(&shared, &sem, workers, iterations);

    // SAFETY: closed once; nothing uses it afterwards.
    unsafe { libc::sem_close(sem.0) };
    // SAFETY: NUL-terminated name.
    unsafe { libc::sem_unlink(cname.as_ptr()) };
    let _ = shared.unmap();
    let _ = shm_unlink(name);
    outcome.map_err(|e| format!("{e}"))
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

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
