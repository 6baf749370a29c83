//! The spec language, defined once.
//!
//! Every key a spec may hold is a row of a table here: its name, the type of
//! its value, whether it is required, its default and a one-line
//! description. Steps are rows of [`ACTIONS`] (an action's key, its value,
//! the options it takes, how it is built into an [`Action`](super::Action)) and
//! [`OPTIONS`]. Validation ([`super::read`]), its error messages, the JSON
//! Schema ([`super::schema`]) and the test that `specs/README.md` documents
//! every key are all derived from these tables: adding an action is adding
//! a row (and its build function in [`super::steps`]).

use super::steps;
use super::steps::Build;

/// The type of a key's value, as validation checks it and the schema states it.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Any string.
    Str,
    /// A non-empty string.
    Name,
    /// Letters, digits, `-` and `_`, non-empty.
    Ident,
    /// A regex (the `regex-lite` crate's syntax: the `regex` crate's without Unicode classes) that must compile.
    Regex,
    /// A signal name: `SIGINT`, `INT` or `int`.
    Signal,
    /// A non-empty array of signal names.
    Signals,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A kind of grader peer (`peers::KINDS`, less `stale`).
    PeerKind,
    /// Only `true`.
    True,
    Bool,
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A number from 0.0 to 1.0.
    Probability,
    /// An array of strings.
    Strings,
    /// A string, or an array of strings (escalating hints).
    StrOrStrings,
    /// A non-empty array of strings.
    NonEmptyStrings,
    /// An integer, or the name of a variable as a string.
    NumberOrVariable,
    /// A table with these keys.
    Table(&'static [Key]),
    /// A non-empty array of tables with these keys (`[[test]]`).
    Tables(&'static [Key]),
    /// A non-empty array of steps: each a table of one action of
    /// [`ACTIONS`] and options of [`OPTIONS`].
    Steps,
}

impl Ty {
    /// For messages: `an integer from 1 to 1000`.
    pub fn describe(&self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::Name => "a non-empty string".into(),
            Ty::Ident => "a string of letters, digits, '-' and '_'".into(),
            Ty::Regex => "a regex (a string)".into(),
            Ty::Signal => "a signal name (a string, like \"SIGINT\")".into(),
            Ty::Signals => "an array of signal names".into(),
            Ty::OneOf(values) => format!("one of {}", quoted(values)),
            Ty::PeerKind => format!("one of {}", quoted(&peer_kinds())),
            Ty::True => "true".into(),
            Ty::Bool => "true or false".into(),
            Ty::Int { min, max } => describe_range(*min, *max),
            Ty::Probability => "a number from 0.0 to 1.0".into(),
            Ty::Strings => "an array of strings".into(),
            Ty::StrOrStrings => "a string or an array of strings".into(),
            Ty::NonEmptyStrings => "a non-empty array of strings".into(),
            Ty::NumberOrVariable => "an integer or a variable name (a string)".into(),
            Ty::Table(_) => "a table".into(),
            Ty::Tables(_) => "an array of tables".into(),
            Ty::Steps => "an array of steps (tables)".into(),
        }
    }
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `an integer from 1 to 255`, `an integer >= 1`.
pub fn describe_range(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => "an integer".into(),
        (min, i64::MAX) => format!("an integer >= {min}"),
        (min, max) => format!("an integer from {min} to {max}"),
    }
}

/// The peers a spec may start (`stale` is only for the `stale` step).
pub fn peer_kinds() -> Vec<&'static str> {
    crate::peers::KINDS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k != "stale")
        .collect()
}

/// A default, for documentation, the schema and the model.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    None,
    Int(i64),
    Str(&'static str),
    Bool(bool),
    Float(f64),
}

/// One key of a table.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub default: Default,
    pub doc: &'static str,
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: true,
        default: Default::None,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, default: Default, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: false,
        default,
        doc,
    }
}

const POSITIVE: Ty = Ty::Int {
    min: 1,
    max: i64::MAX,
};
const NON_NEGATIVE: Ty = Ty::Int {
    min: 0,
    max: i64::MAX,
};

/// The top level of a spec file.
pub const SPEC_KEYS: &[Key] = &[
    req(
        "task",
        Ty::Table(TASK_KEYS),
        "Who the task is and where its crates live.",
    ),
    opt(
        "limits",
        Ty::Table(LIMIT_KEYS),
        Default::None,
        "The sandbox's limits and the default budgets, for every test.",
    ),
    req(
        "test",
        Ty::Tables(TEST_KEYS),
        "The tests, run in file order; at least one.",
    ),
];

