//! `cargo grade package`: a task made ready for a learning-management
//! system's own grading machines.
//!
//! - [`gradescope`] writes a Gradescope autograder zip: `setup.sh` and
//!   `run_autograder` at its root (as Gradescope's "Autograder
//!   Specifications" require), and `course/`: the grader's sources, the
//!   task's spec and starter crate (the grader builds every submission
//!   against the starter's manifest), and `instructor-specs/` when given.
//! - [`prairielearn`] writes the files of a PrairieLearn externally graded
//!   question: `info.json` (`externalGradingOptions`: image, entrypoint,
//!   timeout), `question.html`, `tests/run.sh` (the entrypoint) beside
//!   `tests/course/`, and `image/Dockerfile` for the grading image.
//!
//! Neither ships the reference solutions. The scripts root every path at
//! `$AUTOGRADER_ROOT` (default `/autograder`) and `$PL_GRADE_ROOT`
//! (default `/grade`), so a test can run them in a simulated layout.
//! Packages are deterministic: files sorted, fixed timestamps.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::course::Course;
use crate::spec::Spec;

/// A package could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the zip {}: {source}", path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{} is a symbolic link or a special file: a package holds regular files and directories only", .0.display())]
    NotAFile(PathBuf),
    #[error("--instructor-specs {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} exists and is not a package of this task (no info.json naming {slug}): give another --out", path.display())]
    Occupied { path: PathBuf, slug: String },
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

impl Entry {
    fn text(path: &str, text: String, executable: bool) -> Entry {
        Entry {
            path: path.to_owned(),
            bytes: text.into_bytes(),
            executable,
        }
    }
}

const GRADESCOPE_SETUP: &str = include_str!("../templates/gradescope-setup.sh");
const GRADESCOPE_RUN: &str = include_str!("../templates/gradescope-run_autograder");
const PRAIRIELEARN_RUN: &str = include_str!("../templates/prairielearn-run.sh");
const PRAIRIELEARN_DOCKERFILE: &str = include_str!("../templates/prairielearn-Dockerfile");

/// PrairieLearn's limit on `externalGradingOptions.timeout`, in seconds.
pub const PRAIRIELEARN_MAX_TIMEOUT_S: u64 = 600;

/// Names the templates' placeholders stand for.
struct Fill<'a> {
    spec: &'a Spec,
    toolchain: String,
    image: String,
}

impl Fill<'_> {
    fn apply(&self, template: &str) -> String {
        template
            .replace("@TASK@", &self.spec.task.id)
            .replace("@SLUG@", &self.spec.task.slug)
            .replace(
                "@FIRST_TEST@",
                self.spec.tests.first().map_or("", |t| t.name.as_str()),
            )
            .replace("@TOOLCHAIN@", &self.toolchain)
            .replace("@IMAGE@", &self.image)
            .replace("@GRADER_VERSION@", env!("CARGO_PKG_VERSION"))
    }
}

/// The Rust toolchain the scripts install: the one this package is made
/// with (what the course was tested with), else `stable`.
fn toolchain() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or_else(|| "stable".into())
}

/// The files of the course a grader needs, under `prefix`: the workspace
/// manifest and lock file, the grader's sources (the fault shim included),
/// the task's spec and its starter crate. Never the solutions.
pub fn course_files(
    course: &Course,
    spec: &Spec,
    prefix: &str,
) -> Result<Vec<Entry>, PackageError> {
    let mut entries = Vec::new();
    for name in ["Cargo.toml", "Cargo.lock"] {
        entries.push(read_entry(
            &course.root.join(name),
            &format!("{prefix}{name}"),
        )?);
    }
    walk(
        &course.root.join("grader"),
        &format!("{prefix}grader"),
        &mut entries,
    )?;
    entries.push(read_entry(
        &spec.path,
        &format!("{prefix}specs/{}.toml", spec.task.slug),
    )?);
    walk(
        &course.starter_dir(spec),
        &format!("{prefix}starter/{}", spec.task.slug),
        &mut entries,
    )?;
    Ok(entries)
}

/// The instructor overlay of this task: `DIR/<slug>.toml` (what
/// `--instructor-specs DIR` reads), and nothing of other tasks' overlays.
fn instructor_files(dir: &Path, spec: &Spec, prefix: &str) -> Result<Vec<Entry>, PackageError> {
    if !dir.is_dir() {
        return Err(PackageError::NotADirectory(dir.to_owned()));
    }
    let name = format!("{}.toml", spec.task.slug);
    Ok(vec![read_entry(
        &dir.join(&name),
        &format!("{prefix}/{name}"),
    )?])
}

