//! task4 (Unix domain socket echo server) graded end to end: the real
//! reference solution, starter and mutants, with the grader's own clients;
//! and one ordinary third-party client (socat) against the reference, as a
//! check that the contract is nothing exotic.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use cargo_grade::builder::{self, BuildResult};
use cargo_grade::course::Course;
use common::*;
use wait_timeout::ChildExt;

#[test]
fn reference_gets_full_marks_at_seeds_1_to_5() {
    assert_reference_full_marks("task4", "task4-echo-server", &[1, 2, 3, 4, 5]);
}

#[test]
fn alternative_designs_get_full_marks() {
    // A process per connection (reaped on SIGCHLD, its children killed at a
    // stop) and one thread polling every connection: the handout allows
    // both, and no test may tie the spec to the reference's threads.
    assert_alternatives_full_marks("task4", "task4-echo-server", 2, &[1, 2]);
}

#[test]
fn untouched_starter_gets_at_most_ten_percent() {
    assert_starter_scores_little("task4", "task4-echo-server");
}

#[test]
fn every_mutant_loses_points_where_its_spec_says() {
    // Each mutant graded on the tests it lists only, at one seed: the ones
    // that hang cost a step's deadline in every test they fail. `cargo grade
    // selfcheck task4 --seed N` grades them all on the whole spec at any
    // seed (done at 1 to 10 for issue 10).
    assert_every_mutant_caught_in_its_tests("task4", "task4-echo-server", 13, &[1]);
}

/// socat from Debian's packages: installed here when missing and the tests
/// run as root (as in CI containers), else the test says how to get it.
fn ensure_socat() {
    let present = || {
        Command::new("socat")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "socat"]) {
            apt(&["update"]);
            apt(&["install", "-y", "socat"]);
        }
    }
    assert!(
        present(),
        "this test needs socat, a real third-party Unix socket client: `sudo apt-get install socat`"
    );
}

#[test]
fn socat_talks_to_the_reference_server() {
    ensure_socat();
    let course = Course {
        root: course_root(),
    };
    let spec = course.task("task4").unwrap();
    let out = tempfile::tempdir().unwrap();
    let solution = course.solution_dir(&spec);
    let BuildResult::Built { binary, .. } =
        builder::build(&course, &spec, &solution, out.path()).unwrap()
    else {
        panic!("the reference solution must build");
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut server = Command::new(&binary)
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");

    let mut client = Command::new("socat")
        .args(["-t", "5", "-", &format!("UNIX-CONNECT:{}", path.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = "hello from socat\nand a second line\n";
    client
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    // socat half-closes after stdin's EOF and exits when the server closes.
    let status = client.wait_timeout(Duration::from_secs(10)).unwrap();
    let echoed = std::io::read_to_string(client.stdout.take().unwrap()).unwrap();
    assert!(status.is_some_and(|s| s.success()), "socat did not finish");
    assert_eq!(echoed, text);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let ended = server.wait_timeout(Duration::from_secs(10)).unwrap();
    let _ = server.kill();
    assert!(
        ended.is_some_and(|s| s.success()),
        "server did not stop on SIGTERM"
    );
    assert!(!path.exists(), "the server removes its socket file");
}
