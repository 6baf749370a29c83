//! Intake of a batch's submissions (issue 11, sections 2 and 3): listing the
//! entries of a SUBMISSIONS directory, and making each one's crate available
//! to the builder.
//!
//! An entry is a crate directory, a checkout of the course repository, or an
//! archive (`.zip`, `.tar.gz`, `.tgz`) as learning-management systems export
//! them. Archives are untrusted input: [`open`] extracts only regular files
//! and directories, through directory descriptors opened with `O_NOFOLLOW`,
//! into the scratch directory it is given, and refuses the whole submission
//! (a [`Rejection`], for that submission alone) at the first entry that is a
//! link, a device, a FIFO or a socket, that names a path outside, that is not
//! valid UTF-8, or that takes the archive past its [`Caps`] (counted on the
//! bytes actually decompressed, not on what the headers claim). Nothing is
//! ever written outside the scratch directory.
//!
//! The extraction is in `archive`, built with the feature
//! `instructor-tools` only; listing, finding the crate and the [`digest`]
//! (which the builder and watch mode use too) are always built.
//!
//! Every reason is one plain line for `grades.csv`: it names entries by their
//! path inside the submission, never a path of the grader's.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hmac_sha256::Hash as Sha256;

#[cfg(feature = "instructor-tools")]
mod archive;

/// One entry of SUBMISSIONS: a submission to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's file name without its archive extension: the
    /// submission's name in `grades.csv` and in the output directory.
    pub name: String,
    pub path: PathBuf,
    pub kind: EntryKind,
}

/// What an entry of SUBMISSIONS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory: a crate, a course checkout, or a folder wrapping one.
    Dir,
    /// A `.zip` archive.
    Zip,
    /// A gzip-compressed tar archive (`.tar.gz` or `.tgz`).
    TarGz,
}

/// One entry of SUBMISSIONS as [`list`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// A submission to [`open`].
    Entry(Entry),
    /// An entry that cannot be a submission (its name is not valid UTF-8 or
    /// not a safe file name, it is not a directory or a known archive, ...):
    /// rejected on its own, the batch goes on. The name is for display (a
    /// row of `grades.csv`); unlike an [`Entry`]'s it need not be a safe file
    /// name, so name no file after it.
    Rejected { name: String, reason: String },
}

impl Listed {
    /// The submission's name (for a rejected entry, its file name, with any
    /// byte that is not UTF-8 written `\xNN`).
    pub fn name(&self) -> &str {
        match self {
            Listed::Entry(entry) => &entry.name,
            Listed::Rejected { name, .. } => name,
        }
    }
}

/// A batch-level error: the batch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot read the submissions directory {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "two submissions are named {name:?}: {first:?} and {second:?} in {}; rename or remove one",
        dir.display()
    )]
    Duplicate {
        name: String,
        first: String,
        second: String,
        dir: PathBuf,
    },
}

/// Limits on what an archive may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Files and directories, those an archive lists and those its paths
    /// imply.
    pub max_files: usize,
    /// Bytes of file content, counted as they are decompressed.
    pub max_bytes: u64,
    /// Bytes of file content per byte of the archive file, once the content
    /// passes 1 MiB (a small archive may compress well).
    pub max_ratio: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_files: 2000,
            max_bytes: 64 << 20,
            max_ratio: 200,
        }
    }
}

/// A submission made available to the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The crate directory (it has `src/main.rs`): inside the entry for a
    /// directory, inside the scratch directory for an archive.
    pub crate_dir: PathBuf,
    /// See [`digest`].
    pub digest: String,
}

/// Why a submission is refused: one plain line, for `grades.csv`'s `reason`
/// column and the student.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    /// A rejection; control characters in `reason` become spaces, so that it
    /// is one line whatever names it quotes.
    pub fn new(reason: impl Into<String>) -> Rejection {
        let reason: String = reason
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Rejection { reason }
    }
}

/// Why [`open`] gave no crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The submission is refused: status `rejected`, with the reason.
    #[error("{0}")]
    Rejected(Rejection),
    /// The grader or the machine failed (the archive could not be read from
    /// SUBMISSIONS, the scratch directory could not be written, the disk is
    /// full): status `ungradable`, never the student's fault. The message may
    /// name the grader's paths.
    #[error("{0}")]
    Machine(String),
}

impl OpenError {
    /// The rejection, if the submission was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            OpenError::Rejected(r) => Some(r),
            OpenError::Machine(_) => None,
        }
    }
}

fn reject(reason: impl Into<String>) -> OpenError {
    OpenError::Rejected(Rejection::new(reason))
}

