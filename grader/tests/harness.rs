//! The process harness against real processes: waits on conditions, output
//! capture limits, and teardown of whole process groups.

use std::time::{Duration, Instant};

use cargo_grade::harness::procfs;
use cargo_grade::harness::{Deadline, ExitState, LineWait, Program, SpawnOptions};
use nix::sys::signal::Signal;

fn sh(script: &str, dir: &tempfile::TempDir) -> Program {
    let opts = SpawnOptions::new(
        "/bin/sh".as_ref(),
        &["-c".into(), script.into()],
        dir.path(),
        1 << 16,
    );
    Program::spawn("sh", &opts).expect("spawn /bin/sh")
}

#[test]
fn waits_for_lines_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = sh("read x; echo \"got $x\"; echo err >&2; exit 3", &dir);
    p.send_line("hi").unwrap();
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(5000)),
        Ok("got hi".into())
    );
    assert_eq!(
        p.stderr.next_line(Deadline::after_ms(5000)),
        Ok("err".into())
    );
    assert_eq!(
        p.wait_exit(Deadline::after_ms(5000)),
        Some(ExitState::Code(3))
    );
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(5000)),
        Err(LineWait::Eof)
    );
}

#[test]
fn runs_in_its_scratch_directory_with_a_clean_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("CARGO_GRADE_SECRET_FOR_TEST", "leak");
    let p = sh("pwd; echo \"[$CARGO_GRADE_SECRET_FOR_TEST]\"", &dir);
    let pwd = p.stdout.next_line(Deadline::after_ms(5000)).unwrap();
    assert_eq!(
        std::path::Path::new(&pwd).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(5000)),
        Ok("[]".into())
    );
}

#[test]
fn a_line_wait_ends_at_its_deadline_while_the_program_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = sh("exec sleep 30", &dir);
    let start = Instant::now();
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(200)),
        Err(LineWait::Deadline)
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(p.try_exit(), None);
    assert_eq!(
        p.terminate(Duration::from_millis(500)),
        ExitState::Signal(libc::SIGTERM)
    );
}

#[test]
fn terminate_kills_the_whole_group_even_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // The shell and a background child both ignore SIGTERM.
    let mut p = sh("trap '' TERM; sleep 30 & echo $!; wait", &dir);
    let child: i32 = p
        .stdout
        .next_line(Deadline::after_ms(5000))
        .unwrap()
        .parse()
        .unwrap();
    let child = nix::unistd::Pid::from_raw(child);
    assert!(procfs::state(child).is_some(), "the background child runs");
    let start = Instant::now();
    let state = p.terminate(Duration::from_millis(300));
    assert_eq!(state, ExitState::Signal(libc::SIGKILL));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        cargo_grade::harness::process::group_is_empty(p.pid()),
        "nothing of the group is left"
    );
}

#[test]
fn output_flood_is_capped_and_does_not_block_the_program() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of output against a 64 KiB cap: the program must still finish.
    let mut p = sh(
        "head -c 8388608 /dev/zero | tr '\\0' 'x'; echo; echo done",
        &dir,
    );
    assert_eq!(
        p.wait_exit(Deadline::after_ms(20_000)),
        Some(ExitState::Code(0))
    );
    assert!(p.stdout.wait_eof(Deadline::after_ms(5000)));
    let (truncated, total) = p.stdout.truncation();
    assert!(truncated);
    assert_eq!(total, 8 * 1024 * 1024 + "\ndone\n".len() as u64);
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(100)),
        Err(LineWait::Truncated)
    );
}

#[test]
fn signals_reach_the_program_and_handlers_show_in_proc() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = sh(
        "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.01; done",
        &dir,
    );
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(5000)),
        Ok("ready".into())
    );
    let mask = procfs::caught_signals(p.pid()).unwrap();
    assert!(procfs::mask_has(mask, Signal::SIGUSR1));
    assert!(!procfs::mask_has(mask, Signal::SIGUSR2));
    p.signal(Signal::SIGUSR1).unwrap();
    assert_eq!(
        p.stdout.next_line(Deadline::after_ms(5000)),
        Ok("usr1".into())
    );
    p.terminate(Duration::from_millis(300));
    assert!(
        p.signal(Signal::SIGUSR1).is_err(),
        "no signal to a finished program"
    );
}