/// `[task]`.
pub const TASK_KEYS: &[Key] = &[
    req(
        "id",
        Ty::Ident,
        "What students type (`task1`); letters, digits, `_` and `-`, best without `-`.",
    ),
    req(
        "slug",
        Ty::Ident,
        "`<id>-<name>`: the spec's file name and the crate directories' name.",
    ),
    req("title", Ty::Str, "Shown in reports and `cargo grade list`."),
    req(
        "binary",
        Ty::Ident,
        "The `[[bin]]` target of the starter crate that is built and run.",
    ),
    req(
        "handout",
        Ty::Str,
        "Path of the handout relative to the course root (not read by the grader).",
    ),
];

/// `[limits]`. Every limit is a positive integer.
pub const LIMIT_KEYS: &[Key] = &[
    opt("build_timeout_s", POSITIVE, Default::Int(300), "Wall-clock budget of the build, in seconds; past it the build counts as failed."),
    opt("test_timeout_ms", POSITIVE, Default::Int(5_000), "Budget of a whole test, unless the test sets `timeout_ms`."),
    opt("step_timeout_ms", POSITIVE, Default::Int(2_000), "Budget of one waiting step, unless the step sets `timeout_ms`."),
    opt("output_limit_bytes", POSITIVE, Default::Int(4 << 20), "Bytes kept per stream (stdout, stderr) per process; the rest is read and dropped."),
    opt("memory_mib", POSITIVE, Default::Int(1024), "Writable private memory of each student process (RLIMIT_DATA), in MiB."),
    opt("processes", POSITIVE, Default::Int(256), "Processes and threads of one test (RLIMIT_NPROC)."),
    opt("open_files", POSITIVE, Default::Int(1024), "Open files of each student process (RLIMIT_NOFILE)."),
    opt("file_size_mib", POSITIVE, Default::Int(64), "Largest file a student process may write (RLIMIT_FSIZE), in MiB."),
    opt("test_memory_mib", POSITIVE, Default::Int(2048), "Memory of all of a test's processes together, shared memory included (a memory cgroup), in MiB."),
    opt("disk_mib", POSITIVE, Default::Int(256), "Size of the test's scratch directory, /tmp and /dev/shm (private tmpfs), in MiB."),
];

/// The default of a `[limits]` key.
pub fn limit_default(name: &str) -> u64 {
    match LIMIT_KEYS
        .iter()
        .find(|k| k.name == name)
        .map(|k| k.default)
    {
        Some(Default::Int(n)) => n.unsigned_abs(),
        _ => 0,
    }
}

/// `[[test]]`.
pub const TEST_KEYS: &[Key] = &[
    req("name", Ty::Ident, "Letters, digits, `_` and `-`; unique in the spec. `--only` selects by it, `catches` names it."),
    req("points", Ty::Int { min: 1, max: u32::MAX as i64 }, "What the test is worth; it scores all of them or none."),
    req("steps", Ty::Steps, "What the test does, in order; the first step that does not pass ends the test."),
    opt("timeout_ms", POSITIVE, Default::None, "Budget of the whole test (all rounds); default `[limits].test_timeout_ms`."),
    opt("visibility", Ty::OneOf(&["visible", "hidden"]), Default::Str("visible"), "`hidden` shows only the name, status, points and hint in the human report."),
    opt("hint", Ty::StrOrStrings, Default::Str(""), "Shown with a failure (also for hidden tests); a list gives escalating hints: the report shows the first, `--hint N` the first N."),
    opt("description", Ty::Str, Default::Str(""), "One line on what the test checks, shown in the report."),
    opt("rounds", Ty::Int { min: 1, max: 1000 }, Default::Int(1), "Race stress: run the steps this many times, each round from nothing; all must pass."),
    opt("cpus", Ty::OneOf(&["any", "seeded"]), Default::Str("any"), "`seeded`: each round, all CPUs or one picked by seed, for the submission's processes."),
    opt("rlimits", Ty::Table(RLIMIT_KEYS), Default::None, "Resource limits of this test's submission processes, replacing `[limits]`."),
    opt("io_faults", Ty::Table(IO_FAULT_KEYS), Default::None, "Short reads and writes and EINTR injected into the submission's I/O on FIFOs and sockets."),
];

/// `rlimits = { ... }` of a test.
pub const RLIMIT_KEYS: &[Key] = &[
    opt(
        "open_files",
        POSITIVE,
        Default::None,
        "RLIMIT_NOFILE: only file descriptors 0 to N - 1.",
    ),
    opt(
        "processes",
        POSITIVE,
        Default::None,
        "RLIMIT_NPROC: `fork` fails with EAGAIN once the test has N processes and threads.",
    ),
];

