//! `cargo grade check`: a spec validated together with what it names
//! outside itself, without building or running anything.
//!
//! Besides the spec's own rules ([`crate::spec::check`]): its file name is
//! its slug; the starter crate exists and builds the spec's `binary` (its
//! `Cargo.toml`'s package name or `[[bin]]` targets); and, for `check` and
//! `selfcheck`, `solutions/<slug>/mutants.toml` is valid, catches only tests
//! of the spec, and each mutant's `find` occurs exactly once in its file.
//! Every command that loads a spec runs these checks first
//! ([`crate::course::Course`]), so a spec with errors reports all of them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::selfcheck::Mutant;
use crate::spec::diag::did_you_mean;
use crate::spec::read::Reader;
use crate::spec::{self, lang, Diagnostic, ErrorKind, Spec, SpecError};

/// A spec file checked: the spec when it has no errors, else every error
/// of it and of its course's files (the spec's, then its mutants file's).
#[derive(Debug)]
pub struct Outcome {
    pub spec: Option<Spec>,
    pub errors: Vec<SpecError>,
}

impl Outcome {
    pub fn error_count(&self) -> usize {
        self.errors.iter().map(|e| e.diagnostics.len()).sum()
    }
}

/// Whether a spec's mutants file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutants {
    /// Not at all (grading a submission does not need it).
    No,
    /// When the task has a solution (`cargo grade check`).
    IfSolution,
    /// It must exist (`selfcheck`).
    Required,
}

/// Checks the spec at `path`. With the course's `root`, also its starter
/// crate and, as `mutants` says, its mutants file.
pub fn spec_file(path: &Path, root: Option<&Path>, mutants: Mutants) -> Outcome {
    let shown_path = shown(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                spec: None,
                errors: vec![SpecError::unreadable(&shown_path, &e)],
            }
        }
    };
    let checked = spec::check(&shown_path, &text);
    let mut diags = checked.diagnostics;
    let mut errors = Vec::new();
    if let Some((slug, span)) = &checked.slug {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        if *slug != stem {
            diags.push(Diagnostic::new(
                ErrorKind::SlugNotFileName {
                    slug: slug.clone(),
                    stem: stem.into_owned(),
                },
                span.clone(),
            ));
        }
        if let Some(root) = root {
            if let Some(d) = starter(root, slug, span.clone(), checked.binary.as_ref()) {
                diags.push(d);
            }
            if mutants != Mutants::No {
                let file = root.join("solutions").join(slug).join("mutants.toml");
                match std::fs::read_to_string(&file) {
                    Ok(m) => {
                        let solution = root.join("solutions").join(slug);
                        if let Err(e) = read_mutants(
                            &shown(&file),
                            &m,
                            checked.test_names.as_deref(),
                            Some(&solution),
                        ) {
                            errors.push(e);
                        }
                    }
                    // A task without a solution yet has nothing to mutate.
                    Err(e)
                        if mutants == Mutants::Required
                            || root.join("solutions").join(slug).is_dir() =>
                    {
                        diags.push(Diagnostic::new(
                            ErrorKind::NoMutants {
                                path: format!("solutions/{slug}/mutants.toml"),
                                problem: unreadable(&e),
                            },
                            span.clone(),
                        ))
                    }
                    Err(_) => {}
                }
            }
        }
    }
    if !diags.is_empty() {
        errors.insert(0, SpecError::new(&shown_path, &text, diags));
    }
    Outcome {
        spec: if errors.is_empty() {
            checked.spec
        } else {
            None
        },
        errors,
    }
}

/// The starter crate of `slug` must exist and build `binary`.
fn starter(
    root: &Path,
    slug: &str,
    slug_span: Range<usize>,
    binary: Option<&(String, Range<usize>)>,
) -> Option<Diagnostic> {
    let dir = root.join("starter").join(slug);
    let manifest = format!("starter/{slug}/Cargo.toml");
    let builds = match binaries(&dir) {
        Ok(b) => b,
        Err(problem) => {
            return Some(Diagnostic::new(
                ErrorKind::NoStarter { manifest, problem },
                slug_span,
            ))
        }
    };
    let (binary, span) = binary?;
    if builds.contains(binary) {
        return None;
    }
    let suggestion = did_you_mean(binary, builds.iter().map(String::as_str));
    Some(
        Diagnostic::new(
            ErrorKind::UnknownBinary {
                binary: binary.clone(),
                starter: format!("starter/{slug}"),
                builds,
            },
            span.clone(),
        )
        .suggest(suggestion),
    )
}

