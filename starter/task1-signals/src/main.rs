//! Task 1 (signals): starter. Read tasks/task1-signals.md first.
//!
//! Counts SIGINTs, reports the count on SIGUSR1, says goodbye on SIGTERM,
//! and meanwhile echoes the lines it reads on stdin. The signal handlers only
//! set atomics; the main program does all the printing.
//!
//! Replace every `todo!()` (and the `_` prefixes of the parameters you start
//! using). The structure below is a suggestion; only the behaviour is graded.

use std::process::ExitCode;

use nix::sys::signal::Signal;

// You will also need (add them as you go, unused imports are warnings):
//   use std::io;
//   use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
//   use nix::errno::Errno;
//   use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
//   use nix::unistd::read;

// TODO: the state the handlers share with the main program. Only lock-free
// atomics are safe here, for example:
//   static SIGINTS: AtomicU64 = AtomicU64::new(0);     // SIGINTs so far
//   static REPORT: AtomicBool = AtomicBool::new(false); // SIGUSR1 seen
//   static TERMINATE: AtomicBool = AtomicBool::new(false); // SIGTERM seen

// The handlers. They run in the middle of whatever the main program was
// doing, so they must be async-signal-safe: update an atomic and return.
// No println!, no format!, no Vec/String, no Mutex.
extern "C" fn on_sigint(_: libc::c_int) {
    todo!("count the SIGINT")
}

extern "C" fn on_sigusr1(_: libc::c_int) {
    todo!("ask the main program to print `count <n>`")
}

extern "C" fn on_sigterm(_: libc::c_int) {
    todo!("ask the main program to print `bye <n>` and exit")
}

/// Installs `handler` for `signal` with sigaction(2).
fn install(_signal: Signal, _handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    // TODO: build a SigAction with SigHandler::Handler(handler), an empty
    // signal mask, and flags WITHOUT SaFlags::SA_RESTART (so that a blocked
    // read(2) returns EINTR). Then call nix's `sigaction`, which is an
    // `unsafe fn`: write a `// SAFETY:` comment saying why your handlers are
    // fine to run at any moment.
    todo!("install the handler")
}

/// One raw read(2) on fd 0: returns Ok(0) at end of input and
/// Err(Errno::EINTR) when a handler ran while it was waiting.
fn read_stdin(_buf: &mut [u8]) -> nix::Result<usize> {
    // TODO: nix::unistd::read(std::io::stdin(), buf). Do NOT use
    // std::io::stdin().read_line(): it retries on EINTR behind your back.
    todo!("read from stdin")
}

/// Acts on what the handlers recorded. Returns true when the program must
/// stop (SIGTERM arrived; `bye <n>` is already printed).
fn handle_flags() -> bool {
    // TODO: if REPORT is set, clear it and print `count <n>`.
    // (AtomicBool::swap reads and clears in one step.)
    // Then if TERMINATE is set, print `bye <n>` and return true.
    todo!("act on the flags")
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
fn flood(_n: u64) -> bool {
    // TODO: call handle_flags() before every line you print (and before
    // `flood done`); stop and return true as soon as it says so.
    todo!("flood")
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
fn take_line(_pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    // TODO: find the first b'\n' in pending; if there is one, remove the
    // bytes up to and including it (Vec::drain) and return them without it.
    todo!("split off one line")
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
                // TODO: end of input. If `pending` holds an unterminated last
                // line, run it like any other line (stop if run_line says so).
                // Then print `bye <n>` and return Ok(()).
                todo!("EOF")
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(line) = take_line(&mut pending) {
                    if run_line(&line) {
                        return Ok(());
                    }
                }
            }
            Err(_e) => {
                // TODO: Err(Errno::EINTR) means a handler ran while we were
                // blocked: not an error, the flags were checked above, so just
                // go round the loop and read again. Any other error: return it
                // (main prints it and exits with status 1).
                todo!("errors")
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
