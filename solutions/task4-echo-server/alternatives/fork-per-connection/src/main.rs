//! Task 4 (Unix domain socket echo server): an alternative solution, a
//! process per connection.
//!
//! The parent only accepts: for each connection it forks a child that
//! echoes with blocking reads and writes and then `_exit`s, and the parent
//! closes its copy of the connection. One self-pipe wakes the parent's
//! `poll` for every signal it cares about: SIGCHLD (a child ended: reap it
//! now, not at the next accept, or the last child of a quiet spell would
//! stay a zombie) and SIGINT/SIGTERM (stop). At a stop it kills every child
//! still serving a client and waits for each, so that nothing of the server
//! outlives it, as when a threaded server's process ends.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{pipe2, read};

const USAGE: &str = "usage: task4-echo-server SOCKET_PATH";

/// The self-pipe's writing end.
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// Set by SIGINT and SIGTERM (SIGCHLD only wakes the parent up).
static STOP: AtomicBool = AtomicBool::new(false);

/// Wakes the parent: one byte into the self-pipe, errno preserved.
fn wake_up() {
    let saved = Errno::last_raw();
    // SAFETY: one byte from a static buffer into a non-blocking pipe; if it
    // is full, a wake-up is pending already.
    unsafe { libc::write(WAKE.load(Ordering::SeqCst), b"!".as_ptr().cast(), 1) };
    Errno::set_raw(saved);
}

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    wake_up();
}

extern "C" fn on_child(_: libc::c_int) {
    wake_up();
}

fn handle(signal: Signal, handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handlers store into an atomic and write(2) to a pipe.
    unsafe { sigaction(signal, &action) }
        .map(drop)
        .map_err(|e| format!("sigaction {signal}: {e}"))
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A child's whole life: echo, then end the process.
fn child(mut stream: UnixStream) -> ! {
    let mut buf = [0u8; 8192];
    let result = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = stream.write_all(&buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = result {
        eprintln!("task4-echo-server: a client's connection failed: {e}");
    }
    drop(stream);
    // SAFETY: ends this child at once: it must never return into the
    // parent's accept loop, nor run its destructors or exit handlers.
    unsafe { libc::_exit(0) }
}

/// The children serving clients, by pid.
#[derive(Default)]
struct Children(BTreeSet<libc::pid_t>);

impl Children {
    /// Reaps every child that has ended, without waiting.
    fn reap(&mut self) {
        loop {
            // SAFETY: waitpid with a null status pointer is allowed.
            let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if pid <= 0 {
                return; // 0: none ended; -1: ECHILD, none left (or EINTR)
            }
            self.0.remove(&pid);
        }
    }

    /// Kills every child still serving and waits for each one.
    fn end_all(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill takes only integers; the pid is a child of ours
            // not yet reaped, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in std::mem::take(&mut self.0) {
            // SAFETY: as above; a null status pointer is allowed.
            while unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) } < 0
                && Errno::last() == Errno::EINTR
            {}
        }
    }
}

/// Binds `path`, replacing a stale socket file.
fn bind(path: &Path) -> Result<UnixListener, String> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        other => return other.map_err(|e| format!("bind {}: {e}", path.display())),
    }
    let is_socket = fs::symlink_metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .file_type()
        .is_socket();
    if !is_socket {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!("another server is listening on {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| format!("unlink {}: {e}", path.display()))?;
            say(&format!("removed stale socket {}", path.display()));
            UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))
        }
        Err(e) => Err(format!("connect {}: {e}", path.display())),
    }
}

/// Waits in poll for a client or a wake-up; true if a client is waiting.
fn wait(listener: &UnixListener, wake: &OwnedFd) -> Result<bool, String> {
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: an array of 2 pollfds that lives across the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } >= 0 {
            break;
        }
        match Errno::last() {
            Errno::EINTR => {}
            e => return Err(format!("poll: {e}")),
        }
    }
    if fds[1].revents != 0 {
        // Empty the pipe: the flags and waitpid say what happened.
        let mut buf = [0u8; 64];
        while matches!(read(wake, &mut buf), Ok(n) if n > 0) {}
    }
    Ok(fds[0].revents != 0)
}

fn serve(listener: &UnixListener, wake: &OwnedFd, children: &mut Children) -> Result<(), String> {
    loop {
        let client = wait(listener, wake)?;
        children.reap();
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !client {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("task4-echo-server: accept: {e}");
                continue;
            }
        };
        // SAFETY: this process has a single thread, so the child may run
        // any code; it only serves `stream` and then _exits.
        match unsafe { libc::fork() } {
            0 => {
                // A stop is the parent's to handle: it kills the children.
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
                    // SAFETY: restoring a default disposition.
                    unsafe { libc::signal(signal, libc::SIG_DFL) };
                }
                // The child's copies of the listening socket and of the
                // self-pipe's reading end are the parent's business. Closed
                // by number: the child never returns to drop their owners.
                for fd in [listener.as_raw_fd(), wake.as_raw_fd()] {
                    // SAFETY: closes this process's copy only; the owners
                    // are never used again in this process.
                    unsafe { libc::close(fd) };
                }
                child(stream)
            }
            -1 => eprintln!("task4-echo-server: fork: {}", io::Error::last_os_error()),
            pid => {
                children.0.insert(pid);
            }
        }
        // The parent's copy of the connection is dropped here: the client
        // sees end of stream when the child closes its own.
    }
}

fn run(path: &Path) -> Result<(), String> {
    let (wake, wake_write) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("pipe: {e}"))?;
    WAKE.store(wake_write.into_raw_fd(), Ordering::SeqCst);
    handle(Signal::SIGINT, on_stop)?;
    handle(Signal::SIGTERM, on_stop)?;
    handle(Signal::SIGCHLD, on_child)?;
    let listener = bind(path)?;
    say("listening");
    let mut children = Children::default();
    let served = serve(&listener, &wake, &mut children);
    drop(listener);
    let _ = fs::remove_file(path);
    children.end_all();
    served?;
    say("bye");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let path = match args.as_slice() {
        [_, path] if !path.is_empty() => PathBuf::from(path),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task4-echo-server: {e}");
            ExitCode::FAILURE
        }
    }
}
