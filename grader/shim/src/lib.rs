//! I/O fault injection for graded programs, loaded with `LD_PRELOAD`.
//!
//! # Why
//!
//! On Linux, a `write` to a pipe or socket almost always writes everything
//! and a `read` almost always returns a whole message, so code that ignores
//! the count a call returns, or that treats `EINTR` as fatal, passes every
//! test on a quiet machine and fails under load, on a signal, or with a
//! bigger message. POSIX allows all three outcomes at any time. This shim
//! makes them happen on purpose so that the grader can tell robust code
//! (loops until done, retries `EINTR`: `write_all`, `read_exact`, coreutils)
//! from code that merely got lucky.
//!
//! # What
//!
//! The shim replaces libc's `read`, `write`, `readv`, `writev`, `recv`,
//! `send`, `recvfrom` and `sendto` (and glibc's fortified `__read_chk`,
//! `__recv_chk`, `__recvfrom_chk`). Each replacement does the real work
//! with a raw `syscall(2)` (never the libc function, so there is no
//! `dlsym` and no recursion) and, on a seeded subset of calls, either
//!
//! - fails with `EINTR` without doing anything, or
//! - asks the kernel for fewer bytes than the caller did (a short read or
//!   write of between 1 and count − 1 bytes).
//!
//! # Configuration
//!
//! `CARGO_GRADE_FAULTS=seed=42,short_reads=0.5,short_writes=1.0,eintr=0.2`
//! (every key optional; probabilities in 0..=1; `stdio=1` also targets fds
//! 0–2). A missing or invalid variable, or all probabilities zero, turns the
//! shim into a pure pass-through. If `CARGO_GRADE_FAULTS_LOG` names a file
//! (give an absolute path), each process appends one line at normal exit:
//! `pid=<pid> short_reads=<n> short_writes=<n> eintr=<n>` (best effort: a
//! process killed by a signal or ending in `_exit`/`exec` writes nothing; a
//! forked child counts only its own faults).
//!
//! # Guarantees
//!
//! - Only FIFOs/pipes and sockets are touched, never fds 0, 1 and 2 unless
//!   `stdio=1`: regular files, terminals, eventfds and the like pass through.
//! - Every fault is one that POSIX and Linux can produce, so correct code
//!   always passes:
//!   - a write of at most `PIPE_BUF` bytes to a pipe is never shortened
//!     (POSIX makes it atomic), nor is any write to a pipe in packet mode
//!     (`O_DIRECT`);
//!   - datagram and seqpacket sockets are never shortened (a short read
//!     would truncate a message, a short write would split one); only
//!     stream sockets are, and never a `recv` with `MSG_WAITALL`;
//!   - `EINTR` never comes twice in a row to the same thread in the same
//!     direction (read-like or write-like), so a retrying caller always
//!     makes progress, and a shortened call always asks for at least one
//!     byte.
//! - The decisions are a function of the seed and of a per-process counter
//!   of eligible calls, so a single-threaded program given the same input
//!   (in the same chunks) sees the same faults on every run.
//! - Code that ignores short counts is caught with certainty when
//!   `short_writes=1.0` (every eligible write larger than `PIPE_BUF` to a
//!   pipe, and every write of two bytes or more to a stream socket, comes
//!   back short) or `short_reads=1.0`.
//!
//! # Limits
//!
//! Only calls that go through the dynamic symbol table are seen: glibc's
//! own internal calls (stdio's `fwrite`/`printf` buffers, `posix_spawn`),
//! `pread`/`pwrite`, `recvmsg`/`sendmsg`, `splice`/`sendfile`/
//! `copy_file_range` (which `std::io::copy` may use) and statically linked
//! programs are not affected. The real calls are not pthread cancellation
//! points.
//!
//! Nothing here panics or allocates after the one-time parse of the
//! configuration, which runs when the library is loaded.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libc::{iovec, size_t, sockaddr, socklen_t, ssize_t};

const ENV_FAULTS: &str = "CARGO_GRADE_FAULTS";
const ENV_LOG: &str = "CARGO_GRADE_FAULTS_LOG";

/// Linux's `UIO_MAXIOV`: more iovecs and the kernel says `EINVAL`.
const IOV_MAX: c_int = 1024;

