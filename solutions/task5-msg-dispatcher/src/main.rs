//! Task 5 (System V message-type dispatcher): reference solution.
//!
//! The dispatcher creates a System V message queue with the key KEY and
//! serves the requests that clients put into it. It asks the kernel only for
//! requests (msgrcv with msgtyp -9: the message of the lowest type from 1 to
//! 9 first), computes each answer and sends it into the same queue with the
//! client's pid as its message type, where that client, and only that
//! client, asks for it. Replies the queue has no room for wait in memory; a
//! client that vanished is forgotten together with its unread replies.
//! SHUTDOWN, SIGINT or SIGTERM: the queue is removed, `bye`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{getpid, Pid};

use sys::{Message, Queue};

const USAGE: &str = "usage: task5-msg-dispatcher KEY   (KEY: a decimal System V key, e.g. 4242)";

/// Request types (the contract).
const UPPER: libc::c_long = 1;
const REVERSE: libc::c_long = 2;
const LENGTH: libc::c_long = 3;
const SHUTDOWN: libc::c_long = 9;
/// Requests have the types 1 to 9. A reply's type is its client's pid,
/// which is above 9, so msgrcv(-HIGHEST_REQUEST) never takes a reply.
const HIGHEST_REQUEST: libc::c_long = 9;

/// How often SIGALRM interrupts the dispatcher's msgrcv, to retry the
/// backlog, look for vanished clients and notice SIGINT or SIGTERM.
const TICK: Duration = Duration::from_millis(10);

/// Set by the SIGINT and SIGTERM handler: remove the queue and leave.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by the SIGALRM handler at every tick.
static TICKED: AtomicBool = AtomicBool::new(false);

/// SIGINT and SIGTERM. Async-signal-safe: it only stores into an atomic.
/// The interrupted msgrcv returns EINTR and the loop looks at STOP.
extern "C" fn on_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGALRM, every TICK: like on_stop, only a flag.
extern "C" fn on_tick(_signal: libc::c_int) {
    TICKED.store(true, Ordering::SeqCst);
}

/// Installs `handler` for `signal`, without SA_RESTART. (A blocked msgrcv
/// returns EINTR after any handler: the kernel never restarts System V IPC
/// calls, whatever the flags; see man 7 signal.)
fn install(signal: Signal, handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: both handlers only store into atomics (async-signal-safe).
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

/// The system calls nix does not wrap (System V message queues, the
/// interval timer), behind a safe interface. The only `unsafe` code of the
/// program besides sigaction.
mod sys {
    use std::mem::size_of;
    use std::ptr;
    use std::time::Duration;

    use nix::errno::Errno;

    /// Bytes of text in a message.
    pub const TEXT_SIZE: usize = 256;

    /// One message, request or reply, as msgsnd and msgrcv see it (the
    /// contract). `repr(C)`: these fields, in this order, with C's layout:
    /// the `long` type first, then the body.
    #[repr(C)]
    pub struct Message {
        /// 1 to 9 in a request; the client's pid in a reply. Always above 0.
        pub mtype: libc::c_long,
        /// The client's pid in a request; the dispatcher's pid in a reply.
        pub pid: i32,
        /// The text, padded with NUL bytes.
        pub text: [u8; TEXT_SIZE],
    }

    /// msgsz for msgsnd and msgrcv: the size of the body, everything after
    /// `mtype` (4 + 256 = 260). Not size_of::<Message>(), which counts
    /// `mtype` and the padding at the end.
    pub const BODY_SIZE: usize = size_of::<i32>() + TEXT_SIZE;

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

        /// The text: the bytes before the first NUL (all of them if none).
        pub fn text(&self) -> &[u8] {
            let len = self.text.iter().position(|&b| b == 0).unwrap_or(TEXT_SIZE);
            &self.text[..len]
        }
    }

    /// A System V message queue, by its id.
    pub struct Queue {
        id: libc::c_int,
    }

    impl Queue {
        /// msgget(key, flags): the queue with this key. With IPC_CREAT it is
        /// created if it does not exist (mode: the low 9 bits of flags);
        /// with IPC_CREAT | IPC_EXCL an existing one is an error (EEXIST).
        pub fn get(key: libc::key_t, flags: libc::c_int) -> nix::Result<Queue> {
            // SAFETY: msgget takes only integers.
            let id = unsafe { libc::msgget(key, flags) };
            Errno::result(id).map(|id| Queue { id })
        }

        /// msgsnd: puts `message` at the end of the queue. Without
        /// IPC_NOWAIT it blocks while the queue is full; with it, a full
        /// queue is the error EAGAIN.
        pub fn send(&self, message: &Message, flags: libc::c_int) -> nix::Result<()> {
            // SAFETY: msgsnd reads a c_long and then BODY_SIZE bytes from the
            // pointer: `mtype`, `pid` and `text`, all inside `message`.
            let rc =
                unsafe { libc::msgsnd(self.id, ptr::from_ref(message).cast(), BODY_SIZE, flags) };
            Errno::result(rc).map(drop)
        }

        /// msgrcv: takes a message out of the queue. `mtype` 0: the first
        /// message; above 0: the first of that type; below 0: the first of
        /// the lowest type up to -mtype. Without IPC_NOWAIT it blocks until
        /// there is one (or a signal handler runs: EINTR); with it, none is
        /// ENOMSG. With MSG_NOERROR a longer message is cut to BODY_SIZE
        /// bytes; a shorter one leaves the rest of the text NUL.
        pub fn receive(&self, mtype: libc::c_long, flags: libc::c_int) -> nix::Result<Message> {
            let mut message = Message::new(0, 0, b"");
            // SAFETY: msgrcv writes a c_long and then at most BODY_SIZE bytes
            // at the pointer: into `mtype`, `pid` and `text`, all inside
            // `message`, and any bytes are valid values for these fields.
            let len = unsafe {
                libc::msgrcv(
                    self.id,
                    ptr::from_mut(&mut message).cast(),
                    BODY_SIZE,
                    mtype,
                    flags,
                )
            };
            Errno::result(len).map(|_| message)
        }

        /// msgctl(IPC_RMID): removes the queue and every message in it.
        /// Processes blocked on it wake up with EIDRM.
        pub fn remove(self) -> nix::Result<()> {
            // SAFETY: IPC_RMID does not use the buffer argument: null is fine.
            let rc = unsafe { libc::msgctl(self.id, libc::IPC_RMID, ptr::null_mut()) };
            Errno::result(rc).map(drop)
        }
    }

    /// setitimer(ITIMER_REAL): SIGALRM every `period`, from `period` on.
    pub fn tick_every(period: Duration) -> nix::Result<()> {
        let time = libc::timeval {
            tv_sec: period.as_secs() as libc::time_t,
            tv_usec: period.subsec_micros() as libc::suseconds_t,
        };
        let timer = libc::itimerval {
            it_interval: time,
            it_value: time,
        };
        // SAFETY: `timer` is a valid itimerval; the old value may be null.
        let rc = unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, ptr::null_mut()) };
        Errno::result(rc).map(drop)
    }
}

