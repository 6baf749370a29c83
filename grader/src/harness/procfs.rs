//! What `/proc` tells about a running process: which signals it catches,
//! what state it is in, and which system call it is blocked in.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The `SigCgt` mask of `/proc/PID/status`: signals with a handler installed.
pub fn caught_signals(pid: Pid) -> Option<u64> {
    status_mask(pid, "SigCgt:")
}

/// Whether `signal` is set in a `/proc` signal mask (bit `signo - 1`).
pub fn mask_has(mask: u64, signal: Signal) -> bool {
    mask & (1u64 << (signal as i32 - 1)) != 0
}

fn status_mask(pid: Pid, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_mask(&status, key)
}

fn parse_mask(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    u64::from_str_radix(line[key.len()..].trim(), 16).ok()
}

/// The one-letter state of `/proc/PID/stat` (R, S, D, Z, T, ...).
pub fn state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// What `/proc/PID/syscall` says the main thread is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syscall {
    /// Blocked in the system call with this number.
    Blocked(i64),
    /// Running in user space.
    Running,
    /// The file is not readable (permissions, or the process is gone).
    Unknown,
}

pub fn syscall(pid: Pid) -> Syscall {
    match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
        Ok(text) => parse_syscall(&text),
        Err(_) => Syscall::Unknown,
    }
}

fn parse_syscall(text: &str) -> Syscall {
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<i64>() {
        Ok(n) if n >= 0 => Syscall::Blocked(n),
        _ => Syscall::Running,
    }
}

/// The number of a system call by name, on this architecture.
pub fn syscall_number(name: &str) -> Option<i64> {
    let n = match name {
        "read" => libc::SYS_read,
        "write" => libc::SYS_write,
        "openat" => libc::SYS_openat,
        "accept4" => libc::SYS_accept4,
        "recvfrom" => libc::SYS_recvfrom,
        "msgrcv" => libc::SYS_msgrcv,
        "futex" => libc::SYS_futex,
        "ppoll" => libc::SYS_ppoll,
        "wait4" => libc::SYS_wait4,
        "clock_nanosleep" => libc::SYS_clock_nanosleep,
        "rt_sigsuspend" => libc::SYS_rt_sigsuspend,
        _ => return None,
    };
    Some(n)
}

/// Number of open file descriptors of a process.
pub fn fd_count(pid: Pid) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sigcgt_mask() {
        let status = "Name:\tx\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004202\n";
        let mask = parse_mask(status, "SigCgt:").unwrap();
        assert!(mask_has(mask, Signal::SIGINT));
        assert!(mask_has(mask, Signal::SIGUSR1));
        assert!(mask_has(mask, Signal::SIGTERM));
        assert!(!mask_has(mask, Signal::SIGPIPE));
    }

    #[test]
    fn parses_syscall_line() {
        assert_eq!(
            parse_syscall("0 0x0 0x7ffd 0x2000 0 0 0 0x7ffd 0x7f\n"),
            Syscall::Blocked(0)
        );
        assert_eq!(parse_syscall("running\n"), Syscall::Running);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f\n"), Syscall::Running);
    }

    #[test]
    fn reads_own_state() {
        let me = Pid::this();
        // The test's main thread is waiting on this worker thread: R or S.
        assert!(matches!(state(me), Some('R' | 'S')), "{:?}", state(me));
        assert!(fd_count(me).unwrap() >= 3);
    }
}
