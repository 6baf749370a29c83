//! Per-test isolation: where the kernel allows it, every test round runs in
//! fresh namespaces of its own:
//!
//! - IPC: its own System V queues, semaphores and segments;
//! - mount: private tmpfs on `/dev/shm` (POSIX shared memory and named
//!   semaphores), `/tmp`, `/var/tmp` and `/run/lock`; the scratch directory is a tmpfs of
//!   bounded size (a disk filler fills only that); the course (reference
//!   solutions, specs, other builds) and the submission's sources are
//!   covered by empty read-only mounts; the binaries are mounted read-only;
//! - network: nothing but loopback (Unix sockets work as always).
//!
//! Parallel grading runs then cannot see or break each other's objects,
//! nothing leaks to the host, and whatever a test leaves behind dies with it.
//!
//! The namespaces are held open by a small *holder* process (the grader's
//! own binary, `cargo-grade peer hold`, which waits for its stdin to close).
//! Every process of the test joins them with `setns` before `exec`, so a
//! submission and the grader's peers see the same objects. The grader
//! itself stays in the host namespaces: it reads the test's files (the
//! scratch directory, `/dev/shm`) through `/proc/HOLDER/root` ([`Sandbox::view`])
//! and its System V objects from a short-lived thread that joins the IPC
//! namespace.
//!
//! Where namespaces cannot be created (no `CAP_SYS_ADMIN`, say), the test
//! runs in the host namespaces and isolation rests on names alone: every
//! name and key a spec hands to a program contains a token unique to the run
//! (`{run}`, `{key}`). The report says which isolation was used.

use crate::result::Protection;
use std::ffi::CString;
use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::cgroup::{Census, MemoryCgroup, PidsCgroup};
use super::identity::{Identity, Lease};
use super::spawn::{Child, Spawn, Stdio as SpawnStdio};

/// Which isolation a test ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Fresh IPC and mount namespaces with a private `/dev/shm`.
    Namespaces,
    /// The host's namespaces; names unique to the run keep tests apart.
    UniqueNames,
}

impl Isolation {
    pub fn describe(self) -> &'static str {
        match self {
            Isolation::Namespaces => {
                "private IPC and mount namespaces per test (own System V IPC, own /dev/shm)"
            }
            Isolation::UniqueNames => {
                "host namespaces (namespaces unavailable): IPC names and keys unique to each run"
            }
        }
    }
}

/// Set once a memory cgroup could not be made, with the reason.
static MEMORY_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
/// Set once a pids cgroup could not be made, with the reason.
static PIDS_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A cgroup of the round's, named after its scratch directory (unique), made
/// by `make`; once one has failed, none is tried again (`failed`).
fn round_cgroup<T>(
    failed: &std::sync::Mutex<Option<String>>,
    workdir: &Path,
    make: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = failed.as_ref() {
        return Err(why.clone());
    }
    let name = workdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("cargo-grade-{}", std::process::id()));
    make(&name).inspect_err(|why| *failed = Some(why.clone()))
}

/// Set once namespaces have failed, so later tests do not try again.
static NAMESPACES_FAILED: AtomicBool = AtomicBool::new(false);
/// Set once a network namespace has failed (IPC and mount may still work).
static NETWORK_FAILED: AtomicBool = AtomicBool::new(false);

/// What every round of one grade hides and shows (the same for all rounds).
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    /// Directories student processes must not see at all: the course (its
    /// reference solutions, specs and builds) and the submission's sources.
    pub hidden: Vec<PathBuf>,
    /// Directories they may read and execute but not change: where the
    /// binaries they run are.
    pub readonly: Vec<PathBuf>,
    /// Size of the scratch directory, `/tmp` and `/dev/shm` (each a tmpfs).
    pub disk_bytes: u64,
    /// Memory of all the round's processes together (a memory cgroup).
    pub memory_bytes: u64,
}

