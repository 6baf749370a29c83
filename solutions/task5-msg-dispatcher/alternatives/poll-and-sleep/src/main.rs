//! Task 5 (System V message-type dispatcher): an alternative solution, the
//! handout's "poll" design.
//!
//! No timer and no SIGALRM: the dispatcher never blocks in `msgrcv`. It asks
//! for a request with `IPC_NOWAIT`, and when there is none it sleeps for
//! [`NAP`] (a single `nanosleep`, which a signal cuts short) and looks again.
//! Between two looks it retries the replies the queue had no room for, and
//! every [`CHECK_EVERY`] it forgets the clients that no longer exist,
//! together with their replies. SIGINT and SIGTERM only set a flag, which
//! the loop reads at each turn.
//!
//! The reference solution blocks in `msgrcv` and is woken by a 10 ms tick;
//! this one must pass the same tests, the SIGTERM test included (it waits
//! until the dispatcher is asleep, here in `nanosleep`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{getpid, Pid};

const USAGE: &str = "usage: task5-msg-dispatcher KEY   (KEY: a decimal System V key, e.g. 4242)";

/// How long the dispatcher sleeps when it found no request: the longest a
/// new request waits, and the longest between two retries of the backlog.
const NAP: Duration = Duration::from_millis(2);
/// How often the clients it holds replies for are checked for existence.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Set by the SIGINT and SIGTERM handler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The kernel interfaces, each behind a safe function.
mod sys {
    use std::ptr;
    use std::time::Duration;

    use nix::errno::Errno;

    pub const TEXT_SIZE: usize = 256;
    /// msgsz: `pid` and `text`, everything after `mtype`.
    pub const BODY_SIZE: usize = 4 + TEXT_SIZE;

    /// The contract's message layout.
    #[repr(C)]
    #[derive(Clone)]
    pub struct Message {
        pub mtype: libc::c_long,
        pub pid: i32,
        pub text: [u8; TEXT_SIZE],
    }

    impl Message {
        pub fn empty() -> Message {
            Message {
                mtype: 0,
                pid: 0,
                text: [0; TEXT_SIZE],
            }
        }

        /// The text: up to the first NUL byte, or all 256 bytes.
        pub fn text(&self) -> &[u8] {
            match self.text.iter().position(|&b| b == 0) {
                Some(end) => &self.text[..end],
                None => &self.text,
            }
        }
    }

    /// msgget(key, flags): the queue's id.
    pub fn msgget(key: libc::key_t, flags: libc::c_int) -> nix::Result<libc::c_int> {
        // SAFETY: only integers are passed.
        Errno::result(unsafe { libc::msgget(key, flags) })
    }

    /// msgctl(IPC_RMID): removes the queue with every message in it.
    pub fn remove(id: libc::c_int) -> nix::Result<()> {
        // SAFETY: IPC_RMID ignores the buffer pointer, so null is allowed.
        Errno::result(unsafe { libc::msgctl(id, libc::IPC_RMID, ptr::null_mut()) }).map(drop)
    }