fn machine(what: impl fmt::Display, e: impl fmt::Display) -> OpenError {
    OpenError::Machine(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------
// Listing

/// Lists SUBMISSIONS: every entry but hidden ones (`.*`), named by its file
/// name without the archive extension (`.zip`, `.tar.gz`, `.tgz`, in any
/// case), sorted by name. An entry that cannot be a submission is a
/// [`Listed::Rejected`]; two entries of the same name are an error that names
/// both.
pub fn list(submissions: &Path) -> Result<Vec<Listed>, IntakeError> {
    let unreadable = |source| IntakeError::Unreadable {
        path: submissions.to_owned(),
        source,
    };
    let mut found: Vec<(Listed, String)> = Vec::new();
    for dirent in fs::read_dir(submissions).map_err(unreadable)? {
        let dirent = dirent.map_err(unreadable)?;
        let file_name = dirent.file_name();
        if file_name.as_bytes().starts_with(b".") {
            continue;
        }
        let shown = escape(file_name.as_bytes());
        found.push((classify(&file_name, dirent.path()), shown));
    }
    found.sort_by(|a, b| a.0.name().cmp(b.0.name()).then_with(|| a.1.cmp(&b.1)));
    if let Some(pair) = found.windows(2).find(|w| w[0].0.name() == w[1].0.name()) {
        return Err(IntakeError::Duplicate {
            name: pair[0].0.name().to_owned(),
            first: pair[0].1.clone(),
            second: pair[1].1.clone(),
            dir: submissions.to_owned(),
        });
    }
    Ok(found.into_iter().map(|(listed, _)| listed).collect())
}

const ARCHIVES: [(&str, EntryKind); 3] = [
    (".tar.gz", EntryKind::TarGz),
    (".tgz", EntryKind::TarGz),
    (".zip", EntryKind::Zip),
];

fn classify(file_name: &OsStr, path: PathBuf) -> Listed {
    let rejected = |name: &str, reason: String| Listed::Rejected {
        name: name.to_owned(),
        reason: Rejection::new(reason).reason,
    };
    let Some(file_name) = file_name.to_str() else {
        return rejected(
            &escape(file_name.as_bytes()),
            "its name is not valid UTF-8; rename it".to_owned(),
        );
    };
    let file_type = match fs::symlink_metadata(&path) {
        Ok(meta) => meta.file_type(),
        Err(e) => return rejected(file_name, format!("cannot be read: {e}")),
    };
    let (name, kind) = if file_type.is_dir() {
        (file_name, EntryKind::Dir)
    } else if file_type.is_file() {
        let lower = file_name.to_ascii_lowercase();
        match ARCHIVES.iter().find(|(ext, _)| lower.ends_with(ext)) {
            Some((ext, kind)) => (&file_name[..file_name.len() - ext.len()], *kind),
            None => {
                return rejected(
                    file_name,
                    "is not a submission: the grader takes a directory or a .zip, .tar.gz or .tgz archive"
                        .to_owned(),
                )
            }
        }
    } else if file_type.is_symlink() {
        return rejected(
            file_name,
            "is a symbolic link; put the submission itself in the submissions directory".to_owned(),
        );
    } else {
        return rejected(
            file_name,
            "is not a directory or a regular file (a FIFO, socket or device)".to_owned(),
        );
    };
    if let Err(why) = check_name(name) {
        return rejected(
            name,
            format!("its name {name:?} is not a safe file name ({why}); rename it"),
        );
    }
    Listed::Entry(Entry {
        name: name.to_owned(),
        path,
        kind,
    })
}

/// Whether `name` can name a submission: a file in the output directory, a
/// row of `grades.csv`, a word in a command line.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return Err("it starts with a dot");
    }
    if name.starts_with('-') {
        return Err("it starts with a dash");
    }
    if name.trim() != name {
        return Err("it starts or ends with a space");
    }
    if name.len() > 200 {
        return Err("it is longer than 200 bytes");
    }
    for c in name.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            return Err("it has a control or invisible character");
        }
        if matches!(
            c,
            '/' | '\\' | '"' | '*' | '?' | '<' | '>' | '|' | ':' | '$' | '`'
        ) {
            return Err("it has one of / \\ \" * ? < > | : $ `");
        }
    }
    Ok(())
}

/// `bytes` as text, each byte that is not UTF-8 written `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Opening