/// Starts `cargo-grade peer hold [UID]`, with a pipe on stdin that only
/// the grader holds (see [`hold`]); `setup` runs in it before `exec`. The
/// holder inherits the uid's lease: if the grader is killed, the uid stays
/// taken until the holder has killed every process of it and exited.
///
/// # Safety
/// As [`Spawn::spawn`]: `setup` makes raw system calls only.
unsafe fn spawn_holder(
    helper: &Path,
    lease: Option<&Lease>,
    setup: &dyn Fn() -> std::io::Result<()>,
) -> std::io::Result<Child> {
    let mut cmd = Spawn::new(helper, std::ffi::OsStr::new(""))?;
    cmd.arg("peer")?.arg("hold")?;
    if let Some(lease) = lease {
        cmd.arg(lease.identity().uid.to_string())?;
    }
    cmd.stdio(SpawnStdio::Piped, SpawnStdio::Piped, SpawnStdio::Null)
        .process_group();
    let lock = lease.map(|l| l.lock_fd().as_raw_fd());
    // The lease's lock stays open across exec, in the holder.
    let inherit_lock_then_setup = || {
        if let Some(fd) = lock {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            check(if flags < 0 {
                -1
            } else {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
            })?;
        }
        setup()
    };
    cmd.spawn(&inherit_lock_then_setup)
}

/// Waits for the holder's `ready` (it prints it once it runs, after exec,
/// so its namespaces are in place when the grader opens them).
fn await_ready(mut holder: Child) -> Result<Child, String> {
    let ready = holder.stdout.take().map(|out| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).map(|_| line)
    });
    if matches!(ready, Some(Ok(ref l)) if l.trim() == "ready") {
        Ok(holder)
    } else {
        let _ = holder.kill();
        let _ = holder.wait();
        Err("the namespace holder did not start".into())
    }
}

/// The file descriptors a child needs to join a sandbox (`setns`).
#[derive(Debug, Clone, Copy)]
pub struct JoinFds {
    pub ipc: RawFd,
    pub mnt: RawFd,
    pub net: Option<RawFd>,
}

/// One test round's sandbox.
pub struct Sandbox {
    isolation: Isolation,
    /// Why namespaces were not used, when they were not.
    fallback_reason: Option<String>,
    holder: Option<Child>,
    ipc: Option<OwnedFd>,
    mnt: Option<OwnedFd>,
    net: Option<OwnedFd>,
    /// `/proc/HOLDER/root`: the round's files as the grader reaches them.
    root: Option<PathBuf>,
    identity: Option<Identity>,
    /// The lease of `identity`'s uid, released after the holder is gone.
    lease: Option<Lease>,
    disk_bytes: u64,
    hides_course: bool,
    /// The round's memory cgroup, or why there is none.
    memory: Result<MemoryCgroup, String>,
    /// The round's pids cgroup (its census), when it has a user of its own
    /// and the cgroup could be made.
    pids: Option<PidsCgroup>,
}

impl Sandbox {
    /// The host's namespaces, no holder, no user of its own.
    pub fn host() -> Sandbox {
        Sandbox {
            isolation: Isolation::UniqueNames,
            fallback_reason: None,
            holder: None,
            ipc: None,
            mnt: None,
            net: None,
            root: None,
            identity: None,
            lease: None,
            disk_bytes: 0,
            hides_course: false,
            memory: Err("not asked for".into()),
            pids: None,
        }
    }

    /// A fresh sandbox for a round whose scratch directory is `workdir` and
    /// whose processes run as the uid of `lease` (which the sandbox keeps
    /// until the round's processes are gone): namespaces if they can be made
    /// (and `CARGO_GRADE_ISOLATION` is not `none`), else the host's.
    /// `helper` is the grader binary, which runs the holder.
    pub fn new(
        helper: &Path,
        confinement: &Confinement,
        workdir: &Path,
        lease: Option<Lease>,
    ) -> Sandbox {
        let identity = lease.as_ref().map(Lease::identity);
        let fallback = |why: String, lease: Option<Lease>| {
            let mut s = Sandbox::host();
            s.identity = identity;
            s.fallback_reason = Some(why);
            // Without a tmpfs of its own, the scratch directory is the host
            // directory: the round's user must own it.
            if let Some(id) = identity {
                let _ = std::os::unix::fs::chown(workdir, Some(id.uid), Some(id.gid));
                // No namespaces to hold, but the holder still outlives a
                // killed grader to kill the round's user.
                // SAFETY: no set-up at all.
                s.holder = unsafe { spawn_holder(helper, lease.as_ref(), &|| Ok(())) }
                    .ok()
                    .and_then(|h| await_ready(h).ok());
            }
            s.lease = lease;
            s
        };
        if std::env::var_os("CARGO_GRADE_ISOLATION").is_some_and(|v| v == "none") {
            return fallback("CARGO_GRADE_ISOLATION=none".into(), lease);
        }
        if NAMESPACES_FAILED.load(Ordering::Relaxed) {
            return fallback("namespaces failed earlier in this run".into(), lease);
        }
        let with_net = !NETWORK_FAILED.load(Ordering::Relaxed);
        let attempt =
            Sandbox::with_namespaces(helper, confinement, workdir, lease.as_ref(), with_net);
        let attempt = match attempt {
            Err(_) if with_net => {
                NETWORK_FAILED.store(true, Ordering::Relaxed);
                Sandbox::with_namespaces(helper, confinement, workdir, lease.as_ref(), false)
            }
            other => other,
        };
        let mut sandbox = match attempt {
            Ok(mut sandbox) => {
                sandbox.lease = lease;
                sandbox
            }
            Err(e) => {
                NAMESPACES_FAILED.store(true, Ordering::Relaxed);
                fallback(e, lease)
            }
        };
        sandbox.memory = round_cgroup(&MEMORY_FAILED, workdir, |name| {
            MemoryCgroup::create(name, confinement.memory_bytes)
        });
        // A census is only needed where the round's processes are found by
        // their user (none of its own: they are the grader's processes).
        if identity.is_some() {
            sandbox.pids = round_cgroup(&PIDS_FAILED, workdir, PidsCgroup::create).ok();
        }
        sandbox
    }