/// The text of the reply to `request`; None for SHUTDOWN, which has none.
fn reply_text(request: &Message) -> Option<Vec<u8>> {
    let text = request.text();
    Some(match request.mtype {
        UPPER => text.to_ascii_uppercase(),
        REVERSE => text.iter().rev().copied().collect(),
        LENGTH => text.len().to_string().into_bytes(),
        SHUTDOWN => return None,
        other => format!("error: unknown type {other}").into_bytes(),
    })
}

/// Replies on their way to the clients, and the clients answered so far.
#[derive(Default)]
struct Outbox {
    /// Replies the queue had no room for yet: per client (the replies'
    /// type), oldest first.
    backlog: BTreeMap<libc::c_long, VecDeque<Message>>,
    /// Every client that may have unread replies, in the queue or in the
    /// backlog. Checked at each tick; forgotten once it no longer exists.
    clients: BTreeSet<libc::c_long>,
}

impl Outbox {
    /// Sends `reply` without waiting, behind the client's earlier replies
    /// that are still in the backlog; keeps it if the queue is full.
    fn send(&mut self, queue: &Queue, reply: Message) -> nix::Result<()> {
        let client = reply.mtype;
        self.clients.insert(client);
        let waiting = self.backlog.entry(client).or_default();
        waiting.push_back(reply);
        deliver(queue, waiting)?;
        if waiting.is_empty() {
            self.backlog.remove(&client);
        }
        Ok(())
    }

    /// Sends what it can of the backlog, until the queue is full.
    fn flush(&mut self, queue: &Queue) -> nix::Result<()> {
        for waiting in self.backlog.values_mut() {
            if !deliver(queue, waiting)? {
                break;
            }
        }
        self.backlog.retain(|_, waiting| !waiting.is_empty());
        Ok(())
    }

    /// Forgets every client that no longer exists, with its replies: those
    /// in the backlog and those already in the queue, which nobody would
    /// ever read and which would fill the queue for good.
    fn forget_vanished(&mut self, queue: &Queue) -> nix::Result<()> {
        let gone: Vec<libc::c_long> = self
            .clients
            .iter()
            .copied()
            .filter(|&client| !exists(client))
            .collect();
        for client in gone {
            self.clients.remove(&client);
            self.backlog.remove(&client);
            purge(queue, client)?;
        }
        Ok(())
    }
}

