//! The spec model: one TOML file per task, read into typed structures and
//! validated before anything runs.
//!
//! The format is documented for TAs in `specs/README.md`; keep the two in
//! step. Parsing is strict: unknown keys, wrong types and semantic mistakes
//! (a regex that does not compile, a step with two actions, a variable used
//! before it is captured) are errors that name the file, the line and the key,
//! so a TA finds a typo before a student does.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde::Deserialize;
use toml::Spanned;

use crate::signals;

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
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// `[limits]`: budgets for the build and for each test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget for `cargo build` of a submission.
    #[serde(default = "default_build_timeout_s")]
    pub build_timeout_s: u64,
    /// Default wall-clock budget of a test (a test may set its own).
    #[serde(default = "default_test_timeout_ms")]
    pub test_timeout_ms: u64,
    /// Default budget of one waiting step (a line, an exit, a system call),
    /// so that a hung program fails in seconds, not at the test's deadline.
    #[serde(default = "default_step_timeout_ms")]
    pub step_timeout_ms: u64,
    /// Captured bytes per stream per process; the rest is drained and dropped.
    #[serde(default = "default_output_limit")]
    pub output_limit_bytes: usize,
    /// Writable private memory of each student process (`RLIMIT_DATA`:
    /// heap and anonymous mappings, not the address space glibc reserves
    /// for thread arenas, so multi-threaded servers are not penalised).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Processes and threads of one test's student user (`RLIMIT_NPROC`).
    #[serde(default = "default_processes")]
    pub processes: u64,
    /// Open files of each student process (`RLIMIT_NOFILE`).
    #[serde(default = "default_open_files")]
    pub open_files: u64,
    /// Largest file a student process may write (`RLIMIT_FSIZE`).
    #[serde(default = "default_file_size_mib")]
    pub file_size_mib: u64,
    /// Memory of all of one test's processes together (a memory cgroup,
    /// where the grader can make one): shared memory included.
    #[serde(default = "default_test_memory_mib")]
    pub test_memory_mib: u64,
    /// Size of each test's scratch directory (a tmpfs, where namespaces
    /// allow), and of its private `/tmp` and `/dev/shm`.
    #[serde(default = "default_disk_mib")]
    pub disk_mib: u64,
}

fn default_build_timeout_s() -> u64 {
    300
}
fn default_test_timeout_ms() -> u64 {
    5_000
}
fn default_step_timeout_ms() -> u64 {
    2_000
}
fn default_output_limit() -> usize {
    4 << 20
}
fn default_memory_mib() -> u64 {
    1024
}
fn default_processes() -> u64 {
    256
}
fn default_open_files() -> u64 {
    1024
}
fn default_file_size_mib() -> u64 {
    64
}
fn default_test_memory_mib() -> u64 {
    2048
}
fn default_disk_mib() -> u64 {
    256
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            build_timeout_s: default_build_timeout_s(),
            test_timeout_ms: default_test_timeout_ms(),
            step_timeout_ms: default_step_timeout_ms(),
            output_limit_bytes: default_output_limit(),
            memory_mib: default_memory_mib(),
            processes: default_processes(),
            open_files: default_open_files(),
            file_size_mib: default_file_size_mib(),
            test_memory_mib: default_test_memory_mib(),
            disk_mib: default_disk_mib(),
        }
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
    pub hint: String,
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

/// Kinds of stale resource `stale` can leave (see `peers::stale`).
pub const STALE_KINDS: &[&str] = &["fifo", "socket", "shm", "sem", "msg"];

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
    WaitFor(regex::Regex, LineCheck),
    /// The next output line must match; with a `skip` pattern, lines that
    /// match it (and not the expectation) are passed over first.
    Expect(regex::Regex, LineCheck, Option<regex::Regex>),
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

// ---------------------------------------------------------------------------
// Raw, serde-facing shapes. They mirror the TOML exactly; `validate` turns
// them into the model above.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    task: RawTask,
    #[serde(default)]
    limits: Limits,
    #[serde(rename = "test", default)]
    tests: Vec<Spanned<RawTest>>,
}