    fn with_namespaces(
        helper: &Path,
        confinement: &Confinement,
        workdir: &Path,
        lease: Option<&Lease>,
        with_net: bool,
    ) -> Result<Sandbox, String> {
        let identity = lease.map(Lease::identity);
        let plan = MountPlan::new(confinement, workdir, identity)?;
        let mut flags = libc::CLONE_NEWIPC | libc::CLONE_NEWNS;
        if with_net {
            flags |= libc::CLONE_NEWNET;
        }
        // SAFETY: runs in the child before exec, on the grader's memory
        // (see `spawn`); it makes raw system calls (unshare, mount, mkdir,
        // socket, ioctl) on data prepared before it.
        let enter = || unsafe {
            check(libc::unshare(flags))?;
            plan.apply()?;
            if with_net {
                loopback_up()?;
            }
            Ok(())
        };
        // SAFETY: as above.
        let holder = unsafe { spawn_holder(helper, lease, &enter) }
            .map_err(|e| format!("cannot create IPC and mount namespaces: {e}"))?;
        let mut holder = await_ready(holder)?;
        let pid = holder.id();
        let open = |ns: &str| -> Result<OwnedFd, String> {
            File::open(format!("/proc/{pid}/ns/{ns}"))
                .map(OwnedFd::from)
                .map_err(|e| format!("cannot open /proc/{pid}/ns/{ns}: {e}"))
        };
        let opened = (|| {
            Ok((
                open("ipc")?,
                open("mnt")?,
                with_net.then(|| open("net")).transpose()?,
            ))
        })();
        let (ipc, mnt, net) = match opened {
            Ok(fds) => fds,
            Err(e) => {
                let _ = holder.kill();
                let _ = holder.wait();
                return Err(e);
            }
        };
        Ok(Sandbox {
            isolation: Isolation::Namespaces,
            fallback_reason: None,
            root: Some(PathBuf::from(format!("/proc/{pid}/root"))),
            holder: Some(holder),
            ipc: Some(ipc),
            mnt: Some(mnt),
            net,
            identity,
            lease: None,
            disk_bytes: confinement.disk_bytes,
            hides_course: !confinement.hidden.is_empty(),
            memory: Err("not made yet".into()),
            pids: None,
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Why namespaces are not in use, if they are not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The user the round's processes run as, if not the grader's.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// `cgroup.procs` of each of the round's cgroups, for children to join.
    pub fn cgroup_fds(&self) -> Vec<RawFd> {
        let memory = self.memory.as_ref().ok().map(MemoryCgroup::procs_fd);
        memory
            .into_iter()
            .chain(self.pids.as_ref().map(PidsCgroup::procs_fd))
            .collect()
    }

    /// The census of the round's processes, when it has a user of its own
    /// and a pids cgroup that every process the round starts joins.
    pub fn census(&self) -> Option<&Census> {
        self.pids.as_ref().map(PidsCgroup::census)
    }

    /// Whether the census says nothing of the round is left, not even a
    /// zombie: then no sweep of `/proc` can find any of its processes.
    /// `false` when there is no census or it cannot be read.
    pub fn is_emptied(&self) -> bool {
        self.census().and_then(Census::tasks) == Some(0)
    }

    /// What children must join, if anything.
    pub fn join_fds(&self) -> Option<JoinFds> {
        match (&self.ipc, &self.mnt) {
            (Some(ipc), Some(mnt)) => Some(JoinFds {
                ipc: ipc.as_raw_fd(),
                mnt: mnt.as_raw_fd(),
                net: self.net.as_ref().map(AsRawFd::as_raw_fd),
            }),
            _ => None,
        }
    }

    /// Where the grader finds `path` (absolute, as the round's processes
    /// name it): through the holder's root when the round has its own
    /// mounts, the path itself otherwise.
    pub fn view(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_owned(),
        }
    }

    /// The test's `/dev/shm`, as the grader can reach it.
    pub fn dev_shm(&self) -> PathBuf {
        self.view(Path::new("/dev/shm"))
    }

    /// The protections this round's processes ran under, for the report
    /// header: each one in force, or missing and why.
    pub fn protections(&self) -> Vec<Protection> {
        let mut list = Vec::new();
        let disk = self.disk_bytes >> 20;
        match self.isolation {
            Isolation::Namespaces => {
                list.push(Protection::active(
                    "private IPC and mount namespaces per test",
                    format!("own System V IPC, own /dev/shm and /tmp; the scratch directory is a {disk} MiB tmpfs"),
                ));
                list.push(if self.net.is_some() {
                    Protection::active(
                        "private network namespace",
                        "no network but loopback and Unix sockets",
                    )
                } else {
                    Protection::missing(
                        "network isolation",
                        "a network namespace could not be created",
                    )
                });
                if self.hides_course {
                    list.push(Protection::active(
                        "course hidden",
                        "the course (reference solutions, specs, builds, reports) and the submission's sources hidden from student processes; binaries read-only",
                    ));
                }
            }
            Isolation::UniqueNames => {
                let why = self.fallback_reason.as_deref().unwrap_or("unavailable");
                list.push(Protection::missing(
                    "namespaces",
                    format!("{why}: tests share the host's IPC, /tmp and network (IPC names and keys are unique to each run); the course is not hidden; disk use is bounded per file only"),
                ));
            }
        }
        list.push(match &self.memory {
            Ok(cgroup) => Protection::active(
                "a memory limit for the test as a whole",
                format!(
                    "memory of all of a test's processes together limited to {} MiB, shared memory included (a memory cgroup)",
                    cgroup.limit >> 20
                ),
            ),
            Err(why) => Protection::missing(
                "a memory limit for the test as a whole",
                format!("{why}: memory is limited per process only"),
            ),
        });
        list.push(match self.identity {
            Some(_) => Protection::active(
                "a user of their own",
                "student processes run as an unprivileged user of their own per test: process limits apply, and the grader, other tests and root's files are out of reach",
            ),
            None => Protection::missing(
                "a user of their own",
                "the grader is not root, or CARGO_GRADE_USER=keep: student processes run as the grader's user, so the process limit counts all of that user's processes",
            ),
        });
        list
    }

    /// Runs `f` in the test's IPC namespace (on a thread of its own, which
    /// joins the namespace; the grader's other threads stay where they are).
    /// Fails only if the thread cannot join it.
    pub fn in_ipc_namespace<T: Send>(
        &self,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, nix::errno::Errno> {
        let Some(ipc) = &self.ipc else {
            return Ok(f());
        };
        let fd = ipc.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd; CLONE_NEWIPC moves
                // only the calling thread, which ends with this scope.
                if unsafe { libc::setns(fd, libc::CLONE_NEWIPC) } != 0 {
                    return Err(nix::errno::Errno::last());
                }
                Ok(f())
            })
            .join()
            .unwrap_or(Err(nix::errno::Errno::EIO))
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Whatever of the round's user is still alive dies first, then the
        // namespaces (and their tmpfs mounts) with the holder.
        if let Some(id) = self.identity.filter(|_| !self.is_emptied()) {
            id.kill_all(std::time::Duration::from_secs(5));
        }
        if let Some(mut holder) = self.holder.take() {
            // Killed before its stdin closes: the end of its stdin would
            // have it sweep /proc for the user's processes, which the
            // grader has just done.
            let _ = holder.kill();
            drop(holder.stdin.take());
            let _ = holder.wait();
        }
        // (The holder kills the user's processes itself only when the
        // grader is gone; here the grader has just done it.)
    }
}

/// Makes every mount of the caller's new mount namespace private, so that
/// nothing mounted in it propagates back to the host.
///
/// # Safety
/// For a child before `exec` only (a set-up of `spawn`, a `pre_exec`): a raw system call.
pub(crate) unsafe fn make_mounts_private() -> std::io::Result<()> {
    check(libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ))
}

