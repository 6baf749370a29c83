//! Cgroups per test round, where the grader may make them (cgroup v1, its
//! hierarchies writable, as for root in most CI containers):
//!
//! - **memory**: a limit on the memory of all the round's processes
//!   together. `RLIMIT_DATA` bounds each process's private memory, but not
//!   shared memory (`mmap(MAP_SHARED | MAP_ANONYMOUS)`, System V segments),
//!   and not what many processes take together. A memory cgroup counts all
//!   of it, and when the round goes over, the kernel's out-of-memory killer
//!   picks a process of the round, never one of the machine.
//! - **pids**: a census of the round. `pids.current` counts every task of
//!   the round, zombies included until they are reaped, and `cgroup.procs`
//!   lists its live processes. Without it, finding a round's processes
//!   means reading the status file of every process on the machine; with
//!   it, the question a finished test nearly always asks ("is anything of
//!   the round left?") is one read of a small file. A process cannot leave
//!   a cgroup without writing to another one's `cgroup.procs` (root's), so
//!   the census holds against a hostile round.
//!
//! The grader makes children of its own cgroups. On cgroup v2 a process may
//! only create children it can use if the cgroup was delegated to it, which
//! this does not attempt; the report then says the memory limit is not
//! active, and processes are found by sweeping `/proc`, as without a user
//! of the round's own.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::deadline::{poll_until, Deadline};

/// Where cgroup v1 mounts its hierarchies, one per controller.
const V1_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup of the round's under the grader's own, with its `cgroup.procs`
/// open for writing (a child writes `0` to it before `exec` to move itself
/// in); removed when dropped (after its processes).
struct RoundCgroup {
    dir: Arc<PathBuf>,
    procs: File,
}

impl RoundCgroup {
    /// Makes cgroup `name` of `controller`, set up by `setup` (its
    /// directory) before anyone joins.
    fn create(
        controller: &str,
        name: &str,
        setup: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<RoundCgroup, String> {
        let dir = own_dir(controller)?.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let made = setup(&dir).and_then(|()| {
            OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
        });
        match made {
            Ok(procs) => Ok(RoundCgroup {
                dir: Arc::new(dir),
                procs,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(format!("cannot set up {}: {e}", dir.display()))
            }
        }
    }
}

impl Drop for RoundCgroup {
    fn drop(&mut self) {
        // Its processes are gone by now (the sandbox kills them first); a
        // dying one may take a moment to leave.
        poll_until(Deadline::after(Duration::from_secs(2)), || {
            std::fs::remove_dir(self.dir.as_path()).ok()
        });
    }
}

/// One round's memory cgroup.
pub struct MemoryCgroup {
    cgroup: RoundCgroup,
    pub limit: u64,
}

impl MemoryCgroup {
    /// A new cgroup `name` under the grader's own memory cgroup, limited to
    /// `limit` bytes (swap included, where the kernel accounts it).
    pub fn create(name: &str, limit: u64) -> Result<MemoryCgroup, String> {
        let cgroup = RoundCgroup::create("memory", name, |dir| {
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())?;
            // Where swap is accounted, the same limit on memory + swap
            // (else the round would swap instead of being stopped).
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
            Ok(())
        })?;
        Ok(MemoryCgroup { cgroup, limit })
    }

    /// The descriptor a child writes `0` to, to join (see [`join_in_child`]).
    pub fn procs_fd(&self) -> RawFd {
        self.cgroup.procs.as_raw_fd()
    }
}

/// One round's pids cgroup: its census ([`Census`]).
pub struct PidsCgroup {
    cgroup: RoundCgroup,
    census: Census,
}

/// Where to read a pids cgroup's census: cheap to clone, for the threads
/// that look at the round (background faults, the stuck watch).
#[derive(Debug, Clone)]
pub struct Census {
    dir: Arc<PathBuf>,
}

impl PidsCgroup {
    /// A new pids cgroup `name` under the grader's own.
    pub fn create(name: &str) -> Result<PidsCgroup, String> {
        let cgroup = RoundCgroup::create("pids", name, |_| Ok(()))?;
        let census = Census {
            dir: Arc::clone(&cgroup.dir),
        };
        Ok(PidsCgroup { cgroup, census })
    }

    /// The descriptor a child writes `0` to, to join (see [`join_in_child`]).
    pub fn procs_fd(&self) -> RawFd {
        self.cgroup.procs.as_raw_fd()
    }

    pub fn census(&self) -> &Census {
        &self.census
    }
}

impl Census {
    /// How many tasks (threads) of the round exist, zombies included until
    /// they are reaped; `None` if it cannot be read.
    pub fn tasks(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("pids.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The round's live processes (zombies are not members any more);
    /// `None` if the list cannot be read.
    pub fn live(&self) -> Option<Vec<i32>> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs")).ok()?;
        text.lines().map(|l| l.trim().parse().ok()).collect()
    }
}

/// The grader's own cgroup (v1) of `controller`, as a directory.
fn own_dir(controller: &str) -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = own_cgroup(&own, controller).ok_or_else(|| {
        format!("no cgroup v1 {controller} hierarchy (cgroup v2 needs delegation)")
    })?;
    Ok(Path::new(V1_ROOT)
        .join(controller)
        .join(path.trim_start_matches('/')))
}

/// Removes the (empty) cgroups of graders that died before they could;
/// they are named like their scratch directories. Returns how many.
pub fn remove_stale() -> usize {
    ["memory", "pids"]
        .into_iter()
        .filter_map(|controller| {
            let dir = own_dir(controller).ok()?;
            Some(std::fs::read_dir(dir).ok()?.flatten().filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(super::scratch::owner)
                    .is_some_and(super::scratch::gone)
                    && std::fs::remove_dir(e.path()).is_ok()
            }))
        })
        .flatten()
        .count()
}

/// Moves the calling (forked) process into the cgroup whose `cgroup.procs`
/// is open as `fd`.
///
/// # Safety
/// For a child before `exec` only (a set-up of `spawn`, a `pre_exec`): a raw system call.
pub unsafe fn join_in_child(fd: RawFd) -> std::io::Result<()> {
    if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The path of the `controller` cgroup in the text of `/proc/self/cgroup`
/// (`4:memory:/path`), for cgroup v1.
fn own_cgroup<'t>(text: &'t str, controller: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_cgroup_and_not_v2() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n";
        assert_eq!(own_cgroup(hybrid, "memory"), Some("/process_api/abc"));
        assert_eq!(own_cgroup("0::/user.slice/x.scope\n", "memory"), None);
        assert_eq!(own_cgroup("5:cpu,memory:/a\n", "memory"), Some("/a"));
        assert_eq!(own_cgroup("8:pids:/\n4:memory:/b\n", "pids"), Some("/"));
    }
}
