//! PROVISIONAL (replaced by the intake branch): crate directories only.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    Zip,
    TarGz,
}

#[derive(Debug)]
pub enum Listed {
    Entry(Entry),
    Rejected { name: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot list {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct Opened {
    pub crate_dir: PathBuf,
    pub digest: String,
}

#[derive(Debug)]
pub struct Rejection {
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Caps {
    pub max_files: usize,
}

pub fn list(submissions: &Path) -> Result<Vec<Listed>, IntakeError> {
    let entries = std::fs::read_dir(submissions).map_err(|source| IntakeError::Unreadable {
        path: submissions.to_owned(),
        source,
    })?;
    let mut out: Vec<Listed> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            Listed::Entry(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                path: e.path(),
                kind: EntryKind::Dir,
            })
        })
        .collect();
    out.sort_by_key(|l| match l {
        Listed::Entry(e) => e.name.clone(),
        Listed::Rejected { name, .. } => name.clone(),
    });
    Ok(out)
}

pub fn open(
    entry: &Entry,
    _slug: &str,
    _binary: &str,
    _scratch: &Path,
    _caps: &Caps,
) -> Result<Opened, Rejection> {
    let main = entry.path.join("src/main.rs");
    let text = std::fs::read(&main).map_err(|e| Rejection {
        reason: format!("no crate inside ({e})"),
    })?;
    Ok(Opened {
        crate_dir: entry.path.clone(),
        digest: crate::spec::sha256_hex(&text),
    })
}
