//! `cargo-grade peer fifo-chat DIR ME PEER`: the grader's own participant in
//! task2's FIFO chat.
//!
//! Why it exists: to test one side of a chat, a test needs the other side to
//! follow the handout's protocol exactly, and to misbehave on command at the
//! moment the test chooses: close only its reading end (so that the
//! submission's next write fails with EPIPE), close only its writing end, or
//! send a megabyte as one line. A second copy of the submission cannot be
//! trusted or steered like that.
//!
//! Protocol, as in tasks/task2-fifo-chat.md: it creates both FIFOs
//! (`DIR/ME-to-PEER`, `DIR/PEER-to-ME`, reusing FIFOs that exist), opens them
//! in the same order as the submission (writing end first if ME < PEER),
//! prints `connected`, and prints each received line as `PEER: L`. On EOF it
//! prints `peer left` but keeps running. Unlike the submission it never
//! removes the FIFOs: whether the submission does is what tests check.
//!
//! It reads commands on stdin, one per line:
//!
//! | line            | does                                               |
//! |-----------------|----------------------------------------------------|
//! | `L` (no `:`)    | sends `L` as a line                                |
//! | `:payload N`    | sends `payload::payload(N)` as one line            |
//! | `:close-read`   | closes its reading end, then prints `closed read`  |
//! | `:close-write`  | closes its writing end, then prints `closed write` |
//! | `:unfinished L` | sends `L` without a newline: an unfinished line    |
//! | `:stat`         | prints `stat ME-to-PEER KIND MODE, PEER-to-ME KIND MODE` |
//! | `:quit`, EOF    | exits with status 0                                |
//!
//! A failed send prints `write failed: ERROR` (SIGPIPE is ignored). In
//! `:stat`, KIND is `FIFO`, `file`, `directory`, `other` or `missing` (then
//! without MODE), and MODE the permission bits in octal (`600`).
//!
//! `cargo-grade peer fifo-chat --not-a-fifo PATH` plays no chat: it creates
//! a regular file at PATH (something in the way that is not a FIFO, which
//! the submission must refuse and leave alone), prints `file made`, then
//! answers each stdin line `check` with `file intact` (the same regular
//! file is still there), `file removed` or `file replaced`, until end of
//! input (exit 0). It exits 1 when it cannot make the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, pipe, read};

use crate::payload::payload;

/// Runs the peer; returns its exit status.
pub fn run(args: &[String]) -> i32 {
    let result = match args {
        [flag, path] if flag == "--not-a-fifo" => not_a_fifo(Path::new(path)),
        [dir, me, peer] => chat(Path::new(dir), me, peer),
        _ => {
            eprintln!("usage: cargo-grade peer fifo-chat DIR ME PEER");
            eprintln!("       cargo-grade peer fifo-chat --not-a-fifo PATH");
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("fifo-chat peer: {message}");
            1
        }
    }
}

/// `--not-a-fifo PATH`: a regular file in the way, and a check that the
/// submission left it alone.
fn not_a_fifo(path: &Path) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    file.write_all(b"not a FIFO\n")
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let made = file
        .metadata()
        .map_err(|e| format!("fstat {}: {e}", path.display()))?;
    drop(file);
    say(b"file made");
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim_end() != "check" {
            eprintln!("fifo-chat peer: unknown command `{line}`");
            continue;
        }
        let answer: &[u8] = match fs::symlink_metadata(path) {
            Err(_) => b"file removed",
            Ok(now)
                if now.file_type().is_file()
                    && now.dev() == made.dev()
                    && now.ino() == made.ino() =>
            {
                b"file intact"
            }
            Ok(_) => b"file replaced",
        };
        say(answer);
    }
    Ok(())
}

/// For `:stat`: the file name, what is there, and its permission bits.
fn describe(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    match fs::symlink_metadata(path) {
        Err(_) => format!("{name} missing"),
        Ok(meta) => {
            let kind = meta.file_type();
            let kind = if kind.is_fifo() {
                "FIFO"
            } else if kind.is_file() {
                "file"
            } else if kind.is_dir() {
                "directory"
            } else {
                "other"
            };
            format!("{name} {kind} {:o}", meta.permissions().mode() & 0o7777)
        }
    }
}

/// Writes `text` and a newline to stdout, flushed at once.
fn say(text: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out
        .write_all(text)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// Creates the FIFO `path`, or reuses the FIFO that is there.
fn make_fifo(path: &Path) -> Result<(), String> {
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => Ok(()),
            _ => Err(format!("{} exists and is not a FIFO", path.display())),
        },
        Err(e) => Err(format!("mkfifo {}: {e}", path.display())),
    }
}