/// `[task]`, with the spans of the keys validation may complain about.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: Spanned<String>,
    slug: Spanned<String>,
    title: String,
    binary: Spanned<String>,
    handout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    #[serde(default)]
    description: String,
    points: u32,
    timeout_ms: Option<u64>,
    #[serde(default)]
    visibility: Visibility,
    #[serde(default)]
    hint: String,
    #[serde(default)]
    rounds: Option<u32>,
    #[serde(default)]
    cpus: CpuPlacement,
    #[serde(default)]
    rlimits: Rlimits,
    io_faults: Option<crate::shim::IoFaults>,
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    // Actions: exactly one of these.
    start: Option<String>,
    send_line: Option<String>,
    close_stdin: Option<bool>,
    signal: Option<String>,
    join: Option<bool>,
    wait_for: Option<String>,
    expect: Option<String>,
    expect_numbered: Option<String>,
    expect_handlers: Option<Vec<String>>,
    wait_syscall: Option<String>,
    wait_blocked: Option<bool>,
    stop_reading: Option<bool>,
    resume_reading: Option<bool>,
    expect_exit: Option<i32>,
    expect_killed_by: Option<String>,
    expect_alive: Option<bool>,
    wait_file: Option<String>,
    stale: Option<String>,
    pause_ms: Option<u64>,
    wait_idle: Option<bool>,
    expect_clean: Option<bool>,
    send_payload: Option<usize>,
    count_fds: Option<bool>,
    count_zombies: Option<bool>,
    // Options.
    peer: Option<String>,
    target: Option<Target>,
    payload: Option<usize>,
    process: Option<String>,
    args: Option<Vec<String>>,
    count: Option<u32>,
    spread_ms: Option<u64>,
    background: Option<bool>,
    from: Option<u64>,
    to: Option<u64>,
    stream: Option<StreamName>,
    timeout_ms: Option<u64>,
    capture: Option<String>,
    at_least: Option<Value>,
    at_most: Option<Value>,
    equals: Option<Value>,
    skip: Option<String>,
}

