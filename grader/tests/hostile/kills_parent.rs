//! Hostile submission: sends SIGKILL and then SIGSTOP to its parent (the pid
//! read once at start, never 0 or 1, so never a process group or init), says
//! whether each was delivered, and exits 0.

use std::io::Write;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-parent\0".as_ptr()) };
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    let mut out = std::io::stdout();
    if parent <= 1 {
        let _ = writeln!(out, "parent is pid {parent}: not signalled");
        return;
    }
    for (name, signal) in [("SIGKILL", libc::SIGKILL), ("SIGSTOP", libc::SIGSTOP)] {
        // SAFETY: a signal to one process, whose pid is above 1.
        let result = match unsafe { libc::kill(parent, signal) } {
            0 => String::from("delivered"),
            _ => format!("refused: {}", std::io::Error::last_os_error()),
        };
        // The reader may be gone: errors are ignored, never a panic.
        let _ = writeln!(out, "kill(parent {parent}, {name}): {result}");
        let _ = writeln!(std::io::stderr(), "kill(parent {parent}, {name}): {result}");
    }
}