/// The fault configuration parsed from `CARGO_GRADE_FAULTS`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Config {
    seed: u64,
    short_reads: f64,
    short_writes: f64,
    eintr: f64,
    /// Also inject into fds 0, 1 and 2.
    stdio: bool,
}

impl Config {
    const NONE: Config = Config {
        seed: 0,
        short_reads: 0.0,
        short_writes: 0.0,
        eintr: 0.0,
        stdio: false,
    };

    fn is_active(&self) -> bool {
        self.short_reads > 0.0 || self.short_writes > 0.0 || self.eintr > 0.0
    }
}

/// Parses `key=value,key=value`. Any unknown key, malformed value or
/// probability outside 0..=1 makes the whole configuration invalid
/// (`None`), so a typo never half-applies.
fn parse_config(text: &str) -> Option<Config> {
    let mut config = Config::NONE;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = item.split_once('=')?;
        let value = value.trim();
        let probability = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
        };
        match key.trim() {
            "seed" => config.seed = value.parse().ok()?,
            "short_reads" => config.short_reads = probability()?,
            "short_writes" => config.short_writes = probability()?,
            "eintr" => config.eintr = probability()?,
            "stdio" => {
                config.stdio = match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    Some(config)
}

/// The process's configuration and log file, if faults are on.
struct Active {
    config: Config,
    log: Option<CString>,
}

static STATE: OnceLock<Option<Active>> = OnceLock::new();

/// Eligible calls so far: the index of the next decision.
static CALLS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    /// Whether this thread's last eligible read-like and write-like calls
    /// got `EINTR` (per thread, so that other threads' calls cannot make a
    /// thread see `EINTR` twice in a row). Const-initialised without a
    /// destructor: access never allocates and never fails.
    static LAST_EINTR: Cell<[bool; 2]> = const { Cell::new([false; 2]) };
}
/// Faults injected by this process.
static SHORT_READS: AtomicU64 = AtomicU64::new(0);
static SHORT_WRITES: AtomicU64 = AtomicU64::new(0);
static EINTRS: AtomicU64 = AtomicU64::new(0);

fn state() -> Option<&'static Active> {
    STATE.get_or_init(init).as_ref()
}

fn init() -> Option<Active> {
    let raw = std::env::var_os(ENV_FAULTS)?;
    let config = parse_config(raw.to_str()?)?;
    if !config.is_active() {
        return None;
    }
    let log = std::env::var_os(ENV_LOG)
        .filter(|path| !path.is_empty())
        .and_then(|path| CString::new(path.into_vec()).ok());
    // SAFETY: both register plain `extern "C" fn()` callbacks that only
    // touch atomics, the (by then initialised) state and raw syscalls.
    unsafe {
        if log.is_some() {
            libc::atexit(write_log);
        }
        libc::pthread_atfork(None, None, Some(reset_after_fork));
    }
    Some(Active { config, log })
}

/// Parses the configuration when the library is loaded, before `main`, so
/// that the first interposed call (possibly in a signal handler) never
/// allocates.
#[used]
#[link_section = ".init_array"]
static INIT_AT_LOAD: extern "C" fn() = init_at_load;

extern "C" fn init_at_load() {
    let _ = state();
}

/// A forked child reports only the faults it injects itself.
extern "C" fn reset_after_fork() {
    SHORT_READS.store(0, Ordering::Relaxed);
    SHORT_WRITES.store(0, Ordering::Relaxed);
    EINTRS.store(0, Ordering::Relaxed);
}

/// A line buffer on the stack: formatting into it never allocates.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Appends this process's summary line to the log (`atexit` handler).
extern "C" fn write_log() {
    let Some(Some(Active {
        log: Some(path), ..
    })) = STATE.get()
    else {
        return;
    };
    let mut line = Line {
        buf: [0; 160],
        len: 0,
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    if writeln!(
        line,
        "pid={pid} short_reads={} short_writes={} eintr={}",
        SHORT_READS.load(Ordering::Relaxed),
        SHORT_WRITES.load(Ordering::Relaxed),
        EINTRS.load(Ordering::Relaxed),
    )
    .is_err()
    {
        return;
    }
    // SAFETY: raw syscalls on a NUL-terminated path and a stack buffer.
    unsafe {
        let saved = errno();
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD as libc::c_long,
            path.as_ptr(),
            (libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC) as libc::c_long,
            0o644 as libc::c_long,
        );
        if fd >= 0 {
            libc::syscall(libc::SYS_write, fd, line.buf.as_ptr(), line.len);
            libc::syscall(libc::SYS_close, fd);
        }
        set_errno(saved);
    }
}