/// A spec that could not be loaded, with where and why.
#[derive(Debug)]
pub struct SpecError {
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// The system calls `wait_syscall` understands, with their x86_64/aarch64
/// numbers resolved at compile time by libc.
pub const KNOWN_SYSCALLS: &[&str] = &[
    "read",
    "write",
    "openat",
    "accept4",
    "recvfrom",
    "msgrcv",
    "futex",
    "ppoll",
    "wait4",
    "clock_nanosleep",
    "rt_sigsuspend",
];

impl Test {
    /// The test's hints, mildest first (none when the spec gives none).
    pub fn hints(&self) -> Vec<String> {
        if self.hint.trim().is_empty() {
            Vec::new()
        } else {
            vec![self.hint.clone()]
        }
    }
}

impl Spec {
    /// Reads and validates the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read spec: {e}"),
        })?;
        Spec::parse(path, &text)
    }

    /// Parses spec text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            // toml's message already shows the offending line and key.
            message: e.to_string().trim_end().to_owned(),
        })?;
        let err = |line: usize, message: String| SpecError {
            path: path.to_owned(),
            line: Some(line),
            message,
        };

        let key_line = |v: &Spanned<String>| line_of(text, v.span().start);
        for (key, spanned) in [
            ("id", &raw.task.id),
            ("slug", &raw.task.slug),
            ("binary", &raw.task.binary),
        ] {
            let value = spanned.get_ref();
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    key_line(spanned),
                    format!("[task].{key} = {value:?}: use letters, digits, '-' and '_' only"),
                ));
            }
        }
        let (id, slug) = (raw.task.id.get_ref(), raw.task.slug.get_ref());
        if !slug.starts_with(&format!("{id}-")) {
            return Err(err(
                key_line(&raw.task.slug),
                format!("[task].slug {slug:?} must start with the id and a dash ({id}-...)"),
            ));
        }
        let limits = &raw.limits;
        for (key, value) in [
            ("build_timeout_s", limits.build_timeout_s),
            ("test_timeout_ms", limits.test_timeout_ms),
            ("step_timeout_ms", limits.step_timeout_ms),
            ("output_limit_bytes", limits.output_limit_bytes as u64),
            ("memory_mib", limits.memory_mib),
            ("processes", limits.processes),
            ("open_files", limits.open_files),
            ("file_size_mib", limits.file_size_mib),
            ("test_memory_mib", limits.test_memory_mib),
            ("disk_mib", limits.disk_mib),
        ] {
            if value == 0 {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with(key))
                    .map_or(1, |i| i + 1);
                return Err(err(line, format!("[limits].{key}: must be positive")));
            }
        }
        let task = TaskMeta {
            id: raw.task.id.into_inner(),
            slug: raw.task.slug.into_inner(),
            title: raw.task.title,
            binary: raw.task.binary.into_inner(),
            handout: raw.task.handout,
        };
        if raw.tests.is_empty() {
            return Err(SpecError {
                path: path.to_owned(),
                line: None,
                message: "the spec has no [[test]] entries".into(),
            });
        }

        let mut names = BTreeSet::new();
        let mut tests = Vec::new();
        for spanned in raw.tests {
            let line = line_of(text, spanned.span().start);
            let raw_test = spanned.into_inner();
            let name = raw_test.name.clone();
            let test_err = |line: usize, msg: String| err(line, format!("test {name:?}: {msg}"));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(test_err(
                    line,
                    "name: use letters, digits, '_' and '-' only".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(test_err(
                    line,
                    "name: another test already has this name".into(),
                ));
            }
            if raw_test.points == 0 {
                return Err(test_err(line, "points: must be at least 1".into()));
            }
            let timeout_ms = raw_test.timeout_ms.unwrap_or(raw.limits.test_timeout_ms);
            if timeout_ms == 0 {
                return Err(test_err(line, "timeout_ms: must be positive".into()));
            }
            let rounds = raw_test.rounds.unwrap_or(1);
            if !(1..=1000).contains(&rounds) {
                return Err(test_err(line, format!("rounds = {rounds}: give 1 to 1000")));
            }
            if raw_test.rlimits.open_files == Some(0) || raw_test.rlimits.processes == Some(0) {
                return Err(test_err(
                    line,
                    "rlimits: a limit of 0 leaves the program unable to run at all".into(),
                ));
            }
            if let Some(f) = &raw_test.io_faults {
                for (key, p) in [
                    ("short_reads", f.short_reads),
                    ("short_writes", f.short_writes),
                    ("eintr", f.eintr),
                ] {
                    if !(0.0..=1.0).contains(&p) {
                        return Err(test_err(
                            line,
                            format!("io_faults.{key} = {p}: a probability is 0.0 to 1.0"),
                        ));
                    }
                }
            }
            let mut ctx = StepContext::default();
            let mut steps = Vec::new();
            for (index, raw_step) in raw_test.steps.into_iter().enumerate() {
                let step_line = line_of(text, raw_step.span().start);
                let step = validate_step(raw_step.into_inner(), step_line, &raw.limits, &mut ctx)
                    .map_err(|m| test_err(step_line, format!("step {}: {m}", index + 1)))?;
                steps.push(step);
            }
            if steps.is_empty() {
                return Err(test_err(
                    line,
                    "steps: a test needs at least one step".into(),
                ));
            }
            if ctx.started.len() > 1 {
                if let Some(step) = steps
                    .iter()
                    .find(|s| s.process.is_none() && targets_process(&s.action))
                {
                    return Err(test_err(
                        step.line,
                        "process: this test starts several processes, so each step must name one"
                            .into(),
                    ));
                }
            }
            tests.push(Test {
                name,
                description: raw_test.description,
                points: raw_test.points,
                timeout_ms,
                visibility: raw_test.visibility,
                hint: raw_test.hint,
                steps,
                line,
                rounds,
                cpus: raw_test.cpus,
                rlimits: raw_test.rlimits,
                io_faults: raw_test.io_faults,
            });
        }

        Ok(Spec {
            path: path.to_owned(),
            task,
            limits: raw.limits,
            tests,
            digest: sha256_hex(text.as_bytes()),
        })
    }

    /// Total points of the spec.
    pub fn max_score(&self) -> u32 {
        self.tests.iter().map(|t| t.points).sum()
    }
}

fn targets_process(action: &Action) -> bool {
    !matches!(
        action,
        Action::Start { .. }
            | Action::StartPeer { .. }
            | Action::Join
            | Action::Stale { .. }
            | Action::ExpectClean
    )
}

