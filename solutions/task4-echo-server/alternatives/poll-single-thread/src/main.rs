//! Task 4 (Unix domain socket echo server): an alternative solution, one
//! thread and `poll(2)` over every connection.
//!
//! The handout's third design: no thread or process per client. Every
//! socket is non-blocking, and one loop polls the self-pipe, the listening
//! socket and every connection at once. A connection with nothing pending
//! is polled for input; once it has echo bytes the client has not taken yet
//! (a short or refused write), it is polled for output only, and nothing
//! more is read from it until they are written: a client that does not read
//! its echo is held back (push-back) and holds nobody else up, and the
//! server never keeps more than one buffer per client.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::pipe2;

const USAGE: &str = "usage: task4-echo-server SOCKET_PATH";
/// Bytes read from a client at a time, and at most held for it.
const CHUNK: usize = 16 * 1024;

/// The self-pipe's writing end, for the handler.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// SIGINT and SIGTERM: one byte into the self-pipe (write(2) is
/// async-signal-safe), errno preserved.
extern "C" fn on_signal(_: libc::c_int) {
    let saved = Errno::last_raw();
    // SAFETY: a one-byte static buffer; the pipe is non-blocking, so a full
    // pipe (a wake-up already pending) makes it fail instead of blocking.
    unsafe { libc::write(WAKE.load(Ordering::SeqCst), b"x".as_ptr().cast(), 1) };
    Errno::set_raw(saved);
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// One client.
struct Conn {
    stream: UnixStream,
    /// Echo bytes not yet written, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
}

/// What became of a connection after a turn.
enum Next {
    Keep,
    Close,
}

impl Conn {
    fn waiting_to_write(&self) -> bool {
        self.sent < self.pending.len()
    }

    /// Writes what it can of `pending`.
    fn flush(&mut self) -> io::Result<Next> {
        while self.waiting_to_write() {
            match self.stream.write(&self.pending[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Keep),
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.sent = 0;
        Ok(Next::Keep)
    }

    /// Reads one chunk and echoes what it can of it at once.
    fn read_some(&mut self) -> io::Result<Next> {
        let mut buf = [0u8; CHUNK];
        loop {
            match self.stream.read(&mut buf) {
                // The client shut down its writing side; nothing of its
                // echo is pending (we only read when nothing is).
                Ok(0) => return Ok(Next::Close),
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Keep),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Binds `path`, replacing a stale socket file.
fn bind(path: &Path) -> Result<UnixListener, String> {
    let first = match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => e,
        other => return other.map_err(|e| format!("bind {}: {e}", path.display())),
    };
    let kind = fs::symlink_metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .file_type();
    if !kind.is_socket() {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    match UnixStream::connect(path) {
        Ok(_) => return Err(format!("another server is listening on {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => return Err(format!("{} ({first}): connect: {e}", path.display())),
    }
    fs::remove_file(path).map_err(|e| format!("unlink {}: {e}", path.display()))?;
    say(&format!("removed stale socket {}", path.display()));
    UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The loop: until a byte arrives in the self-pipe.
fn serve(listener: &UnixListener, wake: &OwnedFd) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let mut fds = vec![
            pollfd(wake.as_raw_fd(), libc::POLLIN),
            pollfd(listener.as_raw_fd(), libc::POLLIN),
        ];
        fds.extend(conns.iter().map(|c| {
            let events = if c.waiting_to_write() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            pollfd(c.stream.as_raw_fd(), events)
        }));
        // SAFETY: `fds` is a live array of fds.len() pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(format!("poll: {e}")),
            }
        }
        if fds[0].revents != 0 {
            return Ok(());
        }
        // Connections first (their indices match fds[2..]), then new ones.
        let mut i = 0;
        conns.retain_mut(|conn| {
            let revents = fds[2 + i].revents;
            i += 1;
            if revents == 0 {
                return true;
            }
            let turn = if conn.waiting_to_write() {
                conn.flush()
            } else {
                conn.read_some()
            };
            match turn {
                Ok(Next::Keep) => true,
                Ok(Next::Close) => false,
                Err(e) => {
                    eprintln!("task4-echo-server: a client's connection failed: {e}");
                    false
                }
            }
        });
        if fds[1].revents != 0 {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => match stream.set_nonblocking(true) {
                        Ok(()) => conns.push(Conn {
                            stream,
                            pending: Vec::new(),
                            sent: 0,
                        }),
                        Err(e) => eprintln!("task4-echo-server: a new connection: {e}"),
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("task4-echo-server: accept: {e}");
                        break;
                    }
                }
            }
        }
    }
}

fn run(path: &Path) -> Result<(), String> {
    let (wake, wake_write) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("pipe: {e}"))?;
    WAKE.store(wake_write.into_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only writes to a pipe and restores errno.
        unsafe { sigaction(signal, &action) }.map_err(|e| format!("sigaction: {e}"))?;
    }
    let listener = bind(path)?;
    say("listening");
    let served = serve(&listener, &wake);
    drop(listener);
    let _ = fs::remove_file(path);
    served?;
    say("bye");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let path = match args.as_slice() {
        [path] if !path.is_empty() => PathBuf::from(path),
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
