//! Resource limits of every student process: what one program may consume
//! before the kernel stops it, whatever the grader is doing at the time (a
//! limit is enforced even if the grader itself is stuck or killed).
//!
//! Memory is bounded with `RLIMIT_DATA` (writable private mappings: heap,
//! anonymous `mmap`, thread stacks), not `RLIMIT_AS`: glibc reserves 64 MiB
//! of address space per thread arena, so an address-space limit fails
//! correct multi-threaded servers long before they use any memory.
//! Processes are bounded per user with `RLIMIT_NPROC`, which the kernel
//! does not apply to root: that is why student processes run as a user of
//! their own when the grader is root (see [`super::identity`]).

use crate::spec::{Limits, Test};

/// One `setrlimit` (soft and hard limit alike, unless `hard` says more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimit {
    pub resource: libc::__rlimit_resource_t,
    pub value: u64,
}

/// The limits one test's student processes run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// CPU seconds per process (`RLIMIT_CPU`): SIGXCPU, then SIGKILL.
    pub cpu_s: u64,
    /// `RLIMIT_DATA` bytes per process.
    pub memory: u64,
    /// `RLIMIT_NPROC`: processes and threads of the user.
    pub processes: u64,
    /// `RLIMIT_NOFILE` per process.
    pub open_files: u64,
    /// `RLIMIT_FSIZE` bytes: a larger write gets SIGXFSZ.
    pub file_size: u64,
}

impl Budget {
    /// The spec's `[limits]`, with the test's own `rlimits` (which tests
    /// use as faults) taking precedence. The CPU limit is the test's wall
    /// budget, rounded up, plus a second: a program cannot use more CPU than
    /// wall time per thread, so only a runaway outliving its test hits it.
    pub fn for_test(limits: &Limits, test: &Test) -> Budget {
        Budget {
            cpu_s: test.timeout_ms.div_ceil(1000) + 1,
            memory: limits.memory_mib << 20,
            processes: test.rlimits.processes.unwrap_or(limits.processes),
            open_files: test.rlimits.open_files.unwrap_or(limits.open_files),
            file_size: limits.file_size_mib << 20,
        }
    }

    /// The `setrlimit` calls that apply the budget. `already_running` is the
    /// number of processes the user has before the test starts (0 for a
    /// user of the test's own): `RLIMIT_NPROC` counts them all.
    pub fn rlimits(&self, already_running: u64) -> Vec<ResourceLimit> {
        // Never above the grader's own hard limit: an unprivileged grader
        // may not raise it, and a lower one is tighter anyway.
        let limit = |resource, value: u64| ResourceLimit {
            resource,
            value: value.min(hard_limit(resource)),
        };
        vec![
            limit(libc::RLIMIT_CPU, self.cpu_s),
            limit(libc::RLIMIT_DATA, self.memory),
            limit(libc::RLIMIT_NPROC, already_running + self.processes),
            limit(libc::RLIMIT_NOFILE, self.open_files),
            limit(libc::RLIMIT_FSIZE, self.file_size),
            // A crashing program must not fill the disk with core files.
            limit(libc::RLIMIT_CORE, 0),
        ]
    }

    /// The budget, for the report header.
    pub fn describe(&self) -> crate::result::Protection {
        crate::result::Protection::active("limits per process", format!(
            "{} s of CPU, {} MiB of memory (RLIMIT_DATA), {} open files, files up to {} MiB, no core dumps; {} processes and threads per test",
            self.cpu_s,
            self.memory >> 20,
            self.open_files,
            self.file_size >> 20,
            self.processes
        ))
    }
}

/// The calling process's hard limit of `resource` (infinity if unknown).
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit fills a plain struct.
    if unsafe { libc::getrlimit(resource, &mut rl) } == 0 {
        rl.rlim_max
    } else {
        libc::RLIM_INFINITY
    }
}

/// How many tasks (processes and threads, what `RLIMIT_NPROC` counts) the
/// real user `uid` has now.
pub fn tasks_of_user(uid: u32) -> u64 {
    super::procfs::pids()
        .into_iter()
        .filter_map(super::procfs::status)
        .filter(|s| super::procfs::uids(s).is_some_and(|ids| ids[0] == uid))
        .map(|s| super::procfs::threads(&s).unwrap_or(1))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rlimits_override_the_spec_and_cpu_follows_the_timeout() {
        let spec = crate::spec::Spec::parse(
            std::path::Path::new("spec.toml"),
            "[task]\nid = \"task9\"\nslug = \"task9-x\"\ntitle = \"t\"\nbinary = \"x\"\nhandout = \"h.md\"\n\
             [limits]\nmemory_mib = 100\nprocesses = 50\n\
             [[test]]\nname = \"a\"\npoints = 1\ndescription = \"d\"\ntimeout_ms = 2500\nrlimits = { processes = 7 }\nsteps = [{ start = \"p\" }]\n",
        )
        .unwrap();
        let budget = Budget::for_test(&spec.limits, &spec.tests[0]);
        assert_eq!(budget.cpu_s, 4);
        assert_eq!(budget.memory, 100 << 20);
        assert_eq!(budget.processes, 7);
        assert_eq!(budget.open_files, 1024);
        let nproc = budget
            .rlimits(10)
            .into_iter()
            .find(|l| l.resource == libc::RLIMIT_NPROC)
            .unwrap();
        assert_eq!(nproc.value, 17);
    }

    #[test]
    fn counts_this_processs_threads_for_its_user() {
        let me = unsafe { libc::getuid() };
        let _t = std::thread::spawn(std::thread::park);
        assert!(tasks_of_user(me) >= 2);
    }
}