// ---------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random draws of one call: a splitmix64 stream keyed by the seed and
/// the call's index.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, call: u64) -> Draws {
        Draws(seed ^ splitmix64(call ^ 0x5eed_5eed_5eed_5eed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        splitmix64(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n), n > 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read = 0,
    Write = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Pass,
    Eintr,
    /// Ask the kernel for this many bytes (1 ..= count − 1).
    Short(usize),
}

/// The fate of eligible call number `call` for `count` bytes. Pure: the
/// same arguments always give the same decision. Every call consumes the
/// same draws, whatever is decided.
fn decide(config: &Config, call: u64, dir: Dir, count: usize, eintr_allowed: bool) -> Decision {
    let mut draws = Draws::new(config.seed, call);
    let eintr = draws.unit();
    let short = draws.unit();
    let length = 1 + draws.below(count.saturating_sub(1).max(1) as u64) as usize;
    if eintr_allowed && eintr < config.eintr {
        return Decision::Eintr;
    }
    let p = match dir {
        Dir::Read => config.short_reads,
        Dir::Write => config.short_writes,
    };
    if count >= 2 && short < p {
        return Decision::Short(length);
    }
    Decision::Pass
}

// ---------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fifo,
    Socket,
    Other,
}

fn errno() -> c_int {
    // SAFETY: the thread's errno location is always valid.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

fn fd_kind(fd: c_int) -> Kind {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a struct stat on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Kind::Other;
    }
    // SAFETY: initialised by the successful fstat.
    match unsafe { st.assume_init() }.st_mode & libc::S_IFMT {
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Other,
    }
}

/// Whether a shortened call on `fd` is something the kernel could do.
fn may_shorten(fd: c_int, kind: Kind, dir: Dir, count: usize, flags: c_int) -> bool {
    match kind {
        Kind::Fifo => {
            if dir == Dir::Write && count <= libc::PIPE_BUF {
                return false;
            }
            // SAFETY: F_GETFL takes no argument.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            fl >= 0 && fl & libc::O_DIRECT == 0
        }
        Kind::Socket => {
            if dir == Dir::Read && flags & libc::MSG_WAITALL != 0 {
                return false;
            }
            let mut ty: c_int = 0;
            let mut len = std::mem::size_of::<c_int>() as socklen_t;
            // SAFETY: SO_TYPE writes one c_int.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut ty as *mut c_int).cast(),
                    &mut len,
                )
            };
            rc == 0 && ty == libc::SOCK_STREAM
        }
        Kind::Other => false,
    }
}

/// What to do with one interposed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Pass,
    Eintr,
    Short(usize),
}

/// Decides the fate of a call on `fd` for `count` bytes. `sockets_only`
/// for the socket calls (on anything else they fail in the kernel).
fn plan(fd: c_int, dir: Dir, count: usize, flags: c_int, sockets_only: bool) -> Plan {
    let Some(active) = state() else {
        return Plan::Pass;
    };
    if count == 0 || fd < 0 || (fd <= 2 && !active.config.stdio) {
        return Plan::Pass;
    }
    let saved = errno();
    let plan = plan_eligible(&active.config, fd, dir, count, flags, sockets_only);
    set_errno(saved);
    plan
}