fn chat(dir: &Path, me: &str, peer: &str) -> Result<(), String> {
    // A write to a closed reader must fail with EPIPE, never kill us.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map_err(|e| format!("SIGPIPE: {e}"))?;
    let out_path = dir.join(format!("{me}-to-{peer}"));
    let in_path = dir.join(format!("{peer}-to-{me}"));
    make_fifo(&out_path)?;
    make_fifo(&in_path)?;
    let open_out = || {
        OpenOptions::new()
            .write(true)
            .open(&out_path)
            .map_err(|e| format!("open {}: {e}", out_path.display()))
    };
    let open_in = || File::open(&in_path).map_err(|e| format!("open {}: {e}", in_path.display()));
    // The handout's order: both sides open the FIFO of the smaller name first.
    let (outgoing, incoming) = if me < peer {
        let outgoing = open_out()?;
        (outgoing, open_in()?)
    } else {
        let incoming = open_in()?;
        (open_out()?, incoming)
    };
    say(b"connected");

    // `:close-read` must really close the reading end, but a thread blocked in
    // read(2) keeps the file open until the read returns. So the reader waits
    // in poll(2) on the FIFO and on a wake-up pipe; dropping the pipe's
    // writing end wakes it up to close the FIFO and return.
    let (wake_read, wake_write) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let peer_name = peer.to_owned();
    let reader = thread::spawn(move || receive(incoming, wake_read, &peer_name));
    commands(outgoing, wake_write, reader, [out_path, in_path]);
    Ok(())
}

/// The reader thread: prints each received line until EOF or until the
/// wake-up pipe is closed; returning closes the FIFO.
fn receive(incoming: File, wake: OwnedFd, peer: &str) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let print = |line: &[u8]| say(&[peer.as_bytes(), b": ", line].concat());
    loop {
        let mut fds = [
            PollFd::new(incoming.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return eprintln!("fifo-chat peer: poll: {e}"),
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return; // :close-read
        }
        if fds[0].revents().is_none_or(|r| r.is_empty()) {
            continue;
        }
        match read(&incoming, &mut buf) {
            Ok(0) => {
                if !pending.is_empty() {
                    print(&pending);
                }
                return say(b"peer left");
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(len) = pending[start..].iter().position(|&b| b == b'\n') {
                    print(&pending[start..start + len]);
                    start += len + 1;
                }
                pending.drain(..start);
            }
            Err(Errno::EINTR) => {}
            Err(e) => return eprintln!("fifo-chat peer: read: {e}"),
        }
    }
}

/// The main thread: runs the commands read on stdin until `:quit` or EOF.
fn commands(outgoing: File, wake: OwnedFd, reader: JoinHandle<()>, fifos: [PathBuf; 2]) {
    let mut outgoing = Some(outgoing);
    let mut wake = Some(wake);
    let mut reader = Some(reader);
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        match text.split_once(' ').map_or((&*text, ""), |(c, a)| (c, a)) {
            (":quit", "") => return,
            (":close-read", "") => {
                drop(wake.take());
                if let Some(reader) = reader.take() {
                    let _ = reader.join();
                }
                say(b"closed read");
            }
            (":close-write", "") => {
                // Hold stdout until `closed write` is out: the `peer left` our
                // close may cause (the submission quits) must come after it.
                let _stdout = io::stdout().lock();
                drop(outgoing.take());
                say(b"closed write");
            }
            (":payload", n) => match n.parse() {
                Ok(n) => send(&mut outgoing, payload(n).into_bytes()),
                Err(_) => eprintln!("fifo-chat peer: bad command `{text}`"),
            },
            (":unfinished", rest) => write_all(&mut outgoing, rest.as_bytes()),
            (":stat", "") => {
                let [out_path, in_path] = &fifos;
                say(format!("stat {}, {}", describe(out_path), describe(in_path)).as_bytes());
            }
            _ if text.starts_with(':') => eprintln!("fifo-chat peer: unknown command `{text}`"),
            _ => send(&mut outgoing, line.clone()),
        }
    }
}

/// Sends `line` and a newline, completely (write_all retries short writes
/// and EINTR); a failure is printed, not fatal.
fn send(outgoing: &mut Option<File>, mut line: Vec<u8>) {
    line.push(b'\n');
    write_all(outgoing, &line);
}

/// Writes `bytes` as they are, completely; a failure is printed, not fatal.
fn write_all(outgoing: &mut Option<File>, bytes: &[u8]) {
    let result = match outgoing {
        Some(file) => file.write_all(bytes),
        None => Err(io::Error::other("the writing end is closed")),
    };
    if let Err(e) = result {
        say(format!("write failed: {e}").as_bytes());
    }
}
