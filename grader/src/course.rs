//! The course repository: where specs, starters and solutions live, and how
//! a task named on the command line (`task1` or `task1-signals`) is found.

use std::path::{Path, PathBuf};

use crate::check;
use crate::spec::{Spec, SpecError};

/// A course checkout: `specs/`, `starter/`, `solutions/`, `tasks/`.
#[derive(Debug, Clone)]
pub struct Course {
    pub root: PathBuf,
}

/// A problem finding the course or a task (a usage or environment error),
/// or a spec that does not validate.
#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    #[error("{0}")]
    NotFound(String),
    #[error("unknown task {name:?}; the tasks are: {} (see `cargo grade list`)", .known.join(", "))]
    UnknownTask { name: String, known: Vec<String> },
    /// Every error of the spec and of its course's files.
    #[error("invalid spec:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Spec(Vec<SpecError>),
}

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

    /// Every task's spec, loaded and validated; the errors of every file
    /// when one has any.
    pub fn specs(&self) -> Result<Vec<Spec>, CourseError> {
        let mut specs = Vec::new();
        let mut errors = Vec::new();
        for path in self.spec_paths()? {
            let outcome = self.check(&path, check::Mutants::No);
            match outcome.spec {
                Some(spec) => specs.push(spec),
                None => errors.extend(outcome.errors),
            }
        }
        if errors.is_empty() {
            Ok(specs)
        } else {
            Err(CourseError::Spec(errors))
        }
    }

    /// The spec of the task named `name` (its id or its slug), checked with
    /// its starter crate.
    pub fn task(&self, name: &str) -> Result<Spec, CourseError> {
        self.load_checked(&self.task_path(name)?)
    }

    /// The spec of the task named `name`, checked with its starter crate and
    /// its mutants file (for the self-check).
    pub fn task_with_mutants(&self, name: &str) -> Result<Spec, CourseError> {
        Course::ok(self.check(&self.task_path(name)?, check::Mutants::Required))
    }

    /// Checks a spec file of this course, without running anything.
    pub fn check(&self, path: &Path, mutants: check::Mutants) -> check::Outcome {
        check::spec_file(path, Some(&self.root), mutants)
    }

    fn ok(outcome: check::Outcome) -> Result<Spec, CourseError> {
        match outcome.spec {
            Some(spec) => Ok(spec),
            None => Err(CourseError::Spec(outcome.errors)),
        }
    }

    /// The spec file of the task named `name` (its id or its slug).
    pub fn task_path(&self, name: &str) -> Result<PathBuf, CourseError> {
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
            Some(path) => Ok(path.clone()),
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
        // The overlay's text follows the base's, after one blank line.
        let head = format!("{}\n\n", base.trim_end_matches('\n'));
        let offset = head.lines().count();
        let combined = format!("{head}{more}");
        match Spec::parse(&spec.path, &combined) {
            Err(mut e) => {
                // The base spec is valid (it was loaded above): the errors
                // are the overlay's, shown in its own file at its own lines.
                let start = head.len();
                if e.diagnostics
                    .iter()
                    .all(|d| d.span.as_ref().is_none_or(|r| r.start >= start))
                {
                    e.path = extra;
                    e.text = more;
                    for d in &mut e.diagnostics {
                        if let Some(r) = &mut d.span {
                            *r = r.start - start..r.end - start;
                        }
                    }
                }
                Err(CourseError::Spec(vec![e]))
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
        Course::ok(self.check(path, check::Mutants::No))
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
