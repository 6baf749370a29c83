//! What a test left behind, and removing it: processes still alive in the
//! test's process groups, FIFOs and Unix socket files in its scratch
//! directory, POSIX shared memory and named semaphores in `/dev/shm`, and
//! System V message queues, semaphore sets and shared memory segments.
//!
//! Leaving these behind is a bug a cleanup check can score; removing them
//! keeps one test from affecting the next (a stale FIFO, a full message
//! queue or a semaphore left at 0 would otherwise break the next run).
//!
//! Where a test has its own namespaces ([`Sandbox`]), its `/dev/shm` and
//! System V IPC are its own and everything new there is the test's. In the
//! host's namespaces they are shared with the whole machine, so two rules
//! keep the grader from blaming (and removing) another program's objects: a
//! [`Baseline`] taken before the test hides what already existed, and only
//! objects named with the run's token (POSIX) or created with the run's key
//! (System V) count.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use super::cgroup::Census;
use super::deadline::{poll_until, Deadline};
use super::sandbox::{Isolation, Sandbox};

/// Where POSIX shared memory objects and named semaphores live, as the
/// program sees it (glibc's `shm_open("/name")` is `/dev/shm/name`,
/// `sem_open("/name")` is `/dev/shm/sem.name`).
const DEV_SHM: &str = "/dev/shm";

/// Where a test's objects are, and which of them are its own.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The test's scratch directory (FIFOs and socket files).
    pub workdir: &'a Path,
    pub sandbox: &'a Sandbox,
    /// In the host's namespaces: POSIX names containing this are the test's.
    pub token: &'a str,
    /// In the host's namespaces: the System V key that is the test's.
    pub key: i32,
    /// Every process group the test started (the submission's and the
    /// grader's peers'). A process of the test's own user outside all of
    /// them left its group on purpose (`setsid`, a daemon).
    pub groups: &'a [Pid],
}

impl Scope<'_> {
    fn owns_shm(&self, name: &str) -> bool {
        self.sandbox.isolation() == Isolation::Namespaces || name.contains(self.token)
    }

    fn owns_key(&self, key: i32) -> bool {
        self.sandbox.isolation() == Isolation::Namespaces || key == self.key
    }

    /// FIFOs and sockets under the scratch directory, named as the test's
    /// processes name them.
    fn special_files(&self) -> Vec<SpecialFile> {
        let seen_from = self.sandbox.view(self.workdir);
        let mut files = special_files_under(&seen_from);
        for file in &mut files {
            if let Ok(rest) = file.path.strip_prefix(&seen_from) {
                file.path = self.workdir.join(rest);
            }
        }
        files
    }

    fn shm_entries(&self) -> Vec<ShmEntry> {
        dev_shm_entries(&self.sandbox.dev_shm())
            .into_iter()
            .filter(|e| self.owns_shm(&e.name))
            .collect()
    }

    fn sysv(&self, kind: SysvKind) -> Vec<i32> {
        self.sandbox
            .in_ipc_namespace(|| sysv_entries(kind))
            .unwrap_or_default()
            .into_iter()
            .filter(|&(key, _)| self.owns_key(key))
            .map(|(_, id)| id)
            .collect()
    }
}
/// How deep, and over how many entries, the scratch directory is searched:
/// a submission that fills it with files must not stall the grader.
const MAX_DEPTH: usize = 8;
const MAX_ENTRIES: usize = 10_000;
/// How long killed processes get to disappear (they die at once on SIGKILL;
/// this bounds a process stuck in uninterruptible sleep).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// `shm_perm.mode` bit of a segment already removed with `IPC_RMID` but
/// still attached somewhere: it goes away on the last detach.
const SHM_DEST: u32 = 0o1000;

/// A snapshot of IPC objects and files, taken before a test so that only
/// what the test created is reported.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Entries of `/dev/shm`, by name and identity.
    dev_shm: HashSet<(String, Identity)>,
    /// FIFOs and sockets already in the scratch directory.
    special_files: HashSet<(PathBuf, Identity)>,
    sysv_msg: HashSet<i32>,
    sysv_sem: HashSet<i32>,
    sysv_shm: HashSet<i32>,
}

