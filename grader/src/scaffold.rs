//! `cargo grade new ID`: a new task's files, written so that they already
//! pass `cargo grade check` and `cargo grade verify`.
//!
//! A TA starting from an empty page spends the first hours on what every
//! task needs and nobody remembers: the spec's `[task]` table and its
//! `#:schema` line, a starter crate with the lock file the grader builds
//! every submission against, a reference solution built with the starter's
//! manifest, a mutants file in the shape `check` wants. Starting instead
//! from a small task that verifies, each edit can be checked at once, and a
//! mistake is the last edit's. The templates are files
//! (`grader/templates/new/`, compiled in), so they read as what they write.
//!
//! The scaffolded crate depends on nothing: its `Cargo.lock` is a template
//! too, so scaffolding needs no registry and works offline.
//!
//! The id names everything: `task9-demo` is the slug (the files' names, the
//! crate's and binary's name), and its part before the first `-`, `task9`,
//! is the task id, as in every spec (`cargo grade task9` and `cargo grade
//! task9-demo` both find it). Nothing is ever overwritten: an existing file,
//! or a task with the same id, stops it before anything is written.

use std::path::{Path, PathBuf};

use crate::course::Course;

/// The templates, and where each goes (relative to the course, with
/// `SLUG` replaced).
const TEMPLATES: &[(&str, &str)] = &[
    ("tasks/SLUG.md", include_str!("../templates/new/handout.md")),
    (
        "specs/SLUG.toml",
        include_str!("../templates/new/spec.toml"),
    ),
    (
        "starter/SLUG/Cargo.toml",
        include_str!("../templates/new/Cargo.toml"),
    ),
    (
        "starter/SLUG/Cargo.lock",
        include_str!("../templates/new/Cargo.lock"),
    ),
    (
        "starter/SLUG/src/main.rs",
        include_str!("../templates/new/starter.rs"),
    ),
    (
        "solutions/SLUG/Cargo.toml",
        include_str!("../templates/new/Cargo.toml"),
    ),
    (
        "solutions/SLUG/Cargo.lock",
        include_str!("../templates/new/Cargo.lock"),
    ),
    (
        "solutions/SLUG/src/main.rs",
        include_str!("../templates/new/solution.rs"),
    ),
    (
        "solutions/SLUG/mutants.toml",
        include_str!("../templates/new/mutants.toml"),
    ),
];

/// The longest slug accepted (it names files, a crate and a binary).
const MAX_SLUG: usize = 64;

/// Why a task could not be scaffolded. Nothing was written, except for
/// [`ScaffoldError::Write`] (the files written before it are listed).
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid task id {given:?}: {why}")]
    BadId { given: String, why: String },
    #[error("invalid --title {given:?}: {why}")]
    BadTitle { given: String, why: String },
    #[error("the course already has a task {id}: {} (pick another id)", existing.display())]
    Taken { id: String, existing: PathBuf },
    #[error("refusing to overwrite what exists: {} (cargo grade new never overwrites; remove it or pick another id)", .paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists { paths: Vec<PathBuf> },
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}{}", path.display(), written_note(.written))]
    Write {
        path: PathBuf,
        written: Vec<PathBuf>,
        #[source]
        source: std::io::Error,
    },
}

fn written_note(written: &[PathBuf]) -> String {
    if written.is_empty() {
        String::new()
    } else {
        format!(
            " (already written: {})",
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// A task to scaffold: its id, slug and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// `task9`.
    pub id: String,
    /// `task9-demo`.
    pub slug: String,
    pub title: String,
}

impl NewTask {
    /// The task named by `given` (`task9-demo`: the id `task9`, the slug
    /// `task9-demo`), titled `title` or, by default, after its name
    /// (`Demo`).
    pub fn parse(given: &str, title: Option<&str>) -> Result<NewTask, ScaffoldError> {
        let bad = |why: String| ScaffoldError::BadId {
            given: given.to_owned(),
            why,
        };
        if given.is_empty() {
            return Err(bad("it is empty; give one like task9-demo".into()));
        }
        for (i, c) in given.chars().enumerate() {
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(bad(format!(
                    "{c:?} (character {}) is not allowed: use lowercase letters a-z, digits and `-`, \
                     like task9-demo (it names files, a crate and its binary)",
                    i + 1
                )));
            }
        }
        if !given.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad(
                "it must start with a letter (it is a crate's name), like task9-demo".into(),
            ));
        }
        let Some((id, name)) = given.split_once('-') else {
            return Err(bad(format!(
                "give the task id and a name, like {given}-demo: the id ({given}) is what \
                 `cargo grade {given}` takes, the whole names the task's files"
            )));
        };
        if name.is_empty() || given.ends_with('-') || given.contains("--") {
            return Err(bad(
                "`-` separates words: none may be empty, like task9-demo".into(),
            ));
        }
        if given.len() > MAX_SLUG {
            return Err(bad(format!("it is longer than {MAX_SLUG} characters")));
        }
        let title = match title {
            Some(t) => {
                let why = if t.trim().is_empty() {
                    Some("it is empty")
                } else if t.chars().any(char::is_control) {
                    Some("it must be one line, without control characters")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(ScaffoldError::BadTitle {
                        given: t.to_owned(),
                        why: why.into(),
                    });
                }
                t.trim().to_owned()
            }
            None => {
                let words = name.replace('-', " ");
                let mut chars = words.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        };
        Ok(NewTask {
            id: id.to_owned(),
            slug: given.to_owned(),
            title,
        })
    }

    /// Each file's path (relative to the course) and text.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let title_toml = toml::Value::String(self.title.clone()).to_string();
        TEMPLATES
            .iter()
            .map(|(path, template)| {
                let text = template
                    .replace("{{id}}", &self.id)
                    .replace("{{slug}}", &self.slug)
                    .replace("{{title_toml}}", &title_toml)
                    .replace("{{title}}", &self.title);
                (PathBuf::from(path.replace("SLUG", &self.slug)), text)
            })
            .collect()
    }
}

