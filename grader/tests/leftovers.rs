//! Cleanup checks against real kernel objects: a FIFO, a Unix socket file,
//! POSIX shared memory and a named semaphore, System V message queues,
//! semaphore sets and shared memory segments, and live processes.
//!
//! `/dev/shm` and System V IPC are machine-wide, so every test here takes
//! one lock: `find` must see only the objects of the test that calls it.
//! Each test also owns a [`Cleanup`] guard that removes its objects with
//! plain libc calls (not with the code under test) even when it fails.

use std::ffi::CString;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use cargo_grade::harness::deadline::{poll_until, Deadline};
use cargo_grade::harness::leftovers::{Baseline, Leftovers, Scope};
use cargo_grade::harness::Sandbox;
use nix::sys::signal::{killpg, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file, and makes this process a subreaper
/// like the grader, so orphans of killed processes come back to be reaped
/// (PID 1 of a container does not always reap).
fn serial() -> MutexGuard<'static, ()> {
    cargo_grade::become_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The host's namespaces, with this process's objects (named `cg-test-PID-...`,
/// System V objects made with IPC_PRIVATE) as the test's.
fn host(workdir: &Path) -> Scope<'_> {
    static HOST: LazyLock<Sandbox> = LazyLock::new(Sandbox::host);
    static TOKEN: LazyLock<String> = LazyLock::new(|| format!("cg-test-{}-", std::process::id()));
    Scope {
        workdir,
        sandbox: &HOST,
        token: &TOKEN,
        key: libc::IPC_PRIVATE,
        groups: &[],
    }
}

/// A name no other test, or other run, uses.
fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("cg-test-{}-{tag}-{n}", std::process::id())
}

/// Everything a test created, removed on drop with plain libc calls.
#[derive(Default)]
struct Cleanup {
    shm: Vec<String>,
    sem: Vec<String>,
    msg_ids: Vec<i32>,
    sem_ids: Vec<i32>,
    shm_ids: Vec<i32>,
    children: Vec<Child>,
}

