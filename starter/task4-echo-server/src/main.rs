//! Task 4 (Unix domain socket echo server): starter. Read
//! tasks/task4-echo-server.md first.
//!
//! `task4-echo-server SOCKET_PATH` listens on a Unix stream socket bound to
//! SOCKET_PATH and sends every byte each client sends straight back to that
//! client, until the client shuts down its writing side. Many clients are
//! served at the same time. SIGINT or SIGTERM stops the server: it removes
//! SOCKET_PATH, prints `bye` and exits with status 0.
//!
//! Replace every `todo!()` (and the `_` prefixes of the parameters you start
//! using), and the one-client-at-a-time line in `accept_loop`. The structure
//! below is a suggestion; only the behaviour is graded.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::Signal;

// You will also need (add them as you go, unused imports are warnings):
//   use std::fs;
//   use std::io::Read;
//   use std::os::fd::IntoRawFd;
//   use std::os::unix::fs::FileTypeExt;   // for metadata.file_type().is_socket()
//   use std::thread;
//   use nix::errno::Errno;
//   use nix::fcntl::OFlag;
//   use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
//   use nix::unistd::pipe2;

const USAGE: &str = "usage: task4-echo-server SOCKET_PATH";

/// The writing end of the self-pipe, for the signal handler (-1: none yet).
/// The handler may not allocate or lock, so it finds the descriptor here.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The SIGINT and SIGTERM handler. The signal may be delivered to any thread
/// of the process, a connection's thread as well as the main one, so it
/// wakes the main thread up through the self-pipe.
extern "C" fn on_signal(_signal: libc::c_int) {
    let _fd = WAKE_FD.load(Ordering::SeqCst);
    // TODO: write one byte into the pipe: libc::write(fd, b"!".as_ptr().cast(), 1),
    // `unsafe` with a `// SAFETY:` comment. Write it again if it fails with
    // EINTR (Errno::last()). Nothing else: no println!, no allocation, no
    // std::process::exit (the handout says why). Good manners: save errno
    // first (Errno::last_raw()) and put it back at the end (Errno::set_raw).
    todo!("wake the main thread up")
}

/// Installs `handler` for `signal` with sigaction(2), without SA_RESTART.
fn install(_signal: Signal, _handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    // TODO: as in task 1: SigAction::new(SigHandler::Handler(handler),
    // SaFlags::empty(), SigSet::empty()), then the `unsafe` sigaction call
    // with a `// SAFETY:` comment. Turn an error into a String message.
    todo!("install the handler")
}

/// Creates the self-pipe and stores its writing end in WAKE_FD. Returns
/// the reading end.
fn self_pipe() -> Result<OwnedFd, String> {
    // TODO: pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) gives (read end,
    // write end) as OwnedFds. Non-blocking, so that the handler never
    // blocks on a full pipe. The handler may write into the pipe until the
    // very end of the process, so its writing end must never be closed:
    // `write_end.into_raw_fd()` gives up ownership and returns the number
    // to store in WAKE_FD.
    todo!("the self-pipe")
}

/// Creates the self-pipe and installs on_signal for SIGINT and SIGTERM.
/// Returns the self-pipe's reading end.
fn setup_signals() -> Result<OwnedFd, String> {
    let wake = self_pipe()?;
    install(Signal::SIGINT, on_signal)?;
    install(Signal::SIGTERM, on_signal)?;
    Ok(wake)
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
        // Something is at that path already.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_stale(path)?;
            todo!("bind again, now that the path is free")
        }
        Err(e) => Err(format!("bind {}: {e}", path.display())),
    }
}

/// Removes the socket file at `path` if no server listens on it any more;
/// otherwise returns the reason to give up.
fn remove_stale(_path: &Path) -> Result<(), String> {
    // TODO: std::fs::symlink_metadata(path): not a socket
    // (.file_type().is_socket()) -> Err("... exists and is not a socket").
    // A socket: knock with UnixStream::connect(path).
    //   Ok          -> a live server: Err("another server is listening on ...")
    //   Err(e) with e.kind() == io::ErrorKind::ConnectionRefused
    //               -> stale: fs::remove_file(path), then
    //                  say(&format!("removed stale socket {}", path.display()))
    //   other Err   -> Err(message)
    todo!("recognise and remove a stale socket")
}

/// What woke the accept loop up.
enum Event {
    /// A client is waiting to be accepted.
    Client,
    /// SIGINT or SIGTERM arrived (there is a byte in the self-pipe).
    Stop,
}

/// Waits until a client connects or a signal arrives: poll(2) on the
/// listening socket and the self-pipe's reading end together.
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
fn serve(_stream: &mut UnixStream) -> io::Result<()> {
    // TODO: loop: read (std::io::Read) into a buffer. 0 bytes: the client
    // shut down its writing side, return Ok. n bytes: write those n bytes
    // back, ALL of them: a write to a socket may be short (find the std
    // method that loops for you). A read that fails with
    // io::ErrorKind::Interrupted (EINTR: a signal handler ran in this
    // thread) is not an error: read again. Any other error: return it.
    todo!("echo until end of file")
}

/// A connection's thread.
fn handle(mut stream: UnixStream) {
    if let Err(_e) = serve(&mut stream) {
        // TODO: ECONNRESET, EPIPE: this client vanished. Say so on stderr,
        // and end this connection only (not the process: other clients are
        // being served).
        todo!("report the failed connection")
    }
    // TODO: make sure the descriptor is closed here (what closes an
    // OwnedFd, a UnixStream?), so that the client sees end of file and
    // nothing leaks.
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
        // TODO: this serves ONE client at a time: until this client is done,
        // nobody else is accepted, and a client that stalls blocks them all.
        // Serve each client in a thread of its own, so that this loop goes
        // straight back to accepting (std::thread::spawn, or
        // thread::Builder::new().spawn(...), which returns an error instead
        // of panicking when no thread can be made).
        handle(stream);
    }
}

/// Stops accepting and removes the socket file.
fn stop(_listener: UnixListener, _path: &Path) {
    // TODO: drop the listener (closes the listening socket: new clients are
    // refused), then remove the socket file (std::fs::remove_file),
    // ignoring an error: nothing can be done about it now.
    todo!("stop accepting and remove the socket file")
}

/// Runs the server until SIGINT or SIGTERM (or an error).
fn run(path: &Path) -> Result<(), String> {
    // The handlers come first: a signal that arrives before them would kill
    // the server with the socket file left behind.
    let wake = setup_signals()?;
    let listener = listen(path)?;
    say("listening");
    let result = accept_loop(&listener, &wake);
    stop(listener, path);
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
        // clients still connected are cut off.
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("task4-echo-server: {message}");
            ExitCode::FAILURE
        }
    }
}