fn plan_eligible(
    config: &Config,
    fd: c_int,
    dir: Dir,
    count: usize,
    flags: c_int,
    sockets_only: bool,
) -> Plan {
    let kind = fd_kind(fd);
    if kind == Kind::Other || (sockets_only && kind != Kind::Socket) {
        return Plan::Pass;
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let slot = dir as usize;
    // Unreachable fallback (no destructor, so never destroyed): no EINTR.
    let eintr_allowed = LAST_EINTR.try_with(|l| !l.get()[slot]).unwrap_or(false);
    let set_last_eintr = |value: bool| {
        let _ = LAST_EINTR.try_with(|l| {
            let mut last = l.get();
            last[slot] = value;
            l.set(last);
        });
    };
    match decide(config, call, dir, count, eintr_allowed) {
        Decision::Eintr => {
            set_last_eintr(true);
            EINTRS.fetch_add(1, Ordering::Relaxed);
            Plan::Eintr
        }
        Decision::Short(n) => {
            set_last_eintr(false);
            if may_shorten(fd, kind, dir, count, flags) {
                match dir {
                    Dir::Read => SHORT_READS.fetch_add(1, Ordering::Relaxed),
                    Dir::Write => SHORT_WRITES.fetch_add(1, Ordering::Relaxed),
                };
                Plan::Short(n)
            } else {
                Plan::Pass
            }
        }
        Decision::Pass => {
            set_last_eintr(false);
            Plan::Pass
        }
    }
}

fn fail_eintr() -> ssize_t {
    set_errno(libc::EINTR);
    -1
}

/// Total length of an iovec array, or `None` if the kernel would reject
/// the count anyway (then the call passes through to fail there).
///
/// # Safety
/// `iov` must point to `iovcnt` iovecs when `iovcnt` is in 1..=[`IOV_MAX`].
unsafe fn iov_total(iov: *const iovec, iovcnt: c_int) -> Option<usize> {
    if iov.is_null() || iovcnt <= 0 || iovcnt > IOV_MAX {
        return None;
    }
    // SAFETY: the caller passed iovcnt iovecs.
    let iovs = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    Some(iovs.iter().fold(0usize, |t, v| t.saturating_add(v.iov_len)))
}

/// A prefix of at most `n` bytes of the first non-empty iovec.
///
/// # Safety
/// As [`iov_total`].
unsafe fn iov_prefix(iov: *const iovec, iovcnt: c_int, n: usize) -> iovec {
    // SAFETY: the caller passed iovcnt iovecs (checked by iov_total).
    let iovs = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    let first = iovs
        .iter()
        .find(|v| v.iov_len > 0)
        .copied()
        .unwrap_or(iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
    iovec {
        iov_base: first.iov_base,
        iov_len: first.iov_len.min(n),
    }
}

fn ret(rc: libc::c_long) -> ssize_t {
    rc as ssize_t
}

// ---------------------------------------------------------------------
// The interposed functions
// ---------------------------------------------------------------------

/// Replaces libc's `read(2)`.
///
/// # Safety
/// As `read(2)`: `buf` must be valid for `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let count = match plan(fd, Dir::Read, count, 0, false) {
        Plan::Eintr => return fail_eintr(),
        Plan::Short(n) => n,
        Plan::Pass => count,
    };
    // SAFETY: the caller's buffer, for at most the caller's count.
    ret(unsafe { libc::syscall(libc::SYS_read, fd as libc::c_long, buf, count) })
}

/// Replaces libc's `write(2)`.
///
/// # Safety
/// As `write(2)`: `buf` must be valid for `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let count = match plan(fd, Dir::Write, count, 0, false) {
        Plan::Eintr => return fail_eintr(),
        Plan::Short(n) => n,
        Plan::Pass => count,
    };
    // SAFETY: as in read.
    ret(unsafe { libc::syscall(libc::SYS_write, fd as libc::c_long, buf, count) })
}

/// Replaces libc's `readv(2)`. A shortened call reads into a prefix of the
/// first non-empty buffer only.
///
/// # Safety
/// As `readv(2)`.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, as readv(2) takes them.
    unsafe { vectored(libc::SYS_readv, Dir::Read, fd, iov, iovcnt) }
}

/// Replaces libc's `writev(2)`. A shortened call writes a prefix of the
/// first non-empty buffer only.
///
/// # Safety
/// As `writev(2)`.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, as writev(2) takes them.
    unsafe { vectored(libc::SYS_writev, Dir::Write, fd, iov, iovcnt) }
}

