//! Grading a class: every submission in a directory, `--jobs` at once, on
//! one prepared task, with every result on disk before the next event.
//!
//! The batch is an observer-driven loop around [`TaskContext::grade`]:
//! each submission is taken in ([`crate::intake`]: a crate directory, a
//! course checkout or an untrusted archive), graded, and its result written
//! atomically (a temporary file, then a rename, so a reader never sees half
//! a file and a killed grader leaves either the old file or the new one).
//! Then the gradebook files are rewritten from all results so far.
//!
//! `--resume` reads back what an earlier run wrote (`.results/NAME.json`,
//! the full result model) and keeps a result only if it was graded from the
//! same sources (digest), spec (digest), seed, grader version and schema,
//! so a changed submission or spec is graded again; a result that was not a
//! verdict (the machine failed) is always graded again. Since every output
//! is rendered from the sorted results alone, a resumed batch ends with the
//! same files as an uninterrupted one.
//!
//! Layout of `--out DIR`:
//! - `grades.csv`, `junit.xml`, `summary.json`, `summary.html` (instructor);
//! - `NAME/report.json`, `NAME/report.txt`: the student's feedback (hidden
//!   tests shown by name and score only);
//! - `.results/NAME.json`: the full result, for `--resume` and `merge`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::events::{Cancel, Event, Fanout, Observer};
use crate::grade::{self, GradeError, GradeOptions, Submission, TaskContext};
use crate::intake::{self, Listed};
use crate::report;
use crate::result::{Audience, Outcome, Report, SCHEMA_VERSION};
use crate::shard::{Shard, ShardRecord};

/// Tests of one submission run at once in a batch, beside the other lanes
/// (`--jobs`). A test waits on pipes, deadlines and its own children for
/// about a fifth of its time (bench/results.json, `work_share`), so lanes
/// of one test each leave the cores idle that long: on 2 cores, with two
/// lanes of a task3 class (40 submissions), one test each kept 76% of the
/// cores busy, two 89-91%, three 91-94%, four no more than three (93-94%),
/// each figure over several runs. Each test is a world of its own (its
/// user, namespaces, cgroups, scratch), and the grade does not depend on how
/// many run at once (tests/task3.rs, tests/batch.rs).
const TESTS_AT_ONCE_PER_SUBMISSION: usize = 3;

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub out: PathBuf,
    pub jobs: usize,
    pub resume: bool,
    pub seed: u64,
    /// The part of the class this run grades.
    pub shard: Shard,
    /// Only the tests these patterns select (`--only`), for every
    /// submission; all when empty.
    pub only: Vec<String>,
}

/// A batch that could not run, or stopped: nothing here is about one
/// submission (those are results, with their reasons).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Intake(#[from] intake::IntakeError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Grade(#[from] GradeError),
    #[error("the batch was cancelled after {finished} of {total} submissions; their results are kept in {}: run the same command with --resume to grade the rest", out.display())]
    Cancelled {
        finished: usize,
        total: usize,
        out: PathBuf,
    },
}

/// What a finished batch found.
#[derive(Debug)]
pub struct BatchOutcome {
    pub reports: Vec<Report>,
    pub reused: usize,
}

/// One submission of the listing.
struct Item {
    name: String,
    entry: Result<intake::Entry, String>,
}

