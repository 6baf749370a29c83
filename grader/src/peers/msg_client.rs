//! `cargo-grade peer msg-client KEY`: the grader as a client of task5's
//! message-type dispatcher.
//!
//! Why it exists: a dispatcher's output says nothing about the messages it
//! exchanges. To test one, the grader has to put requests into the queue
//! exactly as the handout lays them out, ask the kernel for the replies of
//! its own pid (the lecture's *a process can request the type of message it
//! is waiting for*), check every reply against the request it answers, and
//! misbehave the way real clients do: send a thousand requests at once while
//! reading replies on another thread, or vanish without reading its replies.
//!
//! The message layout is task5's contract: `mtype: c_long`, then `pid: i32`
//! and `text: [u8; 256]` (NUL-padded), msgsz 260 (everything after `mtype`).
//! Requests carry this process's pid; its replies have that pid as their
//! type. A reply whose body is not exactly 260 bytes is reported as an error.
//!
//! It prints nothing at start (the queue may not exist yet: every command
//! looks it up again with msgget(KEY, 0)), then answers each command read on
//! stdin with exactly one line:
//!
//! | command          | does                                                          | answer |
//! |------------------|---------------------------------------------------------------|--------|
//! | `send TYPE TEXT` | msgsnd of a request of type TYPE (TEXT: the rest of the line, may be empty) | `sent` |
//! | `send-as PID TYPE TEXT` | the same, with PID (any integer: 0, 9, -1...) in the request's `pid` field instead of its own | `sent` |
//! | `recv`           | msgrcv of the next reply of its pid, waiting up to 3 s; checks the reply's `pid` field (below) | `reply TEXT` / `no reply within 3 s` |
//! | `burst N SEED`   | a thread sends N requests of seeded types 1 to 3 with texts `c<pid>-s<seq>` while another receives the N replies (8 s in all) | `burst ok N` / `burst FAILED: PROBLEM` |
//! | `vanish N`       | forks a child that sends up to N UPPER requests (200-byte texts) with its own pid and exits without reading a reply; reaps it | `vanished pid P after K requests` |
//! | `shutdown`       | msgsnd of a SHUTDOWN request (type 9, empty text)             | `sent` |
//! | `queue-exists`   | msgget(KEY, 0)                                                | `queue exists` / `no queue` |
//! | `queue-mode`     | msgctl(IPC_STAT): the permission bits the queue was created with | `mode 600` (octal) |
//! | `remove-queue`   | msgctl(IPC_RMID), as another user of the key would            | `removed` |
//!
//! A reply's `pid` field must be the pid of the dispatcher, the process
//! that sent it. The kernel records the pid of the last msgsnd on a queue
//! (`msg_lspid`); `recv` reads it right after taking the reply out and
//! answers `error: the reply's pid field is P, but process Q sent it ...`
//! when they differ. That holds while nothing but the dispatcher sends after
//! the reply, which is why `recv` is for tests where this client is the
//! only one sending (`burst` does not check it).
//!
//! Sends wait up to 3 s while the queue is full. Every wait is a polling
//! loop (IPC_NOWAIT, then a short sleep) with a deadline, so no command ever
//! hangs. Errors (no queue, a queue full for 3 s, a command out of place)
//! are answered with a line starting `error: `. End of input exits with
//! status 0.
//!
//! `burst` checks that every reply is the right answer to one of this
//! client's requests (UPPER: `C<pid>-S<seq>`, REVERSE: `c<pid>-s<seq>`
//! backwards, LENGTH: the text's length), that the replies of each type
//! come in the order their requests were sent, and that none is missing.
//! PROBLEM is the first thing that went wrong, for example `reply 17 is for
//! another client's request: "C4242-S3"`, `type 2 replies out of order: s5
//! after s9`, or `only 812 of 1000 replies within 8 s`. (A LENGTH reply is
//! a bare number: a missing one shows as the next one not matching.)
//!
//! `vanish`'s child sends without blocking; when the queue is full it tries
//! again for up to 50 ms, then gives up and exits anyway (after at most 2 s
//! in all): K, the number it managed to send, is usually the queue's
//! capacity (about 63 messages of 260 bytes under the default 16384-byte
//! limit) or more, and the queue is left full of replies nobody will read.