impl Baseline {
    pub fn capture(scope: &Scope<'_>) -> Baseline {
        let mut special_files = HashSet::new();
        for file in scope.special_files() {
            special_files.insert((file.path, file.id));
        }
        Baseline {
            dev_shm: scope
                .shm_entries()
                .into_iter()
                .map(|e| (e.name, e.id))
                .collect(),
            special_files,
            sysv_msg: scope.sysv(SysvKind::Msg).into_iter().collect(),
            sysv_sem: scope.sysv(SysvKind::Sem).into_iter().collect(),
            sysv_shm: scope.sysv(SysvKind::Shm).into_iter().collect(),
        }
    }
}

/// A process a test left running (or dead but not reaped).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeftProcess {
    pub pid: i32,
    pub pgid: i32,
    /// The one-letter state of `/proc/PID/stat` (R, S, D, T, Z, ...).
    pub state: char,
    /// The command name (`comm`, at most 15 bytes).
    pub command: String,
    /// Exited, but its parent has not waited for it.
    pub zombie: bool,
    /// Start time in clock ticks after boot: tells this process from a
    /// later one that reuses its pid.
    #[serde(skip)]
    pub start_time: u64,
}

/// What a test left behind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Leftovers {
    /// Live or zombie members of the test's process groups, and their
    /// descendants that moved to other groups or sessions.
    pub processes: Vec<LeftProcess>,
    /// FIFOs under the scratch directory.
    pub fifos: Vec<PathBuf>,
    /// Unix socket files under the scratch directory.
    pub sockets: Vec<PathBuf>,
    /// New `/dev/shm` entries that are not `sem.*`: POSIX shared memory.
    pub posix_shm: Vec<String>,
    /// New `/dev/shm/sem.*` entries: named POSIX semaphores.
    pub posix_sem: Vec<String>,
    /// New System V message queue ids.
    pub sysv_msg: Vec<i32>,
    /// New System V semaphore set ids.
    pub sysv_sem: Vec<i32>,
    /// New System V shared memory segment ids.
    pub sysv_shm: Vec<i32>,
}

impl Leftovers {
    /// Lists what appeared since `baseline`, and the processes of the
    /// process groups `pgids` (never the grader's own group, nor init's).
    pub fn find(baseline: &Baseline, scope: &Scope<'_>, pgids: &[Pid]) -> Leftovers {
        let [found] = Leftovers::find_each(baseline, scope, [pgids]);
        found
    }

    /// [`Leftovers::find`] for each of several sets of process groups, from
    /// one look at the machine: the files, IPC objects and processes are
    /// read once for all of them.
    pub fn find_each<const N: usize>(
        baseline: &Baseline,
        scope: &Scope<'_>,
        each: [&[Pid]; N],
    ) -> [Leftovers; N] {
        let mut fifos = Vec::new();
        let mut sockets = Vec::new();
        for file in scope.special_files() {
            if baseline
                .special_files
                .contains(&(file.path.clone(), file.id))
            {
                continue;
            }
            if file.is_fifo {
                fifos.push(file.path);
            } else {
                sockets.push(file.path);
            }
        }
        let mut posix_shm = Vec::new();
        let mut posix_sem = Vec::new();
        for entry in scope.shm_entries() {
            if baseline.dev_shm.contains(&(entry.name.clone(), entry.id)) {
                continue;
            }
            if entry.name.starts_with("sem.") {
                posix_sem.push(entry.name);
            } else {
                posix_shm.push(entry.name);
            }
        }
        let new_ids = |kind, old: &HashSet<i32>| -> Vec<i32> {
            let ids: BTreeSet<i32> = scope.sysv(kind).into_iter().collect();
            ids.into_iter().filter(|id| !old.contains(id)).collect()
        };
        let own = nix::unistd::getpgrp();
        let each = each.map(|pgids| -> Vec<Pid> {
            pgids
                .iter()
                .copied()
                .filter(|&g| g != own && g.as_raw() > 1)
                .collect()
        });
        // The round's processes, from its census where it can vouch for
        // all of them; else the user's from a sweep, and a sweep of every
        // process for the test's groups.
        let census = scope.sandbox.census().and_then(census_processes);
        let escaped: Vec<i32> = match &census {
            Some(round) => round
                .iter()
                .filter(|p| p.state != 'Z')
                .map(|p| (p.pid, p.pgid))
                .collect::<Vec<_>>(),
            None => scope
                .sandbox
                .identity()
                .map(|id| id.processes())
                .unwrap_or_default()
                .into_iter()
                .map(|(pid, group)| (pid.as_raw(), group.as_raw()))
                .collect(),
        }
        .into_iter()
        .filter(|&(_, group)| !scope.groups.iter().any(|g| g.as_raw() == group))
        .map(|(pid, _)| pid)
        .collect();
        let mut objects = Leftovers {
            processes: Vec::new(),
            fifos,
            sockets,
            posix_shm,
            posix_sem,
            sysv_msg: new_ids(SysvKind::Msg, &baseline.sysv_msg),
            sysv_sem: new_ids(SysvKind::Sem, &baseline.sysv_sem),
            sysv_shm: new_ids(SysvKind::Shm, &baseline.sysv_shm),
        };
        objects.fifos.sort();
        objects.sockets.sort();
        objects.posix_shm.sort();
        objects.posix_sem.sort();
        let all = match census {
            // Every process of the test's groups is the round's.
            Some(round) => round,
            None => (each.iter().any(|g| !g.is_empty()) || !escaped.is_empty())
                .then(all_processes)
                .unwrap_or_default(),
        };
        each.map(|pgids| Leftovers {
            processes: processes_of(&all, &pgids, &escaped),
            ..objects.clone()
        })
    }