/// Grades every submission in `submissions` and writes the outputs: the
/// engine emits the events, and a [`Writer`] (first, so that a result is on
/// disk before anyone else hears of it) and `observer` consume them.
pub fn run(
    ctx: &TaskContext<'_>,
    submissions: &Path,
    opts: &BatchOptions,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<BatchOutcome, BatchError> {
    let started = Instant::now();
    let items: Vec<Item> = intake::list(submissions)?
        .into_iter()
        .map(|l| match l {
            Listed::Entry(e) => Item {
                name: e.name.clone(),
                entry: Ok(e),
            },
            // A name refused at listing may not be a safe file name: the
            // results go under its escaped form.
            Listed::Rejected { name, reason } => Item {
                name: report::safe::visible(&name).replace('/', "_"),
                entry: Err(reason),
            },
        })
        .filter(|item| opts.shard.owns(&item.name))
        .collect();
    let writer = Writer::new(ctx.spec(), &opts.out)?;
    // What this run was given, for `merge`: on disk before any result.
    let record = ShardRecord {
        schema_version: SCHEMA_VERSION,
        task: ctx.spec().task.id.clone(),
        spec_digest: ctx.spec().digest.clone(),
        seed: opts.seed,
        grader_version: env!("CARGO_PKG_VERSION").to_owned(),
        shard: opts.shard,
        names: items.iter().map(|i| i.name.clone()).collect(),
    };
    write_atomic(
        &opts.out.join(ShardRecord::FILE),
        serde_json::to_string_pretty(&record)
            .expect("the record serialises")
            .as_bytes(),
    )?;
    let intake_dir = IntakeDir::claim(&ctx.course().work_dir().join("intake"))?;
    let observers = Fanout(vec![&writer, observer]);
    let total = items.len();
    for (index, item) in items.iter().enumerate() {
        observers.event(&Event::Queued {
            id: &item.name,
            index,
            total,
        });
    }
    let results = crate::pool::map(&items, opts.jobs, |item| -> Result<(), BatchError> {
        if cancel.is_cancelled() || writer.failed() {
            return Ok(());
        }
        match grade_item(ctx, &intake_dir, item, opts, &observers, cancel) {
            // The engine told the observers itself.
            Ok((_, Taken::Graded)) => {}
            Ok((report, Taken::Rejected)) => observers.event(&Event::Finished {
                id: &item.name,
                report: &report,
            }),
            Ok((report, Taken::Reused)) => observers.event(&Event::Reused {
                id: &item.name,
                report: &report,
            }),
            Err(BatchError::Grade(GradeError::Cancelled)) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    });
    for r in results {
        r?;
    }
    writer.check()?;
    let finished = writer.count();
    if cancel.is_cancelled() && finished < total {
        observers.event(&Event::Cancelled { finished, total });
        return Err(BatchError::Cancelled {
            finished,
            total,
            out: opts.out.clone(),
        });
    }
    observers.event(&Event::BatchFinished {
        total,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    writer.check()?;
    Ok(writer.into_outcome())
}

/// The batch's files, as an observer: each finished submission's result and
/// feedback, and the gradebook brought up to date, before the next event;
/// the summary files when the batch finishes.
pub struct Writer<'a> {
    spec: &'a crate::spec::Spec,
    out: PathBuf,
    done: Mutex<BTreeMap<String, Report>>,
    reused: std::sync::atomic::AtomicUsize,
    error: Mutex<Option<BatchError>>,
}

impl<'a> Writer<'a> {
    pub fn new(spec: &'a crate::spec::Spec, out: &Path) -> Result<Writer<'a>, BatchError> {
        mkdir(&out.join(".results"))?;
        Ok(Writer {
            spec,
            out: out.to_owned(),
            done: Mutex::new(BTreeMap::new()),
            reused: std::sync::atomic::AtomicUsize::new(0),
            error: Mutex::new(None),
        })
    }

    fn failed(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The first write error, if any.
    fn check(&self) -> Result<(), BatchError> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn count(&self) -> usize {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn into_outcome(self) -> BatchOutcome {
        BatchOutcome {
            reports: self
                .done
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .into_values()
                .collect(),
            reused: self.reused.into_inner(),
        }
    }

    fn record(&self, report: &Report, fresh: bool) -> Result<(), BatchError> {
        if fresh {
            write_result(&self.out, report)?;
        }
        // Under the lock, so a later snapshot of the gradebook is never
        // overwritten by an earlier one.
        let mut all = self.done.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(report.submission_id.clone(), report.clone());
        let sorted: Vec<Report> = all.values().cloned().collect();
        write_atomic(
            &self.out.join("grades.csv"),
            report::gradebook::grades_csv(self.spec, &sorted).as_bytes(),
        )
    }
}

impl Observer for Writer<'_> {
    fn event(&self, event: &Event<'_>) {
        let written = match event {
            Event::Finished { report, .. } => self.record(report, true),
            Event::Reused { report, .. } => {
                self.reused
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.record(report, false)
            }
            Event::BatchFinished { .. } => {
                let all = self.done.lock().unwrap_or_else(|p| p.into_inner());
                let sorted: Vec<Report> = all.values().cloned().collect();
                write_gradebook(self.spec, &self.out, &sorted)
            }
            _ => Ok(()),
        };
        if let Err(e) = written {
            self.error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        }
    }
}

/// How a submission's result was had.
enum Taken {
    /// Graded now (the engine emitted its events).
    Graded,
    /// Refused (or not taken in) before grading.
    Rejected,
    /// An earlier run's result stands.
    Reused,
}

/// Takes one submission in and grades it, or finds its earlier result.
fn grade_item(
    ctx: &TaskContext<'_>,
    intake_dir: &IntakeDir,
    item: &Item,
    opts: &BatchOptions,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<(Report, Taken), BatchError> {
    let spec = ctx.spec();
    let not_graded = |outcome: Outcome| {
        grade::not_graded(
            spec,
            Submission {
                id: &item.name,
                dir: Path::new(&item.name),
                digest: None,
            },
            opts.seed,
            outcome,
        )
    };
    let entry = match &item.entry {
        Ok(e) => e,
        Err(why) => return Ok((not_graded(Outcome::Rejected(why.clone())), Taken::Rejected)),
    };
    // Archives are extracted into a scratch directory of this submission's
    // own, removed when it is done, in the grader's work directory: hidden
    // from every build and test process, as the course is.
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempdir_in(&intake_dir.root)
        .map_err(|source| BatchError::Write {
            path: intake_dir.root.clone(),
            source,
        })?;
    let opened = match intake::open(
        entry,
        &spec.task.slug,
        &spec.task.binary,
        scratch.path(),
        &intake::Caps::default(),
    ) {
        Ok(o) => o,
        Err(intake::OpenError::Rejected(r)) => {
            return Ok((not_graded(Outcome::Rejected(r.reason)), Taken::Rejected))
        }
        // Not the student's fault: no verdict, graded again on --resume.
        Err(intake::OpenError::Machine(why)) => {
            return Ok((not_graded(Outcome::Ungradable(why)), Taken::Rejected))
        }
    };
    if opts.resume {
        if let Some(earlier) = earlier_result(&opts.out, &item.name) {
            let same_tests = crate::grade::select(spec, &opts.only)
                .is_ok_and(|t| t.len() == earlier.tests.len());
            if same_tests && comparable(&earlier, spec, opts.seed, &opened.digest) {
                return Ok((earlier, Taken::Reused));
            }
        }
    }
    let shown = entry.path.display().to_string();
    let grade_opts = GradeOptions {
        seed: opts.seed,
        only: opts.only.clone(),
        shown_path: shown,
        test_jobs: TESTS_AT_ONCE_PER_SUBMISSION,
    };
    let report = ctx.grade(
        Submission {
            id: &item.name,
            dir: &opened.crate_dir,
            digest: Some(&opened.digest),
        },
        &grade_opts,
        observer,
        cancel,
    )?;
    Ok((report, Taken::Graded))
}

/// Whether an earlier result stands for this run.
fn comparable(earlier: &Report, spec: &crate::spec::Spec, seed: u64, digest: &str) -> bool {
    earlier.schema_version == SCHEMA_VERSION
        && earlier.spec_digest == spec.digest
        && earlier.seed == seed
        && earlier.grader_version == env!("CARGO_PKG_VERSION")
        && earlier.submission_digest.as_deref() == Some(digest)
        && earlier.outcome.is_verdict()
        && !matches!(earlier.outcome, Outcome::Rejected(_))
}

fn result_path(out: &Path, name: &str) -> PathBuf {
    out.join(".results").join(format!("{name}.json"))
}

/// The full result an earlier run wrote for `name`, if it reads back.
pub fn earlier_result(out: &Path, name: &str) -> Option<Report> {
    let text = std::fs::read_to_string(result_path(out, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes one submission's files: the full result, then the student's
/// feedback.
fn write_result(out: &Path, report: &Report) -> Result<(), BatchError> {
    let full = serde_json::to_string_pretty(report).expect("the model serialises");
    write_atomic(&result_path(out, &report.submission_id), full.as_bytes())?;
    let dir = out.join(&report.submission_id);
    mkdir(&dir)?;
    let student = report.for_audience(Audience::Student);
    write_atomic(
        &dir.join("report.json"),
        report::json::render(&student).as_bytes(),
    )?;
    write_atomic(&dir.join("report.txt"), report::text(&student).as_bytes())
}

/// The instructor's files, from every result (sorted by name).
pub fn write_gradebook(
    spec: &crate::spec::Spec,
    out: &Path,
    reports: &[Report],
) -> Result<(), BatchError> {
    use report::gradebook as g;
    write_atomic(
        &out.join("grades.csv"),
        g::grades_csv(spec, reports).as_bytes(),
    )?;
    write_atomic(
        &out.join("junit.xml"),
        g::junit_xml(spec, reports).as_bytes(),
    )?;
    let summary = g::summary(spec, reports);
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .expect("the summary serialises")
            .as_bytes(),
    )?;
    write_atomic(
        &out.join("summary.html"),
        g::summary_html(&summary).as_bytes(),
    )
}

/// The directory batches extract archives in (each submission's scratch
/// directory is removed when it is done), and this batch's claim on it: a
/// shared lock on its `.lock`, held for the batch's life. A batch killed
/// before it could remove its scratch directories leaves them behind; the
/// next batch that finds no other one running (its exclusive lock granted
/// at once) removes everything there first. A lock, not the pids in the
/// names: batches in other PID namespaces (pods on one volume) see none of
/// each other's pids.
struct IntakeDir {
    root: PathBuf,
    _claim: nix::fcntl::Flock<std::fs::File>,
}

impl IntakeDir {
    fn claim(root: &Path) -> Result<IntakeDir, BatchError> {
        use nix::fcntl::{Flock, FlockArg};
        mkdir(root)?;
        let write_error = |source| BatchError::Write {
            path: root.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(".lock"))
            .map_err(write_error)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(alone) => {
                for entry in std::fs::read_dir(root).map_err(write_error)? {
                    let entry = entry.map_err(write_error)?;
                    if entry.file_name() != ".lock" {
                        let path = entry.path();
                        let _ =
                            std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                    }
                }
                alone.unlock().map_err(|(_, e)| write_error(e.into()))?
            }
            Err((file, _)) => file,
        };
        let claim =
            Flock::lock(file, FlockArg::LockShared).map_err(|(_, e)| write_error(e.into()))?;
        Ok(IntakeDir {
            root: root.to_owned(),
            _claim: claim,
        })
    }
}

fn mkdir(dir: &Path) -> Result<(), BatchError> {
    std::fs::create_dir_all(dir).map_err(|source| BatchError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never a part: a temporary file beside it, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    use std::io::Write;
    let err = |source| BatchError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    // Readable by whoever the instructor shares the results with.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Progress of a batch: on a terminal a bar with done/total, the running
/// submissions and an ETA; otherwise (CI logs) one plain line per finished
/// submission.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    total: usize,
    done: usize,
    running: Vec<String>,
}

impl Progress {
    pub fn new(on_terminal: bool) -> Progress {
        let bar = on_terminal.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} graded, ETA {eta} · {wide_msg}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Progress {
            bar,
            state: Mutex::new(ProgressState::default()),
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event<'_>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Queued { total, index, .. } => {
                // A new run of grades (verify's next task) counts afresh.
                if *index == 0 {
                    st.done = 0;
                    if let Some(bar) = &self.bar {
                        bar.reset();
                    }
                }
                st.total = *total;
                if let Some(bar) = &self.bar {
                    bar.set_length(*total as u64);
                }
            }
            Event::BuildStarted { id } => {
                st.running.push((*id).to_owned());
            }
            Event::Finished { id, report } | Event::Reused { id, report } => {
                st.running.retain(|r| r != id);
                st.done += 1;
                let how = match &report.outcome {
                    Outcome::Graded => String::new(),
                    other => format!(" ({})", other.label()),
                };
                let again = if matches!(event, Event::Reused { .. }) {
                    ", kept from the earlier run"
                } else {
                    ""
                };
                let text = format!(
                    "[{}/{}] {}: {}/{}{how}{again} in {:.1} s",
                    st.done,
                    st.total,
                    report::safe::visible(id),
                    report.score,
                    report.max_score,
                    report.duration_ms as f64 / 1000.0
                );
                drop(st);
                self.line(text);
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            }
            Event::Cancelled { finished, total } => {
                let text = format!("cancelled: {finished} of {total} submissions finished");
                drop(st);
                self.line(text);
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            }
            Event::BatchFinished { .. } => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
        if let Some(bar) = &self.bar {
            bar.set_message(st.running.join(", "));
        }
    }
}

/// Why shards cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    Shard(String),
    #[error("cannot merge: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Write(#[from] BatchError),
}

/// Combines the outputs of the shards of one class (`cargo grade merge`)
/// into exactly the files one unsharded run writes. Refuses shards graded
/// with different specs, seeds or grader versions, a submission graded
/// twice, a missing shard, and a shard that did not finish.
pub fn merge(
    spec: &crate::spec::Spec,
    shards: &[PathBuf],
    out: &Path,
) -> Result<Vec<Report>, MergeError> {
    let mut records = Vec::new();
    for dir in shards {
        records.push((dir, ShardRecord::read(dir).map_err(MergeError::Shard)?));
    }
    let Some((first_dir, first)) = records.first() else {
        return Err(MergeError::Shard("no shard directories given".into()));
    };
    for (dir, r) in &records {
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            MergeError::Mismatch(format!(
                "{} was graded with {what} {a}, {} with {b}",
                first_dir.display(),
                dir.display()
            ))
        };
        if r.task != first.task {
            return Err(differs("task", &first.task, &r.task));
        }
        if r.spec_digest != first.spec_digest {
            return Err(differs(
                "a spec of digest",
                &first.spec_digest,
                &r.spec_digest,
            ));
        }
        if r.seed != first.seed {
            return Err(differs("seed", &first.seed, &r.seed));
        }
        if r.grader_version != first.grader_version || r.schema_version != first.schema_version {
            return Err(differs(
                "grader version",
                &first.grader_version,
                &r.grader_version,
            ));
        }
        if r.shard.n != first.shard.n {
            return Err(differs("--shard K/N with N =", &first.shard.n, &r.shard.n));
        }
    }
    if first.task != spec.task.id || first.spec_digest != spec.digest {
        return Err(MergeError::Mismatch(format!(
            "the shards were graded against another version of {}'s spec (digest {}) than the course's now ({}); merge with the spec they were graded with",
            first.task, first.spec_digest, spec.digest
        )));
    }
    let n = first.shard.n;
    let mut seen: BTreeMap<u32, &PathBuf> = BTreeMap::new();
    for (dir, r) in &records {
        if let Some(other) = seen.insert(r.shard.k, dir) {
            return Err(MergeError::Mismatch(format!(
                "shard {} is given twice: {} and {}",
                r.shard,
                other.display(),
                dir.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| !seen.contains_key(k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Mismatch(format!(
            "shard {} missing (given: {})",
            missing.join(", "),
            records
                .iter()
                .map(|(_, r)| r.shard.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut owner: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    let mut reports = Vec::new();
    for (dir, r) in &records {
        for name in &r.names {
            if let Some(other) = owner.insert(name, dir) {
                return Err(MergeError::Mismatch(format!(
                    "{name:?} was graded twice, in {} and in {}",
                    other.display(),
                    dir.display()
                )));
            }
            let report = earlier_result(dir, name).ok_or_else(|| {
                MergeError::Shard(format!(
                    "shard {} in {} has no result for {name:?}: it did not finish (run it again with --resume)",
                    r.shard,
                    dir.display()
                ))
            })?;
            reports.push((dir, report));
        }
    }
    reports.sort_by(|a, b| a.1.submission_id.cmp(&b.1.submission_id));
    mkdir(&out.join(".results"))?;
    for (dir, report) in &reports {
        let name = &report.submission_id;
        let copy = |from: PathBuf, to: PathBuf| -> Result<(), BatchError> {
            let bytes = std::fs::read(&from).map_err(|source| BatchError::Write {
                path: from.clone(),
                source,
            })?;
            write_atomic(&to, &bytes)
        };
        copy(result_path(dir, name), result_path(out, name))?;
        mkdir(&out.join(name))?;
        for file in ["report.json", "report.txt"] {
            copy(dir.join(name).join(file), out.join(name).join(file))?;
        }
    }
    let reports: Vec<Report> = reports.into_iter().map(|(_, r)| r).collect();
    let all = ShardRecord {
        shard: Shard::ALL,
        names: reports.iter().map(|r| r.submission_id.clone()).collect(),
        ..first.clone()
    };
    write_atomic(
        &out.join(ShardRecord::FILE),
        serde_json::to_string_pretty(&all)
            .expect("the record serialises")
            .as_bytes(),
    )?;
    write_gradebook(spec, out, &reports)?;
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::IntakeDir;

    /// What killed batches left is removed by the next batch that runs
    /// alone, never while another batch holds its claim.
    #[test]
    fn intake_leftovers_are_removed_only_when_no_batch_runs() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("intake");
        std::fs::create_dir(&root).unwrap();
        let stale = root.join("123-killed");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("main.rs"), "fn main() {}").unwrap();

        let first = IntakeDir::claim(&root).unwrap();
        assert!(!stale.exists(), "the first batch, alone, removes it");

        // Another batch's scratch while the first runs: the second batch
        // leaves it.
        let running = root.join("456-running");
        std::fs::create_dir(&running).unwrap();
        let second = IntakeDir::claim(&root).unwrap();
        assert!(running.exists(), "removed under a running batch");
        drop((first, second));

        let _third = IntakeDir::claim(&root).unwrap();
        assert!(!running.exists(), "left behind once no batch ran");
        assert!(root.join(".lock").exists());
    }
}
