//! The `cargo-grade` command line. Cargo runs it as `cargo-grade grade ARGS`
//! when installed, and the course's `cargo grade` alias does the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use std::io::IsTerminal;

#[cfg(feature = "instructor-tools")]
use cargo_grade::batch;
use cargo_grade::check;
use cargo_grade::course::Course;
use cargo_grade::course::CourseError;
use cargo_grade::events::{cancel_on_signals, Cancel};
use cargo_grade::grade::{GradeOptions, Submission, TaskContext};
use cargo_grade::pool;
use cargo_grade::report;
use cargo_grade::result::Audience;
use cargo_grade::scaffold;
use cargo_grade::selfcheck;
use cargo_grade::spec::{schema, SpecError};
#[cfg(feature = "instructor-tools")]
use cargo_grade::verify;

/// Exit statuses: grading ran (whatever the score).
const EXIT_OK: u8 = 0;
/// `--fail-under` not met, or a self-check found a problem.
const EXIT_BELOW: u8 = 1;
/// Usage, spec or environment error.
const EXIT_ERROR: u8 = 2;
/// Stopped by SIGINT or SIGTERM (128 + SIGINT, as a shell reports it).
#[cfg_attr(not(feature = "instructor-tools"), allow(dead_code))]
const EXIT_CANCELLED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "cargo grade",
    bin_name = "cargo grade",
    version,
    about = "Grade a submission for a Linux IPC task by running it as real processes against the task's spec.",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  cargo grade task1                        grade your work in starter/task1-signals\n  cargo grade task1 --only sigterm         run the tests whose name contains `sigterm`\n  cargo grade task1 --format json          machine-readable report\n  cargo grade list                         the tasks of this course\n  cargo grade check                        validate every spec of the course, running nothing\n  cargo grade verify task1                 prove a spec against its solution, starter and mutants\n  cargo grade verify --repeat 5            ... every task, at seeds 1 to 5: per-test pass and catch rates\n  cargo grade new task9-demo               scaffold a new task that passes check and verify"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    grade: GradeArgs,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, value_enum, global = true, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Print a completion script for a shell: `cargo grade completions bash
    /// > /etc/bash_completion.d/cargo-grade` (or zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// List the course's tasks.
    List {
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Validate specs without running anything: TOML, keys, types and
    /// ranges, test names, processes and variables, regexes, signals, system
    /// calls, the starter's binary and the mutants file. Every error of a
    /// file is reported; exit status 2 if there is one.
    Check {
        /// Spec files, or task ids or slugs [default: every spec of the course].
        #[arg(value_name = "SPEC")]
        specs: Vec<String>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Print the JSON Schema of the spec format (specs/spec.schema.json),
    /// which TOML editors use to complete and validate spec files.
    Schema {
        /// The schema of mutants files instead (specs/mutants.schema.json).
        #[arg(long)]
        mutants: bool,
    },
    /// Prove tasks' specs: the reference and every alternative solution get
    /// full marks, the starter at most its ceiling, every mutant loses points
    /// in each test it declares (the tests it loses besides are listed).
    /// With --repeat N, all of it at N seeds, with per-test rates and the
    /// seeds that disagreed. Exit status 0 when everything held at every
    /// seed, 1 when something did not, 2 on an error (a spec, or a mutant
    /// that does not compile).
    #[command(visible_alias = "selfcheck")]
    Verify {
        /// Task ids (`task1`) or slugs (`task1-signals`) [default: every task of the course].
        #[arg(value_name = "TASK")]
        tasks: Vec<String>,
        /// The first seed; with --repeat, the next runs use the next seeds.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Runs of everything, at seeds SEED, SEED+1, ...
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: u32,
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Subjects graded at once [default: the number of cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        jobs: Option<u32>,
        /// Private tests kept outside the students' repository:
        /// DIR/<slug>.toml, merged into the spec as hidden tests.
        #[arg(long, value_name = "DIR", env = "CARGO_GRADE_INSTRUCTOR_SPECS")]
        instructor_specs: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Scaffold a new task: its handout (tasks/SLUG.md), starter crate,
    /// reference solution with one mutant, and spec, which already pass
    /// `check` and `verify`, ready to edit. Never overwrites anything.
    New {
        /// The task's slug, `ID-NAME` (`task9-demo`: `cargo grade task9`
        /// then grades it); lowercase letters, digits and `-`.
        id: String,
        /// Its title [default: from the name, `Demo`].
        #[arg(long, value_name = "TITLE")]
        title: Option<String>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Grade a whole class: every submission in a directory (crate
    /// directories, course checkouts, .zip, .tar.gz and .tgz archives),
    /// several at once, resumably, with gradebook files in --out.
    Batch {
        /// Task id (`task3`) or slug.
        task: String,
        /// The directory of submissions, one entry each.
        submissions: PathBuf,
        /// Where the results go: grades.csv, junit.xml, summary.json,
        /// summary.html, and NAME/report.json and report.txt per submission.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Submissions graded at once, each running two of its tests at a
        /// time [default: the number of cores].
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Keep the results of an earlier run into --out for unchanged
        /// submissions (same sources, spec, seed and grader); grade the rest.
        #[arg(long)]
        resume: bool,
        /// Seed for every randomised fault (the same for every submission).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run only the test of this name, or the tests whose name contains
        /// it, for every submission; repeat for several.
        #[arg(long, value_name = "PATTERN")]
        only: Vec<String>,
        /// Grade only shard K of N (1 <= K <= N), chosen by a hash of each
        /// submission's name; `auto` reads K and N from GitLab CI, Slurm
        /// array or Kubernetes Indexed Job variables.
        #[arg(long, value_name = "K/N|auto")]
        shard: Option<String>,
        /// The number of shards, for `--shard auto` on a Kubernetes Indexed
        /// Job (which gives only an index); or CARGO_GRADE_SHARD_TOTAL.
        #[arg(long, value_name = "N")]
        shard_total: Option<u32>,
        /// Private tests kept outside the students' repository:
        /// DIR/<slug>.toml, merged into the spec as hidden tests.
        #[arg(long, value_name = "DIR", env = "CARGO_GRADE_INSTRUCTOR_SPECS")]
        instructor_specs: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Merge the outputs of `batch --shard K/N` runs into the files one
    /// unsharded run writes.
    Merge {
        /// The shards' --out directories.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Private tests kept outside the students' repository:
        /// DIR/<slug>.toml, merged into the spec as hidden tests.
        #[arg(long, value_name = "DIR", env = "CARGO_GRADE_INSTRUCTOR_SPECS")]
        instructor_specs: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// Package a task for a learning-management system's grading machines:
    /// a Gradescope autograder zip, or a PrairieLearn externally graded
    /// question.
    Package {
        #[command(subcommand)]
        lms: PackageCommand,
    },
}

#[derive(Subcommand)]
enum PackageCommand {
    /// A Gradescope autograder zip: setup.sh, run_autograder, the grader's
    /// sources, the task's spec and starter, and the instructor specs.
    Gradescope {
        /// Task id (`task1`) or slug.
        task: String,
        /// The zip to write [default: SLUG-gradescope.zip].
        #[arg(long, value_name = "FILE.zip")]
        out: Option<PathBuf>,
        /// A directory of instructor specs (kept out of the students'
        /// repository), shipped in the zip and merged at grading time.
        #[arg(long, value_name = "DIR")]
        instructor_specs: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
    /// The files of a PrairieLearn externally graded question: info.json,
    /// question.html, tests/ (the entrypoint and the course) and
    /// image/Dockerfile (the grading image).
    Prairielearn {
        /// Task id (`task1`) or slug.
        task: String,
        /// The question's directory [default: SLUG-prairielearn].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The grading image info.json names (build it with image/Dockerfile).
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// A directory of instructor specs, shipped in tests/ and merged at
        /// grading time.
        #[arg(long, value_name = "DIR")]
        instructor_specs: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        course: Option<PathBuf>,
    },
}

#[derive(Args)]
struct GradeArgs {
    /// Task id (`task1`) or slug (`task1-signals`).
    task: Option<String>,
    /// The submission's crate directory [default: the task's starter crate].
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Seed for every randomised fault; a report prints the seed it used.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only the test of this name, or the tests whose name contains it;
    /// repeat for several.
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// Exit with status 1 when the score is below this percentage.
    #[arg(long, value_name = "PERCENT")]
    fail_under: Option<f64>,
    /// The course repository [default: the nearest directory above with specs/].
    #[arg(long, value_name = "DIR")]
    course: Option<PathBuf>,
    /// Private tests kept outside the students' repository: DIR/<slug>.toml,
    /// merged into the spec as hidden tests.
    #[arg(long, value_name = "DIR", env = "CARGO_GRADE_INSTRUCTOR_SPECS")]
    instructor_specs: Option<PathBuf>,
    /// Show everything, hidden tests included (for instructors; students
    /// see a hidden test's name and score only).
    #[arg(long)]
    instructor: bool,
    /// Hints per failed test: 1 shows the mildest; 2 or more the further,
    /// more direct ones, where the spec has them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    hint: usize,
    /// Tests run at once, each in a world of its own (its user,
    /// namespaces and cgroup; one at a time where the grader is not root)
    /// [default: the number of cores].
    #[arg(long, value_name = "N", env = "CARGO_GRADE_JOBS", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Grade again whenever the crate's sources change (Ctrl-C to stop).
    #[arg(long, conflicts_with_all = ["format", "fail_under"])]
    watch: bool,
}

/// The formats of a single grade: for a person, the result model, and the
/// formats of CI and of learning-management systems.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The report for a terminal.
    Human,
    /// The result model as JSON.
    Json,
    /// JUnit XML: a testsuite, a testcase per test.
    Junit,
    /// Gradescope's results.json.
    Gradescope,
    /// PrairieLearn's external-grader results.json.
    Prairielearn,
    /// GitHub Classroom's reporter input: base64 on stdout, `result=` in
    /// $GITHUB_OUTPUT when set, the report on stderr.
    GithubClassroom,
}

impl Format {
    fn style(self) -> report::Style {
        match self {
            Format::Human => report::Style::Human,
            Format::Json => report::Style::Json,
            Format::Junit => report::Style::Junit,
            Format::Gradescope => report::Style::Gradescope,
            Format::Prairielearn => report::Style::PrairieLearn,
            Format::GithubClassroom => report::Style::GithubClassroom,
        }
    }
}

/// The formats of a verification.
#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Human,
    Json,
}

/// Keeps the grader's own memory small however many threads it runs
/// (capture threads, tests and submissions at once): glibc gives each
/// thread an arena of its own that keeps what was freed in it, and raises
/// its threshold for `mmap` as large blocks are freed, so that a flood's
/// 4 MiB line buffers would stay resident in every arena. One arena, and
/// large blocks always mapped and unmapped: a task1 grade of a program
/// that floods 1 GiB in every test peaks at 23 MiB instead of 35 (two tests
/// at once). Before any thread starts.
fn compact_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    compact_malloc();
    // Cargo calls an installed subcommand as `cargo-grade grade ARGS`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "grade") {
        args.remove(1);
    }
    // `cargo-grade peer KIND ARGS`: a grader-side peer started by a test
    // (see `peers`). Not part of the user-facing CLI.
    if args.get(1).is_some_and(|a| a == "peer") {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (kind, peer_args) = rest
            .split_first()
            .map_or(("", &[][..]), |(k, a)| (k.as_str(), a));
        return ExitCode::from(cargo_grade::peers::run(kind, peer_args).clamp(0, 255) as u8);
    }
    let cli = Cli::parse_from(args);
    anstream::ColorChoice::write_global(match cli.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    });
    if let Err(e) = cargo_grade::become_subreaper() {
        eprintln!("cargo grade: warning: cannot become a child subreaper ({e}); daemonised processes may escape cleanup");
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Message(message)) => {
            eprintln!("cargo grade: error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
        Err(Failure::Spec(errors)) => {
            let count: usize = errors.iter().map(|e| e.diagnostics.len()).sum();
            eprintln!(
                "cargo grade: error: invalid spec ({count} error{}); nothing was run",
                if count == 1 { "" } else { "s" }
            );
            print_spec_errors(&errors);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Why a command could not run: a message, or a spec's errors (rendered
/// with their lines).
enum Failure {
    Message(String),
    Spec(Vec<SpecError>),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Message(message)
    }
}

impl From<CourseError> for Failure {
    fn from(e: CourseError) -> Failure {
        match e {
            CourseError::Spec(errors) => Failure::Spec(errors),
            other => Failure::Message(other.to_string()),
        }
    }
}

/// Each file's errors with the offending lines, coloured on a terminal.
fn print_spec_errors(errors: &[SpecError]) {
    use std::io::Write;
    let mut err = anstream::stderr();
    for e in errors {
        let _ = writeln!(err, "{}\n", e.render(true));
    }
}

/// The commands that only print (they start no program): a reader that
/// stops early (`cargo grade list | head -1`) ends them as it ends `ls`, by
/// SIGPIPE, which Rust's runtime ignores and so turns into a panic in
/// `println!`. Every other command keeps it ignored: the grader writes to
/// the programs it grades, and one that closes its end is graded, not fatal.
fn only_prints(command: &Option<Command>) -> bool {
    matches!(
        command,
        Some(
            Command::Completions { .. }
                | Command::List { .. }
                | Command::Check { .. }
                | Command::Schema { .. }
                | Command::New { .. }
        )
    )
}

fn run(cli: Cli) -> Result<u8, Failure> {
    if only_prints(&cli.command) {
        // SAFETY: restores the default disposition; no other thread runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cargo-grade",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Some(Command::List { course }) => list(course.as_deref()),
        Some(Command::Check { specs, course }) => check_specs(&specs, course.as_deref()),
        Some(Command::Schema { mutants }) => {
            let schema = if mutants {
                schema::mutants()
            } else {
                schema::spec()
            };
            print!("{}", schema::to_text(&schema));
            Ok(EXIT_OK)
        }
        #[cfg(not(feature = "instructor-tools"))]
        Some(
            Command::Verify { .. }
            | Command::Batch { .. }
            | Command::Merge { .. }
            | Command::Package { .. },
        ) => with_instructor_tools(),
        #[cfg(feature = "instructor-tools")]
        Some(Command::Verify {
            tasks,
            seed,
            repeat,
            format,
            jobs,
            instructor_specs,
            course,
        }) => verify(
            &tasks,
            &verify::Options {
                seed,
                repeat,
                jobs: jobs.map_or_else(pool::default_jobs, |j| j as usize),
            },
            format,
            instructor_specs.as_deref(),
            course.as_deref(),
        ),
        Some(Command::New { id, title, course }) => {
            new_task(&id, title.as_deref(), course.as_deref())
        }
        #[cfg(feature = "instructor-tools")]
        Some(Command::Batch {
            task,
            submissions,
            out,
            jobs,
            resume,
            seed,
            only,
            shard,
            shard_total,
            instructor_specs,
            course,
        }) => {
            let shard = match shard.as_deref() {
                None => cargo_grade::shard::Shard::ALL,
                Some("auto") => {
                    cargo_grade::shard::Shard::auto(&|k| std::env::var(k).ok(), shard_total)
                        .map_err(|e| e.to_string())?
                }
                Some(k_of_n) => {
                    cargo_grade::shard::Shard::parse(k_of_n).map_err(|e| e.to_string())?
                }
            };
            let course = Course::locate(course.as_deref())?;
            let spec = course.task_with_overlay(&task, instructor_specs.as_deref())?;
            // No build and no test process sees another submission or the
            // results.
            std::fs::create_dir_all(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            let ctx = TaskContext::prepare(&course, spec)
                .map_err(|e| e.to_string())?
                .hiding([submissions.clone(), out.clone()]);
            let cancel = Cancel::new();
            cancel_on_signals(&cancel);
            let progress = batch::Progress::new(std::io::stderr().is_terminal());
            let opts = batch::BatchOptions {
                out: out.clone(),
                jobs: jobs.unwrap_or_else(pool::default_jobs).max(1),
                resume,
                seed,
                shard,
                only,
            };
            let done = match batch::run(&ctx, &submissions, &opts, &progress, &cancel) {
                Ok(done) => done,
                Err(e @ batch::BatchError::Cancelled { .. }) => {
                    eprintln!("cargo grade: {e}");
                    return Ok(EXIT_CANCELLED);
                }
                Err(e) => return Err(Failure::Message(e.to_string())),
            };
            let count = |f: &dyn Fn(&cargo_grade::result::Outcome) -> bool| {
                done.reports.iter().filter(|r| f(&r.outcome)).count()
            };
            use cargo_grade::result::Outcome as O;
            eprintln!(
                "graded {} submissions ({} kept from an earlier run): {} graded, {} build failed, {} rejected, {} could not be graded; results in {}",
                done.reports.len(),
                done.reused,
                count(&|o| *o == O::Graded),
                count(&|o| *o == O::BuildFailed),
                count(&|o| matches!(o, O::Rejected(_))),
                count(&|o| matches!(o, O::Ungradable(_))),
                out.display()
            );
            Ok(EXIT_OK)
        }
        #[cfg(feature = "instructor-tools")]
        Some(Command::Merge {
            shards,
            out,
            instructor_specs,
            course,
        }) => {
            let course = Course::locate(course.as_deref())?;
            let first = cargo_grade::shard::ShardRecord::read(&shards[0])?;
            let spec = course.task_with_overlay(&first.task, instructor_specs.as_deref())?;
            let merged = batch::merge(&spec, &shards, &out).map_err(|e| e.to_string())?;
            eprintln!(
                "merged {} shards: {} submissions; results in {}",
                shards.len(),
                merged.len(),
                out.display()
            );
            Ok(EXIT_OK)
        }
        #[cfg(feature = "instructor-tools")]
        Some(Command::Package { lms }) => package(lms),
        None => grade_one(cli.grade),
    }
}

/// The course, the task's spec (validated with the overlay now, not on the
/// LMS's machine later) and where the package goes: `out`, or
/// `<slug>-<suffix>`.
#[cfg(feature = "instructor-tools")]
fn package_target(
    task: &str,
    out: Option<PathBuf>,
    suffix: &str,
    instructor_specs: Option<&Path>,
    course: Option<&Path>,
) -> Result<(Course, cargo_grade::spec::Spec, PathBuf), Failure> {
    let course = Course::locate(course)?;
    let spec = course.task_with_overlay(task, instructor_specs)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}-{suffix}", spec.task.slug)));
    Ok((course, spec, out))
}

#[cfg(feature = "instructor-tools")]
fn package(lms: PackageCommand) -> Result<u8, Failure> {
    match lms {
        PackageCommand::Gradescope {
            task,
            out,
            instructor_specs,
            course,
        } => {
            let (course, spec, out) = package_target(
                &task,
                out,
                "gradescope.zip",
                instructor_specs.as_deref(),
                course.as_deref(),
            )?;
            let n =
                cargo_grade::package::gradescope(&course, &spec, &out, instructor_specs.as_deref())
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "wrote {} ({n} files): upload it as the autograder of a Gradescope programming assignment",
                out.display()
            );
            Ok(EXIT_OK)
        }
        PackageCommand::Prairielearn {
            task,
            out,
            image,
            instructor_specs,
            course,
        } => {
            let (course, spec, out) = package_target(
                &task,
                out,
                "prairielearn",
                instructor_specs.as_deref(),
                course.as_deref(),
            )?;
            let image = image.unwrap_or_else(|| format!("cargo-grade-{}:latest", spec.task.slug));
            let opts = cargo_grade::package::PrairieLearnOptions {
                image: image.clone(),
                instructor_specs,
            };
            let n = cargo_grade::package::prairielearn(&course, &spec, &out, &opts)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "wrote {} ({n} files): copy it into your course's questions/; build the grading image with\n  docker build -t {image} -f {}/image/Dockerfile {}/tests/course",
                out.display(),
                out.display(),
                out.display()
            );
            Ok(EXIT_OK)
        }
    }
}

/// `cargo grade verify [TASK...]`: every spec (and mutants file) checked
/// first, all their errors at once; then each task verified.
#[cfg(feature = "instructor-tools")]
fn verify(
    names: &[String],
    opts: &verify::Options,
    format: CheckFormat,
    instructor_specs: Option<&Path>,
    course: Option<&Path>,
) -> Result<u8, Failure> {
    let course = Course::locate(course)?;
    // Each task once, in the course's order, however it was named.
    let mut paths = Vec::new();
    if names.is_empty() {
        paths = course.spec_paths()?;
    } else {
        for name in names {
            let path = course.task_path(name)?;
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        return Err(Failure::Message(format!(
            "the course has no task to verify: {} has no spec (`cargo grade new ID` scaffolds one)",
            course.root.join("specs").display()
        )));
    }
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for path in &paths {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // The mutants file is verify's to need: checked with the spec.
        match course.task_with_mutants(&stem) {
            Ok(_) => specs.push(course.task_with_overlay(&stem, instructor_specs)?),
            Err(CourseError::Spec(e)) => errors.extend(e),
            Err(other) => return Err(other.into()),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::Spec(errors));
    }
    let cancel = Cancel::new();
    cancel_on_signals(&cancel);
    let progress = batch::Progress::new(std::io::stderr().is_terminal());
    let verification = match verify::run(&course, &specs, opts, &progress, &cancel) {
        Ok(v) => v,
        Err(verify::VerifyError::Cancelled) => {
            eprintln!("cargo grade: verification was cancelled");
            return Ok(EXIT_CANCELLED);
        }
        Err(e) => return Err(Failure::Message(e.to_string())),
    };
    match format {
        CheckFormat::Human => print!("{}", verification.render()),
        CheckFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&verification).expect("serialisable")
        ),
    }
    Ok(if verification.has_errors() {
        EXIT_ERROR
    } else if verification.passed {
        EXIT_OK
    } else {
        EXIT_BELOW
    })
}

/// The same command line run again by a build of the grader with the
/// feature `instructor-tools`: the course's `cargo grade` alias builds it
/// without, so that a student's first grade on a fresh clone waits for less
/// (see grader/Cargo.toml), and this build has none of the instructors' and
/// TAs' commands. The build with them is compiled on first use, in the same
/// target directory and profile, and this process becomes it (its exit
/// status is the command's).
#[cfg(not(feature = "instructor-tools"))]
fn with_instructor_tools() -> Result<u8, Failure> {
    use std::os::unix::process::CommandExt as _;
    // Set for the build it runs: should that build lack the feature too, it
    // says so instead of running cargo again, and again.
    const AGAIN: &str = "CARGO_GRADE_INSTRUCTOR_TOOLS";
    let without = "this build of cargo grade has no `batch`, `merge`, `package` or `verify`: \
                   it was built without the feature `instructor-tools`";
    if std::env::var_os(AGAIN).is_some() {
        return Err(Failure::Message(format!(
            "{without}, and so was the build that cargo ran for them"
        )));
    }
    // `cargo run` (the alias) says which cargo it is; without it, this
    // binary was copied out of its target directory.
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Err(Failure::Message(format!(
            "{without}. Run it through the course's alias (`cargo grade ...`, which builds what it \
             needs), or install the grader with `cargo install --path grader`"
        )));
    };
    // The profile this binary was built with: target/<dir>/cargo-grade.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = match exe
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str())
    {
        Some("debug") => "dev".to_owned(),
        Some(dir) if !dir.is_empty() => dir.to_owned(),
        _ => "grade".to_owned(),
    };
    eprintln!(
        "cargo grade: running the build that has the instructors' and TAs' commands \
         (cargo compiles it on first use)"
    );
    let error = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--profile", &profile, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .args([
            "--bin",
            "cargo-grade",
            "--features",
            "instructor-tools",
            "--",
        ])
        .args(std::env::args_os().skip(1))
        .env(AGAIN, "1")
        .exec();
    Err(Failure::Message(format!("cannot run cargo: {error}")))
}

