//! The `cargo-grade` command line. Cargo runs it as `cargo-grade grade ARGS`
//! when installed, and the course's `cargo grade` alias does the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cargo_grade::check;
use cargo_grade::course::{Course, CourseError};
use cargo_grade::grade::{self, GradeOptions};
use cargo_grade::report;
use cargo_grade::selfcheck;
use cargo_grade::spec::{schema, SpecError};

/// Exit statuses: grading ran (whatever the score).
const EXIT_OK: u8 = 0;
/// `--fail-under` not met, or a self-check found a problem.
const EXIT_BELOW: u8 = 1;
/// Usage, spec or environment error.
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "cargo grade",
    bin_name = "cargo grade",
    version,
    about = "Grade a submission for a Linux IPC task by running it as real processes against the task's spec.",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  cargo grade task1                        grade your work in starter/task1-signals\n  cargo grade task1 --only sigterm         run the tests whose name contains `sigterm`\n  cargo grade task1 --format json          machine-readable report\n  cargo grade list                         the tasks of this course\n  cargo grade check                        validate every spec of the course, running nothing\n  cargo grade selfcheck task1              check a spec against its solution, starter and mutants"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    grade: GradeArgs,
}

#[derive(Subcommand)]
enum Command {
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
    /// Check a task's spec: the reference solution gets full marks, the
    /// starter almost nothing, and every mutant loses points where expected.
    Selfcheck {
        /// Task id (`task1`) or slug (`task1-signals`).
        task: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
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
    /// Run only the test of this name, or the tests whose name contains it.
    #[arg(long, value_name = "PATTERN")]
    only: Option<String>,
    /// Exit with status 1 when the score is below this percentage.
    #[arg(long, value_name = "PERCENT")]
    fail_under: Option<f64>,
    /// The course repository [default: the nearest directory above with specs/].
    #[arg(long, value_name = "DIR")]
    course: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
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

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
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
        Some(Command::Selfcheck {
            task,
            seed,
            format,
            course,
        }) => {
            let course = Course::locate(course.as_deref())?;
            let spec = course.task_with_mutants(&task)?;
            let check = selfcheck::run(&course, &spec, seed).map_err(|e| e.to_string())?;
            match format {
                Format::Human => print!("{}", check.render()),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&check).expect("serialisable")
                ),
            }
            Ok(if check.passed() { EXIT_OK } else { EXIT_BELOW })
        }
        None => grade_one(cli.grade),
    }
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
    let spec = course.task(&task)?;
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
    };
    let report = grade::grade(&course, &spec, &submission, &opts).map_err(|e| e.to_string())?;
    match args.format {
        Format::Human => {
            let mut out = anstream::stdout();
            report::human::render(&report, &mut out)
                .map_err(|e| format!("writing the report: {e}"))?;
        }
        Format::Json => println!("{}", report::json::render(&report)),
    }
    if let cargo_grade::result::Outcome::Ungradable(_) = report.outcome {
        return Ok(EXIT_ERROR);
    }
    match args.fail_under {
        Some(p) if report.percent() < p => Ok(EXIT_BELOW),
        _ => Ok(EXIT_OK),
    }
}
