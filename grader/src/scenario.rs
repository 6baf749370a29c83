//! Scenario execution: runs one test's steps against real processes and
//! turns what happened into a [`TestResult`].
//!
//! Each test gets a fresh scratch directory, fresh processes and a fresh RNG
//! (from the run's seed and the test's name). When the test ends, however it
//! ends, every process it started is torn down with its process group.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::faults::{self, SignalStorm};
use crate::harness::cgroup::Census;
use crate::harness::deadline::poll_until;
use crate::harness::leftovers::{Baseline, Leftovers, Scope};
use crate::harness::procfs::{self, Syscall};
use crate::harness::stuck;
use crate::harness::{
    Budget, CapturedStream, Confinement, Deadline, ExitState, Identity, Isolation, LineWait,
    Program, ResourceLimit, Sandbox, SpawnOptions,
};
use crate::result::{Failure, Status, TestResult};
use crate::signals;
use crate::spec::{
    Action, Counted, CpuPlacement, Limits, LineCheck, NumberCheck, Step, StreamName, Target, Test,
    Value,
};

/// What a scenario needs besides the test itself.
pub struct ScenarioEnv<'a> {
    /// The submission's built binary.
    pub binary: &'a Path,
    pub seed: u64,
    /// The grader's own binary: it runs the grader's peers
    /// (`cargo-grade peer KIND`) and the namespace holder.
    pub helper: &'a Path,
    /// The I/O fault shim (an LD_PRELOAD library), when a test needs it.
    pub shim: Option<&'a Path>,
    /// The spec's `[limits]`: each test's [`Budget`], the output kept.
    pub limits: &'a Limits,
    /// What the round's namespaces hide and show.
    pub confinement: &'a Confinement,
    /// Set when grading is cancelled (Ctrl-C, a deadline, a newer change in
    /// watch mode): the running test stops at its next step.
    pub cancel: &'a AtomicBool,
}

/// Why a step did not pass.
struct StepFailure {
    status: Status,
    expected: String,
    observed: String,
}