use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, pipe, read, ForkResult};

use crate::harness::deadline::{poll_until, Deadline};

/// Request types (task5's contract).
pub const UPPER: libc::c_long = 1;
pub const REVERSE: libc::c_long = 2;
pub const LENGTH: libc::c_long = 3;
pub const SHUTDOWN: libc::c_long = 9;

/// Bytes of text in a message.
pub const TEXT_SIZE: usize = 256;
/// msgsz: the body after `mtype`, `pid` (4 bytes) and `text`.
pub const BODY_SIZE: usize = 4 + TEXT_SIZE;
/// The largest body a receive accepts whole (Linux's default msgmax), so
/// that a body longer than BODY_SIZE is seen, not silently cut.
const RECEIVE_SIZE: usize = 8192;

/// How long `send` and `recv` wait.
const ANSWER_DEADLINE: Duration = Duration::from_secs(3);
/// How long a whole `burst` may take.
const BURST_DEADLINE: Duration = Duration::from_secs(8);
/// Pause between two attempts of a polling loop.
const POLL: Duration = Duration::from_micros(200);
/// `vanish`'s child gives up on a full queue after this long without
/// progress...
const VANISH_PATIENCE: Duration = Duration::from_millis(50);
/// ...and after this long in all.
const VANISH_DEADLINE: Duration = Duration::from_secs(2);
/// Bytes of text in each of `vanish`'s requests.
const VANISH_TEXT: usize = 200;

/// One message as msgsnd sees it: the contract's layout.
#[repr(C)]
pub struct Message {
    pub mtype: libc::c_long,
    pub pid: i32,
    pub text: [u8; TEXT_SIZE],
}

impl Message {
    /// A message whose text is `text` (cut at TEXT_SIZE bytes).
    pub fn new(mtype: libc::c_long, pid: i32, text: &[u8]) -> Message {
        let mut message = Message {
            mtype,
            pid,
            text: [0; TEXT_SIZE],
        };
        let len = text.len().min(TEXT_SIZE);
        message.text[..len].copy_from_slice(&text[..len]);
        message
    }
}

/// A buffer for msgrcv that is larger than any correct message.
#[repr(C)]
struct ReceiveBuffer {
    mtype: libc::c_long,
    body: [u8; RECEIVE_SIZE],
}

/// A received message: its body as the kernel delivered it.
struct Received {
    body: Vec<u8>,
}

impl Received {
    /// The text: the body after `pid`, up to the first NUL.
    fn text(&self) -> &[u8] {
        let end = self.body.len().min(BODY_SIZE);
        let text = self.body.get(4..end).unwrap_or_default();
        let len = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        &text[..len]
    }

    /// The `pid` field (the first 4 bytes of the body), if there are 4.
    fn pid(&self) -> Option<i32> {
        let bytes: [u8; 4] = self.body.get(..4)?.try_into().ok()?;
        Some(i32::from_ne_bytes(bytes))
    }

    /// Why this is not a well-formed message, if it is not.
    fn malformed(&self) -> Option<String> {
        (self.body.len() != BODY_SIZE).then(|| {
            format!(
                "a reply with {} bytes after its type, expected {BODY_SIZE}",
                self.body.len()
            )
        })
    }
}

/// A System V message queue, by its id.
pub struct Queue {
    id: libc::c_int,
}

