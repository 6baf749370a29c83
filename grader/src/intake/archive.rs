//! Extraction of a submission's archive (`.zip`, `.tar.gz`, `.tgz`) into a
//! scratch directory the caller owns: every entry name checked, links and
//! special files refused, never following a link, never past the [`Caps`].
//! Only batches read archives, so this is built with the feature
//! `instructor-tools` (with zip, tar and flate2); a student's build of the
//! grader has none of it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::{escape, machine, mib, reject, Caps, OpenError};

/// Content below which [`Caps::max_ratio`] is not applied.
const RATIO_FLOOR: u64 = 1 << 20;

/// Mode bits of a zip entry's Unix mode.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFSOCK: u32 = 0o140000;

const LINKS_REFUSED: &str = "links are refused in submissions, send the files themselves";

/// Writes an archive's files and directories under a root directory, never
/// following a symbolic link and never past the caps.
struct Extractor {
    root: OwnedFd,
    caps: Caps,
    /// Files and directories created.
    files: usize,
    /// Entries of the archive seen.
    entries: usize,
    /// Bytes of content written.
    bytes: u64,
    /// The size of the archive file (for the ratio).
    archive_len: u64,
    buf: Vec<u8>,
}

/// What a checked entry name denotes.
struct EntryPath {
    /// Its components, none empty, `.` or `..`.
    components: Vec<String>,
    /// It ends with a slash.
    dir_name: bool,
    /// As the archive has it (for messages).
    shown: String,
}

/// Checks an entry's name: valid UTF-8, relative, with no `..`. Backslashes
/// count as separators (archives made on Windows use them).
fn entry_path(raw: &[u8]) -> Result<EntryPath, OpenError> {
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err(reject(format!(
            "the archive has an entry whose name is not valid UTF-8 ({:?})",
            escape(raw)
        )));
    };
    let shown = name.to_owned();
    if name.contains('\0') {
        return Err(reject(format!(
            "the archive's entry {shown:?} has a NUL in its name"
        )));
    }
    let normal = name.replace('\\', "/");
    // `C:` or `C:/...`, a Windows drive.
    let drive = match normal.as_bytes() {
        [letter, b':', rest @ ..] => {
            letter.is_ascii_alphabetic() && matches!(rest.first(), None | Some(b'/'))
        }
        _ => false,
    };
    if normal.starts_with('/') || drive {
        return Err(reject(format!(
            "the archive's entry {shown:?} is an absolute path: entries must be relative"
        )));
    }
    let mut components = Vec::new();
    for part in normal.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(reject(format!(
                    "the archive's entry {shown:?} has \"..\" in its path (path traversal): entries must stay inside"
                )))
            }
            _ if part.len() > 255 => {
                return Err(reject(format!(
                    "the archive's entry {shown:?} has a name longer than 255 bytes"
                )))
            }
            _ => components.push(part.to_owned()),
        }
    }
    Ok(EntryPath {
        components,
        dir_name: normal.ends_with('/'),
        shown,
    })
}

