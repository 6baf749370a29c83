//! cargo-grade: builds a student's submission and grades it as real
//! processes against a task spec.
//!
//! The modules follow the path of a grading run:
//!
//! - [`spec`]: the TOML spec model and its validation;
//! - [`check`]: a spec checked with its course (starter, mutants), running nothing;
//! - [`course`]: finding the course repository and its tasks;
//! - [`builder`]: building a submission against the starter's pinned manifest;
//! - [`harness`]: running programs in process groups with captured output and
//!   deadline-bounded waits;
//! - [`faults`]: seeded fault injection;
//! - [`scenario`]: executing one test's steps;
//! - [`grade`]: per-task work prepared once, and one submission graded,
//!   start to finish, emitting [`events`] to observers;
//! - [`batch`]: a class of submissions ([`intake`]: directories and
//!   untrusted archives), `--jobs` at once ([`pool`]), resumable;
//! - [`result`]: the result model every reporter renders;
//! - [`report`]: human, text, JSON and gradebook (CSV, JUnit, summary)
//!   reporters, and the LMS formats (Gradescope, PrairieLearn, GitHub
//!   Classroom);
//! - [`package`]: a task packaged for Gradescope and PrairieLearn;
//! - [`selfcheck`]: what a spec's solution, alternatives, starter and
//!   mutants must get; [`verify`]: all of it graded, at one seed or several;
//! - [`scaffold`]: `cargo grade new`, a task that passes `check` and
//!   `verify` from the start.
//!
//! The commands of instructors and TAs ([`batch`] and its [`shard`]s,
//! [`package`], [`verify`]) are built with the feature `instructor-tools`
//! (a default feature): the course's `cargo grade` alias builds the grader
//! without it, so that a student's first grade waits for less.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "cargo-grade grades Linux IPC programs (signals, FIFOs, POSIX and System V IPC) and runs only on Linux; \
     on Windows use WSL2, on macOS a Linux VM or container."
);

#[cfg(feature = "instructor-tools")]
pub mod batch;
pub mod builder;
pub mod check;
pub mod course;
pub mod events;
pub mod faults;
pub mod grade;
pub mod harness;
pub mod intake;
#[cfg(feature = "instructor-tools")]
pub mod package;
pub mod payload;
pub mod peers;
pub mod pool;
pub mod report;
pub mod result;
pub mod scaffold;
pub mod scenario;
pub mod selfcheck;
#[cfg(feature = "instructor-tools")]
pub mod shard;
pub mod shim;
pub mod signals;
pub mod spec;
#[cfg(feature = "instructor-tools")]
pub mod verify;
pub mod watch;

/// Makes the grader a child subreaper, so that processes a submission
/// double-forks or daemonises are re-parented to the grader (not to init)
/// and can be found and reaped with their process group.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
