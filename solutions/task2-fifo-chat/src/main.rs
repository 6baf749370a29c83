//! Task 2 (FIFO chat): reference solution.
//!
//! `task2-fifo-chat DIR ME PEER` chats with PEER through two FIFOs (named
//! pipes): it writes to `DIR/ME-to-PEER` and reads from `DIR/PEER-to-ME`.
//! The main thread sends the lines of stdin; a second thread prints the
//! lines the peer sends. Whoever ends the chat removes both FIFOs.

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

const USAGE: &str =
    "usage: task2-fifo-chat DIR ME PEER (ME and PEER: two different names without '/')";

/// Both FIFOs as C strings, for `remove_fifos`. Set once, before the SIGINT
/// handler is installed: the handler may not allocate, so the strings must
/// be ready before it can run.
static FIFOS: OnceLock<[CString; 2]> = OnceLock::new();

/// Taken by the thread that ends the chat and never released. The reader
/// thread and the main thread may both want to end it at the same moment
/// (we quit while the peer quits); the second one waits here until the
/// first one's exit ends the process. The reader also holds it while it
/// prints, so that nothing is printed once the chat is ending.
static ENDING: Mutex<()> = Mutex::new(());

/// How the chat ends.
enum End {
    /// The peer is gone: EOF on the incoming FIFO, or EPIPE on the outgoing one.
    PeerLeft,
    /// End of our stdin. Holds our writing end, to close it.
    Quit(File),
    /// Anything unexpected: the message goes to stderr, exit status 1.
    Failed(String),
}

/// Removes both FIFOs, ignoring errors (ENOENT: the peer removed them
/// first). Async-signal-safe, as the SIGINT handler calls it too.
fn remove_fifos() {
    if let Some(fifos) = FIFOS.get() {
        for path in fifos {
            // SAFETY: `path` is a NUL-terminated string that lives as long as
            // the process. unlink(2) is async-signal-safe.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
}

/// SIGINT may arrive at any time, also while open() waits for the peer. Only
/// async-signal-safe functions here: unlink(2) and _exit(2).
extern "C" fn on_sigint(_: libc::c_int) {
    remove_fifos();
    // SAFETY: _exit(2) ends the process at once. (std::process::exit is not
    // allowed here: it runs exit handlers and flushes stdout, which may be
    // locked by the code the signal interrupted.)
    unsafe { libc::_exit(130) }
}

/// Installs `handler` for `signal` with sigaction(2).
fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: our handler only calls async-signal-safe functions.
    unsafe { sigaction(signal, &action) }.map_err(|e| format!("sigaction: {e}"))?;
    Ok(())
}

/// Writes `text` to stdout and flushes it at once. Errors are ignored: there
/// is no one left to tell.
fn say(text: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text).and_then(|()| out.flush());
}

/// Ends the chat and the process. Never returns.
fn finish(end: End) -> ! {
    let _only_me = ENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let status = match end {
        End::PeerLeft => {
            say(b"peer left\n");
            0
        }
        // Closing our writing end is what the peer sees: read() returns 0.
        End::Quit(outgoing) => {
            drop(outgoing);
            0
        }
        End::Failed(message) => {
            eprintln!("task2-fifo-chat: {message}");
            1
        }
    };
    remove_fifos();
    std::process::exit(status)
}

/// Creates the FIFO `path`, or reuses it if it is a FIFO already.
fn make_fifo(path: &Path) -> Result<(), String> {
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        // It exists: the peer made it first, or a run that crashed left it
        // behind (stale). A FIFO holds no data while no one has it open, so
        // reusing it is safe. Anything else at that path is not ours.
        Err(Errno::EEXIST) => check_is_fifo(path),
        Err(e) => Err(format!("mkfifo {}: {e}", path.display())),
    }
}

