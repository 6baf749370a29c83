//! Task 1 (signals): reference solution.
//!
//! Counts SIGINTs, reports the count on SIGUSR1, says goodbye on SIGTERM,
//! and meanwhile echoes the lines it reads on stdin. The signal handlers only
//! set atomics; the main program does all the printing.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::read;

// What the handlers record for the main program. A handler may interrupt
// the main program between any two instructions, so the two may only share
// lock-free atomics. (SeqCst is the simplest choice; Relaxed would do here.)
static SIGINTS: AtomicU64 = AtomicU64::new(0);
static REPORT: AtomicBool = AtomicBool::new(false);
static TERMINATE: AtomicBool = AtomicBool::new(false);

// The handlers. They must be async-signal-safe: no println!, no allocation,
// no locks. If the main program is inside println! (holding the stdout lock)
// or inside malloc when the signal arrives, a handler that prints or
// allocates would need that same lock again: it panics or deadlocks.
extern "C" fn on_sigint(_: libc::c_int) {
    SIGINTS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_sigusr1(_: libc::c_int) {
    REPORT.store(true, Ordering::SeqCst);
}

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Installs `handler` for `signal` with sigaction(2).
fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    // No SA_RESTART: a read(2) blocked on stdin must fail with EINTR when a
    // handler has run, so that the main loop wakes up and looks at the flags.
    let flags = SaFlags::empty();
    let action = SigAction::new(SigHandler::Handler(handler), flags, SigSet::empty());
    // SAFETY: sigaction is unsafe because the handler will run at arbitrary
    // points of the program. Ours only touch atomics, which is sound.
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

/// One raw read(2) on fd 0. Unlike std's `read_line`, which silently retries
/// after EINTR, this returns `Err(Errno::EINTR)` when a handler ran while we
/// were waiting for input.
fn read_stdin(buf: &mut [u8]) -> nix::Result<usize> {
    read(io::stdin(), buf)
}

fn say_bye() {
    println!("bye {}", SIGINTS.load(Ordering::SeqCst));
}

/// Acts on what the handlers recorded. Returns true when the program must
/// stop (SIGTERM arrived; `bye <n>` is already printed).
fn handle_flags() -> bool {
    // swap: read and clear in one step, so a SIGUSR1 arriving right now is
    // either reported here or left set for the next call, never lost.
    if REPORT.swap(false, Ordering::SeqCst) {
        println!("count {}", SIGINTS.load(Ordering::SeqCst));
    }
    if TERMINATE.load(Ordering::SeqCst) {
        say_bye();
        return true;
    }
    false
}

/// `N` of a `flood N` line: digits only (no sign, no spaces).
fn parse_flood(line: &str) -> Option<u64> {
    let n = line.strip_prefix("flood ")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Prints `line 1` .. `line n` and `flood done`, acting on signals between
/// lines. Returns true when a SIGTERM stopped it.
fn flood(n: u64) -> bool {
    for i in 1..=n {
        if handle_flags() {
            return true;
        }
        println!("line {i}");
    }
    if handle_flags() {
        return true;
    }
    println!("flood done");
    false
}

/// Runs one complete line (without its newline). Returns true when the
/// program must stop.
fn run_line(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    match parse_flood(&line) {
        Some(n) => flood(n),
        None => {
            println!("echo: {line}");
            false
        }
    }
}

/// Removes the first complete line from `pending` and returns it without
/// its newline; None while no newline has arrived yet.
fn take_line(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = pending.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = pending.drain(..=end).collect();
    line.pop(); // the '\n'
    Some(line)
}

fn run() -> nix::Result<()> {
    // The handlers must be in place before anyone is told we are ready:
    // a signal that arrives earlier gets its default action (SIGINT and
    // SIGTERM would kill us).
    install(Signal::SIGINT, on_sigint)?;
    install(Signal::SIGUSR1, on_sigusr1)?;
    install(Signal::SIGTERM, on_sigterm)?;
    println!("ready");

    // Bytes read but not yet ending in a newline: a line may arrive in
    // several reads, and one read may bring several lines.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let result = read_stdin(&mut buf);
        // Whatever read returned, handlers may have run while we waited.
        if handle_flags() {
            return Ok(());
        }
        match result {
            Ok(0) => {
                // EOF. An unterminated last line is still a line.
                if !pending.is_empty() && run_line(&pending) {
                    return Ok(());
                }
                say_bye();
                return Ok(());
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(line) = take_line(&mut pending) {
                    if run_line(&line) {
                        return Ok(());
                    }
                }
            }
            // Interrupted by a handler: not an error. The flags were checked
            // above; just read again.
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
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
