//! Scratch directories in the temporary directory, named after the grader
//! process that made them (`cargo-grade-PID-...`, `cargo-grade-bin-PID-...`).
//!
//! A grader that is killed (SIGKILL, an out-of-memory kill, a CI job
//! cancelled) cannot remove its own; the next grader removes those of every
//! grader that is gone ([`remove_stale`]). A directory whose pid is alive is
//! never touched, whatever process now has that pid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

const PREFIX: &str = "cargo-grade-";

/// A fresh directory `cargo-grade-{kind}PID-XXXXXX` with `mode`.
pub fn create(kind: &str, mode: u32) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{kind}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempdir()
}

/// The pid in a scratch directory's name, if it is one.
pub(crate) fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix("bin-").unwrap_or(rest);
    let (pid, random) = rest.split_once('-')?;
    (!random.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Removes the scratch directories of graders that are no longer running
/// (and their memory cgroups, named alike). Returns how many it removed.
pub fn remove_stale() -> usize {
    remove_stale_in(&std::env::temp_dir()) + super::cgroup::remove_stale()
}

/// Whether no process has `pid`.
pub(crate) fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn remove_stale_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && gone(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_of_their_grader() {
        assert_eq!(owner("cargo-grade-123-abc"), Some(123));
        assert_eq!(owner("cargo-grade-bin-77-x1"), Some(77));
        assert_eq!(owner("cargo-grade-snapshot"), None);
        assert_eq!(owner("cargo-grade-12-"), None);
        assert_eq!(owner("other-123-abc"), None);
    }

    #[test]
    fn removes_only_what_a_dead_grader_left() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum is never alive.
        let dead = tmp.path().join("cargo-grade-bin-99999999-aaaa");
        let mine = tmp
            .path()
            .join(format!("cargo-grade-{}-bbbb", std::process::id()));
        let unrelated = tmp.path().join("cargo-grade-notes");
        for dir in [&dead, &mine, &unrelated] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(dead.join("task1-signals"), b"binary").unwrap();
        assert_eq!(remove_stale_in(tmp.path()), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && unrelated.exists());
    }
}