impl Queue {
    /// msgget(key, flags).
    pub fn get(key: libc::key_t, flags: libc::c_int) -> io::Result<Queue> {
        // SAFETY: msgget takes only integers.
        let id = unsafe { libc::msgget(key, flags) };
        if id < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Queue { id })
    }

    /// The existing queue KEY, or the answer line that says why not.
    fn open(key: libc::key_t) -> Result<Queue, String> {
        Queue::get(key, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => format!("error: no queue with key {key}"),
            _ => format!("error: msgget {key}: {e}"),
        })
    }

    /// msgctl(IPC_STAT): the queue's permissions, counts and last pids.
    fn stat(&self) -> io::Result<libc::msqid_ds> {
        // SAFETY: msqid_ds is plain old data; all zeroes is a valid value.
        let mut stat: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT writes one msqid_ds into `stat`, which is one.
        let rc = unsafe { libc::msgctl(self.id, libc::IPC_STAT, &mut stat) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat)
    }

    /// msgsnd without blocking: Ok(false) when the queue is full.
    pub fn try_send(&self, message: &Message) -> io::Result<bool> {
        // SAFETY: msgsnd reads a c_long and BODY_SIZE more bytes from the
        // pointer: `mtype`, `pid` and `text`, all inside `message`.
        let rc = unsafe {
            libc::msgsnd(
                self.id,
                ptr::from_ref(message).cast(),
                BODY_SIZE,
                libc::IPC_NOWAIT,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(false),
            _ => Err(e),
        }
    }

    /// msgsnd, retried while the queue is full until `deadline`: Ok(false)
    /// if it was still full then.
    fn send_until(&self, message: &Message, deadline: Instant) -> io::Result<bool> {
        // System V queues have no descriptor to wait on: try at a pace.
        let sent = poll_until(until(deadline), || match self.try_send(message) {
            Ok(false) => None,
            done => Some(done),
        });
        sent.unwrap_or(Ok(false))
    }

    /// msgrcv of the first message of type `mtype`, without blocking.
    fn try_receive(&self, mtype: libc::c_long) -> io::Result<Option<Received>> {
        let mut buffer = Box::new(ReceiveBuffer {
            mtype: 0,
            body: [0; RECEIVE_SIZE],
        });
        // SAFETY: msgrcv writes a c_long and at most RECEIVE_SIZE more bytes
        // at the pointer, all inside `buffer`; any bytes are valid values.
        let len = unsafe {
            libc::msgrcv(
                self.id,
                ptr::from_mut(&mut *buffer).cast(),
                RECEIVE_SIZE,
                mtype,
                libc::IPC_NOWAIT | libc::MSG_NOERROR,
            )
        };
        if len >= 0 {
            let len = len as usize;
            return Ok(Some(Received {
                body: buffer.body[..len].to_vec(),
            }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOMSG) => Ok(None),
            _ => Err(e),
        }
    }

    /// msgrcv of type `mtype`, retried until `deadline`.
    fn receive_until(
        &self,
        mtype: libc::c_long,
        deadline: Instant,
    ) -> io::Result<Option<Received>> {
        let received = poll_until(until(deadline), || match self.try_receive(mtype) {
            Ok(None) => None,
            done => Some(done),
        });
        received.unwrap_or(Ok(None))
    }
}

/// The harness's deadline for an `Instant`.
fn until(deadline: Instant) -> Deadline {
    Deadline::after(deadline.saturating_duration_since(Instant::now()))
}

/// Runs the peer; returns its exit status.
pub fn run(args: &[String]) -> i32 {
    let key = match args {
        [key] => key.parse::<libc::key_t>().ok(),
        _ => None,
    };
    let Some(key) = key else {
        say("error: usage: cargo-grade peer msg-client KEY");
        return 2;
    };
    let client = Client {
        key,
        pid: getpid().as_raw(),
    };
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = client.command(line.strip_suffix('\r').unwrap_or(&line));
        say(&answer);
    }
    0
}

