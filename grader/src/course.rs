//! The course repository: where specs, starters and solutions live, and how
//! a task named on the command line (`task1` or `task1-signals`) is found.

use std::path::{Path, PathBuf};

use crate::spec::{Spec, SpecError};

/// A course checkout: `specs/`, `starter/`, `solutions/`, `tasks/`.
#[derive(Debug, Clone)]
pub struct Course {
    pub root: PathBuf,
}

/// A problem finding the course or a task (a usage or environment error).
#[derive(Debug)]
pub enum CourseError {
    NotFound(String),
    UnknownTask { name: String, known: Vec<String> },
    Spec(SpecError),
}

impl std::fmt::Display for CourseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CourseError::NotFound(msg) => write!(f, "{msg}"),
            CourseError::UnknownTask { name, known } => write!(
                f,
                "unknown task {name:?}; the tasks are: {} (see `cargo grade list`)",
                known.join(", ")
            ),
            CourseError::Spec(e) => write!(f, "invalid spec: {e}"),
        }
    }
}

impl std::error::Error for CourseError {}

impl Course {
    /// Finds the course: `explicit` if given, else `$CARGO_GRADE_COURSE`,
    /// else the nearest ancestor of the current directory with a `specs/`
    /// directory and a `Cargo.toml`.
    pub fn locate(explicit: Option<&Path>) -> Result<Course, CourseError> {
        if let Some(dir) = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CARGO_GRADE_COURSE").map(PathBuf::from))
        {
            let root = dir.canonicalize().map_err(|e| {
                CourseError::NotFound(format!("course directory {}: {e}", dir.display()))
            })?;
            return Ok(Course { root });
        }
        let cwd = std::env::current_dir().map_err(|e| {
            CourseError::NotFound(format!("cannot read the current directory: {e}"))
        })?;
        cwd.ancestors()
            .find(|d| d.join("specs").is_dir() && d.join("Cargo.toml").is_file())
            .map(|d| Course { root: d.to_owned() })
            .ok_or_else(|| {
                CourseError::NotFound(format!(
                    "no course found: neither {} nor any directory above it has specs/ and Cargo.toml \
                     (run cargo grade from your copy of the course repository, or pass --course DIR)",
                    cwd.display()
                ))
            })
    }

    /// The spec files, sorted by name.
    pub fn spec_paths(&self) -> Result<Vec<PathBuf>, CourseError> {
        let dir = self.root.join("specs");
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| CourseError::NotFound(format!("cannot list {}: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Every task's spec, loaded and validated.
    pub fn specs(&self) -> Result<Vec<Spec>, CourseError> {
        self.spec_paths()?
            .iter()
            .map(|p| self.load_checked(p))
            .collect()
    }

    /// The spec of the task named `name` (its id or its slug).
    pub fn task(&self, name: &str) -> Result<Spec, CourseError> {
        let paths = self.spec_paths()?;
        let stem = |p: &Path| {
            p.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        let found = paths
            .iter()
            .find(|p| stem(p) == name || stem(p).split_once('-').is_some_and(|(id, _)| id == name));
        match found {
            Some(path) => self.load_checked(path),
            None => Err(CourseError::UnknownTask {
                name: name.to_owned(),
                known: paths.iter().map(|p| stem(p)).collect(),
            }),
        }
    }

    /// The spec of `name` with the instructor's private tests merged in:
    /// `overlay/<slug>.toml`, a file of `[[test]]` tables kept outside the
    /// students' repository. Its tests are validated like any spec's and are
    /// hidden, whatever they say: students see their names and points only,
    /// and the spec's digest covers them. Errors in the overlay name the
    /// overlay's file and line.
    pub fn task_with_overlay(
        &self,
        name: &str,
        overlay: Option<&Path>,
    ) -> Result<Spec, CourseError> {
        let spec = self.task(name)?;
        let Some(dir) = overlay else {
            return Ok(spec);
        };
        let extra = dir.join(format!("{}.toml", spec.task.slug));
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| {
                CourseError::NotFound(format!(
                    "instructor spec overlay {}: {e} (--instructor-specs DIR holds <slug>.toml with extra [[test]] tables)",
                    p.display()
                ))
            })
        };
        let base = read(&spec.path)?;
        let more = read(&extra)?;
        // The overlay's lines follow the base's, after one blank line.
        let offset = base.lines().count() + 1;
        let combined = format!("{}\n\n{more}", base.trim_end_matches('\n'));
        match Spec::parse(&spec.path, &combined) {
            Err(mut e) => {
                if let Some(line) = e.line.filter(|&l| l > offset) {
                    e.path = extra;
                    e.line = Some(line - offset);
                }
                Err(CourseError::Spec(e))
            }
            Ok(mut merged) => {
                for t in merged.tests.iter_mut().filter(|t| t.line > offset) {
                    t.visibility = crate::spec::Visibility::Hidden;
                    t.line -= offset;
                    for step in &mut t.steps {
                        step.line = step.line.saturating_sub(offset);
                    }
                }
                Ok(merged)
            }
        }
    }

    fn load_checked(&self, path: &Path) -> Result<Spec, CourseError> {
        let spec = Spec::load(path).map_err(CourseError::Spec)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        if spec.task.slug != stem {
            return Err(CourseError::Spec(SpecError {
                path: path.to_owned(),
                line: None,
                message: format!(
                    "[task].slug is {:?} but the file is named {stem}.toml; they must agree",
                    spec.task.slug
                ),
            }));
        }
        Ok(spec)
    }

    pub fn starter_dir(&self, spec: &Spec) -> PathBuf {
        self.root.join("starter").join(&spec.task.slug)
    }

    pub fn solution_dir(&self, spec: &Spec) -> PathBuf {
        self.root.join("solutions").join(&spec.task.slug)
    }

    /// The task's other correct solutions, each built on a design other than
    /// the reference's: the crates in `solutions/<slug>/alternatives/`, by
    /// name, sorted. A spec must give each of them full marks too, so that it
    /// cannot depend on a choice the handout leaves open.
    pub fn alternatives(&self, spec: &Spec) -> Vec<(String, PathBuf)> {
        let dir = self.solution_dir(spec).join("alternatives");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("src").is_dir())
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                (name, p)
            })
            .collect();
        found.sort();
        found
    }

    /// Where the grader keeps its builds: `target/cargo-grade` of the course,
    /// unless `$CARGO_GRADE_TARGET_DIR` says otherwise.
    pub fn work_dir(&self) -> PathBuf {
        std::env::var_os("CARGO_GRADE_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target").join("cargo-grade"))
    }
}