/// Covers `dir` with an empty, read-only tmpfs: what was there is out of
/// sight in this mount namespace. A directory that does not exist here
/// (under a private `/tmp`, say) is out of sight already.
///
/// # Safety
/// For a child before `exec` only (a set-up of `spawn`, a `pre_exec`): a raw system call.
pub(crate) unsafe fn cover(dir: &std::ffi::CStr) -> std::io::Result<()> {
    let covered = check(libc::mount(
        c"tmpfs".as_ptr(),
        dir.as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
        c"mode=0555,size=4k".as_ptr().cast(),
    ));
    match covered {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

pub(crate) fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cstring(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))
}

/// Every mount of a round's namespace, prepared before the spawn so that the
/// child only makes system calls.
struct MountPlan {
    /// tmpfs mounts: target and options.
    private: Vec<(CString, CString)>,
    /// Directories to cover with an empty read-only tmpfs.
    hidden: Vec<CString>,
    /// Read-only binds: a staging mount point in the private `/dev/shm`
    /// (made before `/tmp` is covered, when the directory is still in
    /// sight), the directories to create down to the target, and the target
    /// (which is also the source).
    readonly: Vec<(CString, Vec<CString>, CString)>,
    /// The scratch directory: directories to create, target, tmpfs options.
    workdir: (Vec<CString>, CString, CString),
}

