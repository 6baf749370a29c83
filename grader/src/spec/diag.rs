//! What is wrong with a spec (or a mutants file): typed errors, each with
//! the span of the offending text, and their rendering as the offending line
//! with a marker under the spot.
//!
//! Validation never stops at the first problem: every error of a file is a
//! [`Diagnostic`], and a [`SpecError`] carries all of them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

/// One kind of mistake. The message never repeats the file or line (the
/// [`Diagnostic`] adds them), and names the key or value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("TOML syntax: {0}")]
    Syntax(String),
    #[error("unknown key `{key}` in {place}")]
    UnknownKey { key: String, place: String },
    #[error("missing key `{key}` in {place}")]
    MissingKey { key: String, place: String },
    #[error("`{key}` must be {expected}, not {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },
    #[error("`{key}` = {value}: {rule}")]
    OutOfRange {
        key: String,
        value: String,
        rule: String,
    },
    #[error("`{key}` = {value:?} is not one of {}", .expected.join(", "))]
    UnknownValue {
        key: String,
        value: String,
        expected: Vec<String>,
    },
    #[error("`{key}` = {value:?}: use letters, digits, '-' and '_' only")]
    NotAnIdentifier { key: String, value: String },
    #[error("`{key}` takes the value true")]
    OnlyTrue { key: String },
    #[error("`{key}` must not be empty")]
    Empty { key: String },
    #[error("`{key}` is not a valid regex: {error}")]
    BadRegex { key: String, error: String },
    #[error("{key}: unknown signal {name:?} (write it like SIGINT)")]
    UnknownSignal { key: String, name: String },
    #[error("no action: a step needs one of {}", .actions.join(", "))]
    NoAction { actions: Vec<String> },
    #[error("several actions ({}): put each in its own step", .actions.join(", "))]
    SeveralActions { actions: Vec<String> },
    #[error("`{option}` does not apply to `{action}`")]
    OptionNotApplicable { option: String, action: String },
    #[error("`{action}` needs {}", .options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(" and "))]
    MissingOption {
        action: String,
        options: Vec<String>,
    },
    #[error("`start` names the process itself: write start = \"NAME\"")]
    ProcessOnStart,
    #[error("process {name:?} is not started by an earlier step")]
    ProcessNotStarted { name: String },
    #[error("`{action}` before any `start` step")]
    BeforeStart { action: String },
    #[error("start: process {name:?} is already started")]
    AlreadyStarted { name: String },
    #[error("process: this test starts several processes, so each step must name one")]
    ProcessNeeded,
    #[error("variable {name:?} is not bound here (bind it with `capture`, or send signals for sent_SIGNAME)")]
    UnboundVariable { name: String },
    #[error("name: another test already has this name (line {first_line})")]
    DuplicateTest { first_line: usize },
    #[error("[task].slug {slug:?} must start with the id and a dash ({id}-...)")]
    SlugWithoutId { slug: String, id: String },
    #[error("[task].slug is {slug:?} but the file is named {stem}.toml; they must agree")]
    SlugNotFileName { slug: String, stem: String },
    #[error("no starter crate: {manifest} {problem}")]
    NoStarter { manifest: String, problem: String },
    #[error("[task].binary {binary:?} is not a binary of the starter crate {starter} (it builds: {})", .builds.join(", "))]
    UnknownBinary {
        binary: String,
        starter: String,
        builds: Vec<String>,
    },
    #[error("mutant {mutant:?}: catches unknown test {test:?}")]
    UnknownTest { mutant: String, test: String },
    #[error("mutant {mutant:?}: another mutant already has this name")]
    DuplicateMutant { mutant: String },
    #[error("mutant {mutant:?}: {problem}")]
    MutantFile { mutant: String, problem: String },
    #[error("no mutants file: {path} {problem}")]
    NoMutants { path: String, problem: String },
    /// An action's own rule (a template without `{}`, a path with `..`).
    #[error("{0}")]
    Rule(String),
}