/// Sends the replies in `waiting`, oldest first, without waiting. Returns
/// false when the queue is full (EAGAIN): the rest stay in `waiting`.
fn deliver(queue: &Queue, waiting: &mut VecDeque<Message>) -> nix::Result<bool> {
    while let Some(reply) = waiting.front() {
        match queue.send(reply, libc::IPC_NOWAIT) {
            Ok(()) => {
                waiting.pop_front();
            }
            Err(Errno::EAGAIN) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Whether the process `pid` still exists: kill with signal 0 checks
/// without sending anything. ESRCH: no such process (EPERM: it exists, it
/// is somebody else's).
fn exists(pid: libc::c_long) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

/// Takes every message of type `client` out of the queue, without waiting.
fn purge(queue: &Queue, client: libc::c_long) -> nix::Result<()> {
    loop {
        match queue.receive(client, libc::IPC_NOWAIT | libc::MSG_NOERROR) {
            Ok(_) => {}
            Err(Errno::ENOMSG) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Receives and answers requests until SHUTDOWN, SIGINT or SIGTERM.
fn serve(queue: &Queue, me: i32) -> nix::Result<()> {
    let mut outbox = Outbox::default();
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        if TICKED.swap(false, Ordering::SeqCst) {
            outbox.forget_vanished(queue)?;
        }
        // Each receive below frees room; clients free room by reading their
        // replies, which the next tick notices at the latest.
        outbox.flush(queue)?;
        // Blocks until a request comes, or a signal (at least every TICK).
        let request = match queue.receive(-HIGHEST_REQUEST, libc::MSG_NOERROR) {
            Ok(request) => request,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        let Some(text) = reply_text(&request) else {
            return Ok(()); // SHUTDOWN
        };
        // A reply's type is the client's pid. One up to 9 would be taken
        // for a request (and msgsnd refuses types below 1): such a request
        // gets no reply.
        if libc::c_long::from(request.pid) > HIGHEST_REQUEST {
            let reply = Message::new(libc::c_long::from(request.pid), me, &text);
            outbox.send(queue, reply)?;
        }
    }
}

/// Creates the queue KEY, removing a stale one first.
fn create_queue(key: libc::key_t, flags: libc::c_int) -> nix::Result<Queue> {
    match Queue::get(key, flags) {
        Err(Errno::EEXIST) => {
            // A crashed earlier dispatcher left it, perhaps with requests
            // (even a SHUTDOWN) that nobody is waiting for any more.
            Queue::get(key, 0)?.remove()?;
            say(&format!("removed stale queue {key}"));
            Queue::get(key, flags)
        }
        other => other,
    }
}

/// Prints one line on stdout, at once.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    // Nothing to do about a closed stdout: the queue must still be removed.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn run(key: libc::key_t) -> Result<(), String> {
    // Handlers first: a signal that comes once the queue exists must not
    // kill us before we can remove it.
    install(Signal::SIGINT, on_stop).map_err(|e| format!("sigaction: {e}"))?;
    install(Signal::SIGTERM, on_stop).map_err(|e| format!("sigaction: {e}"))?;
    install(Signal::SIGALRM, on_tick).map_err(|e| format!("sigaction: {e}"))?;

    // IPC_EXCL: fail with EEXIST instead of serving from a queue that a
    // crashed earlier dispatcher left behind, with its old messages.
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    let queue = create_queue(key, flags).map_err(|e| format!("message queue {key}: {e}"))?;
    say("ready");

    let me = getpid().as_raw();
    let outcome = sys::tick_every(TICK).and_then(|()| serve(&queue, me));

    // The queue outlives every process (`ipcs -q` lists it) until someone
    // removes it.
    let removed = queue.remove().map_err(|e| format!("msgctl IPC_RMID: {e}"));
    outcome.map_err(|e| format!("message queue {key}: {e}"))?;
    removed?;
    say("bye");
    Ok(())
}

/// KEY: a decimal integer (an optional `-`, then digits) that fits in a
/// key_t, other than 0 (IPC_PRIVATE, which names no queue).
fn parse_key(arg: &str) -> Option<libc::key_t> {
    let digits = arg.strip_prefix('-').unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    arg.parse().ok().filter(|&key| key != libc::IPC_PRIVATE)
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let key = match args.as_slice() {
        [key] => key.to_str().and_then(parse_key),
        _ => None,
    };
    let Some(key) = key else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(key) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task5-msg-dispatcher: {e}");
            ExitCode::FAILURE
        }
    }
}