impl Extractor {
    fn new(scratch: &Path, caps: &Caps, archive_len: u64) -> Result<Extractor, OpenError> {
        let root = nix::fcntl::open(
            scratch,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            machine(
                format!("cannot open the scratch directory {}", scratch.display()),
                e,
            )
        })?;
        Ok(Extractor {
            root,
            caps: *caps,
            files: 0,
            entries: 0,
            bytes: 0,
            archive_len,
            buf: vec![0; 64 << 10],
        })
    }

    /// The most content the archive may expand to, and the reason when it
    /// does.
    fn byte_limit(&self) -> (u64, String) {
        let by_ratio = self
            .caps
            .max_ratio
            .saturating_mul(self.archive_len)
            .max(RATIO_FLOOR);
        if by_ratio < self.caps.max_bytes {
            (
                by_ratio,
                format!(
                    "the archive expands to more than {} times its own size (an archive bomb?)",
                    self.caps.max_ratio
                ),
            )
        } else {
            (
                self.caps.max_bytes,
                format!(
                    "the archive expands to more than {} (an archive bomb?); the limit is {}",
                    mib(self.caps.max_bytes),
                    mib(self.caps.max_bytes)
                ),
            )
        }
    }

    /// Counts one entry of the archive (a file, a directory, a header).
    fn count_entry(&mut self) -> Result<(), OpenError> {
        self.entries += 1;
        if self.entries > self.caps.max_files {
            return Err(too_many_files(&self.caps));
        }
        Ok(())
    }

    /// Counts a file or directory created.
    fn count_file(&mut self) -> Result<(), OpenError> {
        self.files += 1;
        if self.files > self.caps.max_files {
            return Err(too_many_files(&self.caps));
        }
        Ok(())
    }

    /// Opens (creating them as needed) the directories `components` below the
    /// root, never following a symbolic link.
    fn dir(&mut self, components: &[String], shown: &str) -> Result<OwnedFd, OpenError> {
        let mut fd = self
            .root
            .try_clone()
            .map_err(|e| machine("cannot duplicate a descriptor", e))?;
        for (i, component) in components.iter().enumerate() {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let next = match openat(fd.as_fd(), component.as_str(), flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) => {
                    self.count_file()?;
                    match mkdirat(fd.as_fd(), component.as_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {}
                        Err(e) => return Err(write_error(shown, e)),
                    }
                    openat(fd.as_fd(), component.as_str(), flags, Mode::empty())
                        .map_err(|e| write_error(shown, e))?
                }
                // Nothing here creates a link: one is the caller's, in a
                // scratch directory that was not fresh.
                Err(Errno::ELOOP) => {
                    return Err(OpenError::Machine(format!(
                        "the scratch directory has a symbolic link at {:?}; it must be empty",
                        components[..=i].join("/")
                    )))
                }
                Err(Errno::ENOTDIR) => {
                    return Err(reject(format!(
                        "the archive's entry {shown:?} is inside {:?}, which the archive also has as a file",
                        components[..=i].join("/")
                    )))
                }
                Err(e) => return Err(write_error(shown, e)),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// Creates the regular file `path` (mode 0644, never over an existing
    /// file or link) with the content `reader` gives, counting it against the
    /// caps.
    fn file(
        &mut self,
        path: &EntryPath,
        reader: &mut dyn Read,
        declared: u64,
    ) -> Result<(), OpenError> {
        let shown = &path.shown;
        if declared > self.caps.max_bytes {
            return Err(reject(format!(
                "the archive's entry {shown:?} declares {declared} bytes, more than the limit of {} (an archive bomb?)",
                mib(self.caps.max_bytes)
            )));
        }
        let Some((last, parents)) = path.components.split_last() else {
            return Err(reject(format!(
                "the archive has a file without a name ({shown:?})"
            )));
        };
        let parent = self.dir(parents, shown)?;
        self.count_file()?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(
            parent.as_fd(),
            last.as_str(),
            flags,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                return Err(reject(format!(
                    "the archive has {shown:?} twice (or as both a file and a directory)"
                )))
            }
            Err(e) => return Err(write_error(shown, e)),
        };
        let mut out = File::from(fd);
        let (limit, why) = self.byte_limit();
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(Some(shown), &e)),
            };
            self.bytes += n as u64;
            if self.bytes > limit {
                return Err(reject(why));
            }
            out.write_all(&self.buf[..n])
                .map_err(|e| write_error(shown, e))?;
        }
        Ok(())
    }
}

fn too_many_files(caps: &Caps) -> OpenError {
    reject(format!(
        "the archive has more than {} files and directories (an archive bomb?); the limit is {}",
        caps.max_files, caps.max_files
    ))
}

/// A failure to write into the scratch directory: the machine's, not the
/// submission's.
fn write_error(shown: &str, e: impl fmt::Display) -> OpenError {
    OpenError::Machine(format!(
        "cannot extract the archive's entry {shown:?} into the scratch directory: {e}"
    ))
}

/// A failure to read the archive: it is corrupt or truncated, or the caps
/// were hit inside the decompressor ([`Limited`]).
fn read_error(shown: Option<&str>, e: &io::Error) -> OpenError {
    if let Some(why) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Overflow>())
    {
        return reject(why.0.clone());
    }
    match shown {
        Some(shown) => reject(format!(
            "the archive is corrupt or truncated: its entry {shown:?} cannot be read ({e})"
        )),
        None => reject(format!("the archive is corrupt or truncated ({e})")),
    }
}

/// The archive file, opened, and its size (for the ratio cap). A failure
/// is the machine's: the file was listed in SUBMISSIONS.
fn open_archive(path: &Path) -> Result<(File, u64), OpenError> {
    let cannot = |e| machine(format!("cannot read {}", path.display()), e);
    let file = File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    Ok((file, len))
}

pub(super) fn extract_zip(path: &Path, scratch: &Path, caps: &Caps) -> Result<(), OpenError> {
    let (file, archive_len) = open_archive(path)?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        reject(format!(
            "the archive is not a readable zip file (corrupt or truncated?): {e}"
        ))
    })?;
    if archive.len() > caps.max_files {
        return Err(too_many_files(caps));
    }
    let mut out = Extractor::new(scratch, caps, archive_len)?;
    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or("?").to_owned();
        let mut file = archive.by_index(index).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(what) => reject(format!(
                "the archive's entry {name:?} cannot be read: {what} (the grader reads zip files \
                     stored or deflated, without encryption)"
            )),
            e => reject(format!(
                "the archive is corrupt or truncated: its entry {name:?} cannot be read ({e})"
            )),
        })?;
        out.count_entry()?;
        let path = entry_path(file.name_raw())?;
        let kind = file.unix_mode().map_or(0, |mode| mode & S_IFMT);
        if let Some(what) = special(kind) {
            return Err(reject(refused(&path.shown, what)));
        }
        if path.dir_name || kind == S_IFDIR {
            out.dir(&path.components, &path.shown)?;
        } else {
            let declared = file.size();
            out.file(&path, &mut file, declared)?;
        }
    }
    Ok(())
}

