//! Task 1 (signals): an alternative solution with the self-pipe trick.
//!
//! Each handler updates its atomic and then writes one byte to a pipe of the
//! program's own (write(2) is async-signal-safe). The main loop waits in
//! poll(2) on stdin and on the read end of that pipe, so a signal that lands
//! after a flag check and before the wait still wakes the wait: its byte is
//! in the pipe. No window is left between the check and the wait, and no
//! signal mask is needed. During a flood the handlers run wherever they
//! land, as in the reference; the flood checks the atomics between lines.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::read;

static SIGINTS: AtomicU64 = AtomicU64::new(0);
static REPORT: AtomicBool = AtomicBool::new(false);
static TERMINATE: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe (non-blocking), set before any handler is
/// installed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Wakes the main loop's poll: one byte into the self-pipe. A full pipe
/// (EAGAIN) is fine: the bytes already there wake it. errno is saved and
/// restored, since the handler may interrupt code that is about to read it.
fn wake() {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: __errno_location and write are async-signal-safe; the byte
    // is a valid one-byte buffer and the result is deliberately ignored.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::write(fd, [1u8].as_ptr().cast(), 1);
        *errno = saved;
    }
}

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINTS.fetch_add(1, Ordering::SeqCst);
    wake();
}

extern "C" fn on_sigusr1(_: libc::c_int) {
    REPORT.store(true, Ordering::SeqCst);
    wake();
}

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
    wake();
}

fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handlers touch atomics and call write(2) on a pipe, all
    // async-signal-safe.
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

/// The self-pipe: returns its read end and publishes its write end to the
/// handlers. Both ends are non-blocking: a handler must never block, and
/// draining stops at EAGAIN.
fn self_pipe() -> nix::Result<OwnedFd> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    Errno::result(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // The write end lives as long as the process (the handlers use it).
    WAKE_FD.store(fds[1], Ordering::SeqCst);
    // SAFETY: fds[0] is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fds[0]) })
}

/// Empties the self-pipe (the flags say what happened, not the bytes).
fn drain(wake: &OwnedFd) {
    let mut sink = [0u8; 256];
    while let Ok(1..) = read(wake.as_fd(), &mut sink) {}
}

/// What woke the wait.
struct Woken {
    input: bool,
    signal: bool,
}

/// Waits in poll(2) until stdin is readable (data, end of input or an
/// error) or a handler wrote to the self-pipe.
fn wait(wake: &OwnedFd) -> nix::Result<Woken> {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds; -1: no timeout.
    Errno::result(unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) })?;
    Ok(Woken {
        input: fds[0].revents != 0,
        signal: fds[1].revents != 0,
    })
}

fn say_bye() {
    println!("bye {}", SIGINTS.load(Ordering::SeqCst));
}

/// One flag check. True when the program must stop (`bye` is printed).
fn check() -> bool {
    if REPORT.swap(false, Ordering::SeqCst) {
        println!("count {}", SIGINTS.load(Ordering::SeqCst));
    }
    if TERMINATE.load(Ordering::SeqCst) {
        say_bye();
        return true;
    }
    false
}

/// What a complete line asks for.
enum Command<'a> {
    Flood(u64),
    Echo(&'a [u8]),
}

fn parse(line: &[u8]) -> Command<'_> {
    let count = line
        .strip_prefix(b"flood ")
        .filter(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok());
    match count {
        Some(n) => Command::Flood(n),
        None => Command::Echo(line),
    }
}

/// Handles one complete line. True when a SIGTERM stopped the program.
fn handle_line(line: &[u8]) -> bool {
    match parse(line) {
        Command::Echo(text) => {
            println!("echo: {}", String::from_utf8_lossy(text));
            false
        }
        Command::Flood(n) => {
            let mut i = 1;
            loop {
                if check() {
                    return true;
                }
                if i > n {
                    println!("flood done");
                    return false;
                }
                println!("line {i}");
                i += 1;
            }
        }
    }
}

fn run() -> nix::Result<()> {
    let wake = self_pipe()?;
    install(Signal::SIGINT, on_sigint)?;
    install(Signal::SIGUSR1, on_sigusr1)?;
    install(Signal::SIGTERM, on_sigterm)?;
    println!("ready");

    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if check() {
            return Ok(());
        }
        let woken = match wait(&wake) {
            Ok(woken) => woken,
            // A handler ran during the wait: its byte is drained next time.
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        if woken.signal {
            drain(&wake);
        }
        if !woken.input {
            continue;
        }
        let n = match read(io::stdin(), &mut buf) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        // Signals that came while we were busy printing are acted on before
        // the new input.
        if check() {
            return Ok(());
        }
        if n == 0 {
            if !pending.is_empty() && handle_line(&pending) {
                return Ok(());
            }
            say_bye();
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if handle_line(&line[..end]) {
                return Ok(());
            }
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        eprintln!("usage: task1-signals (no arguments; send it lines on stdin and signals)");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task1-signals: {e}");
            ExitCode::FAILURE
        }
    }
}
