//! The spec model: one TOML file per task, read into typed structures and
//! validated before anything runs.
//!
//! The language is defined once, in [`lang`]: every key with its type, every
//! action with the options it takes, each with a one-line description.
//! Validation ([`read`], [`steps`]), the JSON Schema ([`schema`]) and the
//! test that `specs/README.md` (the TA's reference) documents every key are
//! derived from it. Validation is strict and complete: every unknown key,
//! wrong type, value out of range and semantic mistake (a regex that does
//! not compile, a step with two actions, a process or variable used before
//! it exists) of a file is reported in one run, each with its line, column
//! and, for a near miss, a suggestion ([`diag`]).

pub mod diag;
pub mod lang;
pub(crate) mod read;
pub mod schema;
mod steps;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use diag::{Diagnostic, ErrorKind, SpecError};
use lang::{limit_default, Key};
pub use lang::{KNOWN_SYSCALLS, STALE_KINDS};
use read::{Fields, Reader};

/// A whole task spec, validated.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where the spec was read from (for messages).
    pub path: PathBuf,
    pub task: TaskMeta,
    pub limits: Limits,
    pub tests: Vec<Test>,
    /// SHA-256 of the spec's text, hex: two results are comparable only if
    /// they were graded against the same spec.
    pub digest: String,
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&hmac_sha256::Hash::hash(bytes))
}

/// Bytes (a digest) in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `[task]`: who the task is and where its crates live.
#[derive(Debug, Clone)]
pub struct TaskMeta {
    /// Short id students type: `task1`.
    pub id: String,
    /// Directory name of the starter and solution crates: `task1-signals`.
    pub slug: String,
    pub title: String,
    /// The binary target the grader runs (the crate's `[[bin]]` name).
    pub binary: String,
    /// The handout, relative to the course root.
    pub handout: String,
}

/// `[limits]`: budgets for the build and for each test (defaults in
/// [`lang::LIMIT_KEYS`]).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget for `cargo build` of a submission.
    pub build_timeout_s: u64,
    /// Default wall-clock budget of a test (a test may set its own).
    pub test_timeout_ms: u64,
    /// Default budget of one waiting step (a line, an exit, a system call),
    /// so that a hung program fails in seconds, not at the test's deadline.
    pub step_timeout_ms: u64,
    /// Captured bytes per stream per process; the rest is drained and dropped.
    pub output_limit_bytes: usize,
    /// Writable private memory of each student process (`RLIMIT_DATA`:
    /// heap and anonymous mappings, not the address space glibc reserves
    /// for thread arenas, so multi-threaded servers are not penalised).
    pub memory_mib: u64,
    /// Processes and threads of one test's student user (`RLIMIT_NPROC`).
    pub processes: u64,
    /// Open files of each student process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file a student process may write (`RLIMIT_FSIZE`).
    pub file_size_mib: u64,
    /// Memory of all of one test's processes together (a memory cgroup,
    /// where the grader can make one): shared memory included.
    pub test_memory_mib: u64,
    /// Size of each test's scratch directory (a tmpfs, where namespaces
    /// allow), and of its private `/tmp` and `/dev/shm`.
    pub disk_mib: u64,
}

impl Limits {
    /// `[limits]` as read, each key missing from it at its default.
    fn from_fields(fields: Option<&Fields<'_>>) -> Limits {
        let get = |key: &str| {
            fields
                .and_then(|f| f.int(key))
                .map_or_else(|| limit_default(key), |n| n.unsigned_abs())
        };
        Limits {
            build_timeout_s: get("build_timeout_s"),
            test_timeout_ms: get("test_timeout_ms"),
            step_timeout_ms: get("step_timeout_ms"),
            output_limit_bytes: get("output_limit_bytes") as usize,
            memory_mib: get("memory_mib"),
            processes: get("processes"),
            open_files: get("open_files"),
            file_size_mib: get("file_size_mib"),
            test_memory_mib: get("test_memory_mib"),
            disk_mib: get("disk_mib"),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_fields(None)
    }
}

/// Whether students see a test's details in their report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Visible,
    /// Name, status and points are shown; what was checked is not.
    Hidden,
}