/// Writes one line to stdout, flushed at once.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A text as one printable line: invalid UTF-8 replaced, control
/// characters escaped.
fn show(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

struct Client {
    key: libc::key_t,
    /// This process's pid: the type of its replies.
    pid: i32,
}

impl Client {
    /// Runs one command; returns the answer line.
    fn command(&self, line: &str) -> String {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        let result = match (word, args.as_slice()) {
            ("send", [_, ..]) => self.send_command(self.pid, rest),
            ("send-as", [pid, _, ..]) => match pid.parse() {
                Ok(pid) => {
                    let rest = rest.split_once(' ').map_or("", |(_, rest)| rest);
                    self.send_command(pid, rest)
                }
                Err(_) => Err(format!("error: bad pid in `{line}`")),
            },
            ("recv", []) => self.recv(),
            ("burst", [n, seed]) => match (n.parse(), seed.parse()) {
                (Ok(n), Ok(seed)) => self.burst(n, seed),
                _ => Err(format!("error: bad number in `{line}`")),
            },
            ("vanish", [n]) => match n.parse() {
                Ok(n) => self.vanish(n),
                Err(_) => Err(format!("error: bad number in `{line}`")),
            },
            ("shutdown", []) => self.send(SHUTDOWN, self.pid, b""),
            ("queue-exists", []) => self.queue_exists(),
            ("queue-mode", []) => self.queue_mode(),
            ("remove-queue", []) => self.remove_queue(),
            _ => Err(format!("error: unknown command `{line}`")),
        };
        result.unwrap_or_else(|error| error)
    }

    /// `send TYPE TEXT` (and `send-as PID TYPE TEXT`): `rest` is everything
    /// after `send ` (after `send-as PID `); `pid` goes in the `pid` field.
    fn send_command(&self, pid: i32, rest: &str) -> Result<String, String> {
        let (mtype, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let mtype: libc::c_long = match mtype.parse() {
            Ok(t) if t >= 1 => t,
            _ => return Err(format!("error: bad type `{mtype}` (a number, 1 or more)")),
        };
        if text.len() > TEXT_SIZE {
            return Err(format!(
                "error: a text of {} bytes (at most {TEXT_SIZE})",
                text.len()
            ));
        }
        self.send(mtype, pid, text.as_bytes())
    }

    /// Sends a request of type `mtype` with `pid` in its `pid` field.
    fn send(&self, mtype: libc::c_long, pid: i32, text: &[u8]) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        let request = Message::new(mtype, pid, text);
        match queue.send_until(&request, Instant::now() + ANSWER_DEADLINE) {
            Ok(true) => Ok("sent".into()),
            Ok(false) => Err(format!(
                "error: the queue stayed full for {} s: the request could not be sent",
                ANSWER_DEADLINE.as_secs()
            )),
            Err(e) => Err(format!("error: msgsnd: {e}")),
        }
    }

    /// `recv`: the next reply of this process's pid.
    fn recv(&self) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        let deadline = Instant::now() + ANSWER_DEADLINE;
        match queue.receive_until(libc::c_long::from(self.pid), deadline) {
            Ok(Some(reply)) => {
                if let Some(problem) = reply.malformed() {
                    return Err(format!("error: {problem}: {}", show(reply.text())));
                }
                // Right after the reply was taken out: nobody but the
                // dispatcher has sent since (see the module's notes).
                let sender = queue
                    .stat()
                    .map_err(|e| format!("error: msgctl IPC_STAT: {e}"))?
                    .msg_lspid;
                match reply.pid() {
                    Some(pid) if pid == sender => Ok(format!("reply {}", show(reply.text()))),
                    pid => Err(format!(
                        "error: the reply's pid field is {}, but process {sender} sent it (the queue's last sender): a reply carries the dispatcher's own pid: {}",
                        pid.map_or("missing".to_owned(), |p| p.to_string()),
                        show(reply.text())
                    )),
                }
            }
            Ok(None) => Ok(format!("no reply within {} s", ANSWER_DEADLINE.as_secs())),
            Err(e) => Err(format!("error: msgrcv: {e}")),
        }
    }

    /// `queue-mode`: the queue's permission bits, in octal.
    fn queue_mode(&self) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        let stat = queue
            .stat()
            .map_err(|e| format!("error: msgctl IPC_STAT: {e}"))?;
        Ok(format!("mode {:o}", stat.msg_perm.mode & 0o777))
    }

    /// `remove-queue`: what another process of the key's owner may do at any
    /// moment; the dispatcher blocked on it wakes up with EIDRM.
    fn remove_queue(&self) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        // SAFETY: IPC_RMID does not use the buffer argument: null is fine.
        let rc = unsafe { libc::msgctl(queue.id, libc::IPC_RMID, ptr::null_mut()) };
        if rc < 0 {
            return Err(format!(
                "error: msgctl IPC_RMID: {}",
                io::Error::last_os_error()
            ));
        }
        Ok("removed".into())
    }

    fn queue_exists(&self) -> Result<String, String> {
        match Queue::get(self.key, 0) {
            Ok(_) => Ok("queue exists".into()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok("no queue".into()),
            Err(e) => Err(format!("error: msgget {}: {e}", self.key)),
        }
    }

    /// `burst N SEED`: N requests sent by one thread while another receives
    /// and checks the replies.
    fn burst(&self, n: usize, seed: u64) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        let plan = Plan::new(self.pid, n, seed);
        let deadline = Instant::now() + BURST_DEADLINE;
        let stop = AtomicBool::new(false);
        let (sent, received) = thread::scope(|s| {
            let sender = s.spawn(|| send_all(&queue, self.pid, &plan, deadline, &stop));
            let received = receive_all(&queue, self.pid, &plan, deadline);
            // After a problem, the sender need not go on.
            stop.store(true, Ordering::SeqCst);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err("the sender thread panicked".into()));
            (sent, received)
        });
        let problem = match (received, sent) {
            (Ok(()), _) => return Ok(format!("burst ok {n}")),
            (Err(Missing(got)), Ok(sent)) if sent < n => format!(
                "only {got} of {n} replies within {} s (only {sent} requests could be sent: the queue stayed full)",
                BURST_DEADLINE.as_secs()
            ),
            (Err(Missing(got)), Err(e)) => format!(
                "only {got} of {n} replies within {} s (sending failed: {e})",
                BURST_DEADLINE.as_secs()
            ),
            (Err(Missing(got)), Ok(_)) => format!(
                "only {got} of {n} replies within {} s",
                BURST_DEADLINE.as_secs()
            ),
            (Err(Wrong(problem)), _) => problem,
        };
        Ok(format!("burst FAILED: {problem}"))
    }

    /// `vanish N`: a child sends up to N UPPER requests and exits without
    /// reading any reply.
    fn vanish(&self, n: usize) -> Result<String, String> {
        let queue = Queue::open(self.key)?;
        let (from_child, to_child) = pipe().map_err(|e| format!("error: pipe: {e}"))?;
        // Prepared before fork: the child only makes system calls.
        let mut request = Message::new(UPPER, 0, &[b'v'; VANISH_TEXT]);
        // SAFETY: the child only calls async-signal-safe functions (getpid,
        // msgsnd, clock_gettime, nanosleep, write, _exit) and touches only
        // memory prepared before fork, so it is sound even if the parent had
        // other threads (it has none between commands).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                request.pid = getpid().as_raw();
                let sent = vanishing_child(&queue, &request, n);
                let _ = nix::unistd::write(to_child.as_fd(), &sent.to_ne_bytes());
                // SAFETY: ends the child at once, without running the
                // parent's code (or its destructors) in it.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(to_child);
                let mut buf = [0u8; 4];
                let mut got = 0;
                while got < buf.len() {
                    match read(&from_child, &mut buf[got..]) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => break,
                    }
                }
                // Reaped at once: a zombie would still count as existing.
                let _ = waitpid(child, None);
                if got < buf.len() {
                    return Err(format!("error: the vanishing child {child} said nothing"));
                }
                let sent = u32::from_ne_bytes(buf);
                Ok(format!("vanished pid {child} after {sent} requests"))
            }
            Err(e) => Err(format!("error: fork: {e}")),
        }
    }
}

