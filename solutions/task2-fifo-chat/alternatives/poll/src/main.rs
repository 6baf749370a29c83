//! Task 2 (FIFO chat): an alternative solution with one thread and poll(2).
//!
//! The reference runs two threads, each blocked in its own read(2). This
//! program opens the FIFOs exactly as the handout says (blocking opens, in
//! the documented order), then makes both FIFOs non-blocking and waits for
//! everything at once in poll(2): a line on stdin, bytes from the peer, room
//! in the outgoing FIFO, and SIGINT.
//!
//! - Lines from stdin are queued, and written as the outgoing FIFO has room
//!   (a non-blocking write may be short, or fail with EAGAIN when the FIFO
//!   is full). Stdin is not read while the queue holds anything, so the end
//!   of input is only acted on once everything before it has been sent.
//! - Bytes from the peer are cut into lines by hand; what is left after the
//!   last newline when the peer leaves is printed as a last line.
//! - SIGINT: until the FIFOs are open, the handler removes them and calls
//!   _exit(130) itself (std's open retries after EINTR, so the main program
//!   would never wake up). Once connected, the handler only writes a byte
//!   into a self-pipe that poll watches, and the main loop ends the chat:
//!   whenever the signal comes, the byte waits in the pipe, so no signal is
//!   lost between a check and the next poll.

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, read, write};

const USAGE: &str =
    "usage: task2-fifo-chat DIR ME PEER (ME and PEER: two different names without '/')";