/// One error at one place of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    /// Byte range of the offending text; `None` for a problem of the whole
    /// file (it could not be read, it has no tests).
    pub span: Option<Range<usize>>,
    /// Where in the spec: `test "storm", step 3`.
    pub context: Option<String>,
    /// A near miss: the key, value, signal or name that was probably meant.
    pub suggestion: Option<String>,
}

impl Diagnostic {
    pub fn new(kind: ErrorKind, span: Range<usize>) -> Diagnostic {
        Diagnostic {
            kind,
            span: Some(span),
            context: None,
            suggestion: None,
        }
    }

    /// A problem of the whole file, at no particular place.
    pub fn whole_file(kind: ErrorKind) -> Diagnostic {
        Diagnostic {
            kind,
            span: None,
            context: None,
            suggestion: None,
        }
    }

    pub fn suggest(mut self, suggestion: Option<String>) -> Diagnostic {
        self.suggestion = suggestion;
        self
    }

    /// The message with its context and suggestion, on one line:
    /// `test "a": step 2: unknown key `timout` in a step; did you mean `timeout_ms`?`
    pub fn message(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.context {
            out.push_str(c);
            out.push_str(": ");
        }
        out.push_str(&self.kind.to_string());
        if let Some(s) = &self.suggestion {
            out.push_str(&format!("; did you mean `{s}`?"));
        }
        out
    }
}

/// A file that did not validate: every error found in it.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    pub path: PathBuf,
    /// The file's text (for rendering the offending lines).
    pub text: String,
    /// In the order of their place in the file.
    pub diagnostics: Vec<Diagnostic>,
}