/// The vanishing child's sends: up to `n`, each retried for VANISH_PATIENCE
/// while the queue is full. Returns how many were sent.
fn vanishing_child(queue: &Queue, request: &Message, n: usize) -> u32 {
    let start = Instant::now();
    let mut sent = 0u32;
    let mut progress = start;
    while (sent as usize) < n {
        match queue.try_send(request) {
            Ok(true) => {
                sent += 1;
                progress = Instant::now();
            }
            Ok(false) => {
                let now = Instant::now();
                if now - progress >= VANISH_PATIENCE || now - start >= VANISH_DEADLINE {
                    break;
                }
                thread::sleep(POLL);
            }
            Err(_) => break,
        }
    }
    sent
}

/// What `burst` sends: request `seq` has type `types[seq]` and text
/// `c<pid>-s<seq>`.
struct Plan {
    types: Vec<libc::c_long>,
    texts: Vec<String>,
}

impl Plan {
    fn new(pid: i32, n: usize, seed: u64) -> Plan {
        let mut state = seed;
        let types = (0..n)
            .map(|_| {
                let r = splitmix64(&mut state);
                1 + (r % 3) as libc::c_long
            })
            .collect();
        let texts = (0..n).map(|seq| format!("c{pid}-s{seq}")).collect();
        Plan { types, texts }
    }
}

