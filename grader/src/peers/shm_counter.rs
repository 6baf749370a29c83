//! `cargo-grade peer shm-counter NAME`: the grader as a fellow worker on
//! task3's shared counter.
//!
//! It opens the submission's shared memory object NAME and its named
//! semaphore NAME (both must exist: it creates nothing), prints `attached`,
//! then answers one line per command read on stdin:
//!
//! | command     | does                                                     | answer                      |
//! |-------------|----------------------------------------------------------|-----------------------------|
//! | `lock`      | sem_wait; remembers the count                            | `locked at C`               |
//! | `unlock`    | checks the count did not move; sem_post                  | `unlocked, count unchanged` |
//! | `add N`     | while it holds the semaphore: adds N to the count        | `added N, count C`          |
//! | `stat`      | the objects as created: size, modes, semaphore value     | `shm S bytes mode M, semaphore value V mode M` |
//! | `work N`    | N increments following the locking protocol              | `worked N`                  |
//! | `wait-stop` | waits (up to 5 s) until `stop` is set                    | `stop set` / `stop never set` |
//! | `final`     | reads the count through its mapping                      | `final C`                   |
//!
//! The point of it: while the grader holds the semaphore, no worker that
//! follows the protocol can touch the count. If the count moves anyway,
//! `unlock` and `work` answer `VIOLATION: the count moved from A to B while
//! the grader held the semaphore`. During `work`, every 16th increment holds
//! the lock a little longer (about 200 re-reads, spinning) to give a worker
//! that ignores the lock a chance to show it.
//!
//! `add` is what one more worker does, in one step: the count it leaves
//! is the one `unlock` then expects. A program that reads the final count
//! without taking the semaphore misses it. `stat` reads the shared memory
//! object's size and permission bits (`fstat` of a fresh `shm_open`), and
//! the semaphore's value (`sem_getvalue`) and permission bits (glibc keeps
//! it as the file `/dev/shm/sem.NAME`); modes in octal, `600`.
//!
//! Errors (the objects do not exist, a command out of place) are answered
//! with a line starting `error: ` on stdout, where the test reads its
//! answers; failing to attach exits with status 2. End of input exits with
//! status 0, releasing the semaphore first if the grader still holds it.
//!
//! The layout is task3's contract: `count: u64` at offset 0, `stop:
//! AtomicU32` at offset 8. The mapping stays valid after the submission has
//! unlinked the name or exited, so `final` can still read the count.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::deadline::{poll_until, Deadline};

/// Bytes of the object the grader needs: count (8) and stop (4), padded.
const NEEDED: usize = 16;
/// During `work`, every HOLD_EVERY-th increment holds the lock longer...
const HOLD_EVERY: u64 = 16;
/// ...re-reading the count this many times.
const HOLD_READS: u32 = 200;
/// How long `wait-stop` waits for `stop`.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

pub fn run(args: &[String]) -> i32 {
    let [name] = args else {
        println!("error: usage: cargo-grade peer shm-counter NAME");
        return 2;
    };
    let mut counter = match Counter::attach(name) {
        Ok(counter) => counter,
        Err(e) => {
            println!("error: {e}");
            return 2;
        }
    };
    say("attached");
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = counter.command(line.trim_end());
        say(&answer);
    }
    if counter.held.is_some() {
        let _ = counter.post();
    }
    0
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn violation(from: u64, to: u64) -> String {
    format!("VIOLATION: the count moved from {from} to {to} while the grader held the semaphore")
}

/// The submission's objects, as the grader sees them.
struct Counter {
    /// NAME, as given (with its `/`).
    name: String,
    /// Start of the mapping: `count` at offset 0, `stop` at offset 8.
    base: *mut u8,
    sem: *mut libc::sem_t,
    /// The count when `lock` took the semaphore (Some while held).
    held: Option<u64>,
}

impl Counter {
    fn attach(name: &str) -> Result<Counter, String> {
        let cname = CString::new(name).map_err(|_| format!("bad name {name:?}"))?;

        // SAFETY: cname is NUL-terminated; without O_CREAT no mode is read.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(format!("cannot open shared memory {name}: {e}"));
        }
        // SAFETY: fd was just returned by shm_open and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let size = file
            .metadata()
            .map_err(|e| format!("fstat {name}: {e}"))?
            .len();
        if size < NEEDED as u64 {
            // Touching bytes past the end of the object would raise SIGBUS.
            return Err(format!(
                "shared memory {name} is {size} bytes, expected at least {NEEDED}"
            ));
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh mapping at an address the kernel picks (null), so
        // it overlaps nothing; the object is at least NEEDED bytes long.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                NEEDED,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap {name}: {}", io::Error::last_os_error()));
        }
        // The file descriptor closes here; the mapping stays (never unmapped:
        // it lives as long as this process).