/// What a zip entry's file type is, if it is neither a regular file nor a
/// directory.
fn special(kind: u32) -> Option<&'static str> {
    match kind {
        0 | S_IFREG | S_IFDIR => None,
        S_IFLNK => Some("a symbolic link"),
        S_IFIFO => Some("a FIFO"),
        S_IFCHR => Some("a character device"),
        S_IFBLK => Some("a block device"),
        S_IFSOCK => Some("a socket"),
        _ => Some("a file of an unknown type"),
    }
}

fn refused(shown: &str, what: &str) -> String {
    if what.contains("link") {
        format!("the archive's entry {shown:?} is {what}: {LINKS_REFUSED}")
    } else {
        format!(
            "the archive's entry {shown:?} is {what}: only regular files and directories are accepted"
        )
    }
}

/// The reason a [`Limited`] reader stopped, carried inside an `io::Error`.
#[derive(Debug)]
struct Overflow(String);

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Overflow {}

/// A reader that fails after `limit` bytes: it bounds what the tar reader
/// decompresses and buffers on its own (long names, PAX headers) before any
/// entry reaches the [`Extractor`].
struct Limited<R> {
    inner: R,
    left: u64,
    why: String,
    tripped: bool,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.tripped = true;
            return Err(io::Error::other(Overflow(self.why.clone())));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub(super) fn extract_tar_gz(path: &Path, scratch: &Path, caps: &Caps) -> Result<(), OpenError> {
    let (file, archive_len) = open_archive(path)?;
    let mut out = Extractor::new(scratch, caps, archive_len)?;
    // Content within the limit, and room for a header of a few blocks per
    // entry and the archive's padding.
    let (limit, why) = out.byte_limit();
    let slack = (caps.max_files as u64 + 64).saturating_mul(4 << 10);
    let stream = Limited {
        inner: flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        left: limit.saturating_add(slack),
        why,
        tripped: false,
    };
    let mut archive = tar::Archive::new(stream);
    let mut result = extract_tar_entries(&mut archive, &mut out);
    let mut rest = archive.into_inner();
    if result.is_ok() {
        // The rest of the stream (the archive's padding): read to its end,
        // so that a truncated or corrupt gzip stream is found.
        result = io::copy(&mut rest, &mut io::sink())
            .map(drop)
            .map_err(|e| read_error(None, &e));
    }
    match result {
        // However the tar reader reported it, the stream hit the limit.
        Err(OpenError::Rejected(_)) if rest.tripped => Err(reject(rest.why)),
        other => other,
    }
}

fn extract_tar_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    out: &mut Extractor,
) -> Result<(), OpenError> {
    use tar::EntryType as T;
    let entries = archive.entries().map_err(|e| read_error(None, &e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(None, &e))?;
        out.count_entry()?;
        let path = entry_path(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        match kind {
            T::Regular | T::Continuous if !path.dir_name => {
                let declared = entry.size();
                out.file(&path, &mut entry, declared)?;
            }
            T::Regular | T::Continuous | T::Directory => {
                out.dir(&path.components, &path.shown)?;
            }
            T::XGlobalHeader => {}
            T::Symlink | T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| escape(&t))
                    .unwrap_or_default();
                let what = if kind == T::Symlink {
                    "a symbolic link"
                } else {
                    "a hard link"
                };
                return Err(reject(format!(
                    "the archive's entry {:?} is {what} (to {target:?}): {LINKS_REFUSED}",
                    path.shown
                )));
            }
            T::Char => return Err(reject(refused(&path.shown, "a character device"))),
            T::Block => return Err(reject(refused(&path.shown, "a block device"))),
            T::Fifo => return Err(reject(refused(&path.shown, "a FIFO"))),
            T::GNUSparse => return Err(reject(refused(&path.shown, "a sparse file"))),
            _ => return Err(reject(refused(&path.shown, "an entry of an unknown type"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_must_stay_inside() {
        let ok = entry_path(b"a/./b\\c/").unwrap();
        assert_eq!(ok.components, ["a", "b", "c"]);
        assert!(ok.dir_name);
        assert_eq!(entry_path(b"a:b/c:d").unwrap().components, ["a:b", "c:d"]);
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"C:\\x",
            b"c:",
            b"..\\x",
            b"a\0b",
            b"\xff",
        ] {
            assert!(
                matches!(entry_path(bad), Err(OpenError::Rejected(_))),
                "{bad:?}"
            );
        }
    }
}