impl StepFailure {
    fn failed(expected: impl Into<String>, observed: impl Into<String>) -> StepFailure {
        StepFailure {
            status: Status::Failed,
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    fn timeout(expected: impl Into<String>, observed: impl Into<String>) -> StepFailure {
        StepFailure {
            status: Status::Timeout,
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    fn error(what: impl Into<String>) -> StepFailure {
        StepFailure {
            status: Status::Error,
            expected: "the grader to be able to run this step".into(),
            observed: what.into(),
        }
    }
}

/// Why a watched wait ended without what it waited for.
enum Missing {
    /// The stream's own reason (deadline, end, truncated).
    Line(LineWait),
    /// The round is stuck for good: where every process waits.
    Stuck(String),
}

/// When a long wait first looks for a proof that the round is stuck for
/// good, and how often after that. A look reads `/proc` for every process
/// of the machine, so waits that end soon (nearly all) never look.
const STUCK_FIRST_LOOK: Duration = Duration::from_millis(100);
const STUCK_LOOK_EVERY: Duration = Duration::from_millis(40);

/// Looks, between slices of a wait, for two agreeing looks of
/// [`stuck::look`]: the proof that nothing will ever come. Made for every
/// wait, so it holds no more than times until its first look.
struct StuckWatch {
    began: Instant,
    next: Instant,
    last: Option<stuck::Snapshot>,
}

impl StuckWatch {
    /// The deadline of the next slice of the wait.
    fn slice(&self, deadline: Deadline) -> Deadline {
        deadline.min(Deadline::at(self.next))
    }

    /// One more look at the round, when a slice ended: the proof, once two
    /// looks in a row agree. None while the round cannot be proved stuck
    /// (`round` is `None`).
    fn look(&mut self, round: Option<&Passive>) -> Option<stuck::Snapshot> {
        self.next = Instant::now() + STUCK_LOOK_EVERY;
        let now = round.and_then(|r| stuck::look(r.uid, &r.started, &r.pipes, r.census.as_ref()));
        match (self.last.take(), now) {
            (Some(before), Some(now)) if before.unchanged(&now) => Some(now),
            (_, now) => {
                self.last = now;
                None
            }
        }
    }
}

/// A round the grader is passive in, as [`stuck::look`] needs it: its uid,
/// the processes the test started and the stdin pipes the grader holds.
struct Passive {
    uid: u32,
    started: Vec<i32>,
    pipes: Vec<u64>,
    census: Option<Census>,
}

/// A background fault injection still running: how many of which signal
/// it delivered (pauses count as none).
struct Background {
    signal: Option<Signal>,
    /// A run of pauses' own stop, which wakes it.
    halt: Option<Arc<faults::Halt>>,
    handle: JoinHandle<u32>,
}

/// Leftovers listed per test; the rest are counted.
const MAX_LEFTOVER_LINES: usize = 20;

/// A counter that makes run tokens unique within this grader process.
static ROUNDS_STARTED: AtomicU64 = AtomicU64::new(0);

/// The running state of one round of a test.
struct Scenario<'a> {
    env: &'a ScenarioEnv<'a>,
    test: &'a Test,
    workdir: tempfile::TempDir,
    sandbox: Sandbox,
    /// Unique to this round: in IPC names (`{run}`) and, hashed, the System
    /// V key (`{key}`).
    token: String,
    key: i32,
    baseline: Baseline,
    processes: Vec<Program>,
    /// Names of the processes that are the grader's own peers.
    peers: Vec<String>,
    cpus: Option<Vec<usize>>,
    /// The submission's resource limits.
    limits: Vec<ResourceLimit>,
    /// Every process group started in this round (submission and peers).
    groups: Vec<nix::unistd::Pid>,
    vars: BTreeMap<String, i64>,
    rng: &'a mut fastrand::Rng,
    background: Vec<Background>,
    stop: Arc<AtomicBool>,
    actions: Vec<String>,
    faults: Vec<String>,
    deadline: Deadline,
}

/// How one round ended.
struct RoundEnd {
    failure: Option<(usize, StepFailure)>,
    actions: Vec<String>,
    faults: Vec<String>,
    stdout_tail: Vec<String>,
    stderr_tail: Vec<String>,
    leftovers: Vec<String>,
    isolation: Isolation,
    isolation_note: Option<String>,
    protections: Vec<crate::result::Protection>,
}

/// Runs `test` and reports its result.
pub fn run_test(env: &ScenarioEnv<'_>, test: &Test) -> TestResult {
    let started = Instant::now();
    let mut result = TestResult {
        name: test.name.clone(),
        description: test.description.clone(),
        score: 0,
        max_score: test.points,
        status: Status::Passed,
        visibility: test.visibility,
        failure: None,
        note: None,
        hints: test.hints(),
        faults: Vec::new(),
        leftovers: Vec::new(),
        isolation: None,
        isolation_note: None,
        protections: Vec::new(),
        duration_ms: 0,
    };
    let mut rng = faults::test_rng(env.seed, &test.name);
    let deadline = Deadline::after_ms(test.timeout_ms);
    for round in 1..=test.rounds {
        let end = match run_round(env, test, &mut rng, deadline) {
            Ok(end) => end,
            Err(e) => {
                result.status = Status::Error;
                result.note = Some(e);
                break;
            }
        };
        result.isolation = Some(end.isolation);
        result.isolation_note = end.isolation_note;
        result.protections = end.protections;
        let label = |line: String| {
            if test.rounds > 1 {
                format!("round {round} of {}: {line}", test.rounds)
            } else {
                line
            }
        };
        result.faults = end.faults.into_iter().map(label).collect();
        result.leftovers = end.leftovers;
        if let Some((step, f)) = end.failure {
            let mut actions = end.actions;
            if test.rounds > 1 {
                let before = match round {
                    1 => String::new(),
                    2 => "round 1 passed, ".to_owned(),
                    _ => format!("rounds 1 to {} passed, ", round - 1),
                };
                actions.insert(
                    0,
                    format!(
                        "ran the steps up to {} times (race stress); {before}round {round} went:",
                        test.rounds
                    ),
                );
            }
            result.status = f.status;
            result.failure = Some(Failure {
                step,
                actions,
                expected: f.expected,
                observed: f.observed,
                stdout_tail: end.stdout_tail,
                stderr_tail: end.stderr_tail,
            });
            break;
        }
    }
    if result.status == Status::Passed {
        result.score = test.points;
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// One round: a fresh scratch directory, sandbox and processes.
fn run_round(
    env: &ScenarioEnv<'_>,
    test: &Test,
    rng: &mut fastrand::Rng,
    deadline: Deadline,
) -> Result<RoundEnd, String> {
    let workdir = crate::harness::scratch::create("", 0o700)
        .map_err(|e| format!("could not create a scratch directory: {e}"))?;
    let identity = Identity::for_round()
        .map_err(|e| format!("could not take a user id of the round's own: {e}"))?;
    let sandbox = Sandbox::new(env.helper, env.confinement, workdir.path(), identity);
    let budget = Budget::for_test(env.limits, test);
    // RLIMIT_NPROC counts every process of the user: a user of the round's
    // own has none yet; the grader's user has its own already.
    let already_running = match sandbox.identity() {
        Some(_) => 0,
        // SAFETY: getuid cannot fail.
        None => crate::harness::limits::tasks_of_user(unsafe { libc::getuid() }),
    };
    let n = ROUNDS_STARTED.fetch_add(1, Ordering::Relaxed);
    let token = format!("cg{}x{n}", std::process::id());
    let key = sysv_key(&token);
    let baseline = Baseline::capture(&Scope {
        workdir: workdir.path(),
        sandbox: &sandbox,
        token: &token,
        key,
        groups: &[],
    });
    let mut faults_active = Vec::new();
    let cpus = match test.cpus {
        CpuPlacement::Any => None,
        CpuPlacement::Seeded => {
            let available = faults::available_cpus();
            let pick = faults::cpu_placement(&available, rng);
            faults_active.push(faults::describe_cpus(&pick, available.len()));
            Some(pick)
        }
    };
    if let Some(io) = &test.io_faults {
        faults_active.push(io.describe());
    }
    if let Some(fds) = test.rlimits.open_files {
        faults_active.push(format!("open files limited to {fds} (RLIMIT_NOFILE)"));
    }
    if let Some(procs) = test.rlimits.processes {
        faults_active.push(format!("processes limited to {procs} (RLIMIT_NPROC)"));
    }
    let mut scenario = Scenario {
        env,
        test,
        workdir,
        sandbox,
        token,
        key,
        baseline,
        processes: Vec::new(),
        peers: Vec::new(),
        cpus,
        limits: budget.rlimits(already_running),
        groups: Vec::new(),
        vars: BTreeMap::new(),
        rng,
        background: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        actions: Vec::new(),
        faults: faults_active,
        deadline,
    };

    let mut failure = None;
    for (index, step) in test.steps.iter().enumerate() {
        if env.cancel.load(Ordering::Relaxed) {
            failure = Some((index + 1, StepFailure::error("grading was cancelled")));
            break;
        }
        if let Err(f) = scenario.run_step(step) {
            failure = Some((index + 1, f));
            break;
        }
    }
    let (stdout_tail, stderr_tail) = scenario
        .focus_process(failure.as_ref().map(|(i, _)| &test.steps[*i - 1]))
        .map(|p| (p.stdout.tail(8), stderr_excerpt(&p.stderr)))
        .unwrap_or_default();
    // Processes still running after their program exited (daemons, orphaned
    // workers) are leftovers; a program still running at the end of a test
    // is not (a server is stopped by the grader), so look before teardown.
    let orphans = scenario.orphans();
    scenario.finish();
    let mut leftovers = orphans;
    leftovers.extend(scenario.sweep());
    // A flood of leftovers (hundreds of queues, say) is one finding.
    if leftovers.len() > MAX_LEFTOVER_LINES {
        let more = leftovers.len() - MAX_LEFTOVER_LINES;
        leftovers.truncate(MAX_LEFTOVER_LINES);
        leftovers.push(format!("... and {more} more (all removed)"));
    }
    Ok(RoundEnd {
        failure,
        actions: std::mem::take(&mut scenario.actions),
        faults: std::mem::take(&mut scenario.faults),
        stdout_tail,
        stderr_tail,
        leftovers,
        isolation: scenario.sandbox.isolation(),
        isolation_note: scenario.sandbox.fallback_reason().map(str::to_owned),
        protections: {
            let mut list = scenario.sandbox.protections();
            list.push(budget.describe());
            list
        },
    })
}

/// A System V key (positive, never IPC_PRIVATE) derived from a run token.
fn sysv_key(token: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x3fff_ffff) as i32 | 0x1000
}

impl Scenario<'_> {
    fn run_step(&mut self, step: &Step) -> Result<(), StepFailure> {
        let deadline = Deadline::after_ms(step.timeout_ms).min(self.deadline);
        match &step.action {
            Action::Start { name, args } => self.start(name, None, args),
            Action::StartPeer { name, kind, args } => self.start(name, Some(kind), args),
            Action::Stale { kind, args } => self.stale(kind, args, deadline),
            Action::SendLine(line) => {
                let line = self.substitute(line);
                self.actions
                    .push(format!("sent the line {line:?} to stdin"));
                self.send(step, &line)
            }
            Action::SendPayload(len) => {
                self.actions.push(format!(
                    "sent a {len}-byte line (the grader's numbered payload) to stdin"
                ));
                self.send(step, &crate::payload::payload(*len))
            }
            Action::Pause {
                max_ms,
                target,
                count,
                spread_ms,
                background,
            } => self.pause(step, *max_ms, *target, *count, *spread_ms, *background),
            Action::WaitIdle => self.wait_idle(step, deadline),
            Action::ExpectClean => self.expect_clean(),
            Action::Count(what, check) => self.count(step, *what, check, deadline),
            Action::CloseStdin => {
                self.actions.push("closed its stdin (end of input)".into());
                self.process(step).close_stdin();
                Ok(())
            }
            Action::Signal {
                signal,
                count,
                spread_ms,
                background,
                target,
            } => self.signal(step, *signal, *count, *spread_ms, *background, *target),
            Action::Join => {
                self.actions
                    .push("waited for the background signals to be sent".into());
                self.join_background();
                Ok(())
            }
            Action::WaitFor(re, check) => self.read_matching(step, re, check, Skip::Any, deadline),
            Action::Expect(re, check, None) => {
                self.read_matching(step, re, check, Skip::None, deadline)
            }
            Action::Expect(re, check, Some(skip)) => {
                self.read_matching(step, re, check, Skip::Matching(skip), deadline)
            }
            Action::WaitBlocked => self.wait_blocked(step, deadline),
            Action::ExpectEof => self.expect_eof(step, deadline),
            Action::Reading(on) => {
                let name = match step.stream {
                    StreamName::Stdout => "stdout",
                    StreamName::Stderr => "stderr",
                };
                self.actions.push(if *on {
                    format!("resumed reading its {name}")
                } else {
                    format!("stopped reading its {name} (its writes fill the pipe, then block)")
                });
                self.stream(step).set_paused(!*on);
                Ok(())
            }
            Action::ExpectNumbered { template, from, to } => {
                self.expect_numbered(step, template, *from, *to, deadline)
            }
            Action::ExpectHandlers(sigs) => self.expect_handlers(step, sigs),
            Action::WaitSyscall(name) => self.wait_syscall(step, name, deadline),
            Action::WaitFile(path) => self.wait_file(step, path, deadline),
            Action::ExpectExit(code) => self.expect_end(step, ExitState::Code(*code), deadline),
            Action::ExpectKilledBy(sig) => {
                self.expect_end(step, ExitState::Signal(*sig as i32), deadline)
            }
            Action::ExpectAlive => {
                self.actions.push("checked that it is still running".into());
                match self.process(step).try_exit() {
                    None => Ok(()),
                    Some(state) => Err(StepFailure::failed(
                        "the program to still be running",
                        format!("the program {}", state.describe()),
                    )),
                }
            }
        }
    }

    /// Replaces `{dir}`, `{run}`, `{key}` and `{seed}` in a spec string.
    fn substitute(&self, text: &str) -> String {
        text.replace("{dir}", &self.workdir.path().display().to_string())
            .replace("{run}", &self.token)
            .replace("{key}", &self.key.to_string())
            .replace("{seed}", &self.env.seed.to_string())
    }

    /// Starts the submission (`peer` is `None`) or one of the grader's peers.
    fn start(
        &mut self,
        name: &str,
        peer: Option<&str>,
        args: &[String],
    ) -> Result<(), StepFailure> {
        let args: Vec<String> = args.iter().map(|a| self.substitute(a)).collect();
        let mut opts = SpawnOptions::new(
            self.env.binary,
            &args,
            self.workdir.path(),
            self.env.limits.output_limit_bytes,
        );
        opts.sandbox = self.sandbox.join_fds();
        opts.user = self.sandbox.identity();
        opts.cgroups = self.sandbox.cgroup_fds();
        let shown = match peer {
            Some(kind) => {
                opts.program = self.env.helper.to_owned();
                opts.args = ["peer".to_owned(), kind.to_owned()]
                    .into_iter()
                    .chain(args.iter().cloned())
                    .collect();
                format!("the grader's {kind} peer")
            }
            None => {
                opts.cpus = self.cpus.clone();
                opts.limits = self.limits.clone();
                opts.env = self.io_fault_env()?;
                format!(
                    "`{}`",
                    self.env
                        .binary
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                )
            }
        };
        let program = Program::spawn(name, &opts)
            .map_err(|e| StepFailure::error(format!("could not start {shown}: {e}")))?;
        let shown_args = if args.is_empty() {
            String::new()
        } else {
            format!(" with arguments {}", args.join(" "))
        };
        self.actions.push(format!(
            "started {shown}{shown_args} as {name} (pid {})",
            program.pid()
        ));
        if peer.is_some() {
            self.peers.push(name.to_owned());
        }
        self.groups.push(program.pid());
        self.processes.push(program);
        Ok(())
    }

    /// The environment that loads the fault shim into a submission process,
    /// with a seed of its own from the test's RNG.
    fn io_fault_env(&mut self) -> Result<Vec<(String, String)>, StepFailure> {
        let Some(io) = &self.test.io_faults else {
            return Ok(Vec::new());
        };
        let Some(shim) = self.env.shim else {
            return Err(StepFailure::error(
                "this test injects I/O faults but the fault shim is not built",
            ));
        };
        let mut env = io.env(self.rng.u64(..), None);
        env.push(("LD_PRELOAD".into(), shim.display().to_string()));
        Ok(env)
    }

    fn send(&mut self, step: &Step, line: &str) -> Result<(), StepFailure> {
        let p = self.process(step);
        if let Err(e) = p.send_line(line) {
            let state = p
                .try_exit()
                .map_or("still running".to_owned(), ExitState::describe);
            return Err(StepFailure::failed(
                "the program to read its stdin",
                format!("writing to its stdin failed ({e}); the program {state}"),
            ));
        }
        Ok(())
    }

    /// Leaves a stale resource, made by the grader's `stale` peer inside
    /// the test's sandbox.
    fn stale(
        &mut self,
        kind: &str,
        args: &[String],
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        let args: Vec<String> = args.iter().map(|a| self.substitute(a)).collect();
        let mut opts = SpawnOptions::new(
            self.env.helper,
            &["peer".to_owned(), "stale".to_owned(), kind.to_owned()]
                .into_iter()
                .chain(args.iter().cloned())
                .collect::<Vec<_>>(),
            self.workdir.path(),
            64 * 1024,
        );
        opts.sandbox = self.sandbox.join_fds();
        opts.user = self.sandbox.identity();
        opts.cgroups = self.sandbox.cgroup_fds();
        self.actions.push(format!(
            "left a stale {kind} {} behind, as a crashed earlier run would",
            args.join(" ")
        ));
        self.faults.push(format!(
            "stale {kind} {} from an earlier run",
            args.join(" ")
        ));
        let mut maker = Program::spawn("stale", &opts)
            .map_err(|e| StepFailure::error(format!("could not create the stale {kind}: {e}")))?;
        self.groups.push(maker.pid());
        match maker.wait_exit(deadline) {
            Some(ExitState::Code(0)) => Ok(()),
            other => {
                let why = other.map_or("did not finish".to_owned(), ExitState::describe);
                let err = maker.stderr.tail(3).join(" ");
                maker.terminate(Duration::from_millis(100));
                Err(StepFailure::error(format!(
                    "could not create the stale {kind}: the helper {why} {err}"
                )))
            }
        }
    }

    fn process(&mut self, step: &Step) -> &mut Program {
        match &step.process {
            Some(name) => self
                .processes
                .iter_mut()
                .find(|p| &p.name == name)
                .expect("spec validation guarantees the process was started"),
            None => self
                .processes
                .last_mut()
                .expect("spec validation guarantees a started process"),
        }
    }

    /// The process whose output best explains a failure at `step`.
    fn focus_process(&mut self, step: Option<&Step>) -> Option<&mut Program> {
        match step {
            Some(step)
                if !self.processes.is_empty() && !matches!(step.action, Action::Start { .. }) =>
            {
                Some(self.process(step))
            }
            _ => self.processes.last_mut(),
        }
    }

    fn stream(&mut self, step: &Step) -> Arc<CapturedStream> {
        let stream = step.stream;
        let p = self.process(step);
        match stream {
            StreamName::Stdout => Arc::clone(&p.stdout),
            StreamName::Stderr => Arc::clone(&p.stderr),
        }
    }

    fn signal(
        &mut self,
        step: &Step,
        signal: Signal,
        count: u32,
        spread_ms: u64,
        background: bool,
        target: Target,
    ) -> Result<(), StepFailure> {
        let pid = match target {
            Target::Process => self.process(step).pid(),
            Target::Child => {
                let leader = self.process(step).pid();
                let children = faults::children_of(leader, self.sandbox.census());
                if children.is_empty() {
                    return Err(self.ran_out(
                        step,
                        format!(
                            "a process forked by {} to send {} to",
                            step.process.as_deref().unwrap_or("the program"),
                            signals::name(signal)
                        ),
                        "",
                        "it has no live child process in its process group".into(),
                    ));
                }
                let (index, child) = faults::pick(&children, self.rng);
                self.faults.push(format!(
                    "{} sent to child {} of {} (pid {child}, chosen by seed)",
                    signals::name(signal),
                    index + 1,
                    children.len()
                ));
                child
            }
        };
        let storm = SignalStorm::new(
            pid,
            signal,
            count,
            Duration::from_millis(spread_ms),
            self.rng,
        );
        let what = storm.describe(spread_ms);
        if count > 1 {
            self.faults.push(what.clone());
        }
        if background {
            self.actions.push(format!("{what}, in the background"));
            let handle = storm.spawn(Arc::clone(&self.stop));
            self.background.push(Background {
                signal: Some(signal),
                halt: None,
                handle,
            });
            self.vars.entry(sent_var(signal)).or_insert(0);
            return Ok(());
        }
        self.actions.push(what);
        if let Some(state) = self.process(step).try_exit() {
            return Err(StepFailure::failed(
                format!(
                    "the program to be running to receive {}",
                    signals::name(signal)
                ),
                format!("the program had already {}", state.describe()),
            ));
        }
        let sent = storm.run(&self.stop);
        *self.vars.entry(sent_var(signal)).or_insert(0) += i64::from(sent);
        Ok(())
    }

    /// Drops what is left of every background run of pauses (see
    /// [`faults::Halt`]); signal storms go on: what they send is the test's
    /// input, and counted.
    fn halt_pauses(&mut self) {
        for halt in self.background.iter().filter_map(|bg| bg.halt.as_ref()) {
            halt.halt();
        }
    }

    fn join_background(&mut self) {
        for bg in self.background.drain(..) {
            let sent = bg.handle.join().unwrap_or(0);
            if let Some(signal) = bg.signal {
                *self.vars.entry(sent_var(signal)).or_insert(0) += i64::from(sent);
            }
        }
    }

    /// The round as a proof of being stuck needs it, when one can be had:
    /// the round has a uid of its own (so all its processes can be found)
    /// and no background fault is running (the grader is passive).
    fn passive(&self) -> Option<Passive> {
        let uid = self.sandbox.identity()?.uid;
        if self.background.iter().any(|bg| !bg.handle.is_finished()) {
            return None;
        }
        Some(Passive {
            uid,
            census: self.sandbox.census().cloned(),
            started: self.processes.iter().map(|p| p.pid().as_raw()).collect(),
            pipes: self
                .processes
                .iter()
                .filter_map(Program::stdin_pipe)
                .collect(),
        })
    }

    /// A watch for a proof that the round is stuck for good, its first look
    /// after `first`; none without a uid of the round's own. Cheap: what
    /// it looks at is read only when it looks.
    fn stuck_watch(&self, first: Duration) -> Option<StuckWatch> {
        self.sandbox.identity()?;
        let now = Instant::now();
        Some(StuckWatch {
            began: now,
            next: now + first,
            last: None,
        })
    }

    /// What a proof of a stuck round says: where every process waits.
    fn describe_stuck(&self, proof: &stuck::Snapshot, watch: &StuckWatch) -> String {
        let named = |pid: i32| {
            self.processes
                .iter()
                .find(|p| p.pid().as_raw() == pid)
                .map(|p| match self.peers.contains(&p.name) {
                    true => format!("the grader's peer {}", p.name),
                    false => p.name.clone(),
                })
        };
        format!(
            "stuck for good after {:.1} s: every process of the test is asleep in a wait that \
             only another of them could end ({}); no timer is set and none catches or awaits \
             SIGALRM, so none will ever wake (the grader stopped waiting there instead of at the deadline)",
            watch.began.elapsed().as_secs_f64(),
            proof.describe(named)
        )
    }

    /// The next line of `stream` by `deadline`, or why none came: stops
    /// early, with the proof, when the round is stuck for good.
    fn next_line(&self, stream: &CapturedStream, deadline: Deadline) -> Result<String, Missing> {
        let mut watch = self.stuck_watch(STUCK_FIRST_LOOK);
        loop {
            let slice = watch.as_ref().map_or(deadline, |w| w.slice(deadline));
            match stream.next_line(slice) {
                Ok(line) => return Ok(line),
                Err(LineWait::Deadline) if !deadline.passed() => {
                    if let Some(w) = watch.as_mut() {
                        if let Some(proof) = w.look(self.passive().as_ref()) {
                            return Err(Missing::Stuck(self.describe_stuck(&proof, w)));
                        }
                    }
                }
                Err(why) => return Err(Missing::Line(why)),
            }
        }
    }

    /// The exit of the step's process by `deadline` (`Ok(None)`: still
    /// running then), or the proof that it is stuck for good.
    fn wait_exit(&mut self, step: &Step, deadline: Deadline) -> Result<Option<ExitState>, String> {
        let mut watch = self.stuck_watch(STUCK_FIRST_LOOK);
        loop {
            let slice = watch.as_ref().map_or(deadline, |w| w.slice(deadline));
            if let Some(state) = self.process(step).wait_exit(slice) {
                return Ok(Some(state));
            }
            if deadline.passed() {
                return Ok(None);
            }
            if let Some(w) = watch.as_mut() {
                if let Some(proof) = w.look(self.passive().as_ref()) {
                    return Err(self.describe_stuck(&proof, w));
                }
            }
        }
    }

    /// A wait that ran out: `timeout` while the program still runs (it is
    /// stuck), `failed` once it has exited (it never will do it).
    fn ran_out(
        &mut self,
        step: &Step,
        expected: String,
        missing: &str,
        running: String,
    ) -> StepFailure {
        match self.process(step).try_exit() {
            None => StepFailure::timeout(expected, running),
            Some(state) => StepFailure::failed(
                expected,
                format!("{missing}the program {}", state.describe()),
            ),
        }
    }

    /// Explains why no (matching) line came.
    fn no_line(
        &mut self,
        step: &Step,
        why: LineWait,
        expected: String,
        waited: Duration,
    ) -> StepFailure {
        let p = self.process(step);
        match why {
            LineWait::Deadline => self.ran_out(
                step,
                expected,
                "no such line; ",
                format!(
                    "nothing matching after {:.1} s; the program is still running (stuck or deadlocked?)",
                    waited.as_secs_f64()
                ),
            ),
            LineWait::Eof => {
                // The stream closed; give the exit a moment to be observable.
                let state = p.wait_exit(Deadline::after_ms(500));
                let how = state.map_or("closed its output".to_owned(), ExitState::describe);
                StepFailure::failed(expected, format!("no such line before the program {how}"))
            }
            LineWait::Truncated => {
                let (_, total) = self.stream(step).truncation();
                StepFailure::failed(
                    expected,
                    format!(
                        "the output passed the limit of {} bytes ({total} bytes so far) and the rest was dropped",
                        self.env.limits.output_limit_bytes
                    ),
                )
            }
        }
    }

    /// `wait_for` (`skip` lines until one matches) and `expect` (the next
    /// line must match).
    fn read_matching(
        &mut self,
        step: &Step,
        re: &regex_lite::Regex,
        check: &LineCheck,
        skip: Skip<'_>,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        match skip {
            Skip::Any => self
                .actions
                .push(format!("waited for a line matching /{re}/")),
            Skip::None => self
                .actions
                .push(format!("read the next line, expecting /{re}/")),
            Skip::Matching(over) => self.actions.push(format!(
                "read lines, passing over those matching /{over}/, expecting /{re}/"
            )),
        }
        let expected = match skip {
            Skip::Any => "a line matching".to_owned(),
            Skip::None => "the next line to match".to_owned(),
            Skip::Matching(over) => {
                format!("the next line not matching /{over}/ to match")
            }
        };
        let expected = expected.as_str();
        let expected = match check {
            LineCheck::Number(n) => format!("{expected} /{re}/{}", self.describe_check(n)),
            LineCheck::Payload(len) => format!(
                "{expected} /{re}/ with the {len}-byte payload the grader sent as its group"
            ),
        };
        let stream = self.stream(step);
        let begun = Instant::now();
        loop {
            match self.next_line(&stream, deadline) {
                Ok(line) => match re.captures(&line) {
                    Some(caps) => {
                        return match check {
                            LineCheck::Number(n) => self.apply_check(n, &caps, &line, &expected),
                            LineCheck::Payload(len) => {
                                let got = caps.get(1).map_or("", |m| m.as_str());
                                crate::payload::check(*len, got)
                                    .map_err(|why| StepFailure::failed(expected, why))
                            }
                        }
                    }
                    None => match skip {
                        Skip::Any => continue,
                        Skip::Matching(over) if over.is_match(&line) => continue,
                        _ => return Err(StepFailure::failed(expected, mismatch(&stream, &line))),
                    },
                },
                Err(Missing::Stuck(proof)) => return Err(StepFailure::timeout(expected, proof)),
                Err(Missing::Line(why)) => {
                    return Err(self.no_line(step, why, expected, begun.elapsed()))
                }
            }
        }
    }

    /// `expect_eof`: the stream ends, and no line comes before its end.
    fn expect_eof(&mut self, step: &Step, deadline: Deadline) -> Result<(), StepFailure> {
        let name = match step.stream {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        };
        self.actions.push(format!(
            "read its {name} to the end, expecting no more lines"
        ));
        let expected = format!("no more lines on {name}, then its end");
        let stream = self.stream(step);
        let begun = Instant::now();
        match self.next_line(&stream, deadline) {
            Err(Missing::Line(LineWait::Eof)) => Ok(()),
            Err(Missing::Stuck(proof)) => Err(StepFailure::timeout(expected, proof)),
            Ok(line) => Err(StepFailure::failed(
                expected,
                format!("another line: {}", mismatch(&stream, &line)),
            )),
            // Still open: the program runs on, or it exited and something
            // it started holds the stream (`ran_out` tells which).
            Err(Missing::Line(LineWait::Deadline)) => Err(self.ran_out(
                step,
                expected,
                &format!("its {name} stayed open after "),
                format!(
                    "its {name} still open after {:.1} s; the program is still running",
                    begun.elapsed().as_secs_f64()
                ),
            )),
            Err(Missing::Line(why @ LineWait::Truncated)) => {
                Err(self.no_line(step, why, expected, begun.elapsed()))
            }
        }
    }

    fn expect_numbered(
        &mut self,
        step: &Step,
        template: &str,
        from: u64,
        to: u64,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        let first = template.replace("{}", &from.to_string());
        let last = template.replace("{}", &to.to_string());
        self.actions.push(format!(
            "read {} lines, expecting {first:?} to {last:?} in order",
            to - from + 1
        ));
        let stream = self.stream(step);
        let begun = Instant::now();
        for i in from..=to {
            let want = template.replace("{}", &i.to_string());
            match self.next_line(&stream, deadline) {
                Ok(line) if line == want => {}
                Ok(line) => {
                    return Err(StepFailure::failed(
                        format!(
                            "the line {want:?} (line {} of {first:?}..{last:?})",
                            i - from + 1
                        ),
                        mismatch(&stream, &line),
                    ))
                }
                Err(Missing::Stuck(proof)) => {
                    let expected = format!("the line {want:?} (of {first:?}..{last:?})");
                    return Err(StepFailure::timeout(expected, proof));
                }
                Err(Missing::Line(why)) => {
                    let expected = format!("the line {want:?} (of {first:?}..{last:?})");
                    return Err(self.no_line(step, why, expected, begun.elapsed()));
                }
            }
        }
        Ok(())
    }

    fn expect_handlers(&mut self, step: &Step, sigs: &[Signal]) -> Result<(), StepFailure> {
        let names: Vec<&str> = sigs.iter().map(|s| signals::name(*s)).collect();
        self.actions.push(format!(
            "checked /proc/PID/status for handlers of {}",
            names.join(", ")
        ));
        let expected = format!("handlers installed for {}", names.join(", "));
        let p = self.process(step);
        if let Some(state) = p.try_exit() {
            return Err(StepFailure::failed(
                expected,
                format!("the program had already {}", state.describe()),
            ));
        }
        let Some(mask) = procfs::caught_signals(p.pid()) else {
            return Err(StepFailure::error("could not read /proc/PID/status"));
        };
        let missing: Vec<&str> = sigs
            .iter()
            .filter(|s| !procfs::mask_has(mask, **s))
            .map(|s| signals::name(*s))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StepFailure::failed(
                expected,
                format!(
                    "no handler for {} (SigCgt mask {mask:#x})",
                    missing.join(", ")
                ),
            ))
        }
    }

