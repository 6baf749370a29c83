//! Grader-side peers: small programs built into the grader binary (run as
//! `cargo-grade peer KIND ARGS`) that take part in a test as real processes,
//! inside the same sandbox as the submission. They play the other end of a
//! protocol exactly as the handout specifies, can misbehave on purpose, and
//! check invariants the submission cannot fake (for example, that a shared
//! counter never moves while the grader holds the semaphore).
//!
//! A spec starts one with `{ start = "bob", peer = "fifo-chat", args = [...] }`
//! and then talks to it with the ordinary steps (`send_line`, `expect`, ...).

pub mod echo_client;
pub mod fifo_chat;
pub mod msg_client;
pub mod shm_counter;
pub mod stale;

/// The peers a spec may start, with a one-line description each.
pub const KINDS: &[(&str, &str)] = &[
    (
        "echo-client",
        "clients of task4's echo server: many at once, stalling, vanishing, driven by commands on stdin",
    ),
    (
        "fifo-chat",
        "the other participant of task2's FIFO chat, driven by commands on stdin",
    ),
    (
        "msg-client",
        "a client of task5's message-type dispatcher, driven by commands on stdin",
    ),
    (
        "shm-counter",
        "a fellow worker on task3's shared counter that checks mutual exclusion",
    ),
    (
        "stale",
        "creates a resource as a crashed earlier run would have left it, then exits",
    ),
];

/// Runs the peer `kind` with `args`; returns its exit status.
pub fn run(kind: &str, args: &[String]) -> i32 {
    match kind {
        "echo-client" => echo_client::run(args),
        "fifo-chat" => fifo_chat::run(args),
        "msg-client" => msg_client::run(args),
        "shm-counter" => shm_counter::run(args),
        "stale" => stale::run(args),
        // Not for specs: holds a test's namespaces open (see harness::sandbox).
        "hold" => crate::harness::sandbox::hold(args),
        other => {
            eprintln!("cargo-grade peer: unknown peer kind `{other}`");
            2
        }
    }
}
