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
//! - [`grade`]: one submission, start to finish;
//! - [`result`]: the result model every reporter renders;
//! - [`report`]: human and JSON reporters;
//! - [`selfcheck`]: a spec checked against its solution, starter and mutants.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "cargo-grade grades Linux IPC programs (signals, FIFOs, POSIX and System V IPC) and runs only on Linux; \
     on Windows use WSL2, on macOS a Linux VM or container."
);

pub mod builder;
pub mod check;
pub mod course;
pub mod faults;
pub mod grade;
pub mod harness;
pub mod payload;
pub mod peers;
pub mod report;
pub mod result;
pub mod scenario;
pub mod selfcheck;
pub mod shim;
pub mod signals;
pub mod spec;

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
