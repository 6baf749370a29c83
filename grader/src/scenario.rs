//! Scenario execution: runs one test's steps against real processes and
//! turns what happened into a [`TestResult`].
//!
//! Each test gets a fresh scratch directory, fresh processes and a fresh RNG
//! (from the run's seed and the test's name). When the test ends, however it
//! ends, every process it started is torn down with its process group.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::faults::{self, SignalStorm};
use crate::harness::deadline::poll_until;
use crate::harness::procfs::{self, Syscall};
use crate::harness::{CapturedStream, Deadline, ExitState, LineWait, Program, SpawnOptions};
use crate::result::{Failure, Status, TestResult};
use crate::signals;
use crate::spec::{Action, NumberCheck, Step, StreamName, Test, Value};

/// What a scenario needs besides the test itself.
pub struct ScenarioEnv<'a> {
    /// The submission's built binary.
    pub binary: &'a Path,
    pub seed: u64,
    pub output_limit: usize,
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

/// A background fault injection still running.
struct Background {
    signal: Signal,
    handle: JoinHandle<u32>,
}

/// The running state of one test.
struct Scenario<'a> {
    env: &'a ScenarioEnv<'a>,
    workdir: tempfile::TempDir,
    processes: Vec<Program>,
    vars: BTreeMap<String, i64>,
    rng: fastrand::Rng,
    background: Vec<Background>,
    stop: Arc<AtomicBool>,
    actions: Vec<String>,
    faults: Vec<String>,
    deadline: Deadline,
}

/// Runs `test` and reports its result. `reproduce` and `output` are left for
/// the caller, which knows how the grader was invoked.
pub fn run_test(env: &ScenarioEnv<'_>, test: &Test) -> TestResult {
    let started = Instant::now();
    let mut result = TestResult {
        name: test.name.clone(),
        description: test.description.clone(),
        score: 0,
        max_score: test.points,
        status: Status::Passed,
        visibility: test.visibility,
        output: String::new(),
        failure: None,
        hint: test.hint.clone(),
        faults: Vec::new(),
        reproduce: String::new(),
        duration_ms: 0,
    };
    let workdir = match tempfile::Builder::new().prefix("cargo-grade-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            result.status = Status::Error;
            result.output = format!("could not create a scratch directory: {e}");
            return result;
        }
    };
    let mut scenario = Scenario {
        env,
        workdir,
        processes: Vec::new(),
        vars: BTreeMap::new(),
        rng: faults::test_rng(env.seed, &test.name),
        background: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        actions: Vec::new(),
        faults: Vec::new(),
        deadline: Deadline::after_ms(test.timeout_ms),
    };

    let mut failure = None;
    for (index, step) in test.steps.iter().enumerate() {
        if let Err(f) = scenario.run_step(step) {
            failure = Some((index + 1, f));
            break;
        }
    }
    let (stdout_tail, stderr_tail) = scenario
        .focus_process(failure.as_ref().map(|(i, _)| &test.steps[*i - 1]))
        .map(|p| (p.stdout.tail(8), stderr_excerpt(&p.stderr)))
        .unwrap_or_default();
    scenario.finish();

    match failure {
        None => {
            result.status = Status::Passed;
            result.score = test.points;
        }
        Some((step, f)) => {
            result.status = f.status;
            result.failure = Some(Failure {
                step,
                actions: scenario.actions.clone(),
                expected: f.expected,
                observed: f.observed,
                stdout_tail,
                stderr_tail,
            });
        }
    }
    result.faults = scenario.faults.clone();
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