    pub fn is_empty(&self) -> bool {
        self == &Leftovers::default()
    }

    /// One line per leftover, saying what it is and what the program
    /// should have done about it.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for p in &self.processes {
            lines.push(if p.zombie {
                format!(
                    "zombie process {} ({}): exited, but its parent never waited for it",
                    p.pid, p.command
                )
            } else {
                format!(
                    "process {} ({}) still running (state {}, process group {})",
                    p.pid, p.command, p.state, p.pgid
                )
            });
        }
        for path in &self.fifos {
            lines.push(format!("FIFO {} (not unlinked)", path.display()));
        }
        for path in &self.sockets {
            lines.push(format!(
                "Unix socket file {} (not unlinked)",
                path.display()
            ));
        }
        for name in &self.posix_shm {
            lines.push(format!(
                "POSIX shared memory \"/{name}\" ({DEV_SHM}/{name}, never shm_unlink'ed)"
            ));
        }
        for name in &self.posix_sem {
            let sem = name.strip_prefix("sem.").unwrap_or(name);
            lines.push(format!(
                "POSIX named semaphore \"/{sem}\" ({DEV_SHM}/{name}, never sem_unlink'ed)"
            ));
        }
        for id in &self.sysv_msg {
            lines.push(format!(
                "System V message queue msqid {id} (never removed with msgctl IPC_RMID)"
            ));
        }
        for id in &self.sysv_sem {
            lines.push(format!(
                "System V semaphore set semid {id} (never removed with semctl IPC_RMID)"
            ));
        }
        for id in &self.sysv_shm {
            lines.push(format!(
                "System V shared memory segment shmid {id} (never removed with shmctl IPC_RMID)"
            ));
        }
        lines
    }

    /// Removes everything listed: SIGKILLs the processes and their groups
    /// and reaps them, unlinks the files and `/dev/shm` entries (which is
    /// what `shm_unlink` and `sem_unlink` do), and removes the System V
    /// objects with `IPC_RMID`. Processes go first, so that none recreates
    /// an object or keeps a segment attached. Returns what could not be
    /// removed, one line each.
    ///
    /// Reaping uses `waitpid` on the listed processes and groups: call this
    /// after the test's [`Program`](super::Program)s have been terminated,
    /// or their exit status may be taken from them.
    pub fn remove(&self, scope: &Scope<'_>) -> Vec<String> {
        let mut failures = kill_and_reap(&self.processes);
        let files = self
            .fifos
            .iter()
            .chain(&self.sockets)
            .map(|path| scope.sandbox.view(path));
        let shm = self
            .posix_shm
            .iter()
            .chain(&self.posix_sem)
            .map(|name| scope.sandbox.dev_shm().join(name));
        for path in files.chain(shm) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => failures.push(format!("could not remove {}: {e}", path.display())),
            }
        }
        for (kind, ids) in [
            (SysvKind::Msg, &self.sysv_msg),
            (SysvKind::Sem, &self.sysv_sem),
            (SysvKind::Shm, &self.sysv_shm),
        ] {
            for &id in ids {
                let removed = scope
                    .sandbox
                    .in_ipc_namespace(|| sysv_remove(kind, id))
                    .and_then(|r| r);
                match removed {
                    // Already gone (EINVAL: no such id; EIDRM: being removed).
                    Ok(()) | Err(Errno::EINVAL) | Err(Errno::EIDRM) => {}
                    Err(e) => failures.push(format!(
                        "could not remove System V {} {id}: {}",
                        kind.noun(),
                        e.desc()
                    )),
                }
            }
        }
        failures
    }
}