impl Cleanup {
    /// A POSIX shared memory object `/NAME`; returns NAME.
    fn posix_shm(&mut self, tag: &str) -> String {
        let name = unique(tag);
        let c = CString::new(format!("/{name}")).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string; the returned
        // descriptor is closed right away.
        let fd = unsafe {
            libc::shm_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            )
        };
        assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
        self.shm.push(name.clone());
        // SAFETY: `fd` was just opened by this function and is not used after.
        unsafe { libc::close(fd) };
        name
    }

    /// A named POSIX semaphore `/NAME`; returns NAME.
    fn posix_sem(&mut self, tag: &str) -> String {
        let name = unique(tag);
        let c = CString::new(format!("/{name}")).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string; sem_open with
        // O_CREAT reads exactly a mode and an initial value.
        let sem = unsafe {
            libc::sem_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::c_uint,
                1 as libc::c_uint,
            )
        };
        assert!(
            sem != libc::SEM_FAILED,
            "sem_open: {}",
            std::io::Error::last_os_error()
        );
        self.sem.push(name.clone());
        // SAFETY: `sem` came from a successful sem_open and is not used after.
        unsafe { libc::sem_close(sem) };
        name
    }

    fn msg_queue(&mut self) -> i32 {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "msgget: {}", std::io::Error::last_os_error());
        self.msg_ids.push(id);
        id
    }

    fn sem_set(&mut self) -> i32 {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "semget: {}", std::io::Error::last_os_error());
        self.sem_ids.push(id);
        id
    }

    fn shm_segment(&mut self) -> i32 {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        self.shm_ids.push(id);
        id
    }

    /// `sh -c SCRIPT` in its own process group; returns its pid (= pgid).
    fn group(&mut self, script: &str) -> Pid {
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .expect("spawn /bin/sh");
        let pid = Pid::from_raw(child.id() as i32);
        self.children.push(child);
        pid
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.shm {
            let c = CString::new(format!("/{name}")).unwrap();
            // SAFETY: a valid NUL-terminated string; failure (already gone) is fine.
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
        for name in &self.sem {
            let c = CString::new(format!("/{name}")).unwrap();
            // SAFETY: as above.
            unsafe { libc::sem_unlink(c.as_ptr()) };
        }
        for &id in &self.msg_ids {
            // SAFETY: IPC_RMID takes no buffer; an id already gone is an
            // error, which is ignored.
            unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
        for &id in &self.sem_ids {
            // SAFETY: as above (the variadic argument is not read).
            unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
        }
        for &id in &self.shm_ids {
            // SAFETY: as above.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
        for child in &self.children {
            let pgid = Pid::from_raw(child.id() as i32);
            let _ = killpg(pgid, Signal::SIGKILL);
            // Blocks only on members that are our children; SIGKILL is prompt.
            while waitpid(Pid::from_raw(-pgid.as_raw()), None).is_ok() {}
        }
    }
}

/// The ids `/proc/sysvipc/KIND` lists (second column), parsed independently
/// of the code under test.
fn listed_ids(kind: &str) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/sysvipc/{kind}"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn dev_shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn reports_exactly_what_the_test_created_and_removes_it_all() {
    let _serial = serial();
    let mut made = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();

    // Objects that exist before the baseline: never reported, never removed.
    let old_fifo = dir.path().join("old.fifo");
    nix::unistd::mkfifo(&old_fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let old_shm = made.posix_shm("old-shm");
    let old_sem = made.posix_sem("old-sem");
    let old_msg = made.msg_queue();
    let old_semset = made.sem_set();
    let old_seg = made.shm_segment();

    let baseline = Baseline::capture(&host(dir.path()));

    // What "the test" leaves behind.
    std::fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
    let fifo = dir.path().join("nested/deeper/chat.fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let socket = dir.path().join("echo.sock");
    drop(UnixListener::bind(&socket).unwrap());
    std::fs::write(dir.path().join("plain.txt"), "not an IPC object").unwrap();
    let shm = made.posix_shm("counter");
    let sem = made.posix_sem("mutex");
    let msg = made.msg_queue();
    let semset = made.sem_set();
    let seg = made.shm_segment();
    let pgid = made.group("exec sleep 30");

    let found = Leftovers::find(&baseline, &host(dir.path()), &[pgid]);

    assert_eq!(found.processes.len(), 1, "{found:#?}");
    let proc = &found.processes[0];
    assert_eq!(proc.pid, pgid.as_raw());
    assert_eq!(proc.pgid, pgid.as_raw());
    assert!(!proc.zombie);
    // `sh` until the exec, `sleep` after.
    assert!(["sh", "sleep"].contains(&proc.command.as_str()), "{proc:?}");
    assert_eq!(
        Leftovers {
            processes: Vec::new(),
            ..found.clone()
        },
        Leftovers {
            processes: Vec::new(),
            fifos: vec![fifo.clone()],
            sockets: vec![socket.clone()],
            posix_shm: vec![shm.clone()],
            posix_sem: vec![format!("sem.{sem}")],
            sysv_msg: vec![msg],
            sysv_sem: vec![semset],
            sysv_shm: vec![seg],
        }
    );
    assert!(!found.is_empty());

    let described = found.describe().join("\n");
    for needle in [
        format!("process {}", pgid.as_raw()),
        format!("FIFO {}", fifo.display()),
        format!("Unix socket file {}", socket.display()),
        format!("POSIX shared memory \"/{shm}\""),
        format!("POSIX named semaphore \"/{sem}\""),
        format!("msqid {msg}"),
        format!("semid {semset}"),
        format!("shmid {seg}"),
    ] {
        assert!(described.contains(&needle), "{needle:?} in\n{described}");
    }
    assert_eq!(found.describe().len(), 8, "{described}");

    assert_eq!(found.remove(&host(dir.path())), Vec::<String>::new());

    let again = Leftovers::find(&baseline, &host(dir.path()), &[pgid]);
    assert!(again.is_empty(), "{again:#?}");
    assert!(!process_exists(pgid.as_raw()), "the sleep was not reaped");
    assert!(!fifo.exists() && !socket.exists());
    assert!(!dev_shm(&shm).exists() && !dev_shm(&format!("sem.{sem}")).exists());
    assert!(!listed_ids("msg").contains(&msg));
    assert!(!listed_ids("sem").contains(&semset));
    assert!(!listed_ids("shm").contains(&seg));

    // The older objects are untouched.
    assert!(old_fifo.exists());
    assert!(dev_shm(&old_shm).exists());
    assert!(dev_shm(&format!("sem.{old_sem}")).exists());
    assert!(listed_ids("msg").contains(&old_msg));
    assert!(listed_ids("sem").contains(&old_semset));
    assert!(listed_ids("shm").contains(&old_seg));
}

#[test]
fn finds_zombies_and_descendants_that_left_the_group() {
    let _serial = serial();
    let mut made = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let baseline = Baseline::capture(&host(dir.path()));

    // A child that escapes into its own session, a child that exits and is
    // never waited for (sleep does not reap), and the group leader.
    let pgid = made.group("setsid sleep 30 & /bin/true & exec sleep 30");
    let found = poll_until(Deadline::after_ms(10_000), || {
        let found = Leftovers::find(&baseline, &host(dir.path()), &[pgid]);
        let zombie = found.processes.iter().any(|p| p.zombie);
        let escaped = found
            .processes
            .iter()
            .any(|p| p.pgid != pgid.as_raw() && p.command == "sleep");
        let leader_exec = found
            .processes
            .iter()
            .any(|p| p.pid == pgid.as_raw() && p.command == "sleep");
        (escaped && zombie && leader_exec).then_some(found)
    })
    .expect("an escaped child, a zombie and the leader");
    assert_eq!(found.processes.len(), 3, "{found:#?}");
    let escaped = found
        .processes
        .iter()
        .find(|p| p.pgid != pgid.as_raw())
        .unwrap();
    assert_eq!(escaped.command, "sleep");
    assert_eq!(escaped.pgid, escaped.pid, "setsid makes it a group leader");
    let zombie = found.processes.iter().find(|p| p.zombie).unwrap();
    assert_eq!(zombie.state, 'Z');
    assert_eq!(zombie.pgid, pgid.as_raw());

    let described = found.describe().join("\n");
    assert!(
        described.contains(&format!("zombie process {}", zombie.pid)),
        "{described}"
    );
    assert!(
        described.contains(&format!("process {} (sleep) still running", escaped.pid)),
        "{described}"
    );

    // The JSON form flags zombies and leaves out internal bookkeeping.
    let json = serde_json::to_value(&found).unwrap();
    assert_eq!(json["processes"][0]["zombie"].as_bool(), Some(false));
    assert!(json["processes"][0].get("start_time").is_none());

    assert_eq!(found.remove(&host(dir.path())), Vec::<String>::new());
    for p in &found.processes {
        assert!(!process_exists(p.pid), "{p:?} survived");
    }
    assert!(Leftovers::find(&baseline, &host(dir.path()), &[pgid]).is_empty());
}

#[test]
fn a_name_deleted_and_created_again_during_the_test_is_new() {
    let _serial = serial();
    let mut made = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let name = made.posix_shm("recreated");
    let fifo = dir.path().join("stale.fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();

    let baseline = Baseline::capture(&host(dir.path()));
    // What a program that "cleans up stale objects at start" does. The
    // filesystem may give the new file the old one's inode number (ext4
    // does at once), so the name and inode alone do not tell them apart.
    std::fs::remove_file(dev_shm(&name)).unwrap();
    std::fs::write(dev_shm(&name), "").unwrap();
    std::fs::remove_file(&fifo).unwrap();
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();

    let found = Leftovers::find(&baseline, &host(dir.path()), &[]);
    assert_eq!(found.posix_shm, vec![name]);
    assert_eq!(found.fifos, vec![fifo]);
    assert_eq!(found.remove(&host(dir.path())), Vec::<String>::new());
}

#[test]
fn a_segment_removed_while_attached_is_not_a_leftover() {
    let _serial = serial();
    let mut made = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    let baseline = Baseline::capture(&host(dir.path()));

    let seg = made.shm_segment();
    // SAFETY: attaches a fresh 4096-byte segment at an address the kernel
    // picks; nothing reads or writes through it.
    let addr = unsafe { libc::shmat(seg, std::ptr::null(), 0) };
    assert_ne!(
        addr as isize,
        -1,
        "shmat: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(
        Leftovers::find(&baseline, &host(dir.path()), &[]).sysv_shm,
        vec![seg]
    );

    // SAFETY: IPC_RMID takes no buffer.
    let rc = unsafe { libc::shmctl(seg, libc::IPC_RMID, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    // Still attached, so still listed by the kernel (marked for destruction).
    assert!(listed_ids("shm").contains(&seg));
    let found = Leftovers::find(&baseline, &host(dir.path()), &[]);
    // SAFETY: `addr` is the attachment made above, not used after.
    unsafe { libc::shmdt(addr) };
    assert!(found.is_empty(), "{found:#?}");
    assert!(!listed_ids("shm").contains(&seg));
}

#[test]
fn nothing_created_is_nothing_left_and_the_graders_own_group_is_ignored() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let baseline = Baseline::capture(&host(dir.path()));
    let own = nix::unistd::getpgrp();
    let found = Leftovers::find(&baseline, &host(dir.path()), &[own]);
    assert!(found.is_empty(), "{found:#?}");
    assert!(found.describe().is_empty());
    assert!(found.remove(&host(dir.path())).is_empty());
}