impl MountPlan {
    fn new(
        confinement: &Confinement,
        workdir: &Path,
        identity: Option<Identity>,
    ) -> Result<MountPlan, String> {
        let size = confinement.disk_bytes.max(1 << 20);
        let shared = CString::new(format!("mode=1777,size={size}")).expect("no NUL");
        if !Path::new("/dev/shm").is_dir() {
            return Err("there is no /dev/shm".into());
        }
        // /dev/shm first: it holds the staging points of the read-only binds.
        // Every directory an unprivileged user may write to on a usual
        // Linux host gets a private tmpfs.
        let private = ["/dev/shm", "/tmp", "/var/tmp", "/run/lock"]
            .iter()
            .filter(|dir| Path::new(dir).is_dir())
            .map(|dir| (CString::new(*dir).expect("no NUL"), shared.clone()))
            .collect();
        let (uid, gid) = identity.map_or_else(
            // SAFETY: geteuid and getegid cannot fail.
            || unsafe { (libc::geteuid(), libc::getegid()) },
            |id| (id.uid, id.gid),
        );
        let keep = [workdir]
            .into_iter()
            .chain(confinement.readonly.iter().map(PathBuf::as_path))
            .collect::<Vec<_>>();
        let hidden = confinement
            .hidden
            .iter()
            .filter(|h| h.is_dir())
            // Never cover what the round needs, nor a directory above it.
            .filter(|h| !keep.iter().any(|k| k.starts_with(h)))
            .map(|h| cstring(h))
            .collect::<Result<_, _>>()?;
        let mut readonly = Vec::new();
        for (i, dir) in confinement.readonly.iter().enumerate() {
            let staging = CString::new(format!("/dev/shm/.cargo-grade-ro-{i}")).expect("no NUL");
            readonly.push((staging, ancestors(dir)?, cstring(dir)?));
        }
        let options =
            CString::new(format!("mode=0700,size={size},uid={uid},gid={gid}")).expect("no NUL");
        Ok(MountPlan {
            private,
            hidden,
            readonly,
            workdir: (ancestors(workdir)?, cstring(workdir)?, options),
        })
    }

