//! Task 2 (FIFO chat): starter. Read tasks/task2-fifo-chat.md first.
//!
//! `task2-fifo-chat DIR ME PEER` chats with PEER through two FIFOs (named
//! pipes): it writes to `DIR/ME-to-PEER` and reads from `DIR/PEER-to-ME`.
//! The main thread sends the lines of stdin; a second thread prints the
//! lines the peer sends. Whoever ends the chat removes both FIFOs.
//!
//! Replace every `todo!()` (and the `_` prefixes of the parameters you start
//! using). The structure below is a suggestion; only the behaviour is graded.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use nix::sys::signal::Signal;

// You will also need (add them as you go, unused imports are warnings):
//   use std::fs::{self, OpenOptions};
//   use std::io::BufReader;
//   use std::os::unix::fs::FileTypeExt;   // for metadata.file_type().is_fifo()
//   use nix::errno::Errno;
//   use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
//   use nix::sys::stat::Mode;
//   use nix::unistd::mkfifo;

const USAGE: &str =
    "usage: task2-fifo-chat DIR ME PEER (ME and PEER: two different names without '/')";

/// Both FIFOs as C strings, for `remove_fifos`. Set once (in `main`), before
/// the SIGINT handler is installed: the handler may not allocate, so the
/// strings must be ready before it can run.
static FIFOS: OnceLock<[CString; 2]> = OnceLock::new();

/// Taken by the thread that ends the chat and never released. The reader
/// thread and the main thread may both want to end it at the same moment
/// (we quit while the peer quits); the second one waits here until the
/// first one's exit ends the process. Hold it too while you print a
/// received line, so that nothing is printed once the chat is ending.
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
/// first). It must be async-signal-safe: the SIGINT handler calls it too.
fn remove_fifos() {
    // TODO: for each CString in FIFOS (FIFOS.get() is None until main sets
    // it), call libc::unlink(path.as_ptr()). libc functions are `unsafe`:
    // write a `// SAFETY:` comment. No allocation, no Path, no std::fs here.
    todo!("remove both FIFOs")
}

/// SIGINT may arrive at any time, also while open() waits for the peer.
extern "C" fn on_sigint(_: libc::c_int) {
    // TODO: remove both FIFOs, then end the process with status 130 using
    // libc::_exit (async-signal-safe), NOT std::process::exit (it runs exit
    // handlers and flushes stdout, which the interrupted code may hold).
    todo!("clean up and exit with status 130")
}

/// Installs `handler` for `signal` with sigaction(2).
fn install(_signal: Signal, _handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    // TODO: as in task 1: SigAction::new(SigHandler::Handler(handler),
    // SaFlags::empty(), SigSet::empty()), then the `unsafe` sigaction call
    // with a `// SAFETY:` comment. Turn an error into a String message.
    todo!("install the handler")
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

/// Creates the FIFO `path` (mode 0600), or reuses it if it is a FIFO already.
fn make_fifo(_path: &Path) -> Result<(), String> {
    // TODO: nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).
    // Err(Errno::EEXIST) is not an error if the path is a FIFO (the peer made
    // it first, or a crashed run left it behind): check with
    // std::fs::symlink_metadata(path) and .file_type().is_fifo(). If it is
    // something else, return an Err message. Any other mkfifo error: Err.
    todo!("create or reuse the FIFO")
}

/// Opens both FIFOs: (outgoing for writing, incoming for reading).
fn open_both(
    _outgoing: &Path,
    _incoming: &Path,
    _me: &str,
    _peer: &str,
) -> Result<(File, File), String> {
    // TODO: open `outgoing` write-only (OpenOptions::new().write(true)) and
    // `incoming` read-only (File::open). Each open blocks until the peer
    // opens the other end, so the order matters: if me < peer, outgoing
    // first; otherwise incoming first. (Why? See the handout.)
    todo!("open both FIFOs in the right order")
}

/// Writes `message` (a line and its newline) to the outgoing FIFO.
fn send(_outgoing: &mut File, _message: &[u8]) -> io::Result<()> {
    // TODO: write ALL of `message`. One write() may write fewer bytes than
    // asked (a short write) or fail with EINTR: either loop until every
    // byte is written, or find the std method that does it for you.
    todo!("send the message")
}

/// The reader thread: prints each line the peer sends, until EOF. Returns
/// how the chat ends.
fn receive(_incoming: File, _peer: &str) -> End {
    // TODO: read the incoming FIFO line by line (a BufReader and its
    // read_until(b'\n', ...) put lines back together from however many
    // pieces read() returns them in). For each line L print `PEER: L` with
    // say(), holding ENDING while you print. When read returns 0 bytes
    // (EOF: the peer closed its end) return End::PeerLeft: reading again
    // would only return 0 again, at once, forever.
    todo!("print what the peer sends")
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
                    // killing us. Do not change that.)
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
    if let Err(message) = make_fifo(&outgoing) {
        eprintln!("task2-fifo-chat: {message}");
        return ExitCode::FAILURE;
    }
    if let Err(message) = make_fifo(&incoming) {
        // TODO: remove `outgoing` if we just created it (std::fs::remove_file)
        // so that no FIFO is left behind.
        eprintln!("task2-fifo-chat: {message}");
        return ExitCode::FAILURE;
    }

    // From here on, every way out removes both FIFOs.
    let c_path = |path: &Path| CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths");
    FIFOS.get_or_init(|| [c_path(&outgoing), c_path(&incoming)]);
    if let Err(message) = install(Signal::SIGINT, on_sigint) {
        finish(End::Failed(message));
    }
    finish(chat(&outgoing, &incoming, &me, &peer))
}