/// One graded test: a named list of steps worth `points`.
#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    pub description: String,
    pub points: u32,
    pub timeout_ms: u64,
    pub visibility: Visibility,
    /// Hints, mildest first: the report shows the first, `--hint N` more.
    pub hints: Vec<String>,
    pub steps: Vec<Step>,
    /// 1-based line of the `[[test]]` entry in the spec.
    pub line: usize,
    /// Race stress: the steps run this many times, each round with fresh
    /// processes, a fresh sandbox and its own seeded faults; all must pass.
    pub rounds: u32,
    /// Where the test's processes may run.
    pub cpus: CpuPlacement,
    /// Resource limits for the submission's processes.
    pub rlimits: Rlimits,
    /// Short reads and writes and EINTR injected into the submission's own
    /// system calls (through the LD_PRELOAD shim).
    pub io_faults: Option<crate::shim::IoFaults>,
}

/// CPU placement of a test's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CpuPlacement {
    /// Wherever the scheduler puts them.
    #[default]
    Any,
    /// Each round, a seeded choice: all on one (seeded) CPU, so that they
    /// interleave only by preemption, or spread over every CPU.
    Seeded,
}

/// `rlimits = { open_files = 16, processes = 64 }` on a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// RLIMIT_NOFILE: the highest file descriptor number + 1.
    pub open_files: Option<u64>,
    /// RLIMIT_NPROC: processes of the user (not enforced for root).
    pub processes: Option<u64>,
}

/// Which process a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The named process itself.
    #[default]
    Process,
    /// A seeded choice among the other members of its process group (the
    /// processes it forked), chosen again for every fault.
    Child,
}

/// A number in a check: a literal, or a variable (`sent_SIGINT`, or a name
/// bound by `capture`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Var(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Var(v) => write!(f, "{v}"),
        }
    }
}

/// Which captured stream a line check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    #[default]
    Stdout,
    Stderr,
}

/// A check on a number captured from a line.
#[derive(Debug, Clone, Default)]
pub struct NumberCheck {
    /// Bind the captured number to this name for later steps.
    pub capture: Option<String>,
    pub at_least: Option<Value>,
    pub at_most: Option<Value>,
    pub equals: Option<Value>,
}

impl NumberCheck {
    fn is_empty(&self) -> bool {
        self.capture.is_none()
            && self.at_least.is_none()
            && self.at_most.is_none()
            && self.equals.is_none()
    }
}

/// What is checked of a matching line besides the regex.
#[derive(Debug, Clone)]
pub enum LineCheck {
    /// The capture group as a number.
    Number(NumberCheck),
    /// The capture group must be exactly `payload::payload(n)`.
    Payload(usize),
}

/// What a step does. Exactly one action per step.
#[derive(Debug, Clone)]
pub enum Action {
    /// Start the submission's binary as a named process.
    Start { name: String, args: Vec<String> },
    /// Write a line (with `\n`) to the process's stdin.
    SendLine(String),
    /// Close the process's stdin (it then reads EOF).
    CloseStdin,
    /// Send `count` signals, spread over `spread_ms` with seeded gaps;
    /// `background` lets the following steps run meanwhile.
    Signal {
        signal: nix::sys::signal::Signal,
        count: u32,
        spread_ms: u64,
        background: bool,
        target: Target,
    },
    /// Wait for every background fault injection to finish.
    Join,
    /// Skip output lines until one matches.
    WaitFor(regex_lite::Regex, LineCheck),
    /// The next output line must match; with a `skip` pattern, lines that
    /// match it (and not the expectation) are passed over first.
    Expect(regex_lite::Regex, LineCheck, Option<regex_lite::Regex>),
    /// The next lines must be `template` with `{}` replaced by from..=to.
    ExpectNumbered {
        template: String,
        from: u64,
        to: u64,
    },
    /// Right now, these signals must have handlers (SigCgt).
    ExpectHandlers(Vec<nix::sys::signal::Signal>),
    /// Wait until the process is blocked in this system call. Only for a
    /// call the handout mandates: otherwise [`Action::WaitBlocked`].
    WaitSyscall(String),
    /// Wait until every thread of the process is asleep in whatever blocking
    /// call its design chose (read, poll, ppoll, select, epoll_wait, msgrcv,
    /// a semaphore, a sleep...), seen on several samples in a row.
    WaitBlocked,
    /// Stop (`true`) or resume (`false`) reading the process's stream: while
    /// stopped, its writes fill the pipe and then block.
    Reading(bool),
    /// Wait until this path exists (relative to the test's scratch directory,
    /// which is the programs' working directory).
    WaitFile(String),
    /// Wait for the process to exit with this status.
    ExpectExit(i32),
    /// Wait for the process to be killed by this signal.
    ExpectKilledBy(nix::sys::signal::Signal),
    /// The process must still be running.
    ExpectAlive,
    /// The step's stream must end with no line before its end.
    ExpectEof,
    /// Start one of the grader's own peers (`peers::KINDS`) as a named process.
    StartPeer {
        name: String,
        kind: String,
        args: Vec<String>,
    },
    /// Leave a resource behind as a crashed earlier run would have.
    Stale { kind: String, args: Vec<String> },
    /// SIGSTOP the target for a seeded time up to `max_ms`, then SIGCONT;
    /// `count` times over `spread_ms`.
    Pause {
        max_ms: u64,
        target: Target,
        count: u32,
        spread_ms: u64,
        background: bool,
    },
    /// Wait until every process of the process's group is asleep or has
    /// exited: nothing more happens without outside help.
    WaitIdle,
    /// Nothing the submission's processes made is left: no process, no
    /// FIFO or socket file, no shared memory, semaphore or queue.
    ExpectClean,
    /// Write `payload(n)` and a newline to stdin.
    SendPayload(usize),
    /// Count something of the process, waiting until the count passes the
    /// check (a server closes a connection's descriptor, or reaps a child, a
    /// moment after the client leaves).
    Count(Counted, NumberCheck),
}

