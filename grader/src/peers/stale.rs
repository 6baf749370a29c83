//! `cargo-grade peer stale KIND NAME [VALUE]`: leaves a resource behind as a
//! crashed earlier run would have, then exits.
//!
//! | KIND     | NAME            | creates                                                        |
//! |----------|-----------------|----------------------------------------------------------------|
//! | `fifo`   | a path          | a FIFO (mkfifo, mode 0600)                                     |
//! | `socket` | a path          | a Unix stream socket bound to the path, never unlinked         |
//! | `shm`    | `/name`         | a 4096-byte shared memory object holding COUNT (default 12345) as a native-endian u64 at offset 0 |
//! | `sem`    | `/name`         | a named semaphore with value VALUE (default 0: locked), closed, not unlinked |
//! | `msg`    | a decimal key   | a System V message queue (msgget with IPC_CREAT, mode 0600) holding COUNT (default 0) SHUTDOWN requests |
//!
//! Prints `created stale KIND NAME` and exits with status 0; on error, a
//! message on stderr and status 2. An object that already exists is reused
//! (as `shm`, `sem` and `msg` open it with O_CREAT but without O_EXCL).
//!
//! The `msg` queue's COUNT messages are what a task5 dispatcher that crashed
//! with requests pending leaves behind: each is a SHUTDOWN request (type 9)
//! from pid 1, with an empty text, in task5's layout. A dispatcher that
//! reuses the queue instead of removing it receives one at once and stops.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;

use nix::sys::stat::Mode;

use super::msg_client::{Message, Queue, SHUTDOWN};

/// Size of a stale shared memory object (task3's size).
const SHM_SIZE: u64 = 4096;
/// What a stale shared memory object's count holds unless told otherwise.
const DEFAULT_COUNT: u64 = 12345;

pub fn run(args: &[String]) -> i32 {
    match create(args) {
        Ok(()) => {
            println!("created stale {} {}", args[0], args[1]);
            0
        }
        Err(e) => {
            eprintln!("cargo-grade peer stale: error: {e}");
            2
        }
    }
}

fn create(args: &[String]) -> Result<(), String> {
    let (kind, name, value) = match args {
        [kind, name] => (kind.as_str(), name.as_str(), None),
        [kind, name, value] if kind == "shm" || kind == "sem" || kind == "msg" => {
            (kind.as_str(), name.as_str(), Some(value.as_str()))
        }
        _ => {
            return Err(
                "usage: cargo-grade peer stale fifo|socket NAME, or shm|sem|msg NAME [VALUE]"
                    .into(),
            )
        }
    };
    let number = |default: u64| -> Result<u64, String> {
        value.map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("bad value {v:?}"))
        })
    };
    match kind {
        "fifo" => nix::unistd::mkfifo(name, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|e| format!("mkfifo {name}: {e}")),
        "socket" => {
            // Dropping the listener closes the socket; the file stays.
            UnixListener::bind(name)
                .map(drop)
                .map_err(|e| format!("bind {name}: {e}"))
        }
        "shm" => stale_shm(name, number(DEFAULT_COUNT)?),
        "sem" => {
            let value = u32::try_from(number(0)?).map_err(|_| "semaphore value too large")?;
            stale_sem(name, value)
        }
        "msg" => {
            let key: libc::key_t = name.parse().map_err(|_| format!("bad key {name:?}"))?;
            stale_msg(key, number(0)?)
        }
        other => Err(format!(
            "unknown kind `{other}` (fifo, socket, shm, sem, msg)"
        )),
    }
}

fn c_name(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("bad name {name:?}"))
}

/// A message queue as a task5 dispatcher that crashed with `count`
/// SHUTDOWN requests pending leaves it.
fn stale_msg(key: libc::key_t, count: u64) -> Result<(), String> {
    let queue =
        Queue::get(key, libc::IPC_CREAT | 0o600).map_err(|e| format!("msgget {key}: {e}"))?;
    let junk = Message::new(SHUTDOWN, 1, b"");
    for i in 0..count {
        match queue.try_send(&junk) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "msgsnd {key}: the queue is full after {i} messages"
                ))
            }
            Err(e) => return Err(format!("msgsnd {key}: {e}")),
        }
    }
    Ok(())
}

/// A shared memory object as a run that crashed mid-count leaves it.
fn stale_shm(name: &str, count: u64) -> Result<(), String> {
    let cname = c_name(name)?;
    let flags = libc::O_CREAT | libc::O_RDWR;
    // SAFETY: cname is NUL-terminated; with O_CREAT shm_open reads the mode.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), flags, 0o600 as libc::mode_t) };
    if fd < 0 {
        return Err(format!("shm_open {name}: {}", io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by shm_open and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(SHM_SIZE)
        .map_err(|e| format!("ftruncate {name}: {e}"))?;
    file.write_all_at(&count.to_ne_bytes(), 0)
        .map_err(|e| format!("write {name}: {e}"))
}

/// A named semaphore as a run that crashed holding it leaves it (value 0).
fn stale_sem(name: &str, value: u32) -> Result<(), String> {
    let cname = c_name(name)?;
    // SAFETY: cname is NUL-terminated; with O_CREAT sem_open reads two more
    // (variadic) arguments, the mode and the value, as unsigned ints.
    let sem =
        unsafe { libc::sem_open(cname.as_ptr(), libc::O_CREAT, 0o600 as libc::c_uint, value) };
    if sem == libc::SEM_FAILED {
        return Err(format!("sem_open {name}: {}", io::Error::last_os_error()));
    }
    // SAFETY: sem came from sem_open just above and is not used again.
    unsafe { libc::sem_close(sem) };
    Ok(())
}