/// `cargo grade new ID`: the task's files written, then checked as
/// `cargo grade check` would.
fn new_task(id: &str, title: Option<&str>, course: Option<&Path>) -> Result<u8, Failure> {
    let task = scaffold::NewTask::parse(id, title).map_err(|e| e.to_string())?;
    let course = Course::locate(course)?;
    let written = scaffold::write(&course, &task).map_err(|e| e.to_string())?;
    for path in &written {
        println!("created {}", path.display());
    }
    // What was written must pass `check`: a failure here is the grader's.
    let spec = course
        .root
        .join("specs")
        .join(format!("{}.toml", task.slug));
    let outcome = course.check(&spec, check::Mutants::Required);
    if outcome.spec.is_none() {
        print_spec_errors(&outcome.errors);
        return Err(Failure::Message(format!(
            "the scaffolded {} does not pass `cargo grade check` (a bug of cargo grade new)",
            task.slug
        )));
    }
    println!(
        "\nnew task {} ({}): {:?}. Next:\n  \
         cargo grade check {id}                          the spec, the starter and the mutants, running nothing\n  \
         cargo grade verify {id}                         the reference full marks, the starter at most {:.0}%, the mutant caught\n  \
         cargo grade {id} --path solutions/{slug}    grade the reference\n\
         Then edit tasks/{slug}.md (the contract first), the spec, the starter, the solution and the mutants: \
         specs/GUIDE.md walks through it.",
        task.id,
        task.slug,
        task.title,
        selfcheck::STARTER_MAX_PERCENT,
        id = task.id,
        slug = task.slug,
    );
    Ok(EXIT_OK)
}