    fn wait_syscall(
        &mut self,
        step: &Step,
        name: &str,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        self.actions
            .push(format!("waited until it was blocked in {name}()"));
        let number = procfs::syscall_number(name).expect("spec validation checks syscall names");
        let p = self.process(step);
        let pid = p.pid();
        let mut last = Syscall::Unknown;
        let reached = poll_until(deadline, || {
            last = procfs::syscall(pid);
            match last {
                Syscall::Blocked(n) if n == number => Some(()),
                // Where /proc/PID/syscall is not readable, a sleeping main
                // thread is the best evidence available.
                Syscall::Unknown if procfs::state(pid) == Some('S') => Some(()),
                _ => None,
            }
        });
        match reached {
            Some(()) => Ok(()),
            None => {
                let expected = format!("the program to block in {name}()");
                let running = match last {
                    Syscall::Blocked(n) => format!("blocked in system call number {n} instead"),
                    _ => "still running in user space (busy-waiting?)".to_owned(),
                };
                Err(self.ran_out(step, expected, "", running))
            }
        }
    }

    /// `wait_blocked`: every thread of the process asleep, whatever call it
    /// sleeps in, on [`BLOCKED_SAMPLES`] samples in a row spanning at least
    /// [`BLOCKED_SPAN`]. A thread between two system calls, or one that
    /// polls with short sleeps, is caught awake on some sample; one that
    /// waits is asleep on all of them.
    ///
    /// This is what makes "send a signal once it waits" hold for every
    /// design: a signal wakes a sleeping thread at once (the kernel marks it
    /// runnable before `kill` returns), and a thread cannot go back to sleep
    /// with an unblocked signal pending, so seeing it asleep again after a
    /// signal means the signal was handled.
    fn wait_blocked(&mut self, step: &Step, deadline: Deadline) -> Result<(), StepFailure> {
        self.actions.push(
            "waited until it was blocked, waiting for input or an event (every thread asleep)"
                .into(),
        );
        let pid = self.process(step).pid();
        let mut first_asleep: Option<Instant> = None;
        let mut samples = 0;
        let mut last = procfs::Activity::Gone;
        let reached = poll_until(deadline, || {
            last = procfs::activity(pid);
            match last {
                procfs::Activity::Asleep => {
                    let since = *first_asleep.get_or_insert_with(Instant::now);
                    samples += 1;
                    (samples >= BLOCKED_SAMPLES && since.elapsed() >= BLOCKED_SPAN).then_some(())
                }
                // An exit ends the wait; the failure below says how.
                procfs::Activity::Gone => Some(()),
                procfs::Activity::Busy(_) => {
                    first_asleep = None;
                    samples = 0;
                    None
                }
            }
        });
        let expected = "the program to block, waiting for input or an event".to_owned();
        match (reached, &last) {
            (Some(()), procfs::Activity::Asleep) => Ok(()),
            (_, procfs::Activity::Gone) => {
                let p = self.process(step);
                let how = p
                    .wait_exit(Deadline::after_ms(500))
                    .map_or("was gone".to_owned(), ExitState::describe);
                Err(StepFailure::failed(expected, format!("the program {how}")))
            }
            (_, busy) => {
                let running = match busy {
                    procfs::Activity::Busy(threads) => {
                        let shown: Vec<String> = threads
                            .iter()
                            .take(4)
                            .map(|(tid, state)| format!("thread {tid} in state {state}"))
                            .collect();
                        format!(
                            "never blocked: {} (busy-waiting, or stopped?)",
                            shown.join(", ")
                        )
                    }
                    _ => "never blocked".to_owned(),
                };
                Err(self.ran_out(step, expected, "", running))
            }
        }
    }

