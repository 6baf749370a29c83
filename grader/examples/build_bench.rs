//! What a build costs: `cargo run --release --example build_bench -- [TASK] [RUNS] [AT_ONCE]`
//! (defaults task3, 5, 8) prints, for the task's reference solution, the
//! time of the bare `rustc` command of the crate, of one whole build
//! (staging, jail, compile, copy), and the wall time of AT_ONCE builds one
//! after another and all at once. Prints figures, asserts nothing.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cargo_grade::builder::{BuildResult, Prepared};
use cargo_grade::course::Course;

/// CPU time (user and system) of the waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills a plain struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), children_cpu());
    f();
    (wall.elapsed(), children_cpu() - cpu)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A copy of the reference with a line of its own, so that no two builds
/// compile the same text.
fn copy_of(reference: &Path, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    cargo_grade::selfcheck::copy_crate(reference, dir.path()).expect("copy");
    let main = dir.path().join("src").join("main.rs");
    let mut text = std::fs::read_to_string(&main).expect("main.rs");
    text.push_str(&format!(
        "\n#[allow(dead_code)]\nconst COPY: usize = {n};\n"
    ));
    std::fs::write(&main, text).expect("main.rs");
    dir
}

fn build(prepared: &Prepared, crate_dir: &Path) {
    let out = tempfile::tempdir().expect("tempdir");
    match prepared.build(crate_dir, out.path()) {
        Ok(BuildResult::Built { .. }) => {}
        other => panic!("the reference must build: {other:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map_or("task3", String::as_str);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let at_once: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let course = Course::locate(None).expect("run from the course");
    let spec = course.task(task).expect("task");
    let reference = course.solution_dir(&spec);

    let started = Instant::now();
    let prepared = Arc::new(Prepared::new(&course, &spec).expect("prepare"));
    println!(
        "{task}: prepared in {} (dependencies built, or read from disk)",
        ms(started.elapsed())
    );

    // The bare compiler on a plain copy of the crate, and whole builds,
    // taking turns (so that both see the same load).
    let (mut bare, mut one) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dir = copy_of(&reference, 1000 + i);
        let output = dir.path().join("bin");
        bare.push(timed(|| {
            let status = prepared
                .compiler_command(dir.path(), &output)
                .stderr(Stdio::null())
                .status()
                .expect("rustc");
            assert!(status.success());
        }));
        let dir = copy_of(&reference, 2000 + i);
        one.push(timed(|| build(&prepared, dir.path())));
    }
    let wall = |v: &[(Duration, Duration)]| median(v.iter().map(|t| t.0).collect());
    let cpu = |v: &[(Duration, Duration)]| median(v.iter().map(|t| t.1).collect());
    println!(
        "{task} reference, median of {runs}: rustc alone {} wall, {} CPU; one build {} wall ({:.2} x), {} CPU ({:.2} x)",
        ms(wall(&bare)),
        ms(cpu(&bare)),
        ms(wall(&one)),
        wall(&one).as_secs_f64() / wall(&bare).as_secs_f64(),
        ms(cpu(&one)),
        cpu(&one).as_secs_f64() / cpu(&bare).as_secs_f64(),
    );

    let copies: Vec<tempfile::TempDir> = (0..at_once)
        .map(|i| copy_of(&reference, 3000 + i))
        .collect();
    let sequential = timed(|| {
        for copy in &copies {
            build(&prepared, copy.path());
        }
    });
    let copies: Vec<tempfile::TempDir> = (0..at_once)
        .map(|i| copy_of(&reference, 4000 + i))
        .collect();
    let barrier = Arc::new(Barrier::new(at_once));
    let parallel = timed(|| {
        std::thread::scope(|s| {
            for copy in &copies {
                let (prepared, barrier) = (prepared.clone(), barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    build(&prepared, copy.path());
                });
            }
        })
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{at_once} builds on {cores} cores: one after another {} wall ({} CPU), all at once {} wall ({} CPU), {:.2} x",
        ms(sequential.0),
        ms(sequential.1),
        ms(parallel.0),
        ms(parallel.1),
        parallel.0.as_secs_f64() / sequential.0.as_secs_f64()
    );
}