// ----- files -------------------------------------------------------------

/// Which file a name stands for: an entry deleted and created again under
/// the same name during the test is new. The inode number alone does not
/// tell (ext4 hands a freed inode to the next file at once); with the birth
/// time it does, and unlike the change time, the birth time does not move
/// when another program merely uses its own object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    ino: u64,
    /// `None` where the filesystem does not record it.
    born: Option<SystemTime>,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            ino: meta.ino(),
            born: meta.created().ok(),
        }
    }
}

struct SpecialFile {
    path: PathBuf,
    id: Identity,
    is_fifo: bool,
}

/// FIFOs and sockets under `root`, not following symbolic links, searched
/// to [`MAX_DEPTH`] levels and [`MAX_ENTRIES`] entries.
fn special_files_under(root: &Path) -> Vec<SpecialFile> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    let mut seen = 0;
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return found;
            }
            // `DirEntry::metadata` does not follow symbolic links.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() && depth + 1 < MAX_DEPTH {
                pending.push((entry.path(), depth + 1));
            } else if kind.is_fifo() || kind.is_socket() {
                found.push(SpecialFile {
                    path: entry.path(),
                    id: Identity::of(&meta),
                    is_fifo: kind.is_fifo(),
                });
            }
        }
    }
    found
}

struct ShmEntry {
    name: String,
    id: Identity,
}

/// The regular files of `dir`, a `/dev/shm` (directories are not POSIX IPC
/// objects).
fn dev_shm_entries(dir: &Path) -> Vec<ShmEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.file_type().is_file().then(|| ShmEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                id: Identity::of(&meta),
            })
        })
        .collect()
}

// ----- System V IPC ------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysvKind {
    Msg,
    Sem,
    Shm,
}

impl SysvKind {
    fn proc_file(self) -> &'static str {
        match self {
            SysvKind::Msg => "/proc/sysvipc/msg",
            SysvKind::Sem => "/proc/sysvipc/sem",
            SysvKind::Shm => "/proc/sysvipc/shm",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            SysvKind::Msg => "message queue",
            SysvKind::Sem => "semaphore set",
            SysvKind::Shm => "shared memory segment",
        }
    }
}

/// Live (key, id) pairs of one kind in the calling thread's IPC namespace;
/// none if the kernel has no System V IPC.
fn sysv_entries(kind: SysvKind) -> Vec<(i32, i32)> {
    std::fs::read_to_string(kind.proc_file())
        .map(|text| parse_sysvipc(&text, kind))
        .unwrap_or_default()
}

/// Parses `/proc/sysvipc/{msg,sem,shm}`: a header line, then one line per
/// object whose columns start `key id perms`. Segments already removed
/// (`SHM_DEST`) but still attached are skipped: the program did remove them.
fn parse_sysvipc(text: &str, kind: SysvKind) -> Vec<(i32, i32)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let key = cols.next()?.parse().ok()?;
            let id = cols.next()?.parse().ok()?;
            let perms = u32::from_str_radix(cols.next()?, 8).ok()?;
            (kind != SysvKind::Shm || perms & SHM_DEST == 0).then_some((key, id))
        })
        .collect()
}