/// SplitMix64: a small, well-mixed generator, so that a seed gives the same
/// types on every machine.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sender thread: sends the plan in order until done, `stop` or
/// `deadline`. Returns how many requests it sent.
fn send_all(
    queue: &Queue,
    pid: i32,
    plan: &Plan,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<usize, String> {
    for (seq, (&mtype, text)) in plan.types.iter().zip(&plan.texts).enumerate() {
        let request = Message::new(mtype, pid, text.as_bytes());
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(seq);
            }
            match queue.try_send(&request) {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(false) => return Ok(seq),
                Err(e) => return Err(format!("msgsnd of s{seq}: {e}")),
            }
        }
    }
    Ok(plan.types.len())
}

/// Why the receiver thread did not get every reply right.
enum Failure {
    /// Only this many replies came before the deadline.
    Missing(usize),
    /// A wrong reply, or an error: the whole problem.
    Wrong(String),
}
use Failure::{Missing, Wrong};

/// The receiving side of `burst`: receives and checks replies until it has
/// them all, finds a problem, or the deadline passes.
fn receive_all(queue: &Queue, pid: i32, plan: &Plan, deadline: Instant) -> Result<(), Failure> {
    let mut check = Check::new(pid, plan);
    let n = plan.types.len();
    while check.count < n {
        match queue.receive_until(libc::c_long::from(pid), deadline) {
            Ok(Some(reply)) => check.reply(&reply).map_err(Wrong)?,
            Ok(None) => return Err(Missing(check.count)),
            Err(e) => return Err(Wrong(format!("msgrcv after {} replies: {e}", check.count))),
        }
    }
    Ok(())
}

/// The name of a request type, for messages.
fn type_name(mtype: libc::c_long) -> &'static str {
    match mtype {
        UPPER => "UPPER",
        REVERSE => "REVERSE",
        LENGTH => "LENGTH",
        _ => "unknown",
    }
}