/// Both FIFOs as C strings, ready before the handler is installed.
static FIFOS: OnceLock<[CString; 2]> = OnceLock::new();
/// Set once both FIFOs are open: from then on SIGINT goes to the main loop.
static CONNECTED: AtomicBool = AtomicBool::new(false);
/// Writing end of the self-pipe (-1 until it exists).
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Unlinks both FIFOs, ignoring ENOENT. Async-signal-safe.
fn remove_fifos() {
    if let Some(fifos) = FIFOS.get() {
        for path in fifos {
            // SAFETY: a NUL-terminated string that lives as long as the
            // process; unlink(2) is async-signal-safe.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
}

/// SIGINT: only async-signal-safe calls (unlink, _exit, write).
extern "C" fn on_sigint(_: libc::c_int) {
    if !CONNECTED.load(Ordering::SeqCst) {
        remove_fifos();
        // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(130) }
    }
    let fd = WAKE.load(Ordering::SeqCst);
    let byte = 1u8;
    // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so a
    // full pipe (a byte is already waiting) costs nothing.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
}

/// Prints `bytes` on stdout and flushes it at once.
fn say(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// Removes `path` if it is a FIFO.
fn remove_if_fifo(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
        let _ = fs::remove_file(path);
    }
}

/// Creates the FIFO `path` (mode 0600), or reuses a FIFO that is there.
fn make_fifo(path: &Path) -> Result<(), String> {
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => Ok(()),
            Ok(_) => Err(format!("{} exists and is not a FIFO", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        },
        Err(e) => Err(format!("mkfifo {}: {e}", path.display())),
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// A non-blocking self-pipe: (reading end, writing end).
fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors into fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// How the chat ends.
enum End {
    /// EOF from the peer, or EPIPE: print `peer left`, exit 0.
    PeerLeft,
    /// Our stdin ended and everything was sent: exit 0, print nothing.
    Quit,
    /// SIGINT once connected: exit 130.
    Interrupted,
    Failed(String),
}

/// The chat itself, once both FIFOs are open.
struct Chat {
    outgoing: File,
    incoming: File,
    wake: OwnedFd,
    peer: String,
    /// Bytes from the peer after its last newline.
    partial_in: Vec<u8>,
    /// Bytes from stdin after its last newline.
    partial_stdin: Vec<u8>,
    /// Whole lines waiting to be written to the outgoing FIFO...
    queue: Vec<u8>,
    /// ...from this offset on.
    sent: usize,
    stdin_done: bool,
}

impl Chat {
    fn run(&mut self) -> End {
        loop {
            if self.stdin_done && self.sent == self.queue.len() {
                return End::Quit;
            }
            let stdin = io::stdin();
            let want_stdin = !self.stdin_done && self.sent == self.queue.len();
            let want_out = self.sent < self.queue.len();
            let none = PollFlags::empty();
            let mut fds = [
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.incoming.as_fd(), PollFlags::POLLIN),
                PollFd::new(
                    self.outgoing.as_fd(),
                    if want_out { PollFlags::POLLOUT } else { none },
                ),
                PollFd::new(
                    stdin.as_fd(),
                    if want_stdin { PollFlags::POLLIN } else { none },
                ),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return End::Failed(format!("poll: {e}")),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let [wake, incoming, outgoing, input] = fds.map(|fd| ready(&fd));
            if wake {
                return End::Interrupted;
            }
            if incoming {
                if let Some(end) = self.receive() {
                    return end;
                }
            }
            if outgoing {
                if let Some(end) = self.flush() {
                    return end;
                }
            }
            if input {
                if let Some(end) = self.read_stdin() {
                    return end;
                }
            }
        }
    }

    /// Reads what the peer sent until the FIFO is empty, printing each line.
    fn receive(&mut self) -> Option<End> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match read(&self.incoming, &mut buf) {
                Ok(0) => {
                    // No writer is left. An unfinished last line is a line.
                    if !self.partial_in.is_empty() {
                        let line = std::mem::take(&mut self.partial_in);
                        self.print(&line);
                    }
                    return Some(End::PeerLeft);
                }
                Ok(n) => {
                    self.partial_in.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(len) = self.partial_in[start..].iter().position(|&b| b == b'\n')
                    {
                        let line = self.partial_in[start..start + len].to_vec();
                        self.print(&line);
                        start += len + 1;
                    }
                    self.partial_in.drain(..start);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return None,
                Err(e) => return Some(End::Failed(format!("reading from {}: {e}", self.peer))),
            }
        }
    }

    fn print(&self, line: &[u8]) {
        say(&[self.peer.as_bytes(), b": ", line, b"\n"].concat());
    }

    /// Writes as much of the queue as the outgoing FIFO takes now.
    fn flush(&mut self) -> Option<End> {
        while self.sent < self.queue.len() {
            match write(&self.outgoing, &self.queue[self.sent..]) {
                // A short write: go on from where it stopped.
                Ok(n) => self.sent += n,
                Err(Errno::EINTR) => {}
                // Full: poll says when there is room again.
                Err(Errno::EAGAIN) => return None,
                // No reader: the peer is gone (SIGPIPE is ignored by Rust).
                Err(Errno::EPIPE) => return Some(End::PeerLeft),
                Err(e) => return Some(End::Failed(format!("writing to {}: {e}", self.peer))),
            }
        }
        self.queue.clear();
        self.sent = 0;
        None
    }

    /// One read of stdin (poll said it will not block): queues whole lines.
    fn read_stdin(&mut self) -> Option<End> {
        let mut buf = [0u8; 64 * 1024];
        match read(io::stdin(), &mut buf) {
            Ok(0) => {
                // A last line without its newline still goes out as a line.
                if !self.partial_stdin.is_empty() {
                    self.partial_stdin.push(b'\n');
                    self.queue.append(&mut self.partial_stdin);
                }
                self.stdin_done = true;
            }
            Ok(n) => {
                self.partial_stdin.extend_from_slice(&buf[..n]);
                if let Some(last) = self.partial_stdin.iter().rposition(|&b| b == b'\n') {
                    let rest = self.partial_stdin.split_off(last + 1);
                    self.queue.append(&mut self.partial_stdin);
                    self.partial_stdin = rest;
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => return None,
            Err(e) => return Some(End::Failed(format!("reading stdin: {e}"))),
        }
        self.flush()
    }
}

/// Opens both FIFOs in the handout's order: (outgoing, incoming).
fn open_both(outgoing: &Path, incoming: &Path, me: &str, peer: &str) -> io::Result<(File, File)> {
    let open_out = || OpenOptions::new().write(true).open(outgoing);
    let open_in = || File::open(incoming);
    if me < peer {
        let out = open_out()?;
        Ok((out, open_in()?))
    } else {
        let inc = open_in()?;
        Ok((open_out()?, inc))
    }
}

fn chat(outgoing: &Path, incoming: &Path, me: &str, peer: &str) -> End {
    let (wake_read, wake_write) = match self_pipe() {
        Ok(pipe) => pipe,
        Err(e) => return End::Failed(format!("pipe: {e}")),
    };
    WAKE.store(wake_write.as_raw_fd(), Ordering::SeqCst);
    let (out_file, in_file) = match open_both(outgoing, incoming, me, peer) {
        Ok(files) => files,
        Err(e) => return End::Failed(format!("open: {e}")),
    };
    // From now on a SIGINT is a byte in the self-pipe.
    CONNECTED.store(true, Ordering::SeqCst);
    say(b"connected\n");
    for file in [&out_file, &in_file] {
        if let Err(e) = set_nonblocking(file.as_fd()) {
            return End::Failed(format!("fcntl: {e}"));
        }
    }
    let end = Chat {
        outgoing: out_file,
        incoming: in_file,
        wake: wake_read,
        peer: peer.to_owned(),
        partial_in: Vec::new(),
        partial_stdin: Vec::new(),
        queue: Vec::new(),
        sent: 0,
        stdin_done: false,
    }
    .run();
    // The writing end of the self-pipe stays open until the process exits:
    // the handler may still write to it.
    std::mem::forget(wake_write);
    end
}

fn parse_args(args: Vec<OsString>) -> Option<(PathBuf, String, String)> {
    let [_, dir, me, peer] = <[OsString; 4]>::try_from(args).ok()?;
    let (me, peer) = (me.into_string().ok()?, peer.into_string().ok()?);
    let valid = |name: &str| !name.is_empty() && !name.contains('/');
    if !valid(&me) || !valid(&peer) || me == peer {
        return None;
    }
    Some((PathBuf::from(dir), me, peer))
}

fn main() -> ExitCode {
    let Some((dir, me, peer)) = parse_args(std::env::args_os().collect()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let outgoing = dir.join(format!("{me}-to-{peer}"));
    let incoming = dir.join(format!("{peer}-to-{me}"));
    for (path, other) in [(&outgoing, &incoming), (&incoming, &outgoing)] {
        if let Err(message) = make_fifo(path) {
            remove_if_fifo(other);
            eprintln!("task2-fifo-chat: {message}");
            return ExitCode::FAILURE;
        }
    }
    let c_path = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    FIFOS.get_or_init(|| [c_path(&outgoing), c_path(&incoming)]);
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions.
    if let Err(e) = unsafe { sigaction(Signal::SIGINT, &action) } {
        remove_fifos();
        eprintln!("task2-fifo-chat: sigaction: {e}");
        return ExitCode::FAILURE;
    }

    let end = chat(&outgoing, &incoming, &me, &peer);
    // One thread: this is the only exit path (besides the handler's _exit
    // while opening).
    let status = match end {
        End::PeerLeft => {
            say(b"peer left\n");
            0
        }
        End::Quit => 0,
        End::Interrupted => 130,
        End::Failed(message) => {
            eprintln!("task2-fifo-chat: {message}");
            1
        }
    };
    remove_fifos();
    // Returning drops nothing that matters: the outgoing FIFO was closed
    // when the chat ended (the peer sees EOF as we exit in any case).
    ExitCode::from(status)
}
