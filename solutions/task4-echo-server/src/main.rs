//! Task 4 (Unix domain socket echo server): reference solution.
//!
//! `task4-echo-server SOCKET_PATH` listens on a Unix stream socket bound to
//! SOCKET_PATH and sends every byte each client sends straight back to that
//! client, until the client shuts down its writing side. Each connection has
//! its own thread, so a slow or stuck client only ever blocks its own
//! thread. SIGINT or SIGTERM stops the server: it removes SOCKET_PATH,
//! prints `bye` and exits with status 0.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::pipe2;

const USAGE: &str = "usage: task4-echo-server SOCKET_PATH";

/// The writing end of the self-pipe, for the signal handler (-1: none yet).
/// The handler may not allocate or lock, so it finds the descriptor here.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The SIGINT and SIGTERM handler. The signal may be delivered to any thread
/// (a connection's thread as well as the main one), so setting a flag alone
/// would not wake the main thread up from waiting for clients. Writing one
/// byte into the self-pipe does: the main thread polls the pipe along with
/// the listening socket. write(2) is async-signal-safe.
extern "C" fn on_signal(_signal: libc::c_int) {
    // write(2) may change errno, which the interrupted code may be about to
    // read: put it back afterwards.
    let saved = Errno::last_raw();
    let fd = WAKE_FD.load(Ordering::SeqCst);
    loop {
        // SAFETY: a one-byte buffer that lives across the call. The pipe is
        // non-blocking: if it is full, a wake-up is pending already.
        let rc = unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
        if rc != -1 || Errno::last() != Errno::EINTR {
            break;
        }
    }
    Errno::set_raw(saved);
}

/// Installs `handler` for `signal` with sigaction(2), without SA_RESTART.
fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions (write) and
    // touches atomics and errno.
    unsafe { sigaction(signal, &action) }.map_err(|e| format!("sigaction {signal}: {e}"))?;
    Ok(())
}

/// Writes `text` and a newline to stdout and flushes it at once.
fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Creates the listening socket: socket(2), bind(2) to `path`, listen(2).
fn listen(path: &Path) -> Result<UnixListener, String> {
    // UnixListener::bind does all three, with the largest backlog the kernel
    // allows (at least 128 on Linux).
    match UnixListener::bind(path) {
        Ok(listener) => Ok(listener),
        // Something is at that path already: a socket left by a server that
        // crashed (stale), a server that is running, or not a socket at all.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_stale(path)?;
            UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))
        }
        Err(e) => Err(format!("bind {}: {e}", path.display())),
    }
}

/// Removes the socket file at `path` if no server listens on it any more.
fn remove_stale(path: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_socket() {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    // The file alone does not say whether its server is alive: knock. A live
    // server accepts (our connection is closed again at once); a socket file
    // whose server is gone refuses.
    match UnixStream::connect(path) {
        Ok(_probe) => Err(format!("another server is listening on {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()))?;
            say(&format!("removed stale socket {}", path.display()));
            Ok(())
        }
        Err(e) => Err(format!("connect {}: {e}", path.display())),
    }
}

/// What woke the accept loop up.
enum Event {
    /// A client is waiting to be accepted.
    Client,
    /// SIGINT or SIGTERM arrived.
    Stop,
}

/// Waits until a client connects or a signal arrives.
fn next_event(listener: &UnixListener, wake: &OwnedFd) -> io::Result<Event> {
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
        // SAFETY: `fds` is an array of 2 pollfds that outlives the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue; // a handler ran: the pipe says whether to stop
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Ok(Event::Stop);
        }
        if fds[0].revents != 0 {
            return Ok(Event::Client);
        }
    }
}

/// Echoes everything the client sends back to it, until it shuts down its
/// writing side (read returns 0).
fn serve(stream: &mut UnixStream) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A signal handler ran in this thread: not an error.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // A write to a socket may be short: write_all writes again until all
        // of it is written (and retries EINTR).
        stream.write_all(&buf[..n])?;
    }
}

/// A connection's thread.
fn handle(mut stream: UnixStream) {
    if let Err(e) = serve(&mut stream) {
        // ECONNRESET, EPIPE: this client vanished. That ends this
        // connection, and nothing else.
        eprintln!("task4-echo-server: a client's connection failed: {e}");
    }
    drop(stream); // closes the descriptor: the client sees end of file
}

/// Accepts clients until SIGINT or SIGTERM.
fn accept_loop(listener: &UnixListener, wake: &OwnedFd) -> Result<(), String> {
    loop {
        match next_event(listener, wake).map_err(|e| format!("poll: {e}"))? {
            Event::Stop => return Ok(()),
            Event::Client => {}
        }
        let stream = match listener.accept() {
            Ok((stream, _addr)) => stream,
            // The client gave up already (ECONNABORTED), or we are out of
            // descriptors (EMFILE): not a reason to stop serving the others.
            Err(e) => {
                eprintln!("task4-echo-server: accept: {e}");
                continue;
            }
        };
        // One thread per client: a slow client only ever blocks its own thread.
        if let Err(e) = thread::Builder::new().spawn(move || handle(stream)) {
            eprintln!("task4-echo-server: cannot start a thread for a client: {e}");
        }
    }
}

/// Runs the server until SIGINT or SIGTERM (or an error).
fn run(path: &Path) -> Result<(), String> {
    // The self-pipe, and the handlers, before anything needs cleaning up.
    let (wake_read, wake_write) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("pipe: {e}"))?;
    // The handler may write into the pipe at any moment until the process
    // ends, so its writing end is never closed: into_raw_fd gives it up.
    WAKE_FD.store(wake_write.into_raw_fd(), Ordering::SeqCst);
    install(Signal::SIGINT, on_signal)?;
    install(Signal::SIGTERM, on_signal)?;

    let listener = listen(path)?;
    say("listening");
    let result = accept_loop(&listener, &wake_read);

    // Stop accepting (a new client now gets ECONNREFUSED or ENOENT), and
    // remove the socket file: nothing will ever listen on it again.
    drop(listener);
    let _ = fs::remove_file(path);
    result?;
    say("bye");
    Ok(())
}

/// SOCKET_PATH, or None for a usage error.
fn parse_args(args: Vec<OsString>) -> Option<PathBuf> {
    let [_, path] = <[OsString; 2]>::try_from(args).ok()?;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn main() -> ExitCode {
    let Some(path) = parse_args(std::env::args_os().collect()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&path) {
        // Returning from main ends the process, connection threads and all:
        // clients still connected are cut off (the kernel closes every
        // descriptor of a process that ends).
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("task4-echo-server: {message}");
            ExitCode::FAILURE
        }
    }
}