/// `io_faults = { ... }` of a test.
pub const IO_FAULT_KEYS: &[Key] = &[
    opt("short_reads", Ty::Probability, Default::Float(0.0), "Probability that a read asks the kernel for fewer bytes than the caller did."),
    opt("short_writes", Ty::Probability, Default::Float(0.0), "Probability that a write writes fewer bytes than it was given (never an atomic pipe write)."),
    opt("eintr", Ty::Probability, Default::Float(0.0), "Probability that a call fails with EINTR having done nothing (never twice in a row)."),
];

/// The top level of `solutions/<slug>/mutants.toml`.
pub const MUTANTS_KEYS: &[Key] = &[req(
    "mutant",
    Ty::Tables(MUTANT_KEYS),
    "Known-buggy variants of the reference solution; at least one.",
)];

/// `[[mutant]]`.
pub const MUTANT_KEYS: &[Key] = &[
    req(
        "name",
        Ty::Name,
        "Short identifier, shown as `mutant NAME`; unique in the file.",
    ),
    req("description", Ty::Str, "The bug, in words."),
    req(
        "file",
        Ty::Name,
        "File of the solution crate to patch, relative to it (in `src/`).",
    ),
    req(
        "find",
        Ty::Name,
        "Text that occurs exactly once in that file.",
    ),
    req("replace", Ty::Str, "What it becomes."),
    req(
        "catches",
        Ty::NonEmptyStrings,
        "Tests that must lose points against this mutant.",
    ),
];

/// What a step's action acts on, which decides whether it needs `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// It starts the process it names (`start`): `process` is not allowed.
    Names,
    /// No process: it may come before any `start` (`join`, `stale`).
    Free,
    /// All of the submission's processes (`expect_clean`): it needs a
    /// `start` before it, never a `process`.
    Submission,
    /// The named process, or the test's only one.
    Process,
}

/// What a step binds for the steps after it (besides `capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binds {
    Nothing,
    /// The process it names.
    Process,
    /// `sent_SIGNAME` of its signal.
    SentCounter,
}

/// One action of the step language.
pub struct ActionDef {
    pub name: &'static str,
    pub value: Ty,
    /// The options it takes besides [`COMMON_OPTIONS`].
    pub options: &'static [&'static str],
    /// Options it cannot do without.
    pub required: &'static [&'static str],
    pub subject: Subject,
    pub binds: Binds,
    pub doc: &'static str,
    pub(crate) build: Build,
}

impl ActionDef {
    /// Whether `option` may be given with this action.
    pub fn takes(&self, option: &str) -> bool {
        self.options.contains(&option)
            || (COMMON_OPTIONS.contains(&option)
                && !(option == "process" && self.subject == Subject::Names))
    }

    /// Every option it takes, common ones included, in table order.
    pub fn all_options(&self) -> impl Iterator<Item = &'static Key> + '_ {
        OPTIONS.iter().filter(|o| self.takes(o.name))
    }
}

/// Options every action takes (`process` not on `start`).
pub const COMMON_OPTIONS: &[&str] = &["process", "timeout_ms"];

const NUMBER_CHECK: &[&str] = &["capture", "at_least", "at_most", "equals"];
const BURST: &[&str] = &["count", "spread_ms", "background", "target"];
const LINE: &[&str] = &[
    "stream", "capture", "at_least", "at_most", "equals", "payload",
];

const fn action(
    name: &'static str,
    value: Ty,
    options: &'static [&'static str],
    subject: Subject,
    doc: &'static str,
    build: Build,
) -> ActionDef {
    ActionDef {
        name,
        value,
        options,
        required: &[],
        subject,
        binds: Binds::Nothing,
        doc,
        build,
    }
}