/// What `count_fds` and `count_zombies` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Open file descriptors, `/proc/PID/fd`.
    Fds,
    /// Exited but unreaped processes in the process's group.
    Zombies,
}

/// One step of a test, validated.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    /// The process this step acts on; `None` means the test's only process.
    pub process: Option<String>,
    pub stream: StreamName,
    /// Budget for this step's wait (`[limits].step_timeout_ms` unless the
    /// step sets its own), never beyond the test's deadline.
    pub timeout_ms: u64,
    /// 1-based line in the spec file.
    pub line: usize,
}

impl Test {
    /// The test's hints, mildest first (none when the spec gives none).
    pub fn hints(&self) -> Vec<String> {
        self.hints.clone()
    }
}

impl Spec {
    /// Reads and validates the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::unreadable(path, &e))?;
        Spec::parse(path, &text)
    }

    /// Parses and validates spec text, reporting every error it finds;
    /// `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let checked = check(path, text);
        match checked.spec {
            Some(spec) if checked.diagnostics.is_empty() => Ok(spec),
            _ => Err(SpecError::new(path, text, checked.diagnostics)),
        }
    }

    /// Total points of the spec.
    pub fn max_score(&self) -> u32 {
        self.tests.iter().map(|t| t.points).sum()
    }
}

/// A spec file validated: every problem found, and what could be read of
/// it for the checks of the course around it ([`crate::check`]).
#[derive(Debug)]
pub struct Checked {
    /// The spec, when it has no errors.
    pub spec: Option<Spec>,
    pub diagnostics: Vec<Diagnostic>,
    /// `[task].slug` and `[task].binary`, with their spans.
    pub slug: Option<(String, std::ops::Range<usize>)>,
    pub binary: Option<(String, std::ops::Range<usize>)>,
    /// The names of the tests, when the file is valid TOML.
    pub test_names: Option<Vec<String>>,
}

/// Validates spec text, collecting every error.
pub fn check(path: &Path, text: &str) -> Checked {
    let mut r = Reader::new(text);
    let mut checked = Checked {
        spec: None,
        diagnostics: Vec::new(),
        slug: None,
        binary: None,
        test_names: None,
    };
    checked.spec = read_spec(&mut r, path, &mut checked);
    checked.diagnostics = std::mem::take(&mut r.diags);
    checked
}