    fn wait_file(
        &mut self,
        step: &Step,
        path: &str,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        self.actions
            .push(format!("waited for the file {path:?} to appear"));
        let full = self.sandbox.view(&self.workdir.path().join(path));
        let begun = Instant::now();
        if poll_until(deadline, || full.symlink_metadata().is_ok().then_some(())).is_some() {
            return Ok(());
        }
        let expected = format!("the file {path:?} in the working directory");
        let running = format!("no such file after {:.1} s", begun.elapsed().as_secs_f64());
        Err(self.ran_out(step, expected, "no such file; ", running))
    }

    fn expect_end(
        &mut self,
        step: &Step,
        want: ExitState,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        // Storms aimed at this process must stop before it is reaped and its
        // pid can be reused. Pauses stop now: the test waits for the end,
        // the work they stretch is over.
        self.halt_pauses();
        self.join_background();
        let expected = match want {
            ExitState::Code(c) => format!("the program to exit with status {c}"),
            ExitState::Signal(s) => format!("the program to be killed by {}", signals::describe(s)),
        };
        self.actions.push(format!(
            "waited for {}",
            expected.trim_start_matches("the program to ")
        ));
        let begun = Instant::now();
        match self.wait_exit(step, deadline) {
            Err(proof) => Err(StepFailure::timeout(expected, proof)),
            Ok(Some(state)) if state == want => Ok(()),
            Ok(Some(state)) => Err(StepFailure::failed(
                expected,
                format!("the program {}", state.describe()),
            )),
            Ok(None) => Err(StepFailure::timeout(
                expected,
                format!("still running after {:.1} s", begun.elapsed().as_secs_f64()),
            )),
        }
    }