/// Checks `burst`'s replies one by one, in the order they arrive.
struct Check<'a> {
    pid: i32,
    plan: &'a Plan,
    /// The LENGTH requests, in send order: the k-th LENGTH reply (a bare
    /// number, which does not say which request it answers) must be the
    /// length of the k-th of them.
    lengths: Vec<usize>,
    next_length: usize,
    /// Per type (1 to 3), the seq of the last reply of that type.
    last: [Option<usize>; 4],
    answered: Vec<bool>,
    /// Replies received so far.
    count: usize,
}

impl<'a> Check<'a> {
    fn new(pid: i32, plan: &'a Plan) -> Check<'a> {
        let lengths = (0..plan.types.len())
            .filter(|&seq| plan.types[seq] == LENGTH)
            .collect();
        Check {
            pid,
            plan,
            lengths,
            next_length: 0,
            last: [None; 4],
            answered: vec![false; plan.types.len()],
            count: 0,
        }
    }

    /// Checks the next reply; the problem, if any.
    fn reply(&mut self, reply: &Received) -> Result<(), String> {
        self.count += 1;
        let k = self.count;
        let text = reply.text();
        let shown = show(text);
        if let Some(problem) = reply.malformed() {
            return Err(format!("reply {k} is {problem}: {shown:?}"));
        }
        if !text.is_empty() && text.iter().all(u8::is_ascii_digit) {
            return self.length_reply(k, &shown);
        }
        let reversed: Vec<u8> = text.iter().rev().copied().collect();
        let (mtype, owner, seq) = if let Some((owner, seq)) = parse_request(text, b'C', b'S') {
            (UPPER, owner, seq)
        } else if let Some((owner, seq)) = parse_request(&reversed, b'c', b's') {
            (REVERSE, owner, seq)
        } else {
            return Err(format!(
                "reply {k} ({shown:?}) answers none of this client's requests"
            ));
        };
        if owner != i64::from(self.pid) {
            return Err(format!(
                "reply {k} is for another client's request: {shown:?}"
            ));
        }
        let Some(&sent_as) = self.plan.types.get(seq) else {
            return Err(format!(
                "reply {k} ({shown:?}) answers none of this client's requests"
            ));
        };
        if sent_as != mtype {
            return Err(format!(
                "reply {k} ({shown:?}) is the {} of s{seq}, a {} request",
                type_name(mtype),
                type_name(sent_as)
            ));
        }
        if self.answered[seq] {
            return Err(format!("reply {k} is a second reply to s{seq}"));
        }
        let slot = &mut self.last[mtype as usize];
        if let Some(last) = *slot {
            if seq < last {
                return Err(format!(
                    "type {mtype} replies out of order: s{seq} after s{last}"
                ));
            }
        }
        *slot = Some(seq);
        self.answered[seq] = true;
        Ok(())
    }

    /// A LENGTH reply: the length of the next LENGTH request in send order.
    fn length_reply(&mut self, k: usize, shown: &str) -> Result<(), String> {
        let Some(&seq) = self.lengths.get(self.next_length) else {
            return Err(format!(
                "reply {k} ({shown:?}) is one LENGTH reply more than LENGTH requests"
            ));
        };
        self.next_length += 1;
        let expected = self.plan.texts[seq].len().to_string();
        if shown != expected {
            // A bare number does not say which request it answers: this is
            // all that can be said.
            return Err(format!(
                "type 3 reply {k} is {shown:?}, expected {expected:?} (the length of s{seq}, the oldest LENGTH request not answered yet): a LENGTH reply is missing or out of order"
            ));
        }
        self.answered[seq] = true;
        Ok(())
    }
}

/// Parses `{c}{pid}-{s}{seq}` (`c123-s45`, or `C123-S45` uppercased).
fn parse_request(text: &[u8], c: u8, s: u8) -> Option<(i64, usize)> {
    let text = std::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix(c as char)?;
    let (owner, seq) = rest.split_once('-')?;
    let seq = seq.strip_prefix(s as char)?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(owner) || !digits(seq) {
        return None;
    }
    Some((owner.parse().ok()?, seq.parse().ok()?))
}