fn sysv_remove(kind: SysvKind, id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID takes no buffer (a null pointer for msgctl and
    // shmctl; semctl's variadic argument is not read), so no memory is
    // shared with the kernel; an invalid id is an error, not UB.
    let rc = unsafe {
        match kind {
            SysvKind::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::Sem => libc::semctl(id, 0, libc::IPC_RMID),
            SysvKind::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

// ----- processes ---------------------------------------------------------

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    pid: i32,
    command: String,
    state: char,
    ppid: i32,
    pgid: i32,
    threads: u64,
    start_time: u64,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid pgrp session ...` with
/// the number of threads in field 20 and the start time in field 22. The
/// command name may contain spaces and `)`, so the fields are counted from
/// the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let command = text.get(open + 1..close)?.to_owned();
    // Fields 3.. (state is field 3, threads field 20, start time 22).
    let mut rest = super::procfs::stat_fields(text)?;
    Some(Stat {
        pid,
        command,
        state: rest.next()?.chars().next()?,
        ppid: rest.next()?.parse().ok()?,
        pgid: rest.next()?.parse().ok()?,
        threads: rest.nth(14)?.parse().ok()?,
        start_time: rest.nth(1)?.parse().ok()?,
    })
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process of the round, zombies included, from its census alone (no
/// sweep of `/proc`): its live members, when their threads add up to the
/// tasks the census counts, before and after they were read. Zombies are
/// not members but are counted, so a zombie (or a process that came or went
/// meanwhile) makes the sums differ: `None` then, and whoever asked sweeps.
fn census_processes(census: &Census) -> Option<Vec<Stat>> {
    let before = census.tasks()?;
    if before == 0 {
        return Some(Vec::new());
    }
    let live: Vec<Stat> = census.live()?.into_iter().filter_map(read_stat).collect();
    let threads: u64 = live.iter().map(|p| p.threads).sum();
    (threads == before && census.tasks()? == before).then_some(live)
}

/// Every process on the machine (that `/proc` shows us).
fn all_processes() -> Vec<Stat> {
    super::procfs::pids()
        .into_iter()
        .filter_map(read_stat)
        .collect()
}

/// Members of the groups `pgids`, and their descendants wherever they
/// moved (`setsid`, `setpgid`), never the grader itself. A descendant whose
/// parent already died was re-parented to the grader (a subreaper) and can
/// no longer be told from the grader's other children: it is found only
/// while it stays in its group, or, when the test has a user of its own,
/// by that user (`escaped`: its pids outside every group of the test).
/// `all`: every process on the machine, as [`all_processes`] read them.
fn processes_of(all: &[Stat], pgids: &[Pid], escaped: &[i32]) -> Vec<LeftProcess> {
    if pgids.is_empty() && escaped.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let mut children: HashMap<i32, Vec<&Stat>> = HashMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut included: HashSet<i32> = HashSet::new();
    let mut pending: Vec<&Stat> = all
        .iter()
        .filter(|p| pgids.iter().any(|g| g.as_raw() == p.pgid) || escaped.contains(&p.pid))
        .collect();
    let mut found = Vec::new();
    while let Some(p) = pending.pop() {
        if p.pid == me || !included.insert(p.pid) {
            continue;
        }
        found.push(LeftProcess {
            pid: p.pid,
            pgid: p.pgid,
            state: p.state,
            command: p.command.clone(),
            zombie: p.state == 'Z',
            start_time: p.start_time,
        });
        pending.extend(children.get(&p.pid).into_iter().flatten());
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Whether `p` is still in the process table (zombies included), and not
/// replaced by a later process with the same pid.
fn still_there(p: &LeftProcess) -> bool {
    read_stat(p.pid).is_some_and(|s| s.start_time == p.start_time)
}

/// SIGKILLs the processes and their groups, reaps those that are the
/// grader's children (its own, or re-parented to it as subreaper), and waits
/// for all of them to leave the process table.
fn kill_and_reap(processes: &[LeftProcess]) -> Vec<String> {
    if processes.is_empty() {
        return Vec::new();
    }
    let own = nix::unistd::getpgrp().as_raw();
    let me = std::process::id() as i32;
    let groups: BTreeSet<i32> = processes
        .iter()
        .map(|p| p.pgid)
        .filter(|&g| g > 1 && g != own)
        .collect();
    let kill_all = || {
        for &g in &groups {
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
        }
        for p in processes {
            // Checked just before, so that a reused pid is not killed.
            if p.pid != me && !p.zombie && still_there(p) {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
    };
    kill_all();
    let gone = poll_until(Deadline::after(KILL_GRACE), || {
        for &g in &groups {
            reap(Pid::from_raw(-g));
        }
        for p in processes {
            reap(Pid::from_raw(p.pid));
        }
        // A member forked while the group was being killed gets killed too.
        let alive = processes_of(
            &all_processes(),
            &groups.iter().map(|&g| Pid::from_raw(g)).collect::<Vec<_>>(),
            &[],
        );
        if alive.iter().any(|p| !p.zombie) {
            kill_all();
        }
        (alive.is_empty() && !processes.iter().any(still_there)).then_some(())
    });
    if gone.is_some() {
        return Vec::new();
    }
    processes
        .iter()
        .filter(|p| still_there(p))
        .map(|p| match read_stat(p.pid) {
            Some(s) if s.state == 'Z' => format!(
                "zombie process {} ({}) was not reaped: its parent {} does not wait for it",
                p.pid, p.command, s.ppid
            ),
            Some(s) => format!(
                "process {} ({}) survived SIGKILL (state {})",
                p.pid, p.command, s.state
            ),
            None => format!("process {} ({}) could not be removed", p.pid, p.command),
        })
        .collect()
}

/// Reaps whatever has exited among `who` (a pid, or `-pgid`), if they are
/// our children; others are reaped by their own parents.
fn reap(who: Pid) {
    while let Ok(status) = waitpid(who, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n\
                                0          3   600           0          0     0     0     0     0     0     0          0          0 1732560000\n\
                       1234567890      32769   666          16          1   411     0  1000  1000  1000  1000 1732560001          0 1732560000\n";
    const SEM: &str = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                                0          7   600           3     0     0     0     0          0 1732560000\n";
    const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                                0         11   600                  4096   100   100      0     0     0     0     0          0          0 1732560000                     0                     0\n\
                                0         12  1600                  4096   100   100      1     0     0     0     0 1732560000          0 1732560000                  4096                     0\n\
                       -559038737         13   644                  4096   100   100      0     0     0     0     0          0          0 1732560000                     0                     0\n";

    #[test]
    fn parses_sysvipc_ids_from_the_second_column() {
        assert_eq!(
            parse_sysvipc(MSG, SysvKind::Msg),
            vec![(0, 3), (1234567890, 32769)]
        );
        assert_eq!(parse_sysvipc(SEM, SysvKind::Sem), vec![(0, 7)]);
    }

    #[test]
    fn skips_removed_but_attached_segments() {
        assert_eq!(
            parse_sysvipc(SHM, SysvKind::Shm),
            vec![(0, 11), (-559038737, 13)]
        );
    }

    #[test]
    fn a_header_alone_or_garbage_is_no_ids() {
        let header = MSG.lines().next().unwrap();
        assert!(parse_sysvipc(header, SysvKind::Msg).is_empty());
        assert!(parse_sysvipc("", SysvKind::Sem).is_empty());
        assert!(parse_sysvipc("header\nnot numbers here\n", SysvKind::Shm).is_empty());
    }

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let text = "4242 (a) b) (c) S 1 4240 4240 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 3 0 987654 4000 100\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                command: "a) b) (c".into(),
                state: 'S',
                ppid: 1,
                pgid: 4240,
                threads: 3,
                start_time: 987654,
            }
        );
    }

    #[test]
    fn describes_each_kind() {
        let leftovers = Leftovers {
            processes: vec![LeftProcess {
                pid: 10,
                pgid: 10,
                state: 'Z',
                command: "child".into(),
                zombie: true,
                start_time: 1,
            }],
            posix_shm: vec!["counter-1".into()],
            posix_sem: vec!["sem.mutex-1".into()],
            sysv_msg: vec![5],
            ..Leftovers::default()
        };
        let lines = leftovers.describe();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("zombie process 10 (child)"));
        assert!(lines[1].contains("/dev/shm/counter-1"));
        assert!(lines[2].contains("\"/mutex-1\""));
        assert!(lines[3].contains("msqid 5"));
        assert!(!leftovers.is_empty());
        assert!(Leftovers::default().is_empty());
    }
}