    fn describe_check(&self, check: &NumberCheck) -> String {
        let mut parts = Vec::new();
        let show = |v: &Value| match v {
            Value::Int(n) => n.to_string(),
            Value::Var(name) => match self.vars.get(name) {
                Some(n) => format!("{name} = {n}"),
                None => name.clone(),
            },
        };
        if let Some(v) = &check.at_least {
            parts.push(format!("at least {}", show(v)));
        }
        if let Some(v) = &check.at_most {
            parts.push(format!("at most {}", show(v)));
        }
        if let Some(v) = &check.equals {
            parts.push(format!("equal to {}", show(v)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" with the number {}", parts.join(" and "))
        }
    }

    fn value(&mut self, v: &Value) -> i64 {
        match v {
            Value::Int(n) => *n,
            Value::Var(name) => {
                if name.starts_with("sent_") {
                    // Counts of signals sent are final only once every
                    // background storm is done.
                    self.join_background();
                }
                *self.vars.get(name).unwrap_or(&0)
            }
        }
    }

    fn apply_check(
        &mut self,
        check: &NumberCheck,
        caps: &regex_lite::Captures<'_>,
        line: &str,
        expected: &str,
    ) -> Result<(), StepFailure> {
        if check.capture.is_none()
            && check.at_least.is_none()
            && check.at_most.is_none()
            && check.equals.is_none()
        {
            return Ok(());
        }
        let text = caps.get(1).map_or("", |m| m.as_str());
        let Ok(n) = text.parse::<i64>() else {
            return Err(StepFailure::failed(
                expected,
                format!("{line:?}: {text:?} is not a number"),
            ));
        };
        let mut bad = Vec::new();
        if let Some(v) = &check.at_least {
            let bound = self.value(v);
            if n < bound {
                bad.push(format!("{n} is less than {}", self.show(v, bound)));
            }
        }
        if let Some(v) = &check.at_most {
            let bound = self.value(v);
            if n > bound {
                bad.push(format!("{n} is more than {}", self.show(v, bound)));
            }
        }
        if let Some(v) = &check.equals {
            let want = self.value(v);
            if n != want {
                bad.push(format!("{n} is not {}", self.show(v, want)));
            }
        }
        if let Some(name) = &check.capture {
            self.vars.insert(name.clone(), n);
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(StepFailure::failed(
                format!("{expected} (after {})", self.vars_summary()),
                format!("{line:?}: {}", bad.join(", ")),
            ))
        }
    }

    fn show(&self, v: &Value, n: i64) -> String {
        match v {
            Value::Int(_) => n.to_string(),
            Value::Var(name) => format!("{name} ({n})"),
        }
    }

    fn vars_summary(&self) -> String {
        let parts: Vec<String> = self
            .vars
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        if parts.is_empty() {
            "nothing bound".into()
        } else {
            parts.join(", ")
        }
    }

    /// Stops background faults and tears down every process of the test.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.halt_pauses();
        self.join_background();
        // A round stuck for good stays so through SIGTERM: whatever the
        // signal woke has gone back to sleep, and its SIGKILL comes at once
        // instead of at the end of the grace.
        let mut watch = self.stuck_watch(Duration::ZERO);
        let round = self.passive();
        let mut settled = || {
            watch
                .as_mut()
                .is_some_and(|w| Instant::now() >= w.next && w.look(round.as_ref()).is_some())
        };
        for p in &mut self.processes {
            p.terminate_unless_settled(Duration::from_millis(300), &mut settled);
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            workdir: self.workdir.path(),
            sandbox: &self.sandbox,
            token: &self.token,
            key: self.key,
            groups: &self.groups,
        }
    }