/// The whole spec; `None` when something is wrong (the reader has the
/// diagnostics).
fn read_spec(r: &mut Reader<'_>, path: &Path, checked: &mut Checked) -> Option<Spec> {
    let doc = r.parse()?;
    // The document has no header: an empty span makes a missing top-level
    // key a problem of the whole file.
    let top = r.table(doc.get_ref(), 0..0, lang::SPEC_KEYS, "the spec");
    let limits = Limits::from_fields(top.table("limits"));
    let task = top.table("task").and_then(|t| {
        let spanned = |key: &str| Some((t.str(key)?.to_owned(), t.span_of(key)?));
        checked.slug = spanned("slug");
        checked.binary = spanned("binary");
        read_task(r, t)
    });

    let step_keys = lang::step_keys();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut tests = Vec::new();
    for (index, item) in top.items("test").iter().enumerate() {
        let mark = r.diags.len();
        let Some(fields) = r.item(item, lang::TEST_KEYS, "a [[test]]") else {
            continue;
        };
        let line = r.line_of(item.span().start);
        let context = match fields.str("name") {
            Some(name) => format!("test {name:?}"),
            None => format!("test #{}", index + 1),
        };
        r.set_context(mark, &context);
        if let Some(name) = fields.str("name") {
            match names.iter().find(|(n, _)| n == name) {
                Some((_, first_line)) => {
                    let mut d = Diagnostic::new(
                        ErrorKind::DuplicateTest {
                            first_line: *first_line,
                        },
                        fields.span_of("name").unwrap_or_default(),
                    );
                    d.context = Some(context.clone());
                    r.error(d);
                }
                None => names.push((name.to_owned(), line)),
            }
        }
        if let Some(test) = read_test(r, &fields, &step_keys, &limits, &context, line) {
            if r.diags.len() == mark {
                tests.push(test);
            }
        }
    }
    checked.test_names = Some(names.into_iter().map(|(n, _)| n).collect());
    Some(Spec {
        path: path.to_owned(),
        task: task?,
        limits,
        tests,
        digest: sha256_hex(r.text.as_bytes()),
    })
}

fn read_task(r: &mut Reader<'_>, t: &Fields<'_>) -> Option<TaskMeta> {
    if let (Some(id), Some(slug)) = (t.str("id"), t.str("slug")) {
        if !slug.starts_with(&format!("{id}-")) {
            r.error(Diagnostic::new(
                ErrorKind::SlugWithoutId {
                    slug: slug.to_owned(),
                    id: id.to_owned(),
                },
                t.span_of("slug").unwrap_or_default(),
            ));
        }
    }
    let get = |key: &str| t.str(key).map(str::to_owned);
    Some(TaskMeta {
        id: get("id")?,
        slug: get("slug")?,
        title: get("title")?,
        binary: get("binary")?,
        handout: get("handout")?,
    })
}