    /// Makes the mounts, in the child, in its new mount namespace.
    ///
    /// # Safety
    /// For a child before `exec` only (a set-up of `spawn`): raw system calls on prepared data.
    unsafe fn apply(&self) -> std::io::Result<()> {
        let nodev = libc::MS_NOSUID | libc::MS_NODEV;
        make_mounts_private()?;
        for (i, (target, options)) in self.private.iter().enumerate() {
            mount_tmpfs(target, options)?;
            if i == 0 {
                // /dev/shm is private now and /tmp not yet covered: bind
                // what must stay in sight to staging points.
                for (staging, _, source) in &self.readonly {
                    check(libc::mkdir(staging.as_ptr(), 0o700))?;
                    move_mount(source, staging, libc::MS_BIND)?;
                }
            }
        }
        for target in &self.hidden {
            cover(target)?;
        }
        for (staging, parents, target) in &self.readonly {
            make_dirs(parents)?;
            move_mount(staging, target, libc::MS_MOVE)?;
            check(libc::rmdir(staging.as_ptr()))?;
            move_mount(
                c"",
                target,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nodev,
            )?;
        }
        let (parents, target, options) = &self.workdir;
        make_dirs(parents)?;
        mount_tmpfs(target, options)
    }
}

/// `path` and each directory above it, outermost first (for `mkdir -p`).
fn ancestors(path: &Path) -> Result<Vec<CString>, String> {
    let mut dirs: Vec<&Path> = path.ancestors().filter(|a| a.parent().is_some()).collect();
    dirs.reverse();
    dirs.into_iter().map(cstring).collect()
}

/// A fresh, writable tmpfs at `target` (no devices, no set-uid).
///
/// # Safety
/// For a child before `exec` only (a set-up of `spawn`, a `pre_exec`): a raw system call.
unsafe fn mount_tmpfs(target: &std::ffi::CStr, options: &std::ffi::CStr) -> std::io::Result<()> {
    check(libc::mount(
        c"tmpfs".as_ptr(),
        target.as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV,
        options.as_ptr().cast(),
    ))
}

/// A mount that moves or binds `source` (empty for a remount) at `target`.
///
/// # Safety
/// For a child before `exec` only (a set-up of `spawn`, a `pre_exec`): a raw system call.
unsafe fn move_mount(
    source: &std::ffi::CStr,
    target: &std::ffi::CStr,
    flags: libc::c_ulong,
) -> std::io::Result<()> {
    let source = if source.is_empty() {
        std::ptr::null()
    } else {
        source.as_ptr()
    };
    check(libc::mount(
        source,
        target.as_ptr(),
        std::ptr::null(),
        flags,
        std::ptr::null(),
    ))
}

/// `mkdir -p` with raw system calls.
unsafe fn make_dirs(dirs: &[CString]) -> std::io::Result<()> {
    for dir in dirs {
        if libc::mkdir(dir.as_ptr(), 0o755) != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Brings up `lo` in a new network namespace (it starts down), so that
/// loopback TCP and UDP work; nothing else is there to reach.
unsafe fn loopback_up() -> std::io::Result<()> {
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let result = (|| {
        check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req))
    })();
    libc::close(sock);
    result
}

/// Joins the sandbox from a child before `exec`, then returns to
/// `cwd` (joining a mount namespace moves the caller to its root).
///
/// # Safety
/// Only for a child before `exec` (a set-up of `spawn`): raw system calls.
pub unsafe fn join_in_child(fds: JoinFds, cwd: &std::ffi::CStr) -> std::io::Result<()> {
    let net = fds.net.map(|fd| (fd, libc::CLONE_NEWNET));
    for (fd, kind) in [(fds.ipc, libc::CLONE_NEWIPC), (fds.mnt, libc::CLONE_NEWNS)]
        .into_iter()
        .chain(net)
    {
        if libc::setns(fd, kind) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if libc::chdir(cwd.as_ptr()) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The holder's side (`cargo-grade peer hold [UID]`): announce, then wait
/// for stdin to close. The grader closes it at the end of the round, and
/// the kernel closes it when the grader dies, however it dies (even by
/// SIGKILL). Then, given the round's UID, the holder (root) kills every
/// process of that user before it exits: a daemon that double-forked away
/// from every parent-death signal dies with the grader all the same.
pub fn hold(args: &[String]) -> i32 {
    println!("ready");
    let mut buf = [0u8; 256];
    loop {
        match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(uid) = args.first().and_then(|a| a.parse::<u32>().ok()) {
        Identity { uid, gid: uid }.kill_all(std::time::Duration::from_secs(5));
    }
    0
}