    /// Process groups of the submission's processes (not the grader's peers).
    fn submission_groups(&self) -> Vec<nix::unistd::Pid> {
        self.processes
            .iter()
            .filter(|p| !self.peers.contains(&p.name))
            .map(|p| p.pid())
            .collect()
    }

    /// After the round: lists what the submission left behind, then removes
    /// all of it (and whatever the peers left), so nothing reaches the next
    /// test. Returns the list, one line each.
    fn sweep(&mut self) -> Vec<String> {
        let scope = self.scope();
        let groups = self.submission_groups();
        let all: Vec<_> = self.processes.iter().map(|p| p.pid()).collect();
        let [found, everything] = Leftovers::find_each(&self.baseline, &scope, [&groups, &all]);
        let mut lines = found.describe();
        for problem in everything.remove(&scope) {
            lines.push(format!("cleanup: {problem}"));
        }
        self.processes.clear();
        lines
    }

    /// Processes of the submission's groups whose leader has exited.
    fn orphans(&mut self) -> Vec<String> {
        let exited: Vec<nix::unistd::Pid> = self
            .processes
            .iter_mut()
            .filter(|p| !self.peers.contains(&p.name))
            .filter_map(|p| p.try_exit().map(|_| p.pid()))
            .collect();
        let found = Leftovers::find(&self.baseline, &self.scope(), &exited);
        Leftovers {
            processes: found.processes,
            ..Leftovers::default()
        }
        .describe()
    }

