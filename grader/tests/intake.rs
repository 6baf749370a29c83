//! Intake of a batch's submissions (issue 11): real directories and real
//! archives, benign and hostile, made by the tests themselves. Every hostile
//! archive must be refused for its own submission, with its reason, and
//! nothing may appear outside its scratch directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cargo_grade::intake::{self, Caps, Entry, EntryKind, IntakeError, Listed, OpenError};
use flate2::{Compress, Compression, FlushCompress};

const SLUG: &str = "task3-shm-counter";
const BINARY: &str = "task3-shm-counter";
const MANIFEST: &str =
    "[package]\nname = \"task3-shm-counter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";
const MAIN: &str = "fn main() {\n    println!(\"counter\");\n}\n";
const WORKER: &str = "pub fn work() {}\n";

/// A crate's files, relative to the crate.
fn crate_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("Cargo.toml".into(), MANIFEST.into()),
        ("src/main.rs".into(), MAIN.into()),
        ("src/worker/mod.rs".into(), WORKER.into()),
    ]
}

fn prefixed(prefix: &str, files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    files
        .into_iter()
        .map(|(p, c)| (format!("{prefix}{p}"), c))
        .collect()
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, content) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Archives made with the zip and tar crates (as tools make them)

fn zip_options(year: u16) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::from_date_and_time(year, 3, 4, 5, 6, 8).unwrap())
}

fn make_zip(path: &Path, files: &[(String, Vec<u8>)], year: u16) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let mut dirs = std::collections::BTreeSet::new();
    for (rel, content) in files {
        // Directory entries first, as zip tools write them.
        let mut dir = Path::new(rel).parent().filter(|_| !rel.contains(".."));
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let d = format!("{}/", d.display());
            if dirs.insert(d.clone()) {
                zip.add_directory(d, zip_options(year)).unwrap();
            }
            dir = Path::new(dir.unwrap()).parent();
        }
        zip.start_file(rel.as_str(), zip_options(year)).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
}

fn tar_header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    // Raw bytes: the tar crate's set_path refuses what a hostile tool writes.
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

/// One entry of a tar archive: name, type, content, link target.
type TarEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a str>);