/// What validation of earlier steps in a test has established.
#[derive(Default)]
struct StepContext {
    started: Vec<String>,
    /// Variables bound so far (captures and `sent_SIGNAL` counters).
    vars: BTreeSet<String>,
}

fn validate_step(
    raw: RawStep,
    line: usize,
    limits: &Limits,
    ctx: &mut StepContext,
) -> Result<Step, String> {
    let mut actions = Vec::new();
    macro_rules! present {
        ($($field:ident),*) => { $( if raw.$field.is_some() { actions.push(stringify!($field)); } )* };
    }
    present!(
        start,
        send_line,
        close_stdin,
        signal,
        join,
        wait_for,
        expect,
        expect_numbered,
        expect_handlers,
        wait_syscall,
        wait_blocked,
        stop_reading,
        resume_reading,
        expect_exit,
        expect_killed_by,
        expect_alive,
        wait_file,
        stale,
        pause_ms,
        wait_idle,
        expect_clean,
        send_payload,
        count_fds,
        count_zombies
    );
    let action_name = match actions.as_slice() {
        [one] => *one,
        [] => return Err("no action: a step needs one of start, send_line, send_payload, close_stdin, signal, pause_ms, stale, join, wait_for, expect, expect_numbered, expect_handlers, wait_blocked, wait_syscall, wait_file, wait_idle, stop_reading, resume_reading, count_fds, count_zombies, expect_exit, expect_killed_by, expect_alive, expect_clean".into()),
        many => return Err(format!("several actions ({}): put each in its own step", many.join(", "))),
    };

    // Options and the actions they belong to.
    let allowed: &[&str] = match action_name {
        "start" => &["args", "peer"],
        "stale" => &["args"],
        "signal" => &["count", "spread_ms", "background", "target"],
        "pause_ms" => &["count", "spread_ms", "background", "target"],
        "count_fds" | "count_zombies" => &["capture", "at_least", "at_most", "equals"],
        "wait_for" => &[
            "stream", "capture", "at_least", "at_most", "equals", "payload",
        ],
        "expect" => &[
            "stream", "capture", "at_least", "at_most", "equals", "payload", "skip",
        ],
        "stop_reading" | "resume_reading" => &["stream"],
        "expect_numbered" => &["from", "to", "stream"],
        _ => &[],
    };
    let options = [
        ("args", raw.args.is_some()),
        ("count", raw.count.is_some()),
        ("spread_ms", raw.spread_ms.is_some()),
        ("background", raw.background.is_some()),
        ("from", raw.from.is_some()),
        ("to", raw.to.is_some()),
        ("stream", raw.stream.is_some()),
        ("capture", raw.capture.is_some()),
        ("at_least", raw.at_least.is_some()),
        ("at_most", raw.at_most.is_some()),
        ("equals", raw.equals.is_some()),
        ("peer", raw.peer.is_some()),
        ("target", raw.target.is_some()),
        ("payload", raw.payload.is_some()),
        ("skip", raw.skip.is_some()),
    ];
    for (option, set) in options {
        if set && !allowed.contains(&option) {
            return Err(format!("`{option}` does not apply to `{action_name}`"));
        }
    }
    if action_name == "start" && raw.process.is_some() {
        return Err("`start` names the process itself: write start = \"NAME\"".into());
    }
    if let Some(p) = &raw.process {
        if !ctx.started.contains(p) {
            return Err(format!("process {p:?} is not started by an earlier step"));
        }
    } else if !matches!(action_name, "start" | "join" | "stale") && ctx.started.is_empty() {
        return Err(format!("`{action_name}` before any `start` step"));
    }

    let flag = |v: Option<bool>, name: &str| -> Result<(), String> {
        match v {
            Some(true) => Ok(()),
            _ => Err(format!("`{name}` takes the value true")),
        }
    };
    let regex = |pattern: &str| {
        regex::Regex::new(pattern)
            .map_err(|e| format!("{action_name} = {pattern:?} is not a valid regex: {e}"))
    };
    let number_check = |re: &regex::Regex, ctx: &mut StepContext| -> Result<NumberCheck, String> {
        let check = NumberCheck {
            capture: raw.capture.clone(),
            at_least: raw.at_least.clone(),
            at_most: raw.at_most.clone(),
            equals: raw.equals.clone(),
        };
        if !check.is_empty() && re.captures_len() != 2 {
            return Err(format!(
                "capture/at_least/at_most/equals need exactly one capture group in the regex, found {}",
                re.captures_len() - 1
            ));
        }
        check_vars(&check, ctx)?;
        Ok(check)
    };
    let line_check = |re: &regex::Regex, ctx: &mut StepContext| -> Result<LineCheck, String> {
        if let Some(len) = raw.payload {
            if raw.capture.is_some()
                || raw.at_least.is_some()
                || raw.at_most.is_some()
                || raw.equals.is_some()
            {
                return Err("`payload` checks the captured text; it does not combine with capture/at_least/at_most/equals".into());
            }
            if re.captures_len() != 2 {
                return Err(format!(
                    "`payload` needs exactly one capture group in the regex (the text to compare), found {}",
                    re.captures_len() - 1
                ));
            }
            return Ok(LineCheck::Payload(len));
        }
        number_check(re, ctx).map(LineCheck::Number)
    };

    let action = match action_name {
        "start" => {
            let name = raw.start.clone().unwrap_or_default();
            if name.is_empty() {
                return Err("start: the process needs a name".into());
            }
            if ctx.started.contains(&name) {
                return Err(format!("start: process {name:?} is already started"));
            }
            ctx.started.push(name.clone());
            let args = raw.args.clone().unwrap_or_default();
            match &raw.peer {
                None => Action::Start { name, args },
                Some(kind) => {
                    if !crate::peers::KINDS.iter().any(|(k, _)| k == kind) || kind == "stale" {
                        let known: Vec<&str> = crate::peers::KINDS
                            .iter()
                            .map(|(k, _)| *k)
                            .filter(|k| *k != "stale")
                            .collect();
                        return Err(format!(
                            "peer = {kind:?}: no such grader peer (known: {})",
                            known.join(", ")
                        ));
                    }
                    Action::StartPeer {
                        name,
                        kind: kind.clone(),
                        args,
                    }
                }
            }
        }
        "stale" => {
            let kind = raw.stale.clone().unwrap_or_default();
            if !STALE_KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "stale = {kind:?}: unknown kind (known: {})",
                    STALE_KINDS.join(", ")
                ));
            }
            let args = raw.args.clone().unwrap_or_default();
            if args.is_empty() {
                return Err(format!(
                    "stale = {kind:?} needs args = [NAME] (a path, name or key), and optionally a value"
                ));
            }
            Action::Stale { kind, args }
        }
        "pause_ms" => {
            let max_ms = raw.pause_ms.unwrap_or_default();
            if max_ms == 0 {
                return Err("pause_ms: must be positive".into());
            }
            let count = raw.count.unwrap_or(1);
            if count == 0 {
                return Err("count: must be at least 1".into());
            }
            Action::Pause {
                max_ms,
                target: raw.target.unwrap_or_default(),
                count,
                spread_ms: raw.spread_ms.unwrap_or(0),
                background: raw.background.unwrap_or(false),
            }
        }
        "wait_idle" => {
            flag(raw.wait_idle, "wait_idle")?;
            Action::WaitIdle
        }
        "expect_clean" => {
            flag(raw.expect_clean, "expect_clean")?;
            Action::ExpectClean
        }
        "count_fds" | "count_zombies" => {
            let what = if action_name == "count_fds" {
                flag(raw.count_fds, "count_fds")?;
                Counted::Fds
            } else {
                flag(raw.count_zombies, "count_zombies")?;
                Counted::Zombies
            };
            let check = NumberCheck {
                capture: raw.capture.clone(),
                at_least: raw.at_least.clone(),
                at_most: raw.at_most.clone(),
                equals: raw.equals.clone(),
            };
            if check.is_empty() {
                return Err(format!(
                    "{action_name} needs capture, at_least, at_most or equals"
                ));
            }
            check_vars(&check, ctx)?;
            Action::Count(what, check)
        }
        "send_payload" => {
            let len = raw.send_payload.unwrap_or_default();
            if len == 0 {
                return Err("send_payload: the length must be positive".into());
            }
            Action::SendPayload(len)
        }
        "send_line" => Action::SendLine(raw.send_line.clone().unwrap_or_default()),
        "close_stdin" => {
            flag(raw.close_stdin, "close_stdin")?;
            Action::CloseStdin
        }
        "join" => {
            flag(raw.join, "join")?;
            Action::Join
        }
        "expect_alive" => {
            flag(raw.expect_alive, "expect_alive")?;
            Action::ExpectAlive
        }
        "signal" => {
            let name = raw.signal.as_deref().unwrap_or_default();
            let signal = signals::parse(name).map_err(|e| format!("signal: {e}"))?;
            let count = raw.count.unwrap_or(1);
            if count == 0 {
                return Err("count: must be at least 1".into());
            }
            ctx.vars.insert(format!("sent_{}", signals::name(signal)));
            Action::Signal {
                signal,
                count,
                spread_ms: raw.spread_ms.unwrap_or(0),
                background: raw.background.unwrap_or(false),
                target: raw.target.unwrap_or_default(),
            }
        }
        "wait_for" => {
            let re = regex(raw.wait_for.as_deref().unwrap_or_default())?;
            let check = line_check(&re, ctx)?;
            Action::WaitFor(re, check)
        }
        "expect" => {
            let re = regex(raw.expect.as_deref().unwrap_or_default())?;
            let check = line_check(&re, ctx)?;
            let skip = match raw.skip.as_deref() {
                Some(p) => Some(
                    regex::Regex::new(p)
                        .map_err(|e| format!("skip = {p:?} is not a valid regex: {e}"))?,
                ),
                None => None,
            };
            Action::Expect(re, check, skip)
        }
        "wait_blocked" => {
            flag(raw.wait_blocked, "wait_blocked")?;
            Action::WaitBlocked
        }
        "stop_reading" => {
            flag(raw.stop_reading, "stop_reading")?;
            Action::Reading(false)
        }
        "resume_reading" => {
            flag(raw.resume_reading, "resume_reading")?;
            Action::Reading(true)
        }
        "expect_numbered" => {
            let template = raw.expect_numbered.clone().unwrap_or_default();
            if template.matches("{}").count() != 1 {
                return Err(
                    "expect_numbered: the template needs exactly one {} for the number".into(),
                );
            }
            let (Some(from), Some(to)) = (raw.from, raw.to) else {
                return Err("expect_numbered needs `from` and `to`".into());
            };
            if from > to {
                return Err(format!(
                    "expect_numbered: from ({from}) is greater than to ({to})"
                ));
            }
            Action::ExpectNumbered { template, from, to }
        }
        "expect_handlers" => {
            let names = raw.expect_handlers.clone().unwrap_or_default();
            if names.is_empty() {
                return Err("expect_handlers: list at least one signal".into());
            }
            let sigs = names
                .iter()
                .map(|n| signals::parse(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("expect_handlers: {e}"))?;
            if let Some(s) = sigs
                .iter()
                .find(|s| matches!(s, Signal::SIGKILL | Signal::SIGSTOP))
            {
                return Err(format!(
                    "expect_handlers: {} can never have a handler",
                    signals::name(*s)
                ));
            }
            Action::ExpectHandlers(sigs)
        }
        "wait_syscall" => {
            let name = raw.wait_syscall.clone().unwrap_or_default();
            if !KNOWN_SYSCALLS.contains(&name.as_str()) {
                return Err(format!(
                    "wait_syscall: unknown system call {name:?} (known: {})",
                    KNOWN_SYSCALLS.join(", ")
                ));
            }
            Action::WaitSyscall(name)
        }
        "wait_file" => {
            let path = raw.wait_file.clone().unwrap_or_default();
            let p = Path::new(&path);
            if path.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!("wait_file = {path:?}: give a path inside the test's scratch directory (relative, no ..)"));
            }
            Action::WaitFile(path)
        }
        "expect_exit" => {
            let code = raw.expect_exit.unwrap_or_default();
            if !(0..=255).contains(&code) {
                return Err(format!("expect_exit = {code}: an exit status is 0 to 255"));
            }
            Action::ExpectExit(code)
        }
        "expect_killed_by" => {
            let name = raw.expect_killed_by.as_deref().unwrap_or_default();
            Action::ExpectKilledBy(
                signals::parse(name).map_err(|e| format!("expect_killed_by: {e}"))?,
            )
        }
        other => unreachable!("action {other} listed above"),
    };

    if raw.timeout_ms == Some(0) {
        return Err("timeout_ms: must be positive".into());
    }
    Ok(Step {
        action,
        process: raw.process,
        stream: raw.stream.unwrap_or_default(),
        timeout_ms: raw.timeout_ms.unwrap_or(limits.step_timeout_ms),
        line,
    })
}