impl Scenario<'_> {
    fn run_step(&mut self, step: &Step) -> Result<(), StepFailure> {
        let deadline = Deadline::after_ms(step.timeout_ms).min(self.deadline);
        match &step.action {
            Action::Start { name, args } => self.start(name, args),
            Action::SendLine(line) => {
                self.actions
                    .push(format!("sent the line {line:?} to stdin"));
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
            } => self.signal(step, *signal, *count, *spread_ms, *background),
            Action::Join => {
                self.actions
                    .push("waited for the background signals to be sent".into());
                self.join_background();
                Ok(())
            }
            Action::WaitFor(re, check) => self.read_matching(step, re, check, true, deadline),
            Action::Expect(re, check) => self.read_matching(step, re, check, false, deadline),
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

    fn start(&mut self, name: &str, args: &[String]) -> Result<(), StepFailure> {
        let opts = SpawnOptions {
            program: self.env.binary.to_owned(),
            args: args.to_vec(),
            workdir: self.workdir.path().to_owned(),
            env: Vec::new(),
            output_limit: self.env.output_limit,
        };
        let program = Program::spawn(name, &opts)
            .map_err(|e| StepFailure::error(format!("could not start the program: {e}")))?;
        let shown_args = if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        };
        self.actions.push(format!(
            "started `{}{shown_args}` as {name} (pid {})",
            self.env
                .binary
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            program.pid()
        ));
        self.processes.push(program);
        Ok(())
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
    ) -> Result<(), StepFailure> {
        let pid = self.process(step).pid();
        let storm = SignalStorm::new(
            pid,
            signal,
            count,
            Duration::from_millis(spread_ms),
            &mut self.rng,
        );
        let what = storm.describe(spread_ms);
        if count > 1 {
            self.faults.push(what.clone());
        }
        if background {
            self.actions.push(format!("{what}, in the background"));
            let handle = storm.spawn(Arc::clone(&self.stop));
            self.background.push(Background { signal, handle });
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

    fn join_background(&mut self) {
        for bg in self.background.drain(..) {
            let sent = bg.handle.join().unwrap_or(0);
            *self.vars.entry(sent_var(bg.signal)).or_insert(0) += i64::from(sent);
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
                        self.env.output_limit
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
        re: &regex::Regex,
        check: &NumberCheck,
        skip: bool,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        let (action, expected) = if skip {
            ("waited for a line matching", "a line matching")
        } else {
            ("read the next line, expecting", "the next line to match")
        };
        self.actions.push(format!("{action} /{re}/"));
        let expected = format!("{expected} /{re}/{}", self.describe_check(check));
        let stream = self.stream(step);
        let begun = Instant::now();
        loop {
            match stream.next_line(deadline) {
                Ok(line) => match re.captures(&line) {
                    Some(caps) => return self.apply_check(check, &caps, &line, &expected),
                    None if skip => continue,
                    None => return Err(StepFailure::failed(expected, mismatch(&stream, &line))),
                },
                Err(why) => return Err(self.no_line(step, why, expected, begun.elapsed())),
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
            match stream.next_line(deadline) {
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
                Err(why) => {
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

    fn wait_file(
        &mut self,
        step: &Step,
        path: &str,
        deadline: Deadline,
    ) -> Result<(), StepFailure> {
        self.actions
            .push(format!("waited for the file {path:?} to appear"));
        let full = self.workdir.path().join(path);
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
        // pid can be reused.
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
        let p = self.process(step);
        match p.wait_exit(deadline) {
            Some(state) if state == want => Ok(()),
            Some(state) => Err(StepFailure::failed(
                expected,
                format!("the program {}", state.describe()),
            )),
            None => Err(StepFailure::timeout(
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
        caps: &regex::Captures<'_>,
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
        self.join_background();
        for p in &mut self.processes {
            p.terminate(Duration::from_millis(300));
        }
        self.processes.clear();
    }
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

fn sent_var(signal: Signal) -> String {
    format!("sent_{}", signals::name(signal))
}

/// Describes an unexpected line with the lines before it.
fn mismatch(stream: &CapturedStream, line: &str) -> String {
    let before = stream.before_cursor(4);
    let context: Vec<&String> = before.iter().rev().skip(1).rev().collect();
    let mut out = format!("{line:?} (output line {})", stream.position());
    if !context.is_empty() {
        let shown: Vec<String> = context.iter().map(|l| format!("{l:?}")).collect();
        out.push_str(&format!(", after {}", shown.join(", ")));
    }
    out
}