        // SAFETY: cname is NUL-terminated; without O_CREAT no more arguments
        // are read.
        let sem = unsafe { libc::sem_open(cname.as_ptr(), 0) };
        if sem == libc::SEM_FAILED {
            let e = io::Error::last_os_error();
            return Err(format!("cannot open semaphore {name}: {e}"));
        }
        Ok(Counter {
            name: name.to_owned(),
            base: base.cast(),
            sem,
            held: None,
        })
    }

    fn count(&self) -> u64 {
        // SAFETY: base is page-aligned and NEEDED (>= 8) bytes stay mapped for
        // the life of the process. Volatile: another process writes it.
        unsafe { ptr::read_volatile(self.base.cast::<u64>()) }
    }

    fn set_count(&self, value: u64) {
        // SAFETY: as in count().
        unsafe { ptr::write_volatile(self.base.cast::<u64>(), value) }
    }

    fn stop(&self) -> &AtomicU32 {
        // SAFETY: offset 8 is 4-aligned and within the NEEDED mapped bytes,
        // which stay mapped for the life of the process; an atomic may be
        // written concurrently by other processes.
        unsafe { AtomicU32::from_ptr(self.base.add(8).cast::<u32>()) }
    }

    /// sem_wait, retried after EINTR.
    fn wait(&self) -> io::Result<()> {
        loop {
            // SAFETY: sem came from sem_open and is never closed.
            if unsafe { libc::sem_wait(self.sem) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn post(&self) -> io::Result<()> {
        // SAFETY: as in wait().
        if unsafe { libc::sem_post(self.sem) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Runs one command; returns the answer line.
    fn command(&mut self, line: &str) -> String {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("lock"), None, _) => self.lock(),
            (Some("unlock"), None, _) => self.unlock(),
            (Some("work"), Some(n), None) => match n.parse() {
                Ok(n) => self.work(n),
                Err(_) => format!("error: bad number in `{line}`"),
            },
            (Some("add"), Some(n), None) => match n.parse() {
                Ok(n) => self.add(n),
                Err(_) => format!("error: bad number in `{line}`"),
            },
            (Some("stat"), None, _) => self.stat(),
            (Some("wait-stop"), None, _) => self.wait_stop(),
            (Some("final"), None, _) => format!("final {}", self.count()),
            _ => format!("error: unknown command `{line}`"),
        }
    }

    fn lock(&mut self) -> String {
        if self.held.is_some() {
            return "error: the grader already holds the semaphore".into();
        }
        if let Err(e) = self.wait() {
            return format!("error: sem_wait: {e}");
        }
        let count = self.count();
        self.held = Some(count);
        format!("locked at {count}")
    }

    fn unlock(&mut self) -> String {
        let Some(before) = self.held.take() else {
            return "error: the grader does not hold the semaphore".into();
        };
        let now = self.count();
        let answer = if now == before {
            "unlocked, count unchanged".to_string()
        } else {
            violation(before, now)
        };
        match self.post() {
            Ok(()) => answer,
            Err(e) => format!("error: sem_post: {e}"),
        }
    }

    /// Adds `n` to the count while the grader holds the semaphore.
    fn add(&mut self, n: u64) -> String {
        let Some(before) = self.held else {
            return "error: the grader does not hold the semaphore (lock first)".into();
        };
        let now = self.count();
        if now != before {
            return violation(before, now);
        }
        let count = now + n;
        self.set_count(count);
        self.held = Some(count);
        format!("added {n}, count {count}")
    }

    /// The objects' size, permission bits and the semaphore's value.
    fn stat(&self) -> String {
        use std::os::unix::fs::PermissionsExt;
        let Ok(cname) = CString::new(self.name.as_str()) else {
            return format!("error: bad name {:?}", self.name);
        };
        // SAFETY: cname is NUL-terminated; without O_CREAT no mode is read.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDONLY, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return format!("error: cannot open shared memory {}: {e}", self.name);
        }
        // SAFETY: fd was just returned by shm_open and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let shm = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return format!("error: fstat {}: {e}", self.name),
        };
        let sem_file = format!("/dev/shm/sem.{}", self.name.trim_start_matches('/'));
        let sem_mode = match std::fs::metadata(&sem_file) {
            Ok(meta) => format!("{:o}", meta.permissions().mode() & 0o7777),
            Err(e) => return format!("error: {sem_file}: {e}"),
        };
        let mut value: libc::c_int = 0;
        // SAFETY: sem came from sem_open and is never closed; value is a
        // valid place for the result.
        if unsafe { libc::sem_getvalue(self.sem, &mut value) } != 0 {
            return format!("error: sem_getvalue: {}", io::Error::last_os_error());
        }
        format!(
            "shm {} bytes mode {:o}, semaphore value {value} mode {sem_mode}",
            shm.len(),
            shm.permissions().mode() & 0o7777
        )
    }

    /// `n` increments, each under the semaphore, checking that the count
    /// does not move while the grader holds it.
    fn work(&mut self, n: u64) -> String {
        if self.held.is_some() {
            return "error: the grader holds the semaphore (unlock first)".into();
        }
        let mut first_violation = None;
        for i in 0..n {
            if let Err(e) = self.wait() {
                return format!("error: sem_wait: {e}");
            }
            let count = self.count();
            let reads = if i % HOLD_EVERY == 0 { HOLD_READS } else { 1 };
            for _ in 0..reads {
                std::hint::spin_loop();
                let now = self.count();
                if now != count && first_violation.is_none() {
                    first_violation = Some((count, now));
                }
            }
            self.set_count(count + 1);
            if let Err(e) = self.post() {
                return format!("error: sem_post: {e}");
            }
        }
        match first_violation {
            None => format!("worked {n}"),
            Some((from, to)) => violation(from, to),
        }
    }

    /// Waits until `stop` is set: a condition with a deadline.
    fn wait_stop(&self) -> String {
        let deadline = Deadline::after(STOP_DEADLINE);
        match poll_until(deadline, || {
            (self.stop().load(Ordering::SeqCst) != 0).then_some(())
        }) {
            Some(()) => "stop set".into(),
            None => "stop never set".into(),
        }
    }
}
