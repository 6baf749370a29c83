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

fn build(prepared: &Prepared, crate_dir: &Path) -> Duration {
    let out = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    match prepared.build(crate_dir, out.path()) {
        Ok(BuildResult::Built { .. }) => started.elapsed(),
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

    // The bare compiler on a plain copy of the crate.
    let bare: Vec<Duration> = (0..runs)
        .map(|i| {
            let dir = copy_of(&reference, 1000 + i);
            let output = dir.path().join("bin");
            let started = Instant::now();
            let status = prepared
                .compiler_command(dir.path(), &output)
                .stderr(Stdio::null())
                .status()
                .expect("rustc");
            assert!(status.success());
            started.elapsed()
        })
        .collect();
    let one: Vec<Duration> = (0..runs)
        .map(|i| build(&prepared, copy_of(&reference, 2000 + i).path()))
        .collect();
    let (bare, one) = (median(bare), median(one));
    println!(
        "{task} reference: rustc alone {}, one build {} ({:.2} x), median of {runs}",
        ms(bare),
        ms(one),
        one.as_secs_f64() / bare.as_secs_f64()
    );

    let copies: Vec<tempfile::TempDir> = (0..at_once)
        .map(|i| copy_of(&reference, 3000 + i))
        .collect();
    let started = Instant::now();
    for copy in &copies {
        build(&prepared, copy.path());
    }
    let sequential = started.elapsed();
    let copies: Vec<tempfile::TempDir> = (0..at_once)
        .map(|i| copy_of(&reference, 4000 + i))
        .collect();
    let barrier = Arc::new(Barrier::new(at_once));
    let started = Instant::now();
    std::thread::scope(|s| {
        for copy in &copies {
            let (prepared, barrier) = (prepared.clone(), barrier.clone());
            s.spawn(move || {
                barrier.wait();
                build(&prepared, copy.path());
            });
        }
    });
    let parallel = started.elapsed();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{at_once} builds on {cores} cores: {} one after another, {} all at once ({:.2} x)",
        ms(sequential),
        ms(parallel),
        parallel.as_secs_f64() / sequential.as_secs_f64()
    );
}
