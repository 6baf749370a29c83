//! `cargo-grade peer echo-client SOCKET_PATH`: the grader's clients of
//! task4's echo server.
//!
//! Why it exists: an echo server is only tested by clients, and the clients
//! a test needs are not polite ones. They send binary data (every byte value,
//! NULs included) in whole, byte-by-byte or seeded pieces; many of them talk
//! at the same moment; some stall half-way through a message, stop reading
//! their echo, or vanish without reading it. Each check is exact: the echo
//! must be the very bytes sent, in order, then end of file. A shell tool
//! cannot do that reliably, and the submission cannot be trusted to.
//!
//! It reads commands on stdin and answers each with exactly one line on
//! stdout (flushed at once); errors are lines too, starting `error: `:
//!
//! | command                     | does                                                                 | answer on success          |
//! |-----------------------------|----------------------------------------------------------------------|----------------------------|
//! | `echo BYTES CHUNKING SEED`  | one connection: sends BYTES seeded bytes in CHUNKING (`whole`, `bytewise`, `seeded`: 1..=8192-byte pieces) while a second thread reads the echo; then shuts down its writing side and expects exactly the bytes sent, then EOF | `echoed BYTES bytes` |
//! | `many N BYTES SEED`         | N connections, all made first; each client, in its own thread, sends its first seeded piece and waits for its echo; only when **every** client has its first echo do they all send the rest (seeded pieces) and check their whole echo | `echoed N clients` |
//! | `stall BYTES`               | a connection that sends BYTES bytes, then neither reads nor writes (kept open) | `stalled`    |
//! | `flood`                     | a connection that writes without ever reading, until a write has been blocked for 50 ms (the server has stopped reading: it is blocked writing the echo to it, or will be, since this client never reads); kept open | `flooding N bytes sent` |
//! | `release`                   | closes every stalled and flooding connection                         | `released N`               |
//! | `vanish`                    | a connection that sends without reading until the server's echo to it blocks, then closes: the server is caught mid-write, so its write fails with EPIPE or ECONNRESET on every run | `vanished` |
//! | `connections N`             | N connections one after another, each echoing 100 seeded bytes, then closed | `done N connections` |
//! | `backlog`                   | asks the kernel (sock_diag netlink, what `ss -xl` shows as Send-Q) for the listen backlog of the listening socket whose file is SOCKET_PATH | `backlog N` |
//!
//! End of input: exit with status 0 (closing every connection).
//!
//! Failures of `echo` (and, prefixed `client I: ` or `connection I: `, of
//! `many` and `connections`): `MISMATCH at byte N (sent 0xAA, got 0xBB)`,
//! `SHORT: got N of BYTES bytes, then EOF`, `EXTRA: more than the BYTES
//! bytes sent came back`, `TIMEOUT: ...` (saying what was stuck),
//! `error: connect: ...`. `many` answers with its lowest-numbered failing
//! client; `flood` answers `flooding N bytes sent, never blocked in 5 s` if
//! the server keeps reading without ever pushing back.
//!
//! Nothing here waits without a deadline: every connection has 5 s read and
//! write timeouts (so does `connect`, which blocks while the server's listen
//! backlog is full), and no step sleeps. The ping phase of `many` is what
//! makes it a test of concurrency: a server that serves one client at a time
//! answers the first client's first piece, then waits for that client's
//! next piece, which never comes while the other clients wait for theirs.
//!
//! The data of `echo` and `many` is a splitmix64 stream of the seed (each
//! `many` client has its own seed, derived from SEED and its index), so a
//! failure replays with the same command.

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{signal, SigHandler, Signal};

/// How long any read, write or connect may wait before the client gives up.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write of `flood` (and `vanish`) must stay blocked to count as
/// blocked. Not a race: both directions' buffers are full by then, and as
/// this client never reads, a server that was merely slow to read ends up
/// blocked writing to it all the same; a shorter wait only makes the
/// answer come sooner.
const FLOOD_BLOCKED: Duration = Duration::from_millis(50);
/// Largest piece of `seeded` chunking.
const MAX_CHUNK: usize = 8192;
/// Bytes each connection of `connections` echoes.
const CONNECTION_BYTES: usize = 100;