/// A diagnostic with its place resolved to line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl SpecError {
    pub fn new(path: &Path, text: &str, mut diagnostics: Vec<Diagnostic>) -> SpecError {
        diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        SpecError {
            path: path.to_owned(),
            text: text.to_owned(),
            diagnostics,
        }
    }

    /// A file that cannot be read.
    pub fn unreadable(path: &Path, error: &std::io::Error) -> SpecError {
        SpecError::new(
            path,
            "",
            vec![Diagnostic::whole_file(ErrorKind::Io(error.to_string()))],
        )
    }

    /// The line and column of a diagnostic, when it has a place.
    pub fn place(&self, d: &Diagnostic) -> Option<Place> {
        d.span.as_ref().map(|s| place_of(&self.text, s.start))
    }

    /// The first diagnostic's line (tests and one-line messages).
    pub fn line(&self) -> Option<usize> {
        self.diagnostics
            .first()
            .and_then(|d| self.place(d))
            .map(|p| p.line)
    }

    /// Each diagnostic as `FILE:LINE:COLUMN: MESSAGE`, one per line.
    pub fn one_line_each(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| match self.place(d) {
                Some(p) => format!(
                    "{}:{}:{}: {}",
                    self.path.display(),
                    p.line,
                    p.column,
                    d.message()
                ),
                None => format!("{}: {}", self.path.display(), d.message()),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every diagnostic with the offending line and a marker under the spot,
    /// then a count. `styled` adds colours (ANSI; strip them where the
    /// output is not a terminal).
    pub fn render(&self, styled: bool) -> String {
        let renderer = if styled {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let path = self.path.display().to_string();
        let mut out = String::new();
        for d in &self.diagnostics {
            let title = Level::ERROR.primary_title(d.kind.to_string());
            let label = d
                .suggestion
                .as_ref()
                .map(|s| format!("did you mean `{s}`?"));
            let mut group = match &d.span {
                Some(span) => {
                    // A marker needs at least one character: an empty span
                    // (a syntax error at the end of a line) marks the spot.
                    let span = if span.is_empty() {
                        widen(&self.text, span.start)
                    } else {
                        span.clone()
                    };
                    Group::with_title(title).element(
                        Snippet::source(self.text.as_str())
                            .path(path.as_str())
                            .annotation(AnnotationKind::Primary.span(span).label(label.clone())),
                    )
                }
                None => Group::with_title(title).element(Origin::path(path.as_str())),
            };
            if let Some(c) = &d.context {
                group = group.element(Level::NOTE.message(format!("in {c}")));
            }
            if let (None, Some(l)) = (&d.span, &label) {
                group = group.element(Level::HELP.message(l.clone()));
            }
            out.push_str(&renderer.render(&[group]));
            out.push_str("\n\n");
        }
        let n = self.diagnostics.len();
        out.push_str(&format!(
            "{path}: {n} error{}",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn place_of(text: &str, offset: usize) -> Place {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Place {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The one character at `offset` (or the one before it at the end of a line
/// or of the file), for marking an empty span.
fn widen(text: &str, offset: usize) -> Range<usize> {
    let offset = offset.min(text.len());
    let next = text[offset..].chars().next();
    match next {
        Some(c) if c != '\n' => offset..offset + c.len_utf8(),
        _ => match text[..offset].chars().next_back() {
            Some(c) if c != '\n' => offset - c.len_utf8()..offset,
            _ => offset..offset,
        },
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely
/// typo (`timout` -> `timeout_ms`, `expct` -> `expect`, `TREM` -> `TERM`).
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    let word_l = word.to_ascii_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let c_l = c.to_ascii_lowercase();
        if c_l == word_l {
            return Some(c.to_owned());
        }
        let jw = strsim::jaro_winkler(&word_l, &c_l);
        let edits = strsim::damerau_levenshtein(&word_l, &c_l);
        let close = edits <= (word_l.len().max(c_l.len()) / 4).max(1)
            || jw >= 0.88
            || (word_l.len() >= 3 && c_l.starts_with(&word_l));
        if close && best.is_none_or(|(score, _)| jw > score) {
            best = Some((jw, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_not() {
        let keys = ["timeout_ms", "stream", "start", "expect", "process"];
        assert_eq!(did_you_mean("timout", keys).as_deref(), Some("timeout_ms"));
        assert_eq!(did_you_mean("timeout", keys).as_deref(), Some("timeout_ms"));
        assert_eq!(did_you_mean("expct", keys).as_deref(), Some("expect"));
        assert_eq!(did_you_mean("proces", keys).as_deref(), Some("process"));
        assert_eq!(did_you_mean("colour", keys), None);
        let signals = ["INT", "TERM", "KILL", "USR1", "IO"];
        assert_eq!(did_you_mean("TREM", signals).as_deref(), Some("TERM"));
        assert_eq!(did_you_mean("KIL", signals).as_deref(), Some("KILL"));
        assert_eq!(did_you_mean("FOO", signals), None);
    }

    #[test]
    fn places_are_lines_and_character_columns() {
        let text = "a = 1\nbé = 'x'\n";
        assert_eq!(place_of(text, 0), Place { line: 1, column: 1 });
        assert_eq!(place_of(text, 6), Place { line: 2, column: 1 });
        // After the two-byte é.
        assert_eq!(place_of(text, 9), Place { line: 2, column: 3 });
    }

    #[test]
    fn rendering_shows_the_line_a_marker_and_the_suggestion() {
        let text = "[task]\nid = 'x'\ntimout = 3\n";
        let e = SpecError::new(
            Path::new("specs/x.toml"),
            text,
            vec![Diagnostic::new(
                ErrorKind::UnknownKey {
                    key: "timout".into(),
                    place: "[task]".into(),
                },
                16..22,
            )
            .suggest(Some("timeout_ms".into()))],
        );
        let out = e.render(false);
        assert!(
            out.contains("error: unknown key `timout` in [task]"),
            "{out}"
        );
        assert!(out.contains("specs/x.toml:3:1"), "{out}");
        assert!(out.contains("3 | timout = 3"), "{out}");
        assert!(out.contains("^^^^^^ did you mean `timeout_ms`?"), "{out}");
        assert!(out.ends_with("specs/x.toml: 1 error"), "{out}");
        assert_eq!(
            e.one_line_each(),
            "specs/x.toml:3:1: unknown key `timout` in [task]; did you mean `timeout_ms`?"
        );
    }
}
