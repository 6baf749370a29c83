//! Task 5 (System V message-type dispatcher): starter. Read
//! tasks/task5-msg-dispatcher.md first.
//!
//! The dispatcher creates a System V message queue with the key KEY and
//! serves the requests that clients put into it. It asks the kernel only for
//! requests (msgrcv with msgtyp -9: the message of the lowest type from 1 to
//! 9 first), computes each answer and sends it into the same queue with the
//! client's pid as its message type, where that client, and only that
//! client, asks for it. Replies the queue has no room for wait in memory; a
//! client that vanished is forgotten together with its unread replies.
//! SHUTDOWN, SIGINT or SIGTERM: the queue is removed, `bye`.
//!
//! Replace every `todo!()` (and the `_` prefixes of the parameters you start
//! using). The structure below is a suggestion; only the behaviour is graded.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::getpid;

use sys::{Message, Queue};

// You will also need (add them as you go, unused imports are warnings):
//   use std::collections::{BTreeMap, BTreeSet, VecDeque};  // or HashMap/HashSet
//   use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet};
//   use nix::unistd::Pid;

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

/// SIGINT and SIGTERM. It runs in the middle of whatever the dispatcher was
/// doing, so it may only store into an atomic: set STOP.
extern "C" fn on_stop(_signal: libc::c_int) {
    todo!("set STOP")
}

/// SIGALRM, every TICK: set TICKED, nothing more.
extern "C" fn on_tick(_signal: libc::c_int) {
    todo!("set TICKED")
}

/// Installs `handler` for `signal` with sigaction(2), without SA_RESTART.
/// (A blocked msgrcv returns EINTR after any handler: the kernel never
/// restarts System V IPC calls, whatever the flags; see man 7 signal.)
fn install(_signal: Signal, _handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    // TODO: as in task 1: SigAction::new(SigHandler::Handler(handler),
    // SaFlags::empty(), SigSet::empty()), then the `unsafe fn` sigaction
    // with a SAFETY comment.
    todo!("install the handler")
}

/// The system calls nix does not wrap (System V message queues, the
/// interval timer), behind a safe interface: keep every `unsafe` block of
/// the program (but sigaction's) in here, each with a `// SAFETY:` comment.
mod sys {
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

    // TODO: msgsz for msgsnd and msgrcv: the size of the body, everything
    // after `mtype` (4 + 256 = 260). Not size_of::<Message>(), which counts
    // `mtype` and the padding at the end:
    //   pub const BODY_SIZE: usize = std::mem::size_of::<i32>() + TEXT_SIZE;

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

        // TODO: fn send(&self, message: &Message, flags: libc::c_int) ->
        //   nix::Result<()>
        //   msgsnd: puts `message` at the end of the queue. Without
        //   IPC_NOWAIT it blocks while the queue is full; with it, a full
        //   queue is the error EAGAIN.
        //   libc::msgsnd(self.id, ptr::from_ref(message).cast(), BODY_SIZE,
        //   flags) returns 0, or -1 with the reason in errno:
        //   Errno::result(rc).map(drop). Your SAFETY comment: which bytes
        //   does msgsnd read, and why are they all inside `message`?

        // TODO: fn receive(&self, mtype: libc::c_long, flags: libc::c_int)
        //   -> nix::Result<Message>
        //   msgrcv: takes a message out of the queue. `mtype` 0: the first
        //   message; above 0: the first of that type; below 0: the first of
        //   the lowest type up to -mtype. Without IPC_NOWAIT it blocks until
        //   there is one (or a signal handler runs: EINTR); with it, none is
        //   ENOMSG. With MSG_NOERROR a longer message is cut to BODY_SIZE
        //   bytes; a shorter one leaves the rest of the text NUL.
        //   Start from an empty Message::new(0, 0, b""), then
        //   libc::msgrcv(self.id, ptr::from_mut(&mut message).cast(),
        //   BODY_SIZE, mtype, flags): the body's length, or -1 (errno).

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
    let _text = request.text();
    match request.mtype {
        UPPER => todo!("the text in ASCII uppercase"),
        REVERSE => todo!("the text's bytes in reverse order"),
        LENGTH => todo!("the text's length, in decimal"),
        SHUTDOWN => todo!("no reply"),
        _other => todo!("`error: unknown type T`"),
    }
}

/// Replies on their way to the clients, and the clients answered so far.
#[derive(Default)]
struct Outbox {
    // TODO: the fields. For example:
    //   /// Replies the queue had no room for yet: per client (the replies'
    //   /// type), oldest first.
    //   backlog: BTreeMap<libc::c_long, VecDeque<Message>>,
    //   /// Every client that may have unread replies, in the queue or in
    //   /// the backlog. Checked at each tick.
    //   clients: BTreeSet<libc::c_long>,
}

impl Outbox {
    /// Sends `reply` without waiting, behind the client's earlier replies
    /// that are still in the backlog; keeps it if the queue is full.
    fn send(&mut self, _queue: &Queue, _reply: Message) -> nix::Result<()> {
        // TODO: remember the client (reply.mtype). Add the reply at the end
        // of its backlog, then send from the front of that backlog with
        // IPC_NOWAIT until it is empty or msgsnd fails with EAGAIN (the
        // queue is full: keep the rest for later). Sending this reply before
        // an older one to the same client would break the per-type order.
        todo!("send or keep the reply")
    }

    /// Sends what it can of the backlog, until the queue is full.
    fn flush(&mut self, _queue: &Queue) -> nix::Result<()> {
        // TODO: for each client's backlog, send from the front with
        // IPC_NOWAIT; stop at the first EAGAIN.
        todo!("retry the backlog")
    }

    /// Forgets every client that no longer exists, with its replies: those
    /// in the backlog and those already in the queue, which nobody would
    /// ever read and which would fill the queue for good.
    fn forget_vanished(&mut self, _queue: &Queue) -> nix::Result<()> {
        // TODO: for each client remembered: kill(Pid::from_raw(pid), None)
        // (signal 0: checks, sends nothing). Only Err(Errno::ESRCH) means it
        // is gone: then drop its backlog, take every message of its type out
        // of the queue (receive(pid, IPC_NOWAIT | MSG_NOERROR) until ENOMSG)
        // and forget it.
        todo!("forget the vanished clients")
    }
}

/// Waits for the next request: only requests, the lowest type first.
fn receive_request(_queue: &Queue) -> nix::Result<Message> {
    // TODO: one queue.receive, blocking (no IPC_NOWAIT), with MSG_NOERROR.
    // Which msgtyp takes only types 1 to 9, and never a reply (a pid)?
    todo!("msgrcv of a request")
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
        let request = match receive_request(queue) {
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

/// Creates the queue KEY with `flags`, removing a stale one first.
fn create_queue(key: libc::key_t, flags: libc::c_int) -> nix::Result<Queue> {
    match Queue::get(key, flags) {
        // TODO: a crashed earlier dispatcher left the queue: open it
        // (Queue::get(key, 0)), remove it, print `removed stale queue KEY`
        // (with say), and create it again.
        Err(Errno::EEXIST) => todo!("remove the stale queue"),
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