/// Runs the peer; returns its exit status.
pub fn run(args: &[String]) -> i32 {
    let [path] = args else {
        println!("error: usage: cargo-grade peer echo-client SOCKET_PATH");
        return 2;
    };
    // A write to a server that has gone must fail with EPIPE, never kill us.
    // SAFETY: SIG_IGN installs no handler code.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        println!("error: SIGPIPE: {e}");
        return 2;
    }
    let path = Path::new(path);
    let mut held: Vec<UnixStream> = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        say(&command(path, &words, &mut held));
    }
}

/// Writes `text` and a newline to stdout, flushed at once.
fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Runs one command; returns its answer line.
fn command(path: &Path, words: &[&str], held: &mut Vec<UnixStream>) -> String {
    let parsed = (|| -> Result<String, String> {
        Ok(match words {
            ["echo", bytes, chunking, seed] => {
                let (bytes, seed) = (number(bytes)?, number(seed)?);
                echo(path, bytes, Chunking::parse(chunking, seed)?, seed)
            }
            ["many", n, bytes, seed] => many(path, number(n)?, number(bytes)?, number(seed)?),
            ["stall", bytes] => stall(path, number(bytes)?, held),
            ["flood"] => flood(path, held),
            ["release"] => {
                let n = held.len();
                held.clear();
                format!("released {n}")
            }
            ["vanish"] => vanish(path),
            ["connections", n] => connections(path, number(n)?),
            ["backlog"] => format!("backlog {}", listen_backlog(path)?),
            [] => return Err("empty command".into()),
            _ => return Err(format!("unknown command `{}`", words.join(" "))),
        })
    })();
    parsed.unwrap_or_else(|e| format!("error: {e}"))
}

fn number<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse().map_err(|_| format!("bad number `{word}`"))
}

// ---------------------------------------------------------------------
// Seeded data
// ---------------------------------------------------------------------

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix64(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        splitmix64(self.0)
    }

    /// Uniform in 1..=max.
    fn one_to(&mut self, max: usize) -> usize {
        1 + ((u128::from(self.next_u64()) * max as u128) >> 64) as usize
    }
}

/// `len` pseudo-random bytes of `seed`: every byte value, NULs included.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The seed of client `index` of `many SEED`.
fn client_seed(seed: u64, index: usize) -> u64 {
    splitmix64(seed ^ splitmix64(index as u64 ^ 0xc11e_47c1_1e47_c11e))
}

/// How the data is cut into writes.
#[derive(Clone, Copy)]
enum Chunking {
    /// One write_all of everything.
    Whole,
    /// One write per byte.
    Bytewise,
    /// Pieces of 1..=MAX_CHUNK bytes drawn from the seed.
    Seeded(u64),
}

impl Chunking {
    fn parse(word: &str, seed: u64) -> Result<Chunking, String> {
        match word {
            "whole" => Ok(Chunking::Whole),
            "bytewise" => Ok(Chunking::Bytewise),
            "seeded" => Ok(Chunking::Seeded(seed)),
            other => Err(format!(
                "unknown chunking `{other}` (whole, bytewise, seeded)"
            )),
        }
    }
}

/// Cuts the data into pieces as a [`Chunking`] says.
struct Chunker {
    chunking: Chunking,
    rng: Rng,
}

impl Chunker {
    fn new(chunking: Chunking) -> Chunker {
        let seed = match chunking {
            Chunking::Seeded(seed) => seed ^ 0xc4a2_4c4a_2c4a_c4a2,
            _ => 0,
        };
        Chunker {
            chunking,
            rng: Rng::new(seed),
        }
    }

    /// The size of the next piece when `left` bytes are left (0 < left).
    fn next(&mut self, left: usize) -> usize {
        match self.chunking {
            Chunking::Whole => left,
            Chunking::Bytewise => 1,
            Chunking::Seeded(_) => self.rng.one_to(MAX_CHUNK).min(left),
        }
    }
}

// ---------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------

/// Connects to the server with a deadline: a Unix stream connect blocks
/// while the server's listen backlog is full, for as long as the socket's
/// send timeout, so that timeout is set before connecting. Read and write
/// timeouts of [`TIMEOUT`] stay on the connection.
fn connect(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path is too long for a socket address (or contains NUL)",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: socket takes only integers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket and nothing else owns it.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    loop {
        // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
        let rc = unsafe {
            libc::connect(
                fd,
                (&raw const addr).cast::<libc::sockaddr>(),
                len as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out after 5 s (the server's listen backlog stayed full)",
                ))
            }
            _ => return Err(e),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why an exchange failed.
enum Failure {
    /// The echo differs from what was sent: the most telling failure.
    Mismatch(String),
    /// Anything else: short, extra, timeout, an error.
    Other(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::Mismatch(m) | Failure::Other(m) => m,
        }
    }
}

