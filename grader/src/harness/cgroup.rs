//! A memory cgroup per test round, where the grader may make one: a limit
//! on the memory of all the round's processes together.
//!
//! `RLIMIT_DATA` bounds each process's private memory, but not shared
//! memory (`mmap(MAP_SHARED | MAP_ANONYMOUS)`, System V segments), and not
//! what many processes take together. A memory cgroup counts all of it, and
//! when the round goes over, the kernel's out-of-memory killer picks a
//! process of the round, never one of the machine.
//!
//! The grader makes a child of its own memory cgroup. That needs cgroup v1
//! (its memory hierarchy writable, as for root in most CI containers). On
//! cgroup v2 a process may only create children it can use if the cgroup
//! was delegated to it, which this does not attempt; the report then says
//! the protection is not active.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::deadline::{poll_until, Deadline};

/// Where cgroup v1 mounts its memory hierarchy.
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// One round's memory cgroup; removed when dropped (after its processes).
pub struct MemoryCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for writing: a child writes `0` to it before
    /// `exec` to move itself in.
    procs: File,
    pub limit: u64,
}

impl MemoryCgroup {
    /// A new cgroup `name` under the grader's own memory cgroup, limited to
    /// `limit` bytes (swap included, where the kernel accounts it).
    pub fn create(name: &str, limit: u64) -> Result<MemoryCgroup, String> {
        let dir = own_dir()?.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let made = (|| {
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())?;
            // Where swap is accounted, the same limit on memory + swap
            // (else the round would swap instead of being stopped).
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
            OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
        })();
        match made {
            Ok(procs) => Ok(MemoryCgroup { dir, procs, limit }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(format!("cannot set up {}: {e}", dir.display()))
            }
        }
    }

    /// The descriptor a child writes `0` to, to join (see [`join_in_child`]).
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Its processes are gone by now (the sandbox kills them first); a
        // dying one may take a moment to leave.
        poll_until(Deadline::after(Duration::from_secs(2)), || {
            std::fs::remove_dir(&self.dir).ok()
        });
    }
}

/// The grader's own memory cgroup (v1), as a directory.
fn own_dir() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = own_memory_cgroup(&own)
        .ok_or("no cgroup v1 memory hierarchy (cgroup v2 needs delegation)")?;
    Ok(Path::new(V1_MEMORY).join(path.trim_start_matches('/')))
}

/// Removes the (empty) cgroups of graders that died before they could;
/// they are named like their scratch directories. Returns how many.
pub fn remove_stale() -> usize {
    let Ok(entries) = own_dir().and_then(|d| std::fs::read_dir(d).map_err(|e| e.to_string()))
    else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(super::scratch::owner)
                .is_some_and(super::scratch::gone)
        })
        .filter(|e| std::fs::remove_dir(e.path()).is_ok())
        .count()
}

/// Moves the calling (forked) process into the cgroup whose `cgroup.procs`
/// is open as `fd`.
///
/// # Safety
/// For `pre_exec` only: a raw system call.
pub unsafe fn join_in_child(fd: RawFd) -> std::io::Result<()> {
    if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The path of the memory cgroup in the text of `/proc/self/cgroup`
/// (`4:memory:/path`), for cgroup v1.
fn own_memory_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_cgroup_and_not_v2() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n";
        assert_eq!(own_memory_cgroup(hybrid), Some("/process_api/abc"));
        assert_eq!(own_memory_cgroup("0::/user.slice/x.scope\n"), None);
        assert_eq!(own_memory_cgroup("5:cpu,memory:/a\n"), Some("/a"));
    }
}