/// One `[[test]]` and its steps; `None` when a required key is missing or
/// a step has errors.
fn read_test(
    r: &mut Reader<'_>,
    fields: &Fields<'_>,
    step_keys: &[Key],
    limits: &Limits,
    context: &str,
    line: usize,
) -> Option<Test> {
    let mut ctx = steps::StepContext::default();
    let mut read = Vec::new();
    for (index, item) in fields.items("steps").iter().enumerate() {
        let mark = r.diags.len();
        read.push(steps::read_step(r, item, step_keys, limits, &mut ctx));
        r.set_context(mark, &format!("{context}, step {}", index + 1));
    }
    if ctx.started.len() > 1 {
        for (index, s) in read.iter().enumerate() {
            if s.subject == Some(lang::Subject::Process) && !s.has_process {
                let mut d = Diagnostic::new(ErrorKind::ProcessNeeded, s.span.clone());
                d.context = Some(format!("{context}, step {}", index + 1));
                r.error(d);
            }
        }
    }
    let steps: Vec<Step> = read.into_iter().map(|s| s.step).collect::<Option<_>>()?;
    let keys = lang::TEST_KEYS;
    let str_of = |key: &str| fields.str(key).unwrap_or_default().to_owned();
    let rlimits = fields.table("rlimits");
    let rlimit = |key: &str| rlimits.and_then(|t| t.int(key)).map(|n| n as u64);
    Some(Test {
        name: fields.str("name")?.to_owned(),
        description: str_of("description"),
        points: fields.int("points")? as u32,
        timeout_ms: fields
            .int("timeout_ms")
            .map_or(limits.test_timeout_ms, |n| n as u64),
        visibility: match fields.str("visibility") {
            Some("hidden") => Visibility::Hidden,
            _ => Visibility::Visible,
        },
        hints: fields
            .strings("hint")
            .unwrap_or_default()
            .into_iter()
            .filter(|h| !h.trim().is_empty())
            .collect(),
        steps,
        line,
        rounds: fields.int_or_default(keys, "rounds") as u32,
        cpus: match fields.str("cpus") {
            Some("seeded") => CpuPlacement::Seeded,
            _ => CpuPlacement::Any,
        },
        rlimits: Rlimits {
            open_files: rlimit("open_files"),
            processes: rlimit("processes"),
        },
        io_faults: fields.table("io_faults").map(|t| crate::shim::IoFaults {
            short_reads: t.float("short_reads").unwrap_or(0.0),
            short_writes: t.float("short_writes").unwrap_or(0.0),
            eintr: t.float("eintr").unwrap_or(0.0),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines 1-6; a `[[test]]` appended to it starts on line 7.
    const TASK: &str = "[task]\nid = \"t1\"\nslug = \"t1-x\"\ntitle = \"X\"\nbinary = \"x\"\nhandout = \"tasks/t1-x.md\"\n";

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("specs/x.toml"), text)
    }

    fn err(text: &str) -> SpecError {
        parse(text).expect_err("the spec should be rejected")
    }

    /// One test, "a", header on line 7; step N is on line 10 + N.
    fn one_test(steps: &[&str]) -> String {
        let steps: String = steps.iter().map(|s| format!("  {s},\n")).collect();
        format!("{TASK}[[test]]\nname = \"a\"\npoints = 1\nsteps = [\n{steps}]\n")
    }

    /// The spec has exactly one error, on `line`, and its message mentions
    /// every one of `parts`.
    #[track_caller]
    fn assert_err(e: &SpecError, line: usize, parts: &[&str]) {
        assert_eq!(e.diagnostics.len(), 1, "not one error: {e}");
        assert_has(e, line, parts);
    }

    /// One of the spec's errors is on `line` and mentions every one of `parts`.
    #[track_caller]
    fn assert_has(e: &SpecError, line: usize, parts: &[&str]) {
        let found = e.diagnostics.iter().any(|d| {
            e.place(d).map(|p| p.line) == Some(line)
                && parts.iter().all(|part| d.message().contains(part))
        });
        assert!(
            found,
            "no error on line {line} with {parts:?} in:\n{}",
            e.one_line_each()
        );
    }

    const START: &str = "{ start = \"m\" }";

    #[test]
    fn message_is_file_line_message() {
        let e = err(&one_test(&[START, "{ timeout_ms = 5 }"]));
        let line = e.one_line_each();
        assert!(
            line.starts_with("specs/x.toml:12:3: test \"a\", step 2: no action: a step needs one of start, send_line, "),
            "{line}"
        );
    }

    #[test]
    fn unknown_key_in_task() {
        let text = format!(
            "{TASK}colour = \"red\"\n[[test]]\nname = \"a\"\npoints = 1\nsteps = [{START}]\n"
        );
        assert_err(&err(&text), 7, &["unknown key `colour` in [task]"]);
    }

    #[test]
    fn unknown_key_in_step() {
        let e = err(&one_test(&[START, "{ expct = '^x$' }"]));
        assert_err(
            &e,
            12,
            &["unknown key `expct` in a step", "did you mean `expect`?"],
        );
    }

    #[test]
    fn wrong_type() {
        let text = format!("{TASK}[[test]]\nname = \"a\"\npoints = \"two\"\nsteps = [{START}]\n");
        assert_err(
            &err(&text),
            9,
            &[
                "`points` must be an integer from 1 to",
                "not the string \"two\"",
            ],
        );
    }

    #[test]
    fn missing_required_key() {
        let text = format!("{TASK}[[test]]\nname = \"a\"\nsteps = [{START}]\n");
        assert_err(&err(&text), 7, &["missing key `points` in a [[test]]"]);
    }

    #[test]
    fn step_with_two_actions() {
        let e = err(&one_test(&[START, "{ expect = 'x', expect_exit = 0 }"]));
        assert_err(&e, 12, &["step 2", "several actions (expect, expect_exit)"]);
    }

    #[test]
    fn step_with_no_action() {
        let e = err(&one_test(&[START, "{ timeout_ms = 5 }"]));
        assert_err(&e, 12, &["step 2", "no action"]);
    }

    #[test]
    fn bad_regex() {
        let e = err(&one_test(&[START, "{ wait_for = '(x' }"]));
        assert_err(
            &e,
            12,
            &[
                "step 2",
                "`wait_for` is not a valid regex: found open group without closing",
            ],
        );
    }

    #[test]
    fn option_not_applicable_to_action() {
        let e = err(&one_test(&[START, "{ expect = 'x', count = 2 }"]));
        assert_err(&e, 12, &["`count` does not apply to `expect`"]);
        let e = err(&one_test(&["{ start = \"m\", process = \"m\" }"]));
        assert_err(&e, 11, &["`start` names the process itself"]);
    }

    #[test]
    fn process_not_started() {
        let e = err(&one_test(&[START, "{ expect = 'x', process = \"b\" }"]));
        assert_err(&e, 12, &["step 2", "process \"b\" is not started"]);
    }

    #[test]
    fn step_before_any_start() {
        let e = err(&one_test(&["{ send_line = \"hi\" }", START]));
        assert_err(&e, 11, &["step 1", "`send_line` before any `start`"]);
    }

    #[test]
    fn variable_used_before_capture() {
        let e = err(&one_test(&[
            START,
            r"{ expect = '(\d+)', at_most = 'n' }",
            r"{ expect = '(\d+)', capture = 'n' }",
        ]));
        assert_err(&e, 12, &["step 2", "variable \"n\" is not bound"]);
        // A signal step binds sent_ of its own signal only.
        let e = err(&one_test(&[
            START,
            "{ signal = 'SIGINT', count = 3 }",
            r"{ expect = '(\d+)', at_most = 'sent_SIGINT' }",
            r"{ expect = '(\d+)', at_most = 'sent_SIGTERM' }",
        ]));
        assert_err(&e, 14, &["step 4", "variable \"sent_SIGTERM\""]);
    }

    #[test]
    fn number_check_needs_one_group() {
        let e = err(&one_test(&[START, "{ expect = '^count$', at_least = 1 }"]));
        assert_err(&e, 12, &["exactly one capture group", "found 0"]);
    }

    #[test]
    fn duplicate_test_names() {
        let test = format!("[[test]]\nname = \"a\"\npoints = 1\nsteps = [{START}]\n");
        let e = err(&format!("{TASK}{test}\n{test}"));
        assert_err(
            &e,
            13,
            &[
                "test \"a\"",
                "name: another test already has this name (line 7)",
            ],
        );
    }

    #[test]
    fn unknown_signal_name() {
        let e = err(&one_test(&[START, "{ signal = 'SIGFOO' }"]));
        assert_err(&e, 12, &["signal: unknown signal \"SIGFOO\""]);
        let e = err(&one_test(&[
            START,
            "{ expect_handlers = ['SIGINT', 'USR9'] }",
        ]));
        assert_err(&e, 12, &["expect_handlers: unknown signal \"USR9\""]);
        let e = err(&one_test(&[START, "{ expect_killed_by = 'KIL' }"]));
        assert_err(
            &e,
            12,
            &[
                "expect_killed_by: unknown signal \"KIL\"",
                "did you mean `SIGKILL`?",
            ],
        );
    }

    #[test]
    fn unknown_syscall() {
        let e = err(&one_test(&[START, "{ wait_syscall = 'select' }"]));
        assert_err(
            &e,
            12,
            &["`wait_syscall` = \"select\" is not one of read, write, openat"],
        );
    }

    #[test]
    fn several_processes_and_a_step_without_process() {
        let e = err(&one_test(&[
            "{ start = 'a' }",
            "{ start = 'b' }",
            "{ expect = '^x$', process = 'a' }",
            "{ close_stdin = true }",
        ]));
        assert_err(&e, 14, &["process:", "several processes"]);
    }

    #[test]
    fn expect_numbered_template_and_range() {
        let e = err(&one_test(&[
            START,
            "{ expect_numbered = 'line', from = 1, to = 2 }",
        ]));
        assert_err(&e, 12, &["expect_numbered", "exactly one {}"]);
        let e = err(&one_test(&[
            START,
            "{ expect_numbered = 'line {}', from = 3, to = 2 }",
        ]));
        assert_err(&e, 12, &["from (3) is greater than to (2)"]);
        let e = err(&one_test(&[
            START,
            "{ expect_numbered = 'line {}', from = 1 }",
        ]));
        assert_err(&e, 12, &["`expect_numbered` needs `to`"]);
        let e = err(&one_test(&[START, "{ expect_numbered = 'line {}' }"]));
        assert_err(&e, 12, &["`expect_numbered` needs `from` and `to`"]);
    }

    #[test]
    fn task_errors_name_the_key_line() {
        let text = one_test(&[START]).replace("slug = \"t1-x\"", "slug = \"t2-x\"");
        assert_err(
            &err(&text),
            3,
            &["[task].slug \"t2-x\" must start with the id"],
        );
        // [task] after a test whose multi-line hint has a line that looks like
        // `binary = ...`: the message names the real key, not the hint.
        let text = format!(
            "[[test]]\nname = \"a\"\npoints = 1\nhint = '''\nbinary = \"x\" is wrong\n'''\nsteps = [{START}]\n\n{}",
            TASK.replace("binary = \"x\"", "binary = \"x y\"")
        );
        assert_err(
            &err(&text),
            13,
            &["`binary` = \"x y\": use letters, digits"],
        );
    }

    #[test]
    fn valid_spec_parses() {
        let text = format!(
            r#"{TASK}
[limits]
test_timeout_ms = 3000

[[test]]
name = "one"
points = 2
steps = [
  {{ start = "m", args = ["-v"] }},
  {{ signal = "SIGINT", count = 10, spread_ms = 5, background = true }},
  {{ expect = '^count (\d+)$', capture = "n", at_most = "sent_SIGINT", timeout_ms = 100 }},
  {{ join = true }},
  {{ expect_exit = 0 }},
]

[[test]]
name = "two"
points = 3
timeout_ms = 9000
visibility = "hidden"
steps = [
  {{ start = "a" }},
  {{ start = "b" }},
  {{ expect_numbered = "line {{}}", from = 1, to = 5, process = "b", stream = "stderr" }},
  {{ expect_killed_by = "TERM", process = "a" }},
]
"#
        );
        let spec = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.tests.len(), 2);
        assert_eq!(spec.max_score(), 5);
        let (one, two) = (&spec.tests[0], &spec.tests[1]);
        assert_eq!((one.steps.len(), two.steps.len()), (5, 4));
        assert_eq!((one.line, one.steps[0].line, two.line), (11, 15, 22));
        assert_eq!((one.timeout_ms, two.timeout_ms), (3000, 9000));
        assert_eq!(
            (one.steps[2].timeout_ms, one.steps[4].timeout_ms),
            (100, 2000)
        );
        assert_eq!(
            (one.visibility, two.visibility),
            (Visibility::Visible, Visibility::Hidden)
        );
        assert!(
            matches!(&one.steps[0].action, Action::Start { name, args } if name == "m" && args == &["-v"])
        );
        assert!(matches!(
            one.steps[1].action,
            Action::Signal {
                count: 10,
                spread_ms: 5,
                background: true,
                ..
            }
        ));
        assert!(matches!(
            two.steps[2].action,
            Action::ExpectNumbered { from: 1, to: 5, .. }
        ));
        assert_eq!(two.steps[2].stream, StreamName::Stderr);
        assert_eq!(two.steps[3].process.as_deref(), Some("a"));
    }

    #[test]
    fn real_task1_spec_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../specs/task1-signals.toml"
        ));
        let spec = Spec::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (spec.task.id.as_str(), spec.task.slug.as_str()),
            ("task1", "task1-signals")
        );
        assert!(!spec.tests.is_empty());
        assert!(spec.max_score() >= spec.tests.len() as u32);
        for t in &spec.tests {
            assert!(t.steps.iter().all(|s| s.line > t.line), "{}", t.name);
        }
    }

    #[test]
    fn impossible_expectations_and_zero_budgets() {
        let e = err(&one_test(&[START, "{ expect_exit = 256 }"]));
        assert_err(
            &e,
            12,
            &["`expect_exit` = 256: give an integer from 0 to 255"],
        );
        let e = err(&one_test(&[
            START,
            "{ expect_handlers = [\"SIGINT\", \"SIGKILL\"] }",
        ]));
        assert_err(&e, 12, &["SIGKILL can never have a handler"]);
        let e = err(&one_test(&[START, "{ expect = 'x', timeout_ms = 0 }"]));
        assert_err(&e, 12, &["`timeout_ms` = 0: give an integer >= 1"]);
        let text = format!("{TASK}[limits]\nstep_timeout_ms = 0\n[[test]]\nname = \"a\"\npoints = 1\nsteps = [{START}]\n");
        assert_err(
            &err(&text),
            8,
            &["`step_timeout_ms` = 0: give an integer >= 1"],
        );
    }

    /// The TA guide (specs/GUIDE.md) has an example of every action, every
    /// step it shows is valid, and its example spec parses.
    #[test]
    fn the_guide_shows_every_action_and_its_examples_are_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/GUIDE.md");
        let guide = std::fs::read_to_string(path).expect("specs/GUIDE.md");
        let blocks: Vec<&str> = guide
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap_or_default())
            .collect();
        for a in lang::ACTIONS {
            let shown = format!("{{ {} = ", a.name);
            assert!(
                blocks.iter().any(|b| b.contains(&shown)),
                "GUIDE.md has no example of `{}`",
                a.name
            );
        }
        // Each example step, after steps that start a process and bind the
        // variables the examples read.
        let prefix = [
            "{ start = \"p\" }",
            "{ signal = \"SIGUSR1\", process = \"p\" }",
            "{ expect = '(\\d+)', capture = \"t\", process = \"p\" }",
            "{ expect = '(\\d+)', capture = \"fds\", process = \"p\" }",
        ];
        let mut checked = 0;
        for block in &blocks {
            for line in block.lines().map(str::trim).filter(|l| l.starts_with('{')) {
                // Steps that name their process belong to the example spec,
                // checked whole below.
                if line.contains("process =") {
                    continue;
                }
                let step = line.split("},").next().unwrap_or_default().to_owned() + "}";
                let mut steps: Vec<&str> = prefix.to_vec();
                steps.push(&step);
                if let Err(e) = parse(&one_test(&steps)) {
                    panic!("GUIDE.md example {line}:\n{e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 30, "only {checked} example steps found");
        // The skeleton and the first test together are a valid spec.
        let skeleton = blocks
            .iter()
            .find(|b| b.contains("[task]"))
            .expect("the skeleton");
        let test = blocks
            .iter()
            .find(|b| b.contains("[[test]]"))
            .expect("a test");
        let spec = Spec::parse(
            Path::new("specs/task6-tally.toml"),
            &format!("{skeleton}\n{test}"),
        )
        .unwrap_or_else(|e| panic!("the guide's example spec: {e}"));
        assert_eq!(spec.task.slug, "task6-tally");
    }

    /// Bad input is reported, never a panic: the shipped specs, cut and
    /// spliced at seeded places, parse to a spec or to errors that render.
    #[test]
    fn mangled_specs_give_errors_not_panics() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs");
        let mut rng = fastrand::Rng::with_seed(13);
        let bits = [
            "{",
            "}",
            "[",
            "]",
            "=",
            "\"",
            "'",
            "\n",
            "#",
            ",",
            "0",
            "x",
            "\\",
            "é",
            "[[test]]\n",
        ];
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for _ in 0..40 {
                let mut t = text.clone();
                for _ in 0..rng.usize(1..4) {
                    let mut at = rng.usize(0..=t.len());
                    while !t.is_char_boundary(at) {
                        at -= 1;
                    }
                    if rng.bool() {
                        let mut end = (at + rng.usize(0..40)).min(t.len());
                        while !t.is_char_boundary(end) {
                            end -= 1;
                        }
                        t.replace_range(at..end, "");
                    } else {
                        t.insert_str(at, bits[rng.usize(0..bits.len())]);
                    }
                }
                if let Err(e) = Spec::parse(&path, &t) {
                    assert!(!e.diagnostics.is_empty());
                    let _ = (e.render(false), e.render(true), e.one_line_each());
                }
            }
        }
    }

    #[test]
    fn steps_as_tables_of_an_array() {
        let text = format!(
            "{TASK}[[test]]\nname = \"a\"\npoints = 1\n\n[[test.steps]]\nstart = \"m\"\n\n[[test.steps]]\nexpect = '^x$'\ntimeout_ms = 50\n"
        );
        let spec = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let steps = &spec.tests[0].steps;
        assert_eq!((steps[0].line, steps[1].line), (11, 14));
        assert_eq!(steps[1].timeout_ms, 50);
        let e = err(&text.replace("timeout_ms = 50", "timout_ms = 50"));
        assert_err(
            &e,
            16,
            &["unknown key `timout_ms` in a step", "`timeout_ms`?"],
        );
    }
}