/// Compares `got` (which came back at offset `at` of `data`) with the data.
fn compare(data: &[u8], at: usize, got: &[u8]) -> Result<(), Failure> {
    let want = &data[at..];
    let n = got.len().min(want.len());
    // One memcmp for the bytes that match (every byte of a correct echo, up
    // to megabytes a test); the byte-by-byte search only once they differ.
    if got[..n] != want[..n] {
        let i = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(n);
        return Err(Failure::Mismatch(format!(
            "MISMATCH at byte {} (sent 0x{:02x}, got 0x{:02x})",
            at + i,
            want[i],
            got[i]
        )));
    }
    if got.len() > want.len() {
        return Err(Failure::Other(format!(
            "EXTRA: more than the {} bytes sent came back",
            data.len()
        )));
    }
    Ok(())
}

/// Reads the echo of `data[from..]` until EOF, checking every byte.
fn receive(stream: &UnixStream, data: &[u8], from: usize) -> Result<(), Failure> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) if at == data.len() => return Ok(()),
            Ok(0) => {
                return Err(Failure::Other(format!(
                    "SHORT: got {at} of {} bytes, then EOF",
                    data.len()
                )))
            }
            Ok(n) => {
                compare(data, at, &buf[..n])?;
                at += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(Failure::Other(format!(
                    "TIMEOUT: echoed {at} of {} bytes, then nothing for 5 s",
                    data.len()
                )))
            }
            Err(e) => {
                return Err(Failure::Other(format!(
                    "error: read after {at} of {} bytes: {e}",
                    data.len()
                )))
            }
        }
    }
}