/// The binary targets a crate builds: its `[[bin]]` entries and, unless
/// `autobins = false`, `src/main.rs` (named after the package),
/// `src/bin/NAME.rs` and `src/bin/NAME/main.rs`.
pub fn binaries(dir: &Path) -> Result<Vec<String>, String> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&e))?;
    let manifest: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("is not valid TOML ({})", e.message()))?;
    let package = manifest.get("package").and_then(|p| p.as_table());
    let name = package
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or("has no [package].name")?;
    let mut out: Vec<String> = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .collect();
    let autobins = package
        .and_then(|p| p.get("autobins"))
        .and_then(|a| a.as_bool())
        .unwrap_or(true);
    if autobins {
        if dir.join("src/main.rs").is_file() {
            out.push(name.to_owned());
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for e in entries.flatten() {
                let p = e.path();
                let stem = p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if p.extension().is_some_and(|x| x == "rs") || p.join("main.rs").is_file() {
                    out.push(stem);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads and validates a mutants file. With the spec's `tests`, each
/// `catches` must name one of them; with the `solution` directory, each
/// `file` must be in its `src/` and hold `find` exactly once.
pub fn read_mutants(
    path: &Path,
    text: &str,
    tests: Option<&[String]>,
    solution: Option<&Path>,
) -> Result<Vec<Mutant>, SpecError> {
    let mut r = Reader::new(text);
    let Some(doc) = r.parse() else {
        return Err(r.into_error(path));
    };
    let top = r.table(doc.get_ref(), 0..0, lang::MUTANTS_KEYS, "the mutants file");
    let mut mutants = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, item) in top.items("mutant").iter().enumerate() {
        let mark = r.diags.len();
        let Some(f) = r.item(item, lang::MUTANT_KEYS, "a [[mutant]]") else {
            continue;
        };
        let name = f.str("name").unwrap_or_default().to_owned();
        let span = |key: &str| f.span_of(key).unwrap_or_else(|| item.span());
        if !name.is_empty() {
            if names.contains(&name) {
                r.error(Diagnostic::new(
                    ErrorKind::DuplicateMutant {
                        mutant: name.clone(),
                    },
                    span("name"),
                ));
            }
            names.push(name.clone());
        }
        if let (Some(tests), Some(catches)) = (tests, f.spanned_strings("catches")) {
            for (test, test_span) in catches {
                if !tests.contains(test) {
                    r.error(
                        Diagnostic::new(
                            ErrorKind::UnknownTest {
                                mutant: name.clone(),
                                test: test.clone(),
                            },
                            test_span.clone(),
                        )
                        .suggest(did_you_mean(test, tests.iter().map(String::as_str))),
                    );
                }
            }
        }
        if let (Some(solution), Some(file), Some(find)) = (solution, f.str("file"), f.str("find")) {
            let problem = patch_problem(solution, file, find);
            if let Some((problem, at_find)) = problem {
                r.error(Diagnostic::new(
                    ErrorKind::MutantFile {
                        mutant: name.clone(),
                        problem,
                    },
                    span(if at_find { "find" } else { "file" }),
                ));
            }
        }
        let context = if name.is_empty() {
            format!("mutant #{}", index + 1)
        } else {
            format!("mutant {name:?}")
        };
        r.set_context(mark, &context);
        if r.diags.len() == mark {
            let s = |key: &str| f.str(key).unwrap_or_default().to_owned();
            mutants.push(Mutant {
                name: s("name"),
                description: s("description"),
                file: s("file"),
                find: s("find"),
                replace: s("replace"),
                catches: f.strings("catches").unwrap_or_default(),
            });
        }
    }
    if r.diags.is_empty() {
        Ok(mutants)
    } else {
        Err(r.into_error(path))
    }
}

/// Why `find` cannot be applied to `file` of the solution, and whether it
/// is `find`'s fault (else `file`'s).
fn patch_problem(solution: &Path, file: &str, find: &str) -> Option<(String, bool)> {
    let rel = Path::new(file);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || !rel.starts_with("src")
    {
        return Some((
            format!("file = {file:?}: give a file in the solution's src/ (only src/ is built)"),
            false,
        ));
    }
    let text = match std::fs::read_to_string(solution.join(rel)) {
        Ok(t) => t,
        Err(e) => return Some((format!("file = {file:?} {}", unreadable(&e)), false)),
    };
    match text.matches(find).count() {
        1 => None,
        n => Some((
            format!("`find` occurs {n} times in {file} (it must occur exactly once)"),
            true,
        )),
    }
}

/// Why a file could not be read, after its name.
fn unreadable(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        _ => format!("cannot be read ({e})"),
    }
}

/// A path as the user will recognise it: relative to the current
/// directory when it is under it.
pub fn shown(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_owned())
}

/// The course root of a spec file outside a located course: the parent of
/// the `specs/` directory it is in.
pub fn root_of(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    if dir.file_name()? == "specs" {
        dir.parent().map(Path::to_path_buf)
    } else {
        None
    }
}