/// `readv`/`writev` (`call`) with the planned fault applied.
///
/// # Safety
/// As `readv(2)`/`writev(2)`: `iov` points to `iovcnt` valid iovecs.
unsafe fn vectored(
    call: libc::c_long,
    dir: Dir,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
) -> ssize_t {
    // SAFETY: the caller's iovecs.
    if let Some(total) = unsafe { iov_total(iov, iovcnt) } {
        match plan(fd, dir, total, 0, false) {
            Plan::Eintr => return fail_eintr(),
            Plan::Short(n) => {
                // SAFETY: as above; the prefix lies within the caller's buffer.
                let one = unsafe { iov_prefix(iov, iovcnt, n) };
                let one_ptr: *const iovec = &one;
                // SAFETY: one valid iovec, on the caller's fd.
                return ret(unsafe {
                    libc::syscall(call, fd as libc::c_long, one_ptr, 1 as libc::c_long)
                });
            }
            Plan::Pass => {}
        }
    }
    // SAFETY: the caller's arguments, unchanged.
    ret(unsafe { libc::syscall(call, fd as libc::c_long, iov, iovcnt as libc::c_long) })
}

/// Replaces libc's `recvfrom(2)`.
///
/// # Safety
/// As `recvfrom(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    let len = match plan(fd, Dir::Read, len, flags, true) {
        Plan::Eintr => return fail_eintr(),
        Plan::Short(n) => n,
        Plan::Pass => len,
    };
    // SAFETY: the caller's arguments, with at most the caller's length.
    ret(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd as libc::c_long,
            buf,
            len,
            flags as libc::c_long,
            addr,
            addrlen,
        )
    })
}

/// Replaces libc's `recv(2)`.
///
/// # Safety
/// As `recv(2)`.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: recv is recvfrom without an address.
    unsafe {
        recvfrom(
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// Replaces libc's `sendto(2)`.
///
/// # Safety
/// As `sendto(2)`.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    let len = match plan(fd, Dir::Write, len, flags, true) {
        Plan::Eintr => return fail_eintr(),
        Plan::Short(n) => n,
        Plan::Pass => len,
    };
    // SAFETY: the caller's arguments, with at most the caller's length.
    ret(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            buf,
            len,
            flags as libc::c_long,
            addr,
            addrlen as libc::c_long,
        )
    })
}

/// Replaces libc's `send(2)`.
///
/// # Safety
/// As `send(2)`.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: send is sendto without an address.
    unsafe { sendto(fd, buf, len, flags, std::ptr::null(), 0) }
}

/// Replaces glibc's fortified `read` (C code built with
/// `_FORTIFY_SOURCE` calls it when the buffer's size is known).
///
/// # Safety
/// As `read(2)`; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buflen: size_t,
) -> ssize_t {
    if count > buflen {
        // glibc's __chk_fail: a buffer overflow the compiler caught.
        // SAFETY: abort never returns.
        unsafe { libc::abort() }
    }
    // SAFETY: checked above.
    unsafe { read(fd, buf, count) }
}

/// Replaces glibc's fortified `recv`.
///
/// # Safety
/// As `recv(2)`; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen {
        // SAFETY: abort never returns.
        unsafe { libc::abort() }
    }
    // SAFETY: checked above.
    unsafe { recv(fd, buf, len, flags) }
}