/// Every action, in the order the reference lists them.
pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        binds: Binds::Process,
        ..action("start", Ty::Name, &["args", "peer"], Subject::Names,
            "Start the task's binary (or, with `peer`, a grader peer) as the process of this name; does not wait.",
            steps::start)
    },
    action("send_line", Ty::Str, &[], Subject::Process,
        "Write this line (placeholders substituted) and a newline to the process's stdin.",
        steps::send_line),
    action("send_payload", POSITIVE, &[], Subject::Process,
        "Write the grader's N-byte payload and a newline to the process's stdin.",
        steps::send_payload),
    action("close_stdin", Ty::True, &[], Subject::Process,
        "Close the process's stdin: its reads then return end of file.",
        steps::close_stdin),
    ActionDef {
        binds: Binds::SentCounter,
        ..action("signal", Ty::Signal, BURST, Subject::Process,
            "Send this signal (`count` times, over `spread_ms`); each one sent adds 1 to `sent_SIGNAME`.",
            steps::signal)
    },
    action("pause_ms", POSITIVE, BURST, Subject::Process,
        "Stop the target with SIGSTOP for a seeded time of up to this many ms, then SIGCONT (`count` times).",
        steps::pause),
    ActionDef {
        required: &["args"],
        ..action("stale", Ty::OneOf(STALE_KINDS), &["args"], Subject::Free,
            "Leave a resource of this kind behind, as a crashed earlier run would have.",
            steps::stale)
    },
    action("join", Ty::True, &[], Subject::Free,
        "Wait until every background burst of signals or pauses has finished.",
        steps::join),
    action("wait_for", Ty::Regex, LINE, Subject::Process,
        "Consume output lines until one matches this regex.",
        steps::wait_for),
    action("expect", Ty::Regex,
        &["stream", "capture", "at_least", "at_most", "equals", "payload", "skip"],
        Subject::Process,
        "The next output line must match this regex.",
        steps::expect),
    action("expect_eof", Ty::True, &["stream"], Subject::Process,
        "Wait for the end of the stream (the program closed it or exited); no further line may come first.",
        steps::expect_eof),
    ActionDef {
        required: &["from", "to"],
        ..action("expect_numbered", Ty::Str, &["from", "to", "stream"], Subject::Process,
            "The next lines must be this template with its `{}` replaced by `from`, ..., `to` (no regex).",
            steps::expect_numbered)
    },
    action("expect_handlers", Ty::Signals, &[], Subject::Process,
        "Right now, each of these signals has a handler installed (SigCgt).",
        steps::expect_handlers),
    action("wait_blocked", Ty::True, &[], Subject::Process,
        "Wait until every thread of the process is asleep in a blocking call, seen on several samples in a row.",
        steps::wait_blocked),
    action("wait_syscall", Ty::OneOf(KNOWN_SYSCALLS), &[], Subject::Process,
        "Wait until the process's main thread is blocked in this system call (only where the handout mandates it).",
        steps::wait_syscall),
    action("wait_file", Ty::Name, &[], Subject::Process,
        "Wait until this path, relative to the scratch directory, exists.",
        steps::wait_file),
    action("wait_idle", Ty::True, &[], Subject::Process,
        "Wait until every process of the process's group is asleep or has exited.",
        steps::wait_idle),
    action("stop_reading", Ty::True, &["stream"], Subject::Process,
        "Stop reading the process's stream: its writes fill the pipe, then block.",
        steps::stop_reading),
    action("resume_reading", Ty::True, &["stream"], Subject::Process,
        "Resume reading the process's stream.",
        steps::resume_reading),
    action("count_fds", Ty::True, NUMBER_CHECK, Subject::Process,
        "Count the process's open file descriptors, waiting until the count passes the check.",
        steps::count_fds),
    action("count_zombies", Ty::True, NUMBER_CHECK, Subject::Process,
        "Count the exited but unreaped processes of the process's group, waiting until the count passes the check.",
        steps::count_zombies),
    action("expect_exit", Ty::Int { min: 0, max: 255 }, &[], Subject::Process,
        "Stop the background pauses, wait for the background signal bursts, then for the process to exit with this status.",
        steps::expect_exit),
    action("expect_killed_by", Ty::Signal, &[], Subject::Process,
        "Stop the background pauses, wait for the background signal bursts, then for the process to be killed by this signal.",
        steps::expect_killed_by),
    action("expect_alive", Ty::True, &[], Subject::Process,
        "Right now, the process has not exited.",
        steps::expect_alive),
    action("expect_clean", Ty::True, &[], Subject::Submission,
        "Right now, nothing the submission made is left: no process, FIFO, socket file or IPC object.",
        steps::expect_clean),
];