fn check_is_fifo(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(format!("{} exists and is not a FIFO", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Removes `path` if it is a FIFO (start-up failed: no chat will use it).
fn remove_if_fifo(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_fifo()) {
        let _ = fs::remove_file(path);
    }
}

/// Opens both FIFOs: (outgoing for writing, incoming for reading).
fn open_both(
    outgoing: &Path,
    incoming: &Path,
    me: &str,
    peer: &str,
) -> Result<(File, File), String> {
    let open_for_writing = || {
        OpenOptions::new()
            .write(true)
            .open(outgoing)
            .map_err(|e| format!("open {} for writing: {e}", outgoing.display()))
    };
    let open_for_reading = || {
        File::open(incoming).map_err(|e| format!("open {} for reading: {e}", incoming.display()))
    };
    // Opening a FIFO blocks until its other end is opened too. If both of us
    // opened our incoming FIFO first, each would wait for the other forever.
    // So both open the FIFO of the smaller name first: ME-to-PEER if ME < PEER.
    if me < peer {
        let outgoing = open_for_writing()?;
        Ok((outgoing, open_for_reading()?))
    } else {
        let incoming = open_for_reading()?;
        Ok((open_for_writing()?, incoming))
    }
}

/// Writes `message` (a line and its newline) to the outgoing FIFO.
fn send(outgoing: &mut File, message: &[u8]) -> io::Result<()> {
    // write() may write fewer bytes than asked (a short write), or fail with
    // EINTR: write_all calls it again until every byte is written.
    outgoing.write_all(message)
}

/// The reader thread: prints each line the peer sends, until EOF.
fn receive(incoming: File, peer: &str) -> End {
    // BufReader + read_until: one read() may bring part of a line or several
    // lines; read_until keeps reading until the newline (and retries EINTR).
    let mut incoming = BufReader::new(incoming);
    let mut line = Vec::new();
    loop {
        line.clear();
        match incoming.read_until(b'\n', &mut line) {
            // read() returned 0: no writer is left (the peer closed its end,
            // quit or was killed). It would return 0 again at once, forever.
            Ok(0) => return End::PeerLeft,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let mut text = Vec::with_capacity(peer.len() + line.len() + 3);
                text.extend_from_slice(peer.as_bytes());
                text.extend_from_slice(b": ");
                text.extend_from_slice(&line);
                text.push(b'\n');
                let _not_ending = ENDING.lock().unwrap_or_else(PoisonError::into_inner);
                say(&text);
            }
            Err(e) => return End::Failed(format!("reading from {peer}: {e}")),
        }
    }
}

/// Everything after the FIFOs exist and the SIGINT handler is installed:
/// returns how the chat ended (unless the reader thread ends it first).
fn chat(outgoing_path: &Path, incoming_path: &Path, me: &str, peer: &str) -> End {
    let (mut outgoing, incoming) = match open_both(outgoing_path, incoming_path, me, peer) {
        Ok(files) => files,
        Err(message) => return End::Failed(message),
    };
    say(b"connected\n");

    // The reader thread prints what the peer sends, and ends the chat when
    // the peer leaves.
    let peer_name = peer.to_owned();
    thread::spawn(move || {
        let end = receive(incoming, &peer_name);
        finish(end);
    });

    // The main thread sends the lines of stdin.
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return End::Quit(outgoing),
            Ok(_) => {
                // A last line without a newline still goes out as a line.
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                match send(&mut outgoing, &line) {
                    Ok(()) => {}
                    // EPIPE: no reader is left on the FIFO. (Rust ignores
                    // SIGPIPE, so the write fails instead of the signal
                    // killing us.)
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return End::PeerLeft,
                    Err(e) => return End::Failed(format!("writing to {peer}: {e}")),
                }
            }
            Err(e) => return End::Failed(format!("reading stdin: {e}")),
        }
    }
}

/// `(DIR, ME, PEER)`, or None for a usage error.
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

    // Both of us create both FIFOs: whoever starts first makes them.
    for (path, other) in [(&outgoing, &incoming), (&incoming, &outgoing)] {
        if let Err(message) = make_fifo(path) {
            // No chat, and no FIFO left behind: the other path goes if it is
            // a FIFO (we may have made it, or a crashed run left it). What is
            // not a FIFO is not ours to remove.
            remove_if_fifo(other);
            eprintln!("task2-fifo-chat: {message}");
            return ExitCode::FAILURE;
        }
    }

    // From here on, every way out removes both FIFOs.
    let c_path = |path: &Path| CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths");
    FIFOS.get_or_init(|| [c_path(&outgoing), c_path(&incoming)]);
    if let Err(message) = install(Signal::SIGINT, on_sigint) {
        finish(End::Failed(message));
    }
    finish(chat(&outgoing, &incoming, &me, &peer))
}