/// A .tar.gz of `entries`.
fn make_tar_gz(path: &Path, entries: &[TarEntry<'_>]) {
    let gz = flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, kind, content, link) in entries {
        let mut h = tar_header(name, *kind, content.len() as u64, 0o644);
        if let Some(link) = link {
            h.set_link_name_literal(link).unwrap();
            h.set_cksum();
        }
        tar.append(&h, *content).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn tar_gz_of(path: &Path, files: &[(String, Vec<u8>)]) {
    let entries: Vec<TarEntry<'_>> = files
        .iter()
        .map(|(p, c)| (p.as_bytes(), tar::EntryType::Regular, c.as_slice(), None))
        .collect();
    make_tar_gz(path, &entries);
}

// ---------------------------------------------------------------------------
// Archives built byte by byte (what no well-behaved tool writes)

struct RawZipEntry {
    name: Vec<u8>,
    /// 0 stored, 8 deflated.
    method: u16,
    crc: u32,
    data: Vec<u8>,
    /// What the headers claim the content's size is.
    declared: u32,
    /// The Unix mode (file type and permissions), in the high 16 bits of the
    /// external attributes, as Info-ZIP writes it.
    mode: u32,
}

impl RawZipEntry {
    fn stored(name: &[u8], data: &[u8], mode: u32) -> RawZipEntry {
        RawZipEntry {
            name: name.to_vec(),
            method: 0,
            crc: crc32(data),
            data: data.to_vec(),
            declared: data.len() as u32,
            mode,
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// A zip file, local headers, central directory and end record, written by
/// hand so that every field can lie.
fn raw_zip(entries: &[RawZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&e.method.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // time, date
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.declared.to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);

        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: Unix, 3.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&e.method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&e.crc.to_le_bytes());
        central.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        central.extend_from_slice(&e.declared.to_le_bytes());
        central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&(e.mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&e.name);
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    let count = entries.len();
    if count > 0xfffe {
        // Zip64 end records: the 16-bit counts cannot hold `count`.
        let zip64_offset = out.len() as u64;
        out.extend_from_slice(&0x06064b50u32.to_le_bytes());
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&0x031eu16.to_le_bytes());
        out.extend_from_slice(&45u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // disk numbers
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(central.len() as u64).to_le_bytes());
        out.extend_from_slice(&(central_offset as u64).to_le_bytes());
        out.extend_from_slice(&0x07064b50u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&zip64_offset.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    let count16 = count.min(0xffff) as u16;
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count16.to_le_bytes());
    out.extend_from_slice(&count16.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Raw deflate, flushed to a byte boundary and not final.
fn deflate_sync(data: &[u8], level: Compression) -> Vec<u8> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    while (c.total_in() as usize) < data.len() {
        out.reserve(64 << 10);
        c.compress_vec(
            &data[c.total_in() as usize..],
            &mut out,
            FlushCompress::Sync,
        )
        .unwrap();
    }
    out.reserve(1024);
    c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
    out
}

/// A deflate stream of `prefix` then `mib` MiB of zeros; see
/// [`deflate_parts`].
fn deflate_zeros(prefix: &[u8], mib: usize) -> (Vec<u8>, u32, u64) {
    deflate_parts(&[(prefix, mib)])
}

/// A deflate stream of each part's bytes followed by its MiB of zeros, made
/// fast: one MiB of zeros compressed once and repeated (its matches reach
/// back only into its own zeros), and an empty final block. Returns the
/// stream, the CRC-32 and the length of what it expands to.
fn deflate_parts(parts: &[(&[u8], usize)]) -> (Vec<u8>, u32, u64) {
    let zero_mib = vec![0; 1 << 20];
    let chunk = deflate_sync(&zero_mib, Compression::best());
    let mut zeros_crc = crc32fast::Hasher::new();
    zeros_crc.update(&zero_mib);
    let mut out = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    for (prefix, mib) in parts {
        if !prefix.is_empty() {
            out.extend_from_slice(&deflate_sync(prefix, Compression::fast()));
            crc.update(prefix);
        }
        for _ in 0..*mib {
            out.extend_from_slice(&chunk);
            crc.combine(&zeros_crc);
        }
        len += prefix.len() as u64 + ((*mib as u64) << 20);
    }
    out.extend_from_slice(&[0x03, 0x00]);
    (out, crc.finalize(), len)
}

fn gzip(deflate: &[u8], crc: u32, len: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(deflate);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

// ---------------------------------------------------------------------------
// The place every test works in

/// `<tmp>/submissions/` and, for each submission, its scratch directory
/// three levels down (`<tmp>/work/a/<name>/`), so that `../../evil` and
/// `../../../evil` land inside `<tmp>` where the tests can look for them.
struct Place {
    tmp: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("submissions")).unwrap();
        Place { tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn submissions(&self) -> PathBuf {
        self.root().join("submissions")
    }

    fn sub(&self, name: &str) -> PathBuf {
        self.submissions().join(name)
    }

    /// The scratch directory of `name` (made if missing).
    fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root().join("work/a").join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The scratch directory of `name`, empty.
    fn fresh_scratch(&self, name: &str) -> PathBuf {
        let dir = self.scratch(name);
        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        dir
    }

    /// The entry named `name` as `list` finds it.
    fn entry(&self, name: &str) -> Entry {
        let listed = intake::list(&self.submissions()).unwrap();
        match listed.into_iter().find(|l| l.name() == name) {
            Some(Listed::Entry(entry)) => entry,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn open(&self, name: &str) -> Result<intake::Opened, OpenError> {
        self.open_with(name, &Caps::default())
    }

    fn open_with(&self, name: &str, caps: &Caps) -> Result<intake::Opened, OpenError> {
        let entry = self.entry(name);
        intake::open(&entry, SLUG, BINARY, &self.fresh_scratch(name), caps)
    }

    /// Opens `name`, which must be refused with a reason containing each of
    /// `words`, and checks that nothing appeared outside its scratch
    /// directory. Returns the reason.
    fn refused(&self, name: &str, caps: &Caps, words: &[&str]) -> String {
        let scratch = self.fresh_scratch(name);
        let before = listing(self.root(), &scratch);
        let result = self.open_with(name, caps);
        let after = listing(self.root(), &scratch);
        assert_eq!(
            before, after,
            "{name}: something was created outside its scratch directory"
        );
        for evil in ["evil", "work/evil", "work/a/evil", "abs-evil"] {
            assert!(
                fs::symlink_metadata(self.root().join(evil)).is_err(),
                "{name}: {evil} exists"
            );
        }
        let reason = match result {
            Err(OpenError::Rejected(r)) => r.reason,
            other => panic!("{name}: not refused: {other:?}"),
        };
        eprintln!("{name}: {reason}");
        for word in words {
            assert!(reason.contains(word), "{name}: {reason:?} lacks {word:?}");
        }
        assert!(!reason.contains('\n'), "{name}: {reason:?} is not one line");
        // (An absolute path the archive itself has may be quoted.)
        for grader_path in [&scratch, &self.submissions()] {
            assert!(
                !reason.contains(grader_path.to_str().unwrap()),
                "{name}: {reason:?} names a path of the grader's"
            );
        }
        // Whatever was extracted is plain files and directories.
        for (path, (kind, _, mode)) in listing(&scratch, Path::new("/nonexistent")) {
            assert!(kind == 'f' || kind == 'd', "{name}: {path:?} is {kind}");
            assert_eq!(mode & 0o7000, 0, "{name}: {path:?} has mode {mode:o}");
        }
        reason
    }
}

/// Every path below `root` (not following links, not entering `skip`), with
/// its kind, size and mode.
fn listing(root: &Path, skip: &Path) -> BTreeMap<PathBuf, (char, u64, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_symlink() {
                'l'
            } else if ft.is_dir() {
                'd'
            } else if ft.is_file() {
                'f'
            } else {
                '?'
            };
            let size = if ft.is_file() { meta.len() } else { 0 };
            out.insert(path.clone(), (kind, size, meta.mode() & 0o7777));
            if ft.is_dir() && path != skip {
                stack.push(path);
            }
        }
    }
    out
}

fn size_of_tree(root: &Path) -> u64 {
    listing(root, Path::new("/nonexistent"))
        .values()
        .map(|(_, size, _)| size)
        .sum()
}

// ---------------------------------------------------------------------------
// Listing

#[test]
fn lists_entries_by_name_without_archive_extensions() {
    let place = Place::new();
    write_tree(&place.sub("alice"), &crate_files());
    make_zip(&place.sub("bob.zip"), &crate_files(), 2020);
    tar_gz_of(&place.sub("carol.tar.gz"), &crate_files());
    tar_gz_of(&place.sub("Dave.TGZ"), &crate_files());
    fs::write(place.sub(".DS_Store"), b"").unwrap();
    fs::create_dir(place.sub(".git")).unwrap();
    fs::write(place.sub("notes.txt"), b"grading notes").unwrap();
    fs::write(place.sub("-rf.zip"), b"").unwrap();
    fs::create_dir(place.submissions().join(OsStr::from_bytes(b"caf\xe9"))).unwrap();
    std::os::unix::fs::symlink("/etc", place.sub("linked")).unwrap();
    nix::unistd::mkfifo(&place.sub("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();

    let listed = intake::list(&place.submissions()).unwrap();
    let names: Vec<&str> = listed.iter().map(Listed::name).collect();
    assert_eq!(
        names,
        [
            "-rf",
            "Dave",
            "alice",
            "bob",
            "caf\\xe9",
            "carol",
            "linked",
            "notes.txt",
            "pipe",
        ]
    );
    let kind = |name: &str| match listed.iter().find(|l| l.name() == name).unwrap() {
        Listed::Entry(e) => Ok(e.kind),
        Listed::Rejected { reason, .. } => Err(reason.clone()),
    };
    assert_eq!(kind("alice"), Ok(EntryKind::Dir));
    assert_eq!(kind("bob"), Ok(EntryKind::Zip));
    assert_eq!(kind("carol"), Ok(EntryKind::TarGz));
    assert_eq!(kind("Dave"), Ok(EntryKind::TarGz));
    let rejected = |name: &str, word: &str| {
        let reason = kind(name).unwrap_err();
        assert!(reason.contains(word), "{name}: {reason}");
    };
    rejected("caf\\xe9", "not valid UTF-8");
    rejected("-rf", "not a safe file name");
    rejected("notes.txt", "not a submission");
    rejected("linked", "symbolic link");
    rejected("pipe", "not a directory or a regular file");
}

#[test]
fn two_entries_of_one_name_are_an_error_naming_both() {
    let place = Place::new();
    write_tree(&place.sub("alice"), &crate_files());
    make_zip(&place.sub("alice.zip"), &crate_files(), 2020);
    make_zip(&place.sub("bob.zip"), &crate_files(), 2020);
    let err = intake::list(&place.submissions()).unwrap_err();
    assert!(matches!(err, IntakeError::Duplicate { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("\"alice\"") && msg.contains("\"alice.zip\""),
        "{msg}"
    );

    let place = Place::new();
    tar_gz_of(&place.sub("eve.tgz"), &crate_files());
    tar_gz_of(&place.sub("eve.tar.gz"), &crate_files());
    let msg = intake::list(&place.submissions()).unwrap_err().to_string();
    assert!(
        msg.contains("eve.tgz") && msg.contains("eve.tar.gz"),
        "{msg}"
    );
}

#[test]
fn an_unreadable_submissions_directory_is_a_batch_error() {
    let place = Place::new();
    let err = intake::list(&place.root().join("missing")).unwrap_err();
    assert!(matches!(err, IntakeError::Unreadable { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Finding the crate

#[test]
fn finds_the_crate_in_every_layout() {
    let place = Place::new();
    // A crate directory.
    write_tree(&place.sub("alice"), &crate_files());
    // A checkout of the course repository.
    let mut checkout = prefixed(&format!("starter/{SLUG}/"), crate_files());
    checkout.extend(prefixed("starter/task1-signals/", crate_files()));
    checkout.push(("README.md".into(), b"# course".to_vec()));
    write_tree(&place.sub("bob"), &checkout);
    // A GitHub zip of a checkout: everything in `repo-main/`, and macOS junk.
    let mut github = prefixed("ipc-course-main/", checkout.clone());
    github.push((
        "__MACOSX/ipc-course-main/._README.md".into(),
        b"junk".to_vec(),
    ));
    make_zip(&place.sub("carol.zip"), &github, 2021);
    // A crate wrapped in one folder, as .tar.gz and .tgz.
    tar_gz_of(
        &place.sub("dave.tar.gz"),
        &prefixed("my-task3/", crate_files()),
    );
    tar_gz_of(&place.sub("erin.tgz"), &crate_files());
    // A crate somewhere deeper, found by its Cargo.toml's name.
    let mut deep = prefixed("homework/ipc/counter/", crate_files());
    deep.extend(prefixed(
        "homework/other/",
        vec![
            (
                "Cargo.toml".into(),
                b"[package]\nname = \"other\"\n".to_vec(),
            ),
            ("src/main.rs".into(), MAIN.into()),
        ],
    ));
    deep.push(("notes/todo.txt".into(), b"-".to_vec()));
    make_zip(&place.sub("frank.zip"), &deep, 2022);
    // ... or by a [[bin]] of that name.
    let bin = vec![
        ("x/y/Cargo.toml".into(), format!("[package]\nname = \"mine\"\n[[bin]]\nname = \"{BINARY}\"\npath = \"src/main.rs\"\n").into_bytes()),
        ("x/y/src/main.rs".into(), MAIN.into()),
        ("z/readme".into(), b"-".to_vec()),
    ];
    make_zip(&place.sub("gina.zip"), &bin, 2022);

    let expect = [
        ("alice", place.sub("alice")),
        ("bob", place.sub("bob").join("starter").join(SLUG)),
        (
            "carol",
            place
                .scratch("carol")
                .join("ipc-course-main/starter")
                .join(SLUG),
        ),
        ("dave", place.scratch("dave").join("my-task3")),
        ("erin", place.scratch("erin")),
        ("frank", place.scratch("frank").join("homework/ipc/counter")),
        ("gina", place.scratch("gina").join("x/y")),
    ];
    let mut digests = Vec::new();
    for (name, crate_dir) in expect {
        let opened = place.open(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opened.crate_dir, crate_dir, "{name}");
        assert_eq!(
            fs::read_to_string(crate_dir.join("src/main.rs")).unwrap(),
            MAIN
        );
        digests.push(opened.digest);
    }
    // The same sources, whatever the layout and the archive.
    assert_eq!(digests[0].len(), 64);
    assert!(
        digests.iter().take(6).all(|d| *d == digests[0]),
        "{digests:?}"
    );
}

#[test]
fn extracted_files_get_plain_modes_never_the_archives() {
    let place = Place::new();
    let entries = [
        RawZipEntry::stored(b"t/", b"", 0o040777),
        RawZipEntry::stored(b"t/src/main.rs", MAIN.as_bytes(), 0o104777),
        RawZipEntry::stored(b"t/src/run.sh", b"#!/bin/sh\n", 0o102755),
    ];
    fs::write(place.sub("modes.zip"), raw_zip(&entries)).unwrap();
    let opened = place.open("modes").unwrap();
    for (path, (kind, _, mode)) in listing(&place.scratch("modes"), Path::new("/-")) {
        // 0755 and 0644, less the umask.
        let most = if kind == 'd' { 0o755 } else { 0o644 };
        assert_eq!(mode & !most, 0, "{path:?}: {mode:o}");
        assert_ne!(mode & 0o400, 0, "{path:?}: {mode:o}");
    }
    assert!(opened.crate_dir.ends_with("t"));
}

#[test]
fn no_crate_or_several_crates_are_refused() {
    let place = Place::new();
    make_zip(
        &place.sub("empty.zip"),
        &[("README.md".into(), b"I forgot my code".to_vec())],
        2020,
    );
    write_tree(
        &place.sub("nocode"),
        &[("notes/x.txt".into(), b"-".to_vec())],
    );
    let mut two = prefixed("one/", crate_files());
    two.extend(prefixed("two/", crate_files()));
    make_zip(&place.sub("two.zip"), &two, 2020);
    tar_gz_of(
        &place.sub("nomain.tgz"),
        &[
            ("a/b/Cargo.toml".into(), MANIFEST.into()),
            ("a/b/src/lib.rs".into(), WORKER.into()),
            ("c/d".into(), b"-".to_vec()),
        ],
    );
    let none = [
        &format!("no crate for task {SLUG} inside"),
        "src/main.rs",
        &format!("starter/{SLUG}/"),
    ];
    place.refused("empty", &Caps::default(), &none);
    place.refused("nocode", &Caps::default(), &none);
    place.refused("two", &Caps::default(), &["several crates", "one, two"]);
    place.refused(
        "nomain",
        &Caps::default(),
        &["a/b/Cargo.toml", "no src/main.rs"],
    );
}

#[test]
fn a_directory_submission_is_never_followed_through_links() {
    let place = Place::new();
    let outside = place.root().join("outside");
    write_tree(&outside, &crate_files());
    // `src` is a link to another crate's sources; `starter` a link to a course.
    fs::create_dir_all(place.sub("linky")).unwrap();
    std::os::unix::fs::symlink(outside.join("src"), place.sub("linky/src")).unwrap();
    std::os::unix::fs::symlink(&outside, place.sub("linky/other")).unwrap();
    place.refused("linky", &Caps::default(), &["no crate for task"]);
}

// ---------------------------------------------------------------------------
// The digest

#[test]
fn the_digest_follows_the_sources_not_the_archive() {
    let place = Place::new();
    make_zip(&place.sub("v1.zip"), &crate_files(), 2019);
    make_zip(&place.sub("v2.zip"), &crate_files(), 2024);
    // Other files around src/ do not count either.
    let mut more = crate_files();
    more.push(("README.md".into(), b"notes".to_vec()));
    more[0].1 = b"[package]\nname = \"task3-shm-counter\"\nversion = \"9.9.9\"\n".to_vec();
    tar_gz_of(&place.sub("v3.tgz"), &more);
    let mut changed = crate_files();
    changed[1].1[0] ^= 1;
    make_zip(&place.sub("v4.zip"), &changed, 2019);
    let mut renamed = crate_files();
    renamed[2].0 = "src/worker/mod2.rs".into();
    make_zip(&place.sub("v5.zip"), &renamed, 2019);
    let mut added = crate_files();
    added.push(("src/empty.rs".into(), Vec::new()));
    make_zip(&place.sub("v6.zip"), &added, 2019);

    assert_ne!(
        fs::read(place.sub("v1.zip")).unwrap(),
        fs::read(place.sub("v2.zip")).unwrap(),
        "the archives differ (timestamps)"
    );
    let d: Vec<String> = ["v1", "v2", "v3", "v4", "v5", "v6"]
        .iter()
        .map(|n| place.open(n).unwrap().digest)
        .collect();
    assert_eq!(d[0], d[1]);
    assert_eq!(d[0], d[2]);
    for (i, other) in d.iter().enumerate().skip(3) {
        assert_ne!(&d[0], other, "v{}", i + 1);
    }
    // And the same as the crate directory's, timestamps and modes aside.
    write_tree(&place.sub("dir"), &crate_files());
    fs::set_permissions(
        place.sub("dir/src/main.rs"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(place.open("dir").unwrap().digest, d[0]);
}

// ---------------------------------------------------------------------------
// Hostile archives

#[test]
fn path_traversal_and_absolute_paths_are_refused() {
    let place = Place::new();
    let abs = format!("{}/abs-evil", place.root().display());
    let mut files = crate_files();
    files.push(("../../evil".into(), b"pwned".to_vec()));
    make_zip(&place.sub("zipdots.zip"), &files, 2020);
    fs::write(
        place.sub("zipdots2.zip"),
        raw_zip(&[
            RawZipEntry::stored(b"src/main.rs", MAIN.as_bytes(), 0o100644),
            RawZipEntry::stored(b"src\\..\\..\\..\\evil", b"pwned", 0o100644),
        ]),
    )
    .unwrap();
    fs::write(
        place.sub("zipabs.zip"),
        raw_zip(&[RawZipEntry::stored(abs.as_bytes(), b"pwned", 0o100644)]),
    )
    .unwrap();
    let main = MAIN.as_bytes();
    let reg = tar::EntryType::Regular;
    make_tar_gz(
        &place.sub("tardots.tar.gz"),
        &[
            (b"src/main.rs", reg, main, None),
            (b"src/../../../evil", reg, b"pwned", None),
        ],
    );
    make_tar_gz(
        &place.sub("tarabs.tgz"),
        &[(abs.as_bytes(), reg, b"pwned", None)],
    );

    for name in ["zipdots", "zipdots2", "tardots"] {
        place.refused(name, &Caps::default(), &["path traversal", "evil"]);
    }
    for name in ["zipabs", "tarabs"] {
        place.refused(name, &Caps::default(), &["absolute path"]);
    }
}

#[test]
fn links_devices_and_fifos_are_refused() {
    let place = Place::new();
    let main = MAIN.as_bytes();
    let reg = tar::EntryType::Regular;
    let ty = tar::EntryType::new;
    let cases: [(&str, &[TarEntry<'_>], &[&str]); 6] = [
        (
            "symlink-passwd",
            &[(
                b"src/main.rs",
                tar::EntryType::Symlink,
                b"",
                Some("/etc/passwd"),
            )],
            &["symbolic link", "/etc/passwd", "links are refused"],
        ),
        (
            "symlink-up",
            &[
                (b"up", tar::EntryType::Symlink, b"", Some("../..")),
                (b"up/evil", reg, b"pwned", None),
            ],
            &["symbolic link", "../..", "links are refused"],
        ),
        (
            "hardlink",
            &[
                (b"src/main.rs", reg, main, None),
                (
                    b"src/passwd",
                    tar::EntryType::Link,
                    b"",
                    Some("/etc/passwd"),
                ),
            ],
            &["hard link", "/etc/passwd"],
        ),
        (
            "fifo",
            &[(b"src/main.rs", tar::EntryType::Fifo, b"", None)],
            &["FIFO"],
        ),
        (
            "chardev",
            &[(b"null", tar::EntryType::Char, b"", None)],
            &["character device"],
        ),
        (
            "blockdev",
            &[(b"sda", ty(b'4'), b"", None)],
            &["block device"],
        ),
    ];
    for (name, entries, words) in cases {
        make_tar_gz(&place.sub(&format!("{name}.tar.gz")), entries);
        place.refused(name, &Caps::default(), words);
    }
    // The same in zip archives (the file type in the Unix mode).
    let zip_cases: [(&str, u32, &str); 3] = [
        ("zipsymlink", 0o120777, "symbolic link"),
        ("zipfifo", 0o010644, "FIFO"),
        ("zipsocket", 0o140755, "socket"),
    ];
    for (name, mode, word) in zip_cases {
        fs::write(
            place.sub(&format!("{name}.zip")),
            raw_zip(&[
                RawZipEntry::stored(b"src/main.rs", main, 0o100644),
                RawZipEntry::stored(b"src/x", b"/etc/passwd", mode),
            ]),
        )
        .unwrap();
        place.refused(name, &Caps::default(), &[word]);
    }
    // A symbolic link written by the zip crate itself.
    let mut zip = zip::ZipWriter::new(fs::File::create(place.sub("ziplink.zip")).unwrap());
    zip.add_symlink("src", "/etc", zip_options(2020)).unwrap();
    zip.finish().unwrap();
    place.refused("ziplink", &Caps::default(), &["symbolic link"]);
}

#[test]
fn names_that_are_not_utf8_are_refused() {
    let place = Place::new();
    fs::write(
        place.sub("zipname.zip"),
        raw_zip(&[
            RawZipEntry::stored(b"src/main.rs", MAIN.as_bytes(), 0o100644),
            RawZipEntry::stored(b"src/caf\xe9.rs", b"", 0o100644),
        ]),
    )
    .unwrap();
    make_tar_gz(
        &place.sub("tarname.tgz"),
        &[(b"src/\xff\xfe.rs", tar::EntryType::Regular, b"", None)],
    );
    place.refused(
        "zipname",
        &Caps::default(),
        &["not valid UTF-8", "caf\\\\xe9"],
    );
    place.refused("tarname", &Caps::default(), &["not valid UTF-8"]);
}

#[test]
fn corrupt_and_truncated_archives_are_refused() {
    let place = Place::new();
    let mut files = crate_files();
    files.push((
        "src/big.rs".into(),
        (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect(),
    ));
    make_zip(&place.sub("whole.zip"), &files, 2020);
    tar_gz_of(&place.sub("wholetgz.tgz"), &files);
    let zip = fs::read(place.sub("whole.zip")).unwrap();
    let tgz = fs::read(place.sub("wholetgz.tgz")).unwrap();
    fs::write(place.sub("cutzip.zip"), &zip[..zip.len() / 2]).unwrap();
    fs::write(place.sub("cuttgz.tgz"), &tgz[..tgz.len() / 2]).unwrap();
    fs::write(place.sub("cuttgztail.tgz"), &tgz[..tgz.len() - 4]).unwrap();
    let mut flipped = zip.clone();
    let at = flipped.len() / 3;
    flipped[at] ^= 0xff;
    fs::write(place.sub("flipzip.zip"), &flipped).unwrap();
    fs::write(place.sub("garbage.zip"), b"this is not a zip file at all").unwrap();
    fs::write(place.sub("junk.tar.gz"), b"nor is this a gzip stream").unwrap();
    fs::write(place.sub("zero.zip"), b"").unwrap();
    let mut bzip2 = RawZipEntry::stored(b"src/main.rs", MAIN.as_bytes(), 0o100644);
    bzip2.method = 12;
    fs::write(place.sub("bzip2.zip"), raw_zip(&[bzip2])).unwrap();

    assert!(place.open("whole").is_ok());
    assert!(place.open("wholetgz").is_ok());
    for name in ["cutzip", "garbage", "zero"] {
        place.refused(name, &Caps::default(), &["not a readable zip"]);
    }
    place.refused(
        "bzip2",
        &Caps::default(),
        &["\"src/main.rs\" cannot be read", "deflated"],
    );
    for name in ["cuttgz", "cuttgztail", "flipzip", "junk"] {
        place.refused(name, &Caps::default(), &["corrupt or truncated"]);
    }
}

#[test]
fn archive_bombs_are_refused_by_what_they_expand_to() {
    let place = Place::new();
    let caps = Caps::default();

    // 200 MiB of zeros, honestly declared: refused at the header.
    let (data, crc, len) = deflate_zeros(b"", 200);
    let honest = RawZipEntry {
        name: b"src/main.rs".to_vec(),
        method: 8,
        crc,
        data: data.clone(),
        declared: len as u32,
        mode: 0o100644,
    };
    fs::write(place.sub("bomb.zip"), raw_zip(&[honest])).unwrap();
    let reason = place.refused(
        "bomb",
        &caps,
        &["src/main.rs", "declares 209715200 bytes", "64 MiB"],
    );
    assert!(reason.contains("archive bomb"), "{reason}");
    assert_eq!(size_of_tree(&place.scratch("bomb")), 0);

    // The same zeros, the headers claiming 10 bytes: stopped by the bytes
    // actually decompressed, at 200 times the archive's size.
    let liar = RawZipEntry {
        name: b"src/main.rs".to_vec(),
        method: 8,
        crc,
        data: data.clone(),
        declared: 10,
        mode: 0o100644,
    };
    let zip = raw_zip(&[liar]);
    let zip_len = zip.len() as u64;
    fs::write(place.sub("liar.zip"), zip).unwrap();
    place.refused(
        "liar",
        &caps,
        &["more than 200 times its own size", "archive bomb"],
    );
    assert!(size_of_tree(&place.scratch("liar")) <= 200 * zip_len);
    // With no ratio to speak of, the byte cap stops it.
    let lenient = Caps {
        max_ratio: 1_000_000,
        ..caps
    };
    place.refused("liar", &lenient, &["more than 64 MiB"]);
    assert!(size_of_tree(&place.scratch("liar")) <= 64 << 20);

    // 100 000 tiny files: refused before any is written.
    let tiny: Vec<RawZipEntry> = (0..100_000)
        .map(|i| RawZipEntry::stored(format!("f/{i}").as_bytes(), b"x", 0o100644))
        .collect();
    fs::write(place.sub("tiny.zip"), raw_zip(&tiny)).unwrap();
    let reason = place.refused("tiny", &caps, &["more than 2000 files"]);
    assert!(reason.contains("archive bomb"), "{reason}");
}

#[test]
fn tar_bombs_are_refused_by_what_they_expand_to() {
    let place = Place::new();
    let caps = Caps::default();

    // One entry declaring 200 MiB of zeros (and having them).
    let header = tar_header(b"src/main.rs", tar::EntryType::Regular, 200 << 20, 0o644);
    let (data, crc, len) = deflate_zeros(header.as_bytes(), 201);
    fs::write(place.sub("big.tgz"), gzip(&data, crc, len)).unwrap();
    place.refused("big", &caps, &["declares 209715200 bytes"]);
    assert_eq!(size_of_tree(&place.scratch("big")), 0);

    // Seventy 1 MiB files of zeros: each within the cap, together not.
    let headers: Vec<tar::Header> = (0..70)
        .map(|i| {
            let name = format!("src/z{i}.rs");
            tar_header(name.as_bytes(), tar::EntryType::Regular, 1 << 20, 0o644)
        })
        .collect();
    let mut parts: Vec<(&[u8], usize)> = headers
        .iter()
        .map(|h| (h.as_bytes().as_slice(), 1))
        .collect();
    parts.push((&[0; 1024], 0));
    let (data, crc, len) = deflate_parts(&parts);
    fs::write(place.sub("many.tgz"), gzip(&data, crc, len)).unwrap();
    let tgz_len = fs::metadata(place.sub("many.tgz")).unwrap().len();
    place.refused("many", &caps, &["more than 200 times its own size"]);
    assert!(size_of_tree(&place.scratch("many")) <= (200 * tgz_len).max(1 << 20));
    let lenient = Caps {
        max_ratio: 1_000_000,
        ..caps
    };
    place.refused("many", &lenient, &["more than 64 MiB"]);

    // Tiny files past the file cap (a small cap: creating thousands of
    // files is slow on some file systems; the zip test uses the default).
    let names: Vec<Vec<u8>> = (0..150).map(|i| format!("f/{i}").into_bytes()).collect();
    let entries: Vec<TarEntry<'_>> = names
        .iter()
        .map(|n| (n.as_slice(), tar::EntryType::Regular, &b"x"[..], None))
        .collect();
    make_tar_gz(&place.sub("tiny.tgz"), &entries);
    let small = Caps {
        max_files: 100,
        ..caps
    };
    place.refused("tiny", &small, &["more than 100 files"]);
    assert_eq!(listing(&place.scratch("tiny"), Path::new("/-")).len(), 100);

    // A GNU long name of 100 MiB: the tar reader buffers it whole, so the
    // stream itself is bounded.
    let long = tar_header(
        b"././@LongLink",
        tar::EntryType::GNULongName,
        100 << 20,
        0o644,
    );
    let (data, crc, len) = deflate_zeros(long.as_bytes(), 101);
    fs::write(place.sub("longname.tgz"), gzip(&data, crc, len)).unwrap();
    place.refused("longname", &caps, &["archive bomb"]);
}

#[test]
fn entries_that_collide_are_refused() {
    let place = Place::new();
    let reg = tar::EntryType::Regular;
    make_tar_gz(
        &place.sub("twice.tgz"),
        &[
            (b"src/main.rs", reg, b"fn main() {}", None),
            (b"src/main.rs", reg, b"evil", None),
        ],
    );
    make_tar_gz(
        &place.sub("fileasdir.tgz"),
        &[
            (b"src", reg, b"x", None),
            (b"src/main.rs", reg, b"fn main() {}", None),
        ],
    );
    place.refused("twice", &Caps::default(), &["\"src/main.rs\" twice"]);
    place.refused("fileasdir", &Caps::default(), &["also has as a file"]);
}

#[test]
fn extraction_never_follows_a_link_already_in_scratch() {
    // Scratch is fresh in the batch; should it ever hold a link, extraction
    // must not go through it.
    let place = Place::new();
    make_zip(&place.sub("alice.zip"), &crate_files(), 2020);
    let scratch = place.scratch("alice");
    let outside = place.root().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, scratch.join("src")).unwrap();
    std::os::unix::fs::symlink(outside.join("Cargo.toml"), scratch.join("Cargo.toml")).unwrap();
    let entry = place.entry("alice");
    let result = intake::open(&entry, SLUG, BINARY, &scratch, &Caps::default());
    assert!(result.is_err(), "{result:?}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

/// The course itself as GitHub serves it (`git archive` with a wrapping
/// folder, as .zip and as .tar.gz with its PAX global header): the task's
/// starter is found in both, with one digest.
#[test]
fn a_github_archive_of_the_course_is_a_checkout() {
    let course = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let place = Place::new();
    for (format, file) in [("zip", "gh.zip"), ("tar.gz", "gh2.tar.gz")] {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(course)
            .args([
                "archive",
                "--format",
                format,
                "--prefix",
                "ipc-course-main/",
                "-o",
            ])
            .arg(place.sub(file))
            .arg("HEAD")
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: no git checkout of the course to archive");
            return;
        }
    }
    let zip = place.open("gh").unwrap();
    let tgz = place.open("gh2").unwrap();
    assert_eq!(
        zip.crate_dir,
        place
            .scratch("gh")
            .join("ipc-course-main/starter")
            .join(SLUG)
    );
    assert_eq!(
        tgz.crate_dir,
        place
            .scratch("gh2")
            .join("ipc-course-main/starter")
            .join(SLUG)
    );
    assert_eq!(zip.digest, tgz.digest);
}