/// Every option of a step.
pub const OPTIONS: &[Key] = &[
    opt("process", Ty::Name, Default::None, "The process the step acts on, started by an earlier step; required when the test starts several."),
    opt("timeout_ms", POSITIVE, Default::None, "Budget of this step's wait; default `[limits].step_timeout_ms`."),
    opt("args", Ty::Strings, Default::None, "Arguments of `start` (placeholders substituted), or `[NAME]`/`[NAME, VALUE]` of `stale`."),
    opt("peer", Ty::PeerKind, Default::None, "With `start`: start this grader peer instead of the submission."),
    opt("count", Ty::Int { min: 1, max: u32::MAX as i64 }, Default::Int(1), "How many signals or pauses."),
    opt("spread_ms", NON_NEGATIVE, Default::Int(0), "Spread the signals or pauses over about this many ms, with seeded gaps."),
    opt("background", Ty::Bool, Default::Bool(false), "Send the signals or pauses from a thread while the following steps run."),
    opt("target", Ty::OneOf(&["process", "child"]), Default::Str("process"), "`child`: hit a live process the named process forked, picked by seed."),
    opt("stream", Ty::OneOf(&["stdout", "stderr"]), Default::Str("stdout"), "Which output stream the step reads (or stops reading)."),
    opt("capture", Ty::Name, Default::None, "Bind the number captured by the regex's group (or counted) to this variable."),
    opt("at_least", Ty::NumberOrVariable, Default::None, "The captured or counted number must be >= this value."),
    opt("at_most", Ty::NumberOrVariable, Default::None, "The captured or counted number must be <= this value."),
    opt("equals", Ty::NumberOrVariable, Default::None, "The captured or counted number must equal this value."),
    opt("payload", POSITIVE, Default::None, "The regex's one group must be exactly the N-byte payload of `send_payload`."),
    opt("skip", Ty::Regex, Default::None, "With `expect`: lines matching this regex (and not the expectation) are passed over first."),
    opt("from", NON_NEGATIVE, Default::None, "With `expect_numbered`: the first number."),
    opt("to", NON_NEGATIVE, Default::None, "With `expect_numbered`: the last number (>= `from`)."),
];

/// Kinds of stale resource `stale` can leave (see `peers::stale`).
pub const STALE_KINDS: &[&str] = &["fifo", "socket", "shm", "sem", "msg"];

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

/// The action of this name.
pub fn action_def(name: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The option of this name.
pub fn option_def(name: &str) -> Option<&'static Key> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Every key a step may hold: the actions, then the options.
pub fn step_keys() -> Vec<Key> {
    ACTIONS
        .iter()
        .map(|a| Key {
            name: a.name,
            ty: a.value,
            required: false,
            default: Default::None,
            doc: a.doc,
        })
        .chain(OPTIONS.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_tables() -> Vec<(&'static str, &'static [Key])> {
        vec![
            ("spec", SPEC_KEYS),
            ("[task]", TASK_KEYS),
            ("[limits]", LIMIT_KEYS),
            ("[[test]]", TEST_KEYS),
            ("rlimits", RLIMIT_KEYS),
            ("io_faults", IO_FAULT_KEYS),
            ("step options", OPTIONS),
            ("mutants", MUTANTS_KEYS),
            ("[[mutant]]", MUTANT_KEYS),
        ]
    }

    #[test]
    fn names_are_unique_and_every_option_is_defined() {
        let mut step: Vec<&str> = step_keys().iter().map(|k| k.name).collect();
        let n = step.len();
        step.sort();
        step.dedup();
        assert_eq!(step.len(), n, "an action and an option share a name");
        for (what, keys) in all_tables() {
            let mut names: Vec<&str> = keys.iter().map(|k| k.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), keys.len(), "duplicate key in {what}");
        }
        for a in ACTIONS {
            for o in a.options.iter().chain(a.required) {
                assert!(option_def(o).is_some(), "{}: no option {o}", a.name);
                assert!(a.takes(o), "{}: requires {o} but does not take it", a.name);
            }
        }
    }

    /// specs/README.md is the TA's reference: it must mention every key of
    /// every table, in backticks, and say what every action and option is.
    #[test]
    fn the_reference_documents_every_action_and_option() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/README.md");
        let reference = std::fs::read_to_string(path).expect("specs/README.md");
        let mut missing = Vec::new();
        for a in ACTIONS {
            // An action is documented where its paragraph starts:
            // `name = ...` or `name` in backticks in a list of actions.
            if !reference.contains(&format!("`{} = ", a.name))
                && !reference.contains(&format!("`{}`", a.name))
            {
                missing.push(format!("action {}", a.name));
            }
        }
        for (what, keys) in all_tables() {
            for k in keys {
                let forms = [
                    format!("`{}`", k.name),
                    format!("`{} = ", k.name),
                    format!("`[{}]`", k.name),
                    format!("`[[{}]]`", k.name),
                ];
                if !forms.iter().any(|f| reference.contains(f)) {
                    missing.push(format!("{what} key {}", k.name));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "specs/README.md does not document: {}",
            missing.join(", ")
        );
    }

    #[test]
    fn every_key_and_action_has_a_one_line_description() {
        for (what, keys) in all_tables() {
            for k in keys {
                assert!(
                    !k.doc.is_empty() && !k.doc.contains('\n'),
                    "{what}.{}",
                    k.name
                );
            }
        }
        for a in ACTIONS {
            assert!(!a.doc.is_empty() && !a.doc.contains('\n'), "{}", a.name);
        }
    }
}