/// Makes the submission's crate available: for a directory, finds the crate
/// in it (in place); for an archive, extracts it into `scratch` (an empty
/// directory the caller owns and removes, whatever the outcome) and finds the
/// crate there. See [`find_crate`] and [`digest`].
pub fn open(
    entry: &Entry,
    slug: &str,
    binary: &str,
    scratch: &Path,
    caps: &Caps,
) -> Result<Opened, OpenError> {
    let root = match entry.kind {
        EntryKind::Dir => entry.path.clone(),
        #[cfg(feature = "instructor-tools")]
        EntryKind::Zip => {
            archive::extract_zip(&entry.path, scratch, caps)?;
            scratch.to_owned()
        }
        #[cfg(feature = "instructor-tools")]
        EntryKind::TarGz => {
            archive::extract_tar_gz(&entry.path, scratch, caps)?;
            scratch.to_owned()
        }
        #[cfg(not(feature = "instructor-tools"))]
        EntryKind::Zip | EntryKind::TarGz => {
            let _ = scratch;
            return Err(OpenError::Machine(format!(
                "cannot open {}: this build of cargo grade reads no archives (it was built without the feature `instructor-tools`)",
                entry.path.display()
            )));
        }
    };
    let crate_dir = find_crate(&root, slug, binary)?;
    let digest = digest(&crate_dir, caps)?;
    Ok(Opened { crate_dir, digest })
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

// ---------------------------------------------------------------------------
// Finding the crate

/// Folders that are never a submission's crate, nor lead to one.
fn ignored(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b".") || name == b"__MACOSX" || name == b"target" || name == b"node_modules"
}

/// Whether `root/rel` is a directory reached through directories only (no
/// symbolic link on the way).
fn real_dir(root: &Path, rel: &[&str]) -> bool {
    let mut path = root.to_owned();
    for part in rel {
        path.push(part);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return false;
        }
    }
    true
}

/// Whether `root/rel` is a crate directory: `src/main.rs` a regular file in
/// a real `src/`, reached through directories only.
fn is_crate(root: &Path, rel: &[&str]) -> bool {
    let mut src: Vec<&str> = rel.to_vec();
    src.push("src");
    real_dir(root, &src)
        && fs::symlink_metadata(below(root, &src).join("main.rs")).is_ok_and(|m| m.is_file())
}

fn below(root: &Path, rel: &[&str]) -> PathBuf {
    let mut path = root.to_owned();
    path.extend(rel);
    path
}

/// The only folder directly inside `root` (hidden folders and `__MACOSX`
/// aside), if there is exactly one: the folder GitHub and LMS archives wrap
/// everything in.
fn wrapper(root: &Path) -> Option<String> {
    let mut dirs = fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| !ignored(&e.file_name()))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name());
    let only = dirs.next()?;
    if dirs.next().is_some() {
        return None;
    }
    only.into_string().ok()
}

/// Limits of the search for a Cargo.toml.
const SEARCH_DEPTH: usize = 6;
const SEARCH_DIRS: usize = 5000;
const MAX_MANIFEST: u64 = 256 << 10;

/// Finds the task's crate in `root` (a submission directory or an extracted
/// archive), the first of:
/// 1. `root` itself, if it has `src/main.rs`;
/// 2. a course checkout: `starter/<slug>/` with `src/main.rs`, in `root` or
///    in its only folder;
/// 3. its only folder, if that is a crate;
/// 4. the one directory below (not hidden, not `target/`) whose Cargo.toml's
///    package or `[[bin]]` is named `binary`.
///
/// Symbolic links are never followed.
pub fn find_crate(root: &Path, slug: &str, binary: &str) -> Result<PathBuf, OpenError> {
    let wrap = wrapper(root);
    let mut tries: Vec<Vec<&str>> = vec![vec![], vec!["starter", slug]];
    if let Some(wrap) = wrap.as_deref() {
        tries.push(vec![wrap, "starter", slug]);
        tries.push(vec![wrap]);
    }
    if let Some(rel) = tries.iter().find(|rel| is_crate(root, rel)) {
        return Ok(below(root, rel));
    }
    let found = search(root, binary);
    match found.as_slice() {
        [] => Err(reject(format!(
            "no crate for task {slug} inside (looked for src/main.rs, starter/{slug}/src/main.rs, \
             the same in one wrapping folder, and a Cargo.toml for the binary {binary})"
        ))),
        [rel] => {
            let parts: Vec<&str> = rel.split('/').filter(|p| *p != ".").collect();
            if is_crate(root, &parts) {
                Ok(below(root, &parts))
            } else {
                Err(reject(format!(
                    "{rel}/Cargo.toml is the crate for {binary} but it has no src/main.rs"
                )))
            }
        }
        several => Err(reject(format!(
            "several crates for the binary {binary} inside ({}): submit one",
            several.join(", ")
        ))),
    }
}