    /// `count_fds`, `count_zombies`: waits until the count passes the check.
    /// A count that stays wrong is a leak (failed), not a hang.
    fn count(
        &mut self,
        step: &Step,
        what: Counted,
        check: &NumberCheck,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        let wanted = self.describe_check(check);
        let (noun, source, leak) = match what {
            Counted::Fds => (
                "open file descriptors",
                "in /proc/PID/fd",
                "a descriptor per connection not closed?",
            ),
            Counted::Zombies => (
                "zombie children",
                "in its process group",
                "children that exited are never waited for?",
            ),
        };
        self.actions
            .push(format!("counted its {noun} {source}{wanted}"));
        let lo = check.at_least.as_ref().map(|v| self.value(v));
        let hi = check.at_most.as_ref().map(|v| self.value(v));
        let eq = check.equals.as_ref().map(|v| self.value(v));
        let pid = self.process(step).pid();
        let passes = |n: i64| {
            lo.is_none_or(|lo| n >= lo)
                && hi.is_none_or(|hi| n <= hi)
                && eq.is_none_or(|eq| n == eq)
        };
        let begun = Instant::now();
        let mut last = None;
        let found = poll_until(deadline, || {
            let n = match what {
                Counted::Fds => procfs::fd_count(pid)? as i64,
                Counted::Zombies => procfs::group_members(pid)
                    .iter()
                    .filter(|(p, state)| *p != pid && *state == 'Z')
                    .count() as i64,
            };
            last = Some(n);
            passes(n).then_some(n)
        });
        if let Some(n) = found {
            if let Some(name) = &check.capture {
                self.vars.insert(name.clone(), n);
            }
            return Ok(());
        }
        let expected = format!("its {noun}{wanted}");
        match last {
            None => Err(self.ran_out(step, expected, "", "/proc/PID/fd could not be read".into())),
            Some(n) => Err(StepFailure::failed(
                expected,
                format!(
                    "{n} {noun}, still after {:.1} s ({leak})",
                    begun.elapsed().as_secs_f64()
                ),
            )),
        }
    }