/// Replaces glibc's fortified `recvfrom`.
///
/// # Safety
/// As `recvfrom(2)`; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen {
        // SAFETY: abort never returns.
        unsafe { libc::abort() }
    }
    // SAFETY: checked above.
    unsafe { recvfrom(fd, buf, len, flags, addr, addrlen) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64, short_reads: f64, short_writes: f64, eintr: f64) -> Config {
        Config {
            seed,
            short_reads,
            short_writes,
            eintr,
            stdio: false,
        }
    }

    #[test]
    fn parses_a_full_configuration() {
        assert_eq!(
            parse_config("seed=42,short_reads=0.5,short_writes=1.0,eintr=0.2"),
            Some(config(42, 0.5, 1.0, 0.2))
        );
        assert_eq!(
            parse_config(" seed = 7 , stdio=1, short_writes=1 ,"),
            Some(Config {
                stdio: true,
                ..config(7, 0.0, 1.0, 0.0)
            })
        );
    }

    #[test]
    fn missing_keys_default_to_no_faults() {
        let c = parse_config("").unwrap();
        assert_eq!(c, Config::NONE);
        assert!(!c.is_active());
        assert!(parse_config("seed=3").is_some_and(|c| !c.is_active()));
        assert!(parse_config("eintr=0.1").is_some_and(|c| c.is_active() && c.seed == 0));
    }

    #[test]
    fn rejects_anything_invalid() {
        for bad in [
            "short_writes=1.5",
            "short_writes=-0.1",
            "eintr=NaN",
            "eintr=inf",
            "short_reads=",
            "short_reads",
            "seed=-1",
            "seed=abc",
            "short_write=1.0",
            "stdio=yes",
            "seed=1;eintr=0.5",
        ] {
            assert_eq!(parse_config(bad), None, "{bad}");
        }
    }

    #[test]
    fn certain_short_writes_always_shorten_within_bounds() {
        let c = config(1, 0.0, 1.0, 0.0);
        for call in 0..10_000 {
            let count = 2 + (call as usize % 70_000);
            match decide(&c, call, Dir::Write, count, true) {
                Decision::Short(n) => assert!((1..count).contains(&n), "{n} of {count}"),
                other => panic!("call {call}: {other:?}"),
            }
            assert_eq!(decide(&c, call, Dir::Read, count, true), Decision::Pass);
        }
    }

    #[test]
    fn one_byte_and_zero_probability_are_never_touched() {
        let c = config(9, 1.0, 1.0, 0.0);
        for call in 0..1000 {
            assert_eq!(decide(&c, call, Dir::Read, 1, true), Decision::Pass);
            assert_eq!(decide(&c, call, Dir::Write, 1, true), Decision::Pass);
        }
        let none = config(9, 0.0, 0.0, 0.0);
        for call in 0..1000 {
            assert_eq!(decide(&none, call, Dir::Read, 4096, true), Decision::Pass);
        }
    }

    #[test]
    fn shortened_lengths_cover_the_whole_range() {
        let c = config(5, 1.0, 0.0, 0.0);
        let mut seen = [false; 4];
        for call in 0..1000 {
            if let Decision::Short(n) = decide(&c, call, Dir::Read, 5, true) {
                seen[n - 1] = true;
            }
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn eintr_only_when_allowed_and_first() {
        let c = config(3, 1.0, 1.0, 1.0);
        for call in 0..1000 {
            assert_eq!(decide(&c, call, Dir::Write, 100, true), Decision::Eintr);
            assert!(matches!(
                decide(&c, call, Dir::Write, 100, false),
                Decision::Short(_)
            ));
        }
    }

    #[test]
    fn frequencies_follow_the_probabilities() {
        let c = config(11, 0.5, 0.25, 0.2);
        let n = 100_000;
        let (mut eintr, mut short) = (0, 0);
        for call in 0..n {
            match decide(&c, call, Dir::Read, 1000, true) {
                Decision::Eintr => eintr += 1,
                Decision::Short(_) => short += 1,
                Decision::Pass => {}
            }
        }
        let eintr = eintr as f64 / n as f64;
        let short = short as f64 / n as f64;
        assert!((eintr - 0.2).abs() < 0.01, "{eintr}");
        // Shortened only when not interrupted: 0.8 × 0.5.
        assert!((short - 0.4).abs() < 0.01, "{short}");
    }

    #[test]
    fn decisions_are_a_function_of_seed_and_call() {
        let a = config(42, 0.5, 0.5, 0.2);
        let b = config(43, 0.5, 0.5, 0.2);
        let run = |c: &Config| {
            (0..200)
                .map(|call| decide(c, call, Dir::Read, 65536, true))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&a), run(&a));
        assert_ne!(run(&a), run(&b));
    }

    #[test]
    fn unit_draws_stay_in_range() {
        let mut d = Draws::new(0, 0);
        for _ in 0..10_000 {
            let u = d.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(d.below(3) < 3);
        }
    }

    #[test]
    fn the_log_line_fits_its_buffer() {
        let mut line = Line {
            buf: [0; 160],
            len: 0,
        };
        let m = u64::MAX;
        writeln!(
            line,
            "pid={} short_reads={m} short_writes={m} eintr={m}",
            i32::MAX
        )
        .unwrap();
        assert!(line.len < 160);
    }
}