/// Variables a check reads must be bound by an earlier step; the one it
/// captures is bound from here on.
fn check_vars(check: &NumberCheck, ctx: &mut StepContext) -> Result<(), String> {
    for v in [&check.at_least, &check.at_most, &check.equals]
        .into_iter()
        .flatten()
    {
        if let Value::Var(name) = v {
            if !ctx.vars.contains(name) {
                return Err(format!(
                    "variable {name:?} is not bound here (bind it with `capture`, or send signals for sent_SIGNAME)"
                ));
            }
        }
    }
    if let Some(name) = &check.capture {
        ctx.vars.insert(name.clone());
    }
    Ok(())
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
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

    /// The error is on `line` and its message mentions every one of `parts`.
    #[track_caller]
    fn assert_err(e: &SpecError, line: usize, parts: &[&str]) {
        assert_eq!(e.line, Some(line), "wrong line in: {e}");
        for part in parts {
            assert!(e.message.contains(part), "{part:?} not in: {e}");
        }
    }

    const START: &str = "{ start = \"m\" }";

    #[test]
    fn message_is_file_line_message() {
        let e = err(&one_test(&[START, "{ timeout_ms = 5 }"]));
        assert_eq!(e.to_string(), format!("specs/x.toml:12: {}", e.message));
        assert!(e.message.starts_with("test \"a\": step 2: "), "{e}");
    }

    #[test]
    fn unknown_key_in_task() {
        let text = format!(
            "{TASK}colour = \"red\"\n[[test]]\nname = \"a\"\npoints = 1\nsteps = [{START}]\n"
        );
        assert_err(&err(&text), 7, &["line 7", "unknown field `colour`"]);
    }

    #[test]
    fn unknown_key_in_step() {
        let e = err(&one_test(&[START, "{ expct = '^x$' }"]));
        assert_err(&e, 12, &["line 12", "unknown field `expct`", "`expect`"]);
    }

    #[test]
    fn wrong_type() {
        let text = format!("{TASK}[[test]]\nname = \"a\"\npoints = \"two\"\nsteps = [{START}]\n");
        assert_err(&err(&text), 9, &["line 9", "points", "\"two\"", "u32"]);
    }

    #[test]
    fn missing_required_key() {
        let text = format!("{TASK}[[test]]\nname = \"a\"\nsteps = [{START}]\n");
        assert_err(&err(&text), 7, &["line 7", "missing field `points`"]);
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
            &["step 2", "wait_for = \"(x\" is not a valid regex"],
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
            12,
            &["test \"a\"", "name: another test already has this name"],
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
        assert_err(&e, 12, &["expect_killed_by: unknown signal \"KIL\""]);
    }

    #[test]
    fn unknown_syscall() {
        let e = err(&one_test(&[START, "{ wait_syscall = 'select' }"]));
        assert_err(
            &e,
            12,
            &[
                "wait_syscall: unknown system call \"select\"",
                "known: read",
            ],
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
        assert_err(&e, 12, &["needs `from` and `to`"]);
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
        assert_err(&err(&text), 13, &["[task].binary = \"x y\""]);
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
        assert_err(&e, 12, &["expect_exit = 256", "0 to 255"]);
        let e = err(&one_test(&[
            START,
            "{ expect_handlers = [\"SIGINT\", \"SIGKILL\"] }",
        ]));
        assert_err(&e, 12, &["SIGKILL can never have a handler"]);
        let e = err(&one_test(&[START, "{ expect = 'x', timeout_ms = 0 }"]));
        assert_err(&e, 12, &["timeout_ms: must be positive"]);
        let text = format!("{TASK}[limits]\nstep_timeout_ms = 0\n[[test]]\nname = \"a\"\npoints = 1\nsteps = [{START}]\n");
        assert_err(
            &err(&text),
            8,
            &["[limits].step_timeout_ms: must be positive"],
        );
    }
}
