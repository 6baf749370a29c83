//! Task 1 (signals): an alternative solution that waits in ppoll(2).
//!
//! The reference waits in read(2), so a signal that lands between its flag
//! check and its next read waits for the next input (the handout's "race you
//! may notice"). This program closes that window: SIGINT, SIGUSR1 and
//! SIGTERM stay blocked whenever it is not waiting, and it waits for input in
//! ppoll(2), which unblocks them for the wait only, atomically. A signal that
//! arrives after a check stays pending, and the ppoll that follows returns
//! EINTR at once.
//!
//! So the handlers only ever run at points the program chose: inside ppoll,
//! and in a short window it opens (unblock, block again) when sigpending(2)
//! says one of its signals is waiting, at every flag check: between the
//! lines of a flood, after every read, at end of input. Blocked signals
//! coalesce as any standard signal does: the count may be lower than the
//! SIGINTs sent, never higher.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::read;

static SIGINTS: AtomicU64 = AtomicU64::new(0);
static REPORT: AtomicBool = AtomicBool::new(false);
static TERMINATE: AtomicBool = AtomicBool::new(false);

const HANDLED: [Signal; 3] = [Signal::SIGINT, Signal::SIGUSR1, Signal::SIGTERM];

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINTS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_sigusr1(_: libc::c_int) {
    REPORT.store(true, Ordering::SeqCst);
}

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    // No SA_RESTART, as the handout asks (ppoll is never restarted after a
    // handler anyway).
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handlers only touch atomics, which is sound at any point.
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

/// The two signal masks the program switches between.
struct Masks {
    /// SIGINT, SIGUSR1 and SIGTERM: blocked except while waiting.
    ours: SigSet,
    /// The mask to wait with: the one the program started with, ours
    /// unblocked.
    waiting: SigSet,
}

impl Masks {
    /// Blocks our signals from now on.
    fn block_ours() -> nix::Result<Masks> {
        let mut ours = SigSet::empty();
        for signal in HANDLED {
            ours.add(signal);
        }
        let mut waiting = ours.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        for signal in HANDLED {
            waiting.remove(signal);
        }
        Ok(Masks { ours, waiting })
    }

    /// Lets the handlers of our pending signals run now: unblocks them for
    /// an instant (the kernel delivers pending signals as the unblocking
    /// call returns), then blocks them again.
    fn deliver_pending(&self) -> nix::Result<()> {
        let mut raw: libc::sigset_t = *SigSet::empty().as_ref();
        // SAFETY: sigpending fills the sigset_t it is given, a valid one.
        Errno::result(unsafe { libc::sigpending(&mut raw) })?;
        // SAFETY: `raw` was initialised by sigemptyset and sigpending.
        let pending = unsafe { SigSet::from_sigset_t_unchecked(raw) };
        if HANDLED.iter().any(|&signal| pending.contains(signal)) {
            self.waiting.thread_set_mask()?;
            self.ours.thread_block()?;
        }
        Ok(())
    }

    /// Waits until stdin is readable (data or end of input): Ok(()), or
    /// until a handler ran: Err(EINTR). Our signals are unblocked during the
    /// wait only, atomically with starting it.
    fn wait_for_input(&self) -> nix::Result<()> {
        let mut fds = [libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, no timeout (null: wait as long as it
        // takes) and a valid signal mask.
        let rc =
            unsafe { libc::ppoll(fds.as_mut_ptr(), 1, std::ptr::null(), self.waiting.as_ref()) };
        Errno::result(rc).map(drop)
    }
}

fn say_bye() {
    println!("bye {}", SIGINTS.load(Ordering::SeqCst));
}

/// One flag check: lets pending signals in, then reports and/or says bye.
/// Ok(true) when the program must stop.
fn check(masks: &Masks) -> nix::Result<bool> {
    masks.deliver_pending()?;
    if REPORT.swap(false, Ordering::SeqCst) {
        println!("count {}", SIGINTS.load(Ordering::SeqCst));
    }
    if TERMINATE.load(Ordering::SeqCst) {
        say_bye();
        return Ok(true);
    }
    Ok(false)
}

/// `N` of a `flood N` line: one or more decimal digits, nothing else.
fn flood_count(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(b"flood ")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Handles one complete line. Ok(true) when a SIGTERM stopped the program.
fn handle_line(masks: &Masks, line: &[u8]) -> nix::Result<bool> {
    let Some(n) = flood_count(line) else {
        println!("echo: {}", String::from_utf8_lossy(line));
        return Ok(false);
    };
    for i in 1..=n {
        if check(masks)? {
            return Ok(true);
        }
        println!("line {i}");
    }
    if check(masks)? {
        return Ok(true);
    }
    println!("flood done");
    Ok(false)
}

fn run() -> nix::Result<()> {
    install(Signal::SIGINT, on_sigint)?;
    install(Signal::SIGUSR1, on_sigusr1)?;
    install(Signal::SIGTERM, on_sigterm)?;
    let masks = Masks::block_ours()?;
    println!("ready");

    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if check(&masks)? {
            return Ok(());
        }
        match masks.wait_for_input() {
            Ok(()) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        // Readable: this read does not block (and our signals are blocked).
        let n = match read(io::stdin(), &mut buf) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        // A signal may have come while we were busy, or together with this
        // input (then ppoll returned "readable" and left it pending).
        if check(&masks)? {
            return Ok(());
        }
        if n == 0 {
            if !pending.is_empty() && handle_line(&masks, &pending)? {
                return Ok(());
            }
            say_bye();
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(len) = pending[start..].iter().position(|&b| b == b'\n') {
            let stop = handle_line(&masks, &pending[start..start + len])?;
            start += len + 1;
            if stop {
                return Ok(());
            }
        }
        pending.drain(..start);
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