/// The directories below `root` (relative, sorted) whose Cargo.toml names
/// `binary`.
fn search(root: &Path, binary: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut queue: std::collections::VecDeque<(PathBuf, String, usize)> =
        [(root.to_owned(), String::new(), 0)].into();
    let mut visited = 0;
    while let Some((dir, rel, depth)) = queue.pop_front() {
        visited += 1;
        if visited > SEARCH_DIRS {
            break;
        }
        if manifest_names(&dir.join("Cargo.toml"), binary) {
            found.push(if rel.is_empty() {
                ".".to_owned()
            } else {
                rel.clone()
            });
        }
        if depth == SEARCH_DEPTH {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs: Vec<(PathBuf, String)> = entries
            .flatten()
            .filter(|e| !ignored(&e.file_name()))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                Some((e.path(), rel))
            })
            .collect();
        subdirs.sort();
        queue.extend(subdirs.into_iter().map(|(p, r)| (p, r, depth + 1)));
    }
    found.sort();
    found
}

/// Whether `manifest` is a regular file whose package or a `[[bin]]` of it
/// is named `binary`.
fn manifest_names(manifest: &Path, binary: &str) -> bool {
    let Ok(meta) = fs::symlink_metadata(manifest) else {
        return false;
    };
    if !meta.is_file() || meta.len() > MAX_MANIFEST {
        return false;
    }
    let Ok(text) = fs::read_to_string(manifest) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let named = |v: &toml::Value| v.get("name").and_then(toml::Value::as_str) == Some(binary);
    table.get("package").is_some_and(named)
        || table
            .get("bin")
            .and_then(toml::Value::as_array)
            .is_some_and(|bins| bins.iter().any(named))
}

// ---------------------------------------------------------------------------
// Digest

/// The content digest of a crate: SHA-256, in hex, over its `src/` tree (the
/// only part of a submission the builder uses): each entry's path relative to
/// `src/`, sorted, with its content. It does not depend on timestamps,
/// permissions or an archive's layout, and changes with any byte of the
/// sources. A symbolic link or special file in `src/` (only a directory
/// submission can have one) counts by its path and kind (a link also by its
/// target) and is never opened. A `src/` past the caps is refused.
pub fn digest(crate_dir: &Path, caps: &Caps) -> Result<String, OpenError> {
    let src = crate_dir.join("src");
    let cannot = |path: &Path, e: io::Error| machine(format!("cannot read {}", path.display()), e);
    // Every entry below src/, as (relative path, path).
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    let mut stack = vec![(Vec::new(), src.clone())];
    while let Some((rel, dir)) = stack.pop() {
        for dirent in fs::read_dir(&dir).map_err(|e| cannot(&dir, e))? {
            let dirent = dirent.map_err(|e| cannot(&dir, e))?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(dirent.file_name().as_bytes());
            let is_dir = dirent
                .file_type()
                .map_err(|e| cannot(&dirent.path(), e))?
                .is_dir();
            if is_dir {
                stack.push((child, dirent.path()));
            } else {
                entries.push((child, dirent.path()));
            }
            if entries.len() + stack.len() > caps.max_files {
                return Err(reject(format!(
                    "src/ has more than {} files and directories",
                    caps.max_files
                )));
            }
        }
    }
    entries.sort();

    let mut hasher = Sha256::new();
    hasher.update(b"cargo-grade src/ digest 1\0");
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    for (rel, path) in &entries {
        let meta = fs::symlink_metadata(path).map_err(|e| cannot(path, e))?;
        let kind = meta.file_type();
        let (tag, body): (u8, Vec<u8>) = if kind.is_file() {
            total += meta.len();
            if total > caps.max_bytes {
                return Err(reject(format!(
                    "src/ is larger than {}",
                    mib(caps.max_bytes)
                )));
            }
            (
                b'F',
                file_digest(path, &mut buf).map_err(|e| cannot(path, e))?,
            )
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|e| cannot(path, e))?;
            (b'L', target.as_os_str().as_bytes().to_vec())
        } else if kind.is_fifo() {
            (b'P', Vec::new())
        } else if kind.is_socket() {
            (b'S', Vec::new())
        } else {
            (b'D', Vec::new())
        };
        hasher.update([tag]);
        hasher.update((rel.len() as u64).to_le_bytes());
        hasher.update(rel);
        hasher.update((body.len() as u64).to_le_bytes());
        hasher.update(&body);
    }
    Ok(crate::spec::hex(&hasher.finalize()))
}

/// The SHA-256 of a regular file's content, opened without following a link
/// and without blocking (it was a regular file when listed).
fn file_digest(path: &Path, buf: &mut [u8]) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut hasher = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_names() {
        for good in [
            "alice",
            "Doe, John_123_assignsubmission_file_",
            "José O'Brien",
            "a.b",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-rf",
            " x",
            "x ",
            "a:b",
            "a\nb",
            "a\u{202e}b",
            "a$b",
            "a\\b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(escape(b"caf\xe9"), "caf\\xe9");
    }

    #[test]
    fn rejections_are_one_line() {
        assert_eq!(Rejection::new("a\nb\tc").reason, "a b c");
    }
}