/// Writes `data[from..]` in the chunker's pieces, each with as many
/// write(2) calls as it takes (a write to a socket may be short).
fn send(
    stream: &UnixStream,
    data: &[u8],
    from: usize,
    chunker: &mut Chunker,
) -> Result<(), String> {
    let timeout = |at: usize| {
        format!(
            "TIMEOUT: sent {at} of {} bytes, then the server took nothing for 5 s",
            data.len()
        )
    };
    let mut at = from;
    while at < data.len() {
        let end = at + chunker.next(data.len() - at);
        while at < end {
            let started = Instant::now();
            match (&*stream).write(&data[at..end]) {
                Ok(0) => return Err(format!("error: write returned 0 after {at} bytes")),
                Ok(n) => {
                    at += n;
                    // With a send timeout, a write that waited the whole
                    // timeout returns what it managed to write.
                    if at < end && started.elapsed() >= TIMEOUT {
                        return Err(timeout(at));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(timeout(at)),
                Err(e) => {
                    return Err(format!(
                        "error: write after {at} of {} bytes: {e}",
                        data.len()
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Whether a failed send means the server closed or reset the connection
/// (then what the echo looked like up to that point says more).
fn server_closed(message: &str) -> bool {
    let closed = [
        io::Error::from(io::ErrorKind::BrokenPipe).to_string(),
        io::Error::from_raw_os_error(libc::EPIPE).to_string(),
        io::Error::from_raw_os_error(libc::ECONNRESET).to_string(),
    ];
    message.starts_with("error: write") && closed.iter().any(|c| message.ends_with(c.as_str()))
}

/// Sends `data[from..]` (the bytes before `from` were echoed already) while
/// a second thread reads and checks the echo; then shuts down the writing
/// side and expects EOF right after the last byte. Reading while writing
/// matters: a payload larger than the socket buffers would otherwise fill
/// both directions and block the client and the server for good.
fn exchange(
    stream: &UnixStream,
    data: &[u8],
    from: usize,
    chunker: &mut Chunker,
) -> Result<(), String> {
    let (sent, echoed) = thread::scope(|s| {
        let reader = s.spawn(|| {
            let echoed = receive(stream, data, from);
            if echoed.is_err() {
                // The verdict is in: make the writer stop at once (its next
                // write fails) instead of waiting for its timeout.
                let _ = stream.shutdown(Shutdown::Both);
            }
            echoed
        });
        let sent = send(stream, data, from, chunker);
        // After a failed send, shutting down both sides ends the reader's
        // wait at once (it reads EOF).
        let how = if sent.is_ok() {
            Shutdown::Write
        } else {
            Shutdown::Both
        };
        let _ = stream.shutdown(how);
        let echoed = reader
            .join()
            .unwrap_or_else(|_| Err(Failure::Other("error: the reader panicked".into())));
        (sent, echoed)
    });
    match (sent, echoed) {
        (_, Err(Failure::Mismatch(m))) => Err(m),
        // The server hung up early: the reader saw where the echo stopped.
        (Err(m), Err(Failure::Other(r))) if server_closed(&m) => Err(r),
        (Err(m), _) => Err(m),
        (Ok(()), echoed) => echoed.map_err(Failure::message),
    }
}

fn connect_or(path: &Path) -> Result<UnixStream, String> {
    connect(path).map_err(|e| format!("error: connect: {e}"))
}

// ---------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------

fn echo(path: &Path, bytes: usize, chunking: Chunking, seed: u64) -> String {
    let data = data(bytes, seed);
    let result = connect_or(path)
        .and_then(|stream| exchange(&stream, &data, 0, &mut Chunker::new(chunking)));
    match result {
        Ok(()) => format!("echoed {bytes} bytes"),
        Err(m) => m,
    }
}

/// A barrier for `many`'s clients that gives up after [`TIMEOUT`], and that
/// any client can break (when it fails, nobody waits for it).
struct Gate {
    clients: usize,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Clients that reached each phase.
    arrived: [usize; 2],
    broken: bool,
}

/// Why a client of `many` stopped.
enum Stop {
    /// Another client failed first: not reported.
    Aborted,
    Failed(String),
}

impl Gate {
    /// Arrives at `phase` and waits until every client has.
    fn wait(&self, phase: usize, what: &str) -> Result<(), Stop> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.arrived[phase] += 1;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, TIMEOUT, |s| {
                s.arrived[phase] < self.clients && !s.broken
            })
            .unwrap_or_else(PoisonError::into_inner);
        if state.arrived[phase] == self.clients {
            Ok(())
        } else if state.broken {
            Err(Stop::Aborted)
        } else {
            Err(Stop::Failed(format!(
                "TIMEOUT: only {} of {} clients {what} within 5 s",
                state.arrived[phase], self.clients
            )))
        }
    }

    fn break_it(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.broken = true;
        self.changed.notify_all();
    }
}

/// Client `index` of `many`.
fn many_client(stream: &UnixStream, gate: &Gate, bytes: usize, seed: u64) -> Result<(), Stop> {
    let data = data(bytes, seed);
    let mut chunker = Chunker::new(Chunking::Seeded(seed));
    gate.wait(0, "were ready")?;
    // The ping: the first piece, and its echo.
    let first = if bytes == 0 { 0 } else { chunker.next(bytes) };
    let ping = || -> Result<(), String> {
        (&*stream)
            .write_all(&data[..first])
            .map_err(|e| format!("error: write of the first {first} bytes: {e}"))?;
        let mut echo = vec![0u8; first];
        match (&*stream).read_exact(&mut echo) {
            Ok(()) => compare(&data, 0, &echo).map_err(Failure::message),
            Err(e) if is_timeout(&e) => Err(format!(
                "TIMEOUT: no echo of the first {first} bytes within 5 s"
            )),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(format!(
                "SHORT: EOF before the echo of the first {first} bytes"
            )),
            Err(e) => Err(format!("error: read of the first {first} bytes: {e}")),
        }
    };
    ping().map_err(Stop::Failed)?;
    // Every client is in the middle of its conversation at the same moment.
    gate.wait(1, "got the echo of their first piece")?;
    exchange(stream, &data, first, &mut chunker).map_err(Stop::Failed)
}

fn many(path: &Path, clients: usize, bytes: usize, seed: u64) -> String {
    let mut streams = Vec::with_capacity(clients);
    for i in 0..clients {
        match connect(path) {
            Ok(stream) => streams.push(stream),
            Err(e) => return format!("client {i}: error: connect: {e}"),
        }
    }
    let gate = Gate {
        clients,
        state: Mutex::new(GateState::default()),
        changed: Condvar::new(),
    };
    let results: Vec<Result<(), Stop>> = thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .enumerate()
            .map(|(i, stream)| {
                let gate = &gate;
                s.spawn(move || {
                    let result = many_client(stream, gate, bytes, client_seed(seed, i));
                    if result.is_err() {
                        gate.break_it();
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Stop::Failed("error: the client panicked".into())))
            })
            .collect()
    });
    for (i, result) in results.into_iter().enumerate() {
        if let Err(Stop::Failed(m)) = result {
            return format!("client {i}: {m}");
        }
    }
    format!("echoed {clients} clients")
}

/// Connects and writes `bytes` seeded bytes; returns the connection.
fn connect_and_send(path: &Path, bytes: usize, seed: u64) -> Result<UnixStream, String> {
    let stream = connect_or(path)?;
    send(
        &stream,
        &data(bytes, seed),
        0,
        &mut Chunker::new(Chunking::Whole),
    )?;
    Ok(stream)
}

fn stall(path: &Path, bytes: usize, held: &mut Vec<UnixStream>) -> String {
    match connect_and_send(path, bytes, 0x57a1) {
        Ok(stream) => {
            held.push(stream);
            "stalled".into()
        }
        Err(m) => m,
    }
}

fn flood(path: &Path, held: &mut Vec<UnixStream>) -> String {
    let stream = match connect_or(path) {
        Ok(stream) => stream,
        Err(m) => return m,
    };
    let (sent, blocked) = match fill(&stream) {
        Ok(filled) => filled,
        Err(m) => return m,
    };
    held.push(stream);
    if blocked {
        format!("flooding {sent} bytes sent")
    } else {
        format!("flooding {sent} bytes sent, never blocked in 5 s")
    }
}

/// Writes without reading until a write blocks for `FLOOD_BLOCKED`: both
/// directions' buffers are then full, so the server is stuck writing its
/// echo to this client. Returns the bytes sent and whether it blocked
/// (within `TIMEOUT`).
fn fill(stream: &UnixStream) -> Result<(usize, bool), String> {
    stream
        .set_write_timeout(Some(FLOOD_BLOCKED))
        .map_err(|e| format!("error: set_write_timeout: {e}"))?;
    let chunk = data(64 * 1024, 0xf100d);
    let deadline = Instant::now() + TIMEOUT;
    let mut sent = 0usize;
    let blocked = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match (&*stream).write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break true,
            Err(e) => return Err(format!("error: write after {sent} bytes: {e}")),
        }
    };
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    Ok((sent, blocked))
}

/// A client that vanishes mid-echo: it fills the buffers (the server is
/// then blocked writing to it) and closes without reading. Closing while
/// the server's write is pending makes that write fail on every run; a
/// client that merely sent and closed could be echoed in full first.
fn vanish(path: &Path) -> String {
    let stream = match connect_or(path) {
        Ok(stream) => stream,
        Err(m) => return m,
    };
    match fill(&stream) {
        Ok((_, true)) => "vanished".into(),
        Ok((sent, false)) => {
            format!("vanished, but the server took {sent} bytes in 5 s without ever pushing back")
        }
        Err(m) => m,
    }
}

fn connections(path: &Path, n: usize) -> String {
    for i in 0..n {
        let data = data(CONNECTION_BYTES, i as u64);
        let result = connect_or(path)
            .and_then(|stream| exchange(&stream, &data, 0, &mut Chunker::new(Chunking::Whole)));
        if let Err(m) = result {
            return format!("connection {i}: {m}");
        }
    }
    format!("done {n} connections")
}

// ---------------------------------------------------------------------
// The listen backlog, from the kernel
// ---------------------------------------------------------------------

/// Netlink's socket-diagnostics protocol (linux/sock_diag.h, unix_diag.h).
const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_RQLEN: u16 = 4;

/// The backlog the server passed to listen(2) (capped by the kernel's
/// somaxconn), for the listening Unix socket whose file is `path`: the
/// kernel reports it as the `wqueue` of a listening socket's
/// UNIX_DIAG_RQLEN. The socket is recognised by the inode of its file
/// (UNIX_DIAG_VFS), or else by its name. A server cannot fake this, and no
/// amount of connecting could measure it while the server accepts promptly.
fn listen_backlog(path: &Path) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: socket takes only integers.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(format!(
            "sock_diag netlink socket: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just returned by socket and nothing else owns it.
    // UnixStream only for its read, write and SO_RCVTIMEO, which are a
    // socket's whatever its family.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let mut request = Vec::with_capacity(40);
    request.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // seq
    request.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // states
    request.extend_from_slice(&0u32.to_ne_bytes()); // ino: any
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN;
    request.extend_from_slice(&show.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // cookie: none
    (&sock)
        .write_all(&request)
        .map_err(|e| format!("sock_diag request: {e}"))?;
    let want_name = path.as_os_str().as_bytes();
    let (mut by_inode, mut by_name) = (None, None);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("sock_diag answer: {e}")),
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                return Err("a malformed sock_diag answer".into());
            }
            match kind {
                NLMSG_DONE => {
                    return by_inode.or(by_name).ok_or_else(|| {
                        format!(
                            "no listening socket at {} (sock_diag lists none)",
                            path.display()
                        )
                    })
                }
                NLMSG_ERROR => {
                    let code =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                    return Err(format!(
                        "sock_diag: {}",
                        io::Error::from_raw_os_error(-code)
                    ));
                }
                _ => {}
            }
            // struct unix_diag_msg (16 bytes), then attributes.
            let (mut name, mut inode, mut backlog) = (None, None, None);
            let mut attr = at + 32;
            while attr + 4 <= at + len {
                let alen = u16::from_ne_bytes([buf[attr], buf[attr + 1]]) as usize;
                let atype = u16::from_ne_bytes([buf[attr + 2], buf[attr + 3]]);
                if alen < 4 || attr + alen > at + len {
                    break;
                }
                let value = &buf[attr + 4..attr + alen];
                match atype {
                    UNIX_DIAG_NAME => name = Some(value.to_vec()),
                    UNIX_DIAG_VFS if value.len() >= 8 => inode = Some(u32_at(value, 0)),
                    UNIX_DIAG_RQLEN if value.len() >= 8 => backlog = Some(u32_at(value, 4)),
                    _ => {}
                }
                attr += (alen + 3) & !3;
            }
            if let Some(backlog) = backlog {
                if inode == Some(meta.ino() as u32) {
                    by_inode = by_inode.or(Some(backlog));
                }
                if name.as_deref() == Some(want_name) {
                    by_name = by_name.or(Some(backlog));
                }
            }
            at += (len + 3) & !3;
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_seeded_and_covers_every_byte_value() {
        let a = data(4096, 1);
        assert_eq!(a.len(), 4096);
        assert_eq!(a, data(4096, 1));
        assert_ne!(a, data(4096, 2));
        let mut seen = [false; 256];
        for &b in &a {
            seen[b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "some byte value never occurs");
        assert_eq!(data(13, 7), data(20, 7)[..13]);
    }

    #[test]
    fn chunkers_cut_the_whole_data() {
        for chunking in [Chunking::Whole, Chunking::Bytewise, Chunking::Seeded(3)] {
            let mut chunker = Chunker::new(chunking);
            let (mut left, mut pieces) = (100_000usize, 0);
            while left > 0 {
                let n = chunker.next(left);
                assert!((1..=left).contains(&n));
                left -= n;
                pieces += 1;
            }
            match chunking {
                Chunking::Whole => assert_eq!(pieces, 1),
                Chunking::Bytewise => assert_eq!(pieces, 100_000),
                Chunking::Seeded(_) => assert!(pieces > 100_000 / MAX_CHUNK),
            }
        }
    }

    #[test]
    fn a_wrong_echo_is_explained() {
        let sent = [1u8, 2, 3, 4];
        assert!(compare(&sent, 1, &[2, 3]).is_ok());
        match compare(&sent, 1, &[2, 9]) {
            Err(Failure::Mismatch(m)) => assert_eq!(m, "MISMATCH at byte 2 (sent 0x03, got 0x09)"),
            _ => panic!("no mismatch"),
        }
        match compare(&sent, 3, &[4, 0]) {
            Err(Failure::Other(m)) => assert!(m.starts_with("EXTRA"), "{m}"),
            _ => panic!("no extra"),
        }
    }

    #[test]
    fn commands_answer_one_line_even_when_wrong() {
        let path = Path::new("/nonexistent/cargo-grade-echo.sock");
        let mut held = Vec::new();
        let answer = |words: &[&str], held: &mut Vec<UnixStream>| command(path, words, held);
        assert_eq!(answer(&[], &mut held), "error: empty command");
        assert!(answer(&["echo", "x", "whole", "1"], &mut held).starts_with("error: bad number"));
        assert!(answer(&["echo", "1", "sideways", "1"], &mut held)
            .starts_with("error: unknown chunking"));
        assert!(answer(&["echo", "1", "whole", "1"], &mut held).starts_with("error: connect: "));
        assert_eq!(answer(&["release"], &mut held), "released 0");
        assert!(answer(&["fly"], &mut held).starts_with("error: unknown command"));
    }
}