/// Writes `task`'s files into `course`, refusing (before writing anything)
/// when the course has a task of that id or slug, or any of the files or
/// the crate directories exists. Returns the paths written, relative to
/// the course.
pub fn write(course: &Course, task: &NewTask) -> Result<Vec<PathBuf>, ScaffoldError> {
    let specs = course.root.join("specs");
    if specs.is_dir() {
        let entries = std::fs::read_dir(&specs).map_err(|source| ScaffoldError::List {
            dir: specs.clone(),
            source,
        })?;
        let mut existing: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        existing.sort();
        for path in existing {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let id = stem.split_once('-').map_or(&*stem, |(id, _)| id);
            if id == task.id || stem == task.slug {
                return Err(ScaffoldError::Taken {
                    id: task.id.clone(),
                    existing: relative(&course.root, &path),
                });
            }
        }
    }
    let files = task.files();
    let mut taken: Vec<PathBuf> = [
        format!("starter/{}", task.slug),
        format!("solutions/{}", task.slug),
    ]
    .into_iter()
    .map(PathBuf::from)
    .chain(files.iter().map(|(p, _)| p.clone()))
    .filter(|p| course.root.join(p).symlink_metadata().is_ok())
    .collect();
    taken.dedup();
    if !taken.is_empty() {
        return Err(ScaffoldError::Exists { paths: taken });
    }
    let mut written = Vec::new();
    for (path, text) in files {
        let full = course.root.join(&path);
        let result = full
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| create_new(&full, &text));
        if let Err(source) = result {
            return Err(ScaffoldError::Write {
                path,
                written,
                source,
            });
        }
        written.push(path);
    }
    Ok(written)
}

/// Writes a file that must not exist yet (`O_EXCL`: never a file that
/// appeared since the check above).
fn create_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_slugs_first_word() {
        let t = NewTask::parse("task9-demo", None).unwrap();
        assert_eq!(
            (t.id.as_str(), t.slug.as_str(), t.title.as_str()),
            ("task9", "task9-demo", "Demo")
        );
        let t = NewTask::parse("lab2-fifo-relay", Some("  FIFO relay ")).unwrap();
        assert_eq!((t.id.as_str(), t.title.as_str()), ("lab2", "FIFO relay"));
        assert_eq!(
            NewTask::parse("task9-fifo-relay", None).unwrap().title,
            "Fifo relay"
        );
    }

    #[test]
    fn a_bad_id_names_its_bad_character() {
        let why = |id: &str| NewTask::parse(id, None).unwrap_err().to_string();
        assert!(
            why("task9 demo").contains("' ' (character 6) is not allowed"),
            "{}",
            why("task9 demo")
        );
        assert!(why("Task9-demo").contains("'T' (character 1)"));
        assert!(why("task9/../x").contains("'/' (character 6)"));
        assert!(why("task9").contains("like task9-demo"));
        assert!(why("9task-demo").contains("must start with a letter"));
        assert!(why("task9--demo").contains("none may be empty"));
        assert!(why("task9-").contains("none may be empty"));
        assert!(why("").contains("empty"));
        let title = NewTask::parse("task9-demo", Some("two\nlines")).unwrap_err();
        assert!(title.to_string().contains("one line"), "{title}");
    }

    #[test]
    fn the_title_is_a_toml_string_in_the_spec() {
        let t = NewTask::parse("task9-demo", Some(r#"Quotes " and \ backslash"#)).unwrap();
        let (_, spec) = t
            .files()
            .into_iter()
            .find(|(p, _)| p == Path::new("specs/task9-demo.toml"))
            .unwrap();
        let table: toml::Table = spec.parse().unwrap();
        assert_eq!(
            table["task"]["title"].as_str(),
            Some(r#"Quotes " and \ backslash"#)
        );
        assert!(spec.starts_with("#:schema ./spec.schema.json\n"));
    }
}