/// `cargo grade check [SPEC...]`.
fn check_specs(specs: &[String], course: Option<&Path>) -> Result<u8, Failure> {
    let located = Course::locate(course);
    // Each spec file with its course's root (for the starter and mutants).
    let mut targets: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if specs.is_empty() {
        let course = located?;
        for path in course.spec_paths()? {
            targets.push((path, Some(course.root.clone())));
        }
    } else {
        for s in specs {
            let path = Path::new(s);
            if path.is_file() {
                let root = path.canonicalize().ok().and_then(|p| check::root_of(&p));
                targets.push((path.to_owned(), root));
            } else {
                let course = located.as_ref().map_err(|e| e.to_string())?;
                targets.push((course.task_path(s)?, Some(course.root.clone())));
            }
        }
    }
    let (mut errors, mut bad) = (0, 0);
    for (path, root) in &targets {
        let outcome = check::spec_file(path, root.as_deref(), check::Mutants::IfSolution);
        let shown = check::shown(path);
        match &outcome.spec {
            Some(spec) => println!(
                "ok  {} ({} tests, {} points){}",
                shown.display(),
                spec.tests.len(),
                spec.max_score(),
                if root.is_none() {
                    "; starter and mutants not checked: the file is not in a course's specs/"
                } else {
                    ""
                }
            ),
            None => {
                print_spec_errors(&outcome.errors);
                errors += outcome.error_count();
                bad += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!(
            "cargo grade check: {errors} error{} in {bad} of {} spec{}",
            if errors == 1 { "" } else { "s" },
            targets.len(),
            if targets.len() == 1 { "" } else { "s" }
        );
        Ok(EXIT_ERROR)
    } else {
        println!(
            "{} spec{} valid",
            targets.len(),
            if targets.len() == 1 { "" } else { "s" }
        );
        Ok(EXIT_OK)
    }
}

fn list(course: Option<&Path>) -> Result<u8, Failure> {
    let course = Course::locate(course)?;
    for spec in course.specs()? {
        println!(
            "{:<7} {:<16} {:<45} {} tests, {} points",
            spec.task.id,
            spec.task.slug,
            spec.task.title,
            spec.tests.len(),
            spec.max_score()
        );
    }
    Ok(EXIT_OK)
}

fn grade_one(args: GradeArgs) -> Result<u8, Failure> {
    let Some(task) = args.task else {
        return Err(Failure::Message(
            "which task? e.g. `cargo grade task1` (see `cargo grade list`)".into(),
        ));
    };
    if let Some(p) = args.fail_under {
        if !(0.0..=100.0).contains(&p) {
            return Err(Failure::Message(format!(
                "--fail-under {p}: give a percentage between 0 and 100"
            )));
        }
    }
    let course = Course::locate(args.course.as_deref())?;
    let spec = course.task_with_overlay(&task, args.instructor_specs.as_deref())?;
    let (submission, shown_path) = match &args.path {
        Some(p) => (p.clone(), p.display().to_string()),
        None => {
            let dir = course.starter_dir(&spec);
            let shown = dir
                .strip_prefix(&course.root)
                .unwrap_or(&dir)
                .display()
                .to_string();
            (dir, shown)
        }
    };
    let opts = GradeOptions {
        seed: args.seed,
        only: args.only,
        shown_path,
        test_jobs: args.jobs.map_or_else(pool::default_jobs, |j| j as usize),
    };
    let ctx = TaskContext::prepare(&course, spec).map_err(|e| e.to_string())?;
    let cancel = Cancel::new();
    cancel_on_signals(&cancel);
    if args.watch {
        let clear = std::io::stdout().is_terminal();
        let mut out = anstream::stdout();
        cargo_grade::watch::run(&ctx, &submission, &opts, clear, &mut out, &cancel)
            .map_err(|e| e.to_string())?;
        return Ok(EXIT_OK);
    }
    // The reporter is an observer: it renders the report, as a student may
    // see it, when the engine finishes it.
    let audience = if args.instructor {
        Audience::Instructor
    } else {
        Audience::Student
    };
    let reporter = report::Reporter::new(args.format.style(), audience)
        .with_spec(ctx.spec())
        .with_hints(args.hint);
    let report = ctx
        .grade(
            Submission {
                id: &opts.shown_path,
                dir: &submission,
                digest: None,
            },
            &opts,
            &reporter,
            &cancel,
        )
        .map_err(|e| e.to_string())?;
    reporter
        .result()
        .map_err(|e| format!("writing the report: {e}"))?;
    if let cargo_grade::result::Outcome::Ungradable(_) = report.outcome {
        return Ok(EXIT_ERROR);
    }
    match args.fail_under {
        Some(p) if report.percent() < p => Ok(EXIT_BELOW),
        _ => Ok(EXIT_OK),
    }
}
