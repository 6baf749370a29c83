//! The process harness: running untrusted programs as real processes, each in
//! its own process group and scratch directory, with captured output and
//! deadline-bounded waits on observable conditions.
//!
//! Nothing here sleeps to synchronise. Waits are for a condition (a line, an
//! exit, a state in `/proc`) with a deadline; the only pacing loop is
//! [`deadline::poll_until`], for conditions the kernel offers no
//! notification for.

pub mod cgroup;
pub mod deadline;
pub mod identity;
pub mod leftovers;
pub mod limits;
pub mod output;
pub mod process;
pub mod procfs;
pub mod sandbox;
pub mod scratch;
pub(crate) mod spawn;
pub(crate) mod stuck;

pub use deadline::Deadline;
pub use identity::Identity;
pub use limits::{Budget, ResourceLimit};
pub use output::{CapturedStream, LineWait};
pub use process::{ExitState, Program, SpawnOptions};
pub use sandbox::{Confinement, Isolation, Sandbox};