    /// msgsnd with IPC_NOWAIT: Ok(false) when the queue has no room.
    pub fn try_send(id: libc::c_int, message: &Message) -> nix::Result<bool> {
        // SAFETY: the pointer is to a whole Message; msgsnd reads its c_long
        // type and the BODY_SIZE bytes of `pid` and `text` that follow it.
        let rc = unsafe {
            libc::msgsnd(
                id,
                ptr::from_ref(message).cast(),
                BODY_SIZE,
                libc::IPC_NOWAIT,
            )
        };
        match Errno::result(rc) {
            Ok(_) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// msgrcv with IPC_NOWAIT (and MSG_NOERROR): Ok(None) when no message
    /// matches `mtype` (see msgrcv(2) for its meaning).
    pub fn try_receive(id: libc::c_int, mtype: libc::c_long) -> nix::Result<Option<Message>> {
        let mut message = Message::empty();
        // SAFETY: msgrcv writes the c_long type and at most BODY_SIZE body
        // bytes into `message`, which has room for exactly that; every bit
        // pattern is a valid value of its fields.
        let rc = unsafe {
            libc::msgrcv(
                id,
                ptr::from_mut(&mut message).cast(),
                BODY_SIZE,
                mtype,
                libc::IPC_NOWAIT | libc::MSG_NOERROR,
            )
        };
        match Errno::result(rc) {
            Ok(_) => Ok(Some(message)),
            Err(Errno::ENOMSG) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One nanosleep of `nap`. A signal handler that runs meanwhile ends it
    /// early (EINTR), which is what the caller wants: it looks at its flags.
    pub fn nap(nap: Duration) {
        let time = libc::timespec {
            tv_sec: nap.as_secs() as libc::time_t,
            tv_nsec: nap.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `time` is a valid timespec; the remainder may be null.
        unsafe { libc::nanosleep(&time, ptr::null_mut()) };
    }
}

use sys::Message;

/// What the dispatcher answers to `request`; None for SHUTDOWN.
fn answer(request: &Message) -> Option<Vec<u8>> {
    let text = request.text();
    match request.mtype {
        1 => Some(text.iter().map(u8::to_ascii_uppercase).collect()),
        2 => Some(text.iter().rev().copied().collect()),
        3 => Some(text.len().to_string().into_bytes()),
        9 => None,
        other => Some(format!("error: unknown type {other}").into_bytes()),
    }
}

/// The dispatcher's state between two turns of its loop.
struct Dispatcher {
    queue: libc::c_int,
    me: i32,
    /// Replies that found the queue full, per client pid, oldest first.
    /// A client with an entry here gets nothing new into the queue until
    /// its entry is empty, so its replies stay in order.
    waiting: HashMap<i32, VecDeque<Message>>,
    /// Every client that may have replies in the queue or in `waiting`.
    clients: HashSet<i32>,
    last_check: Instant,
}

impl Dispatcher {
    /// Serves until SHUTDOWN or a stop signal.
    fn serve(&mut self) -> nix::Result<()> {
        loop {
            if STOP.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.last_check.elapsed() >= CHECK_EVERY {
                self.forget_vanished()?;
                self.last_check = Instant::now();
            }
            self.retry_waiting()?;
            match sys::try_receive(self.queue, -9)? {
                Some(request) => {
                    if !self.handle(&request)? {
                        return Ok(());
                    }
                }
                None => sys::nap(NAP),
            }
        }
    }

    /// Answers one request; false for SHUTDOWN.
    fn handle(&mut self, request: &Message) -> nix::Result<bool> {
        let Some(text) = answer(request) else {
            return Ok(false);
        };
        // Pids up to 9 would make the reply a request; below 1 msgsnd
        // refuses the type. Such a request gets no answer.
        if request.pid <= 9 {
            return Ok(true);
        }
        let mut reply = Message::empty();
        reply.mtype = libc::c_long::from(request.pid);
        reply.pid = self.me;
        let len = text.len().min(sys::TEXT_SIZE);
        reply.text[..len].copy_from_slice(&text[..len]);
        self.clients.insert(request.pid);
        let behind = self
            .waiting
            .get(&request.pid)
            .is_some_and(|w| !w.is_empty());
        if behind || !sys::try_send(self.queue, &reply)? {
            self.waiting
                .entry(request.pid)
                .or_default()
                .push_back(reply);
        }
        Ok(true)
    }

    /// Sends what waits, client by client, oldest first, until the queue is
    /// full again.
    fn retry_waiting(&mut self) -> nix::Result<()> {
        let mut full = false;
        for replies in self.waiting.values_mut() {
            while let Some(reply) = replies.front() {
                if !sys::try_send(self.queue, reply)? {
                    full = true;
                    break;
                }
                replies.pop_front();
            }
            if full {
                break;
            }
        }
        self.waiting.retain(|_, replies| !replies.is_empty());
        Ok(())
    }

    /// Drops the clients that no longer exist, their waiting replies and
    /// the replies of theirs still in the queue.
    fn forget_vanished(&mut self) -> nix::Result<()> {
        let gone: Vec<i32> = self
            .clients
            .iter()
            .copied()
            .filter(|&pid| kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH))
            .collect();
        for pid in gone {
            self.clients.remove(&pid);
            self.waiting.remove(&pid);
            while sys::try_receive(self.queue, libc::c_long::from(pid))?.is_some() {}
        }
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Creates the queue, replacing one a crashed dispatcher left behind.
fn create(key: libc::key_t) -> nix::Result<libc::c_int> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    match sys::msgget(key, flags) {
        Err(Errno::EEXIST) => {
            sys::remove(sys::msgget(key, 0)?)?;
            say(&format!("removed stale queue {key}"));
            sys::msgget(key, flags)
        }
        other => other,
    }
}

fn run(key: libc::key_t) -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: on_stop only stores into an atomic.
        unsafe { sigaction(signal, &action) }.map_err(|e| format!("sigaction: {e}"))?;
    }
    let queue = create(key).map_err(|e| format!("message queue {key}: {e}"))?;
    say("ready");
    let mut dispatcher = Dispatcher {
        queue,
        me: getpid().as_raw(),
        waiting: HashMap::new(),
        clients: HashSet::new(),
        last_check: Instant::now(),
    };
    let served = dispatcher.serve();
    // Removed whatever happened; after an error there is no `bye`.
    let removed = sys::remove(queue);
    served.map_err(|e| format!("message queue {key}: {e}"))?;
    removed.map_err(|e| format!("msgctl IPC_RMID: {e}"))?;
    say("bye");
    Ok(())
}

/// An optional `-`, then digits, fitting in a key_t, not 0.
fn parse_key(arg: &str) -> Option<libc::key_t> {
    let digits = arg.strip_prefix('-').unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match arg.parse::<libc::key_t>() {
        Ok(0) | Err(_) => None,
        Ok(key) => Some(key),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let key = match (args.next(), args.next()) {
        (Some(arg), None) => arg.to_str().and_then(parse_key),
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