fn read_entry(path: &Path, name: &str) -> Result<Entry, PackageError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| PackageError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(PackageError::NotAFile(path.to_owned()));
    }
    use std::os::unix::fs::PermissionsExt;
    Ok(Entry {
        path: name.to_owned(),
        bytes: std::fs::read(path).map_err(|source| PackageError::Read {
            path: path.to_owned(),
            source,
        })?,
        executable: meta.permissions().mode() & 0o111 != 0,
    })
}

/// Every file under `dir`, as `prefix/...`, skipping build output
/// (`target/`) and hidden entries (`.git`, editor files).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), PackageError> {
    let read = std::fs::read_dir(dir).map_err(|source| PackageError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut names: Vec<_> = read
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|source| PackageError::Read {
            path: dir.to_owned(),
            source,
        })?;
    names.sort();
    for name in names {
        let text = name.to_string_lossy();
        if text.starts_with('.') || text == "target" {
            continue;
        }
        let path = dir.join(&name);
        let inner = format!("{prefix}/{text}");
        let meta = std::fs::symlink_metadata(&path).map_err(|source| PackageError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(&path, &inner, out)?;
        } else {
            out.push(read_entry(&path, &inner)?);
        }
    }
    Ok(())
}

/// The entries of a Gradescope autograder zip for `spec`.
pub fn gradescope_entries(
    course: &Course,
    spec: &Spec,
    instructor_specs: Option<&Path>,
) -> Result<Vec<Entry>, PackageError> {
    let fill = Fill {
        spec,
        toolchain: toolchain(),
        image: String::new(),
    };
    let mut entries = vec![
        Entry::text("setup.sh", fill.apply(GRADESCOPE_SETUP), true),
        Entry::text("run_autograder", fill.apply(GRADESCOPE_RUN), true),
    ];
    entries.extend(course_files(course, spec, "course/")?);
    if let Some(dir) = instructor_specs {
        entries.extend(instructor_files(dir, spec, "instructor-specs")?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Writes the Gradescope autograder zip of `spec` to `out` (atomically).
pub fn gradescope(
    course: &Course,
    spec: &Spec,
    out: &Path,
    instructor_specs: Option<&Path>,
) -> Result<usize, PackageError> {
    let entries = gradescope_entries(course, spec, instructor_specs)?;
    let zip_err = |source| PackageError::Zip {
        path: out.to_owned(),
        source,
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| PackageError::Write {
        path: out.to_owned(),
        source,
    })?;
    let mut zip = zip::ZipWriter::new(tmp);
    for e in &entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(if e.executable { 0o755 } else { 0o644 });
        zip.start_file(e.path.as_str(), options).map_err(zip_err)?;
        zip.write_all(&e.bytes)
            .map_err(|source| PackageError::Write {
                path: out.to_owned(),
                source,
            })?;
    }
    let tmp = zip.finish().map_err(zip_err)?;
    tmp.persist(out).map_err(|e| PackageError::Write {
        path: out.to_owned(),
        source: e.error,
    })?;
    Ok(entries.len())
}

/// How to make a PrairieLearn question.
#[derive(Debug, Clone)]
pub struct PrairieLearnOptions {
    /// The grading image named in `info.json`.
    pub image: String,
    pub instructor_specs: Option<PathBuf>,
}

/// The grading budget PrairieLearn is given, in seconds: the build, every
/// test's timeout (times its rounds), and a margin; at most
/// [`PRAIRIELEARN_MAX_TIMEOUT_S`].
pub fn prairielearn_timeout(spec: &Spec) -> u64 {
    let tests_ms: u64 = spec
        .tests
        .iter()
        .map(|t| t.timeout_ms.saturating_mul(u64::from(t.rounds)))
        .sum();
    (spec.limits.build_timeout_s + tests_ms.div_ceil(1000) + 30)
        .clamp(60, PRAIRIELEARN_MAX_TIMEOUT_S)
}

/// A UUID for the question, derived from the task (so packaging again
/// keeps the question's identity).
fn question_uuid(spec: &Spec) -> String {
    let h =
        crate::spec::sha256_hex(format!("cargo-grade prairielearn {}", spec.task.slug).as_bytes());
    format!(
        "{}-{}-8{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The entries of a PrairieLearn question for `spec`.
pub fn prairielearn_entries(
    course: &Course,
    spec: &Spec,
    opts: &PrairieLearnOptions,
) -> Result<Vec<Entry>, PackageError> {
    let fill = Fill {
        spec,
        toolchain: toolchain(),
        image: opts.image.clone(),
    };
    let info = serde_json::json!({
        "uuid": question_uuid(spec),
        "title": format!("{}: {}", spec.task.id, spec.task.title),
        "topic": "Linux IPC",
        "tags": ["cargo-grade", spec.task.id],
        "type": "v3",
        "singleVariant": true,
        "gradingMethod": "External",
        "externalGradingOptions": {
            "enabled": true,
            "image": opts.image,
            "entrypoint": "/grade/tests/run.sh",
            "timeout": prairielearn_timeout(spec),
        }
    });
    let html_text = |s: &str| quick_xml::escape::escape(s).into_owned();
    let question = format!(
        "<pl-question-panel>\n  <p>{title} ({id}): write the program the handout <code>{handout}</code> describes, \
         then upload its sources: <code>main.rs</code> and any modules beside it (the files of your crate's \
         <code>src/</code>). It is built against the course's starter manifest and graded by cargo-grade as real \
         processes; each test that loses points says what the grader did, expected and observed.</p>\n\
         </pl-question-panel>\n\n\
         <pl-file-upload file-names=\"main.rs\" optional-file-patterns=\"*.rs\"></pl-file-upload>\n\n\
         <pl-submission-panel>\n  <pl-external-grader-results></pl-external-grader-results>\n  \
         <pl-file-preview></pl-file-preview>\n</pl-submission-panel>\n",
        title = html_text(&spec.task.title),
        id = html_text(&spec.task.id),
        handout = html_text(&spec.task.handout),
    );
    let mut entries = vec![
        Entry::text(
            "info.json",
            serde_json::to_string_pretty(&info).expect("JSON") + "\n",
            false,
        ),
        Entry::text("question.html", question, false),
        Entry::text("tests/run.sh", fill.apply(PRAIRIELEARN_RUN), true),
        Entry::text(
            "image/Dockerfile",
            fill.apply(PRAIRIELEARN_DOCKERFILE),
            false,
        ),
    ];
    entries.extend(course_files(course, spec, "tests/course/")?);
    if let Some(dir) = &opts.instructor_specs {
        entries.extend(instructor_files(dir, spec, "tests/instructor-specs")?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Writes the PrairieLearn question of `spec` into the directory `out`
/// (created; an earlier package of the same task there is replaced).
pub fn prairielearn(
    course: &Course,
    spec: &Spec,
    out: &Path,
    opts: &PrairieLearnOptions,
) -> Result<usize, PackageError> {
    let entries = prairielearn_entries(course, spec, opts)?;
    if out.exists() {
        let ours = std::fs::read_to_string(out.join("info.json")).is_ok_and(|t| {
            t.contains(&format!("\"{}\"", spec.task.id)) && t.contains("cargo-grade")
        });
        let empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_none());
        if !out.is_dir() || !(ours || empty) {
            return Err(PackageError::Occupied {
                path: out.to_owned(),
                slug: spec.task.slug.clone(),
            });
        }
        for stale in ["tests", "image"] {
            let p = out.join(stale);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .map_err(|source| PackageError::Write { path: p, source })?;
            }
        }
    }
    for e in &entries {
        let path = out.join(&e.path);
        let write = |source| PackageError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, &e.bytes).map_err(write)?;
        use std::os::unix::fs::PermissionsExt;
        let mode = if e.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(write)?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course() -> Course {
        Course {
            root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_owned(),
        }
    }

    #[test]
    fn a_gradescope_package_has_the_scripts_at_its_root_and_no_solutions() {
        let course = course();
        let spec = course.task("task1").unwrap();
        let entries = gradescope_entries(&course, &spec, None).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        for needed in [
            "setup.sh",
            "run_autograder",
            "course/Cargo.toml",
            "course/Cargo.lock",
            "course/grader/Cargo.toml",
            "course/grader/src/main.rs",
            "course/grader/shim/Cargo.toml",
            "course/specs/task1-signals.toml",
            "course/starter/task1-signals/Cargo.toml",
            "course/starter/task1-signals/Cargo.lock",
            "course/starter/task1-signals/src/main.rs",
        ] {
            assert!(names.contains(&needed), "{needed} missing: {names:?}");
        }
        assert!(names
            .iter()
            .all(|n| !n.contains("solutions") && !n.contains("/target/")));
        assert!(!names.iter().any(|n| n.starts_with("course/specs/task2")));
        let script = |name: &str| {
            let e = entries.iter().find(|e| e.path == name).unwrap();
            assert!(e.executable, "{name} is executable");
            String::from_utf8(e.bytes.clone()).unwrap()
        };
        for name in ["setup.sh", "run_autograder"] {
            let text = script(name);
            for placeholder in [
                "@TASK@",
                "@SLUG@",
                "@FIRST_TEST@",
                "@TOOLCHAIN@",
                "@GRADER_VERSION@",
            ] {
                assert!(
                    !text.contains(placeholder),
                    "{name}: {placeholder} left: {text}"
                );
            }
            assert!(text.contains("TASK=\"task1\"") && text.contains("SLUG=\"task1-signals\""));
        }
        assert!(script("run_autograder").contains("--format gradescope"));
        assert!(script("setup.sh").contains(&format!("FIRST_TEST=\"{}\"", spec.tests[0].name)));
        // Deterministic: the same entries twice.
        assert_eq!(entries, gradescope_entries(&course, &spec, None).unwrap());
    }

    #[test]
    fn instructor_specs_go_in_and_a_bad_directory_is_named() {
        let course = course();
        let spec = course.task("task1").unwrap();
        let overlay = tempfile::tempdir().unwrap();
        std::fs::write(overlay.path().join("task1-signals.toml"), "# extra").unwrap();
        std::fs::write(
            overlay.path().join("task2-fifo-chat.toml"),
            "# not this task's",
        )
        .unwrap();
        let entries = gradescope_entries(&course, &spec, Some(overlay.path())).unwrap();
        let shipped: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.path.starts_with("instructor-specs/"))
            .collect();
        assert_eq!(shipped.len(), 1, "only this task's overlay");
        assert_eq!(
            (shipped[0].path.as_str(), shipped[0].bytes.as_slice()),
            ("instructor-specs/task1-signals.toml", &b"# extra"[..])
        );
        let missing = overlay.path().join("nope");
        let err = gradescope_entries(&course, &spec, Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope: not a directory"), "{err}");
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            overlay.path().join("task1-signals.toml"),
            linked.path().join("task1-signals.toml"),
        )
        .unwrap();
        let err = gradescope_entries(&course, &spec, Some(linked.path())).unwrap_err();
        assert!(matches!(err, PackageError::NotAFile(_)), "{err}");
    }

    #[test]
    fn the_zip_holds_every_entry_with_its_mode() {
        let course = course();
        let spec = course.task("task1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("task1.zip");
        let n = gradescope(&course, &spec, &out, None).unwrap();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(zip.len(), n);
        let setup = zip.by_name("setup.sh").unwrap();
        assert_eq!(setup.unix_mode().map(|m| m & 0o777), Some(0o755));
        drop(setup);
        let spec_file = zip.by_name("course/specs/task1-signals.toml").unwrap();
        assert_eq!(spec_file.unix_mode().map(|m| m & 0o777), Some(0o644));
        drop(spec_file);
        let first = std::fs::read(&out).unwrap();
        gradescope(&course, &spec, &out, None).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first, "byte-identical");
    }

    #[test]
    fn a_prairielearn_question_names_its_image_entrypoint_and_timeout() {
        let course = course();
        let spec = course.task("task1").unwrap();
        let opts = PrairieLearnOptions {
            image: "example/cargo-grade-task1:latest".into(),
            instructor_specs: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("question");
        prairielearn(&course, &spec, &out, &opts).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("info.json")).unwrap()).unwrap();
        let ego = &info["externalGradingOptions"];
        assert_eq!(ego["enabled"], true);
        assert_eq!(ego["image"], "example/cargo-grade-task1:latest");
        assert_eq!(ego["entrypoint"], "/grade/tests/run.sh");
        let timeout = ego["timeout"].as_u64().unwrap();
        assert!(
            (60..=PRAIRIELEARN_MAX_TIMEOUT_S).contains(&timeout),
            "{timeout}"
        );
        assert_eq!(info["gradingMethod"], "External");
        assert_eq!(info["uuid"].as_str().unwrap().len(), 36);
        assert!(out.join("tests/course/specs/task1-signals.toml").is_file());
        assert!(out.join("tests/course/grader/src/main.rs").is_file());
        assert!(!out.join("tests/course/solutions").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("tests/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let html = std::fs::read_to_string(out.join("question.html")).unwrap();
        assert!(html.contains("<pl-file-upload file-names=\"main.rs\""));
        assert!(html.contains("<pl-external-grader-results>"));
        let docker = std::fs::read_to_string(out.join("image/Dockerfile")).unwrap();
        assert!(docker.contains("docker build -t example/cargo-grade-task1:latest"));
        // Packaging again replaces it; a foreign directory is refused.
        prairielearn(&course, &spec, &out, &opts).unwrap();
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = prairielearn(&course, &spec, &foreign, &opts).unwrap_err();
        assert!(matches!(err, PackageError::Occupied { .. }), "{err}");
    }
}