    /// `expect_clean`: nothing of the submission is left right now.
    fn expect_clean(&mut self) -> Result<(), StepFailure> {
        self.actions.push(
            "listed what the program left behind: processes, FIFOs and sockets in its directory, shared memory, semaphores, message queues"
                .into(),
        );
        let groups = self.submission_groups();
        let found = Leftovers::find(&self.baseline, &self.scope(), &groups);
        if found.is_empty() {
            return Ok(());
        }
        Err(StepFailure::failed(
            "nothing left behind: every process exited and reaped, every FIFO, socket file and IPC object removed",
            found.describe().join("; "),
        ))
    }

    /// `pause_ms`: SIGSTOP then SIGCONT, to widen race windows.
    fn pause(
        &mut self,
        step: &Step,
        max_ms: u64,
        target: Target,
        count: u32,
        spread_ms: u64,
        background: bool,
    ) -> Result<(), StepFailure> {
        let leader = self.process(step).pid();
        let pauses = faults::Pauses::new(
            leader,
            target == Target::Child,
            self.sandbox.census().cloned(),
            count,
            Duration::from_millis(spread_ms),
            Duration::from_millis(max_ms),
            self.rng,
        );
        let what = pauses.describe();
        self.faults.push(what.clone());
        if background {
            self.actions.push(format!("{what}, in the background"));
            let halt = Arc::new(faults::Halt::default());
            let handle = pauses.spawn(Arc::clone(&halt));
            self.background.push(Background {
                signal: None,
                halt: Some(halt),
                handle,
            });
        } else {
            self.actions.push(what);
            pauses.run(&faults::Halt::default());
        }
        Ok(())
    }

    /// `wait_idle`: every process of the group asleep or exited, seen on two
    /// polls in a row (a process between two system calls is briefly R).
    fn wait_idle(&mut self, step: &Step, deadline: Deadline) -> Result<(), StepFailure> {
        let leader = self.process(step).pid();
        self.actions.push(
            "waited until every process of its group was asleep (blocked) or had exited".into(),
        );
        let mut streak = 0;
        let mut busy = Vec::new();
        let idle = poll_until(deadline, || {
            busy = procfs::live_group_members(leader, self.sandbox.census())
                .into_iter()
                .filter(|(pid, _)| !procfs::idle(*pid))
                .collect();
            streak = if busy.is_empty() { streak + 1 } else { 0 };
            (streak >= 2).then_some(())
        });
        if idle.is_some() {
            return Ok(());
        }
        let shown: Vec<String> = busy
            .iter()
            .map(|(pid, state)| format!("pid {pid} (state {state})"))
            .collect();
        Err(StepFailure::timeout(
            "every process to block (for example on the semaphore the grader holds) or exit",
            format!(
                "still running: {} (busy-waiting, or not blocking where the protocol says)",
                shown.join(", ")
            ),
        ))
    }
}

/// Which lines a read for an expected line may pass over.
#[derive(Clone, Copy)]
enum Skip<'a> {
    /// None: the next line must match (`expect`).
    None,
    /// Any line (`wait_for`).
    Any,
    /// Lines matching this pattern (`expect` with `skip`).
    Matching(&'a regex_lite::Regex),
}

/// The end of stderr, and a Rust panic's message when the tail (a long
/// backtrace, say) does not show it.
fn stderr_excerpt(stderr: &CapturedStream) -> Vec<String> {
    let mut tail = stderr.tail(8);
    let panic = stderr.first_match("panicked at", 1);
    if !panic.is_empty() && !tail.iter().any(|l| l.contains("panicked at")) {
        let mut lines = panic;
        lines.push("...".into());
        lines.append(&mut tail);
        tail = lines;
    }
    tail
}

/// Samples in a row on which `wait_blocked` must see every thread asleep.
const BLOCKED_SAMPLES: u32 = 3;
/// The least time those samples span.
const BLOCKED_SPAN: Duration = Duration::from_millis(2);

fn sent_var(signal: Signal) -> String {
    format!("sent_{}", signals::name(signal))
}

/// Describes an unexpected line with the lines before it.
fn mismatch(stream: &CapturedStream, line: &str) -> String {
    let before = stream.before_cursor(4);
    let context: Vec<&String> = before.iter().rev().skip(1).rev().collect();
    let line = crate::harness::output::clip(line);
    let mut out = format!("{line:?} (output line {})", stream.position());
    if !context.is_empty() {
        let shown: Vec<String> = context.iter().map(|l| format!("{l:?}")).collect();
        out.push_str(&format!(", after {}", shown.join(", ")));
    }
    out
}
