//! The spec step language against real processes: a fixture task whose
//! "submission" runs its argument as a shell script. Every test of the
//! fixture spec is named for the status it must get (pass_, fail_,
//! timeout_), so the spec reads as the behaviour it checks.

mod common;

use std::path::PathBuf;

use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/course")
}

fn grade_fixture(seed: &str) -> Value {
    grade_fixture_with(seed, &[])
}

fn grade_fixture_with(seed: &str, env: &[(&str, &str)]) -> Value {
    let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").unwrap();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args([
        "grade", "task9", "--format", "json", "--seed", seed, "--course",
    ])
    .arg(fixture());
    // Keep the fixture's builds apart from the course's.
    cmd.env(
        "CARGO_GRADE_TARGET_DIR",
        common::course_root().join("target/cargo-grade-fixture"),
    );
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_step_passes_fails_or_times_out_as_its_name_says() {
    let report = grade_fixture("1");
    assert_eq!(report["outcome"]["kind"], "graded", "{report:#}");
    for t in report["tests"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let want = match name.split('_').next().unwrap() {
            "pass" => "passed",
            "fail" => "failed",
            "timeout" => "timeout",
            other => panic!("fixture test {name} has no status prefix ({other})"),
        };
        assert_eq!(t["status"], want, "{name}: {}", common::explanation(t));
        if want != "passed" {
            let output = common::explanation(t);
            assert!(
                output.contains("Expected: ") && output.contains("Observed: "),
                "{name}: {output}"
            );
        }
    }
}

#[test]
fn failures_say_what_was_observed() {
    let report = grade_fixture("1");
    let observed = |name: &str| -> String {
        let t = common::test(&report, name);
        t["failure"]["observed"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(observed("fail_wrong_line").contains("\"world\""));
    assert!(observed("fail_wrong_exit_status").contains("exited with status 4"));
    assert!(observed("fail_killed_instead_of_exit").contains("SIGABRT"));
    assert!(observed("fail_number_out_of_bounds").contains("9 is more than 3"));
    assert!(observed("fail_missing_handler").contains("no handler for SIGUSR2"));
    assert!(observed("fail_numbered_gap").contains("\"12\""));
    assert!(observed("timeout_line_never_comes").contains("still running"));
    assert!(observed("fail_eof_but_another_line").contains("another line: \"extra\""));
    assert!(
        observed("fail_eof_but_a_child_holds_stdout")
            .contains("its stdout stayed open after the program exited with status 0"),
        "{}",
        observed("fail_eof_but_a_child_holds_stdout")
    );
    assert!(observed("timeout_eof_while_running").contains("still open after"));
    // A wait that could end by itself is never called stuck for good; one
    // that cannot says where every process waits.
    assert!(!observed("timeout_line_never_comes").contains("stuck for good"));
    assert!(!observed("timeout_eof_while_running").contains("stuck for good"));
    for name in [
        "timeout_stuck_reading_stdin",
        "timeout_stuck_parent_waits_for_child_reading_stdin",
        "timeout_stuck_instead_of_exiting",
    ] {
        let why = observed(name);
        assert!(why.starts_with("stuck for good after "), "{name}: {why}");
        assert!(
            why.contains("in read of its stdin, which the grader is not writing to"),
            "{name}: {why}"
        );
    }
    // dash's `wait` sleeps in sigsuspend until SIGCHLD.
    assert!(
        observed("timeout_stuck_parent_waits_for_child_reading_stdin").contains("main (pid "),
        "{}",
        observed("timeout_stuck_parent_waits_for_child_reading_stdin")
    );
    assert!(observed("timeout_busy_instead_of_read").contains("user space"));
    let storm = common::test(&report, "pass_background_storm_is_counted");
    assert_eq!(
        storm["faults"][0],
        "sent SIGCONT ×50, spread over ~20 ms with seeded gaps"
    );
}

#[test]
fn leftovers_are_listed_then_removed_and_never_reach_the_host() {
    let report = grade_fixture("1");
    let t = common::test(&report, "fail_leftovers_are_listed");
    let observed = t["failure"]["observed"].as_str().unwrap();
    assert!(
        observed.contains("FIFO") && observed.contains("chat.fifo"),
        "{observed}"
    );
    assert!(observed.contains("POSIX shared memory \"/cg"), "{observed}");
    assert!(
        observed.contains("(sleep)"),
        "the escaped sleep: {observed}"
    );
    let leftovers = t["leftovers"].as_array().unwrap();
    assert!(leftovers.len() >= 3, "{leftovers:?}");
    let zombie = common::test(&report, "fail_zombie_left_behind");
    let observed = zombie["failure"]["observed"].as_str().unwrap();
    assert!(
        observed.contains("zombie process") && observed.contains("(perl)"),
        "{observed}"
    );
    assert!(
        report["environment"]["isolation"]
            .as_str()
            .unwrap()
            .contains("private IPC and mount namespaces"),
        "this machine allows namespaces: {report:#}"
    );
    // The shared memory lived in the test's private /dev/shm: none of it on
    // the host, and no escaped sleep left running.
    assert_no_host_leftovers();
}

/// No `/dev/shm/cg*-left` on the host and no `sleep 30` of ours running.
fn assert_no_host_leftovers() {
    for entry in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with("cg") && name.ends_with("-left")),
            "/dev/shm/{name} leaked"
        );
    }
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ppid = fields.get(1).copied().unwrap_or("");
        assert!(
            !(cmdline == b"sleep\x0030\x00" && ppid == me),
            "an escaped `sleep 30` survived grading: {stat}"
        );
    }
}

#[test]
fn without_namespaces_isolation_falls_back_to_unique_names() {
    let report = grade_fixture_with("1", &[("CARGO_GRADE_ISOLATION", "none")]);
    assert!(
        report["environment"]["isolation"]
            .as_str()
            .unwrap()
            .contains("host namespaces"),
        "{report:#}"
    );
    // The same verdicts in the host's namespaces: the run token still tells
    // the test's objects from everyone else's.
    for t in report["tests"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.starts_with("pass_") {
            assert_eq!(t["status"], "passed", "{name}: {}", common::explanation(t));
        }
    }
    let t = common::test(&report, "fail_leftovers_are_listed");
    let observed = t["failure"]["observed"].as_str().unwrap();
    assert!(observed.contains("POSIX shared memory \"/cg"), "{observed}");
    // The header says what is missing, and what still holds.
    let protections = common::protection_lines(&report).join("\n");
    assert!(
        protections.contains("NOT ACTIVE: namespaces: CARGO_GRADE_ISOLATION=none"),
        "{protections}"
    );
    assert!(protections.contains("limits per process"), "{protections}");
    assert_no_host_leftovers();
}

#[test]
fn the_report_header_lists_every_protection_in_force() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let report = grade_fixture_with("1", &[]);
    let protections = common::protection_lines(&report);
    let has = |text: &str| protections.iter().any(|p| p.contains(text));
    assert!(has("limits per process"), "{protections:#?}");
    assert!(has("child subreaper"), "{protections:#?}");
    assert!(has("output captured up to"), "{protections:#?}");
    if root {
        // As root (CI), everything but the memory cgroup (which needs cgroup
        // v1, or a delegated v2 subtree) is available.
        let missing: Vec<&String> = protections
            .iter()
            .filter(|p| p.starts_with("NOT ACTIVE") && !p.contains("memory limit for the test"))
            .collect();
        assert!(missing.is_empty(), "{protections:#?}");
        assert!(has("unprivileged user of their own"), "{protections:#?}");
        assert!(has("private network namespace"), "{protections:#?}");
        assert!(has("hidden from student processes"), "{protections:#?}");
    } else {
        assert!(has("NOT ACTIVE: a user of their own"), "{protections:#?}");
    }
    let peak = report["environment"]["grader_peak_rss_kib"]
        .as_u64()
        .unwrap();
    assert!(peak > 0 && peak < 256 * 1024, "{peak} KiB");
}

#[test]
fn fault_kinds_are_reported() {
    let report = grade_fixture("1");
    let faults = |name: &str| -> String { common::test(&report, name)["faults"].to_string() };
    assert!(faults("pass_stale_resources_exist").contains("stale msg"));
    assert!(faults("pass_paused_process_resumes").contains("paused the process 2 times"));
    assert!(faults("pass_kill_a_child").contains("SIGKILL sent to child 1 of 1"));
    assert!(faults("pass_rlimits_apply").contains("open files limited to 17"));
    assert!(faults("pass_rounds_with_seeded_cpus").contains("round 3 of 3"));
    assert!(faults("pass_io_faults_load_the_shim").contains("short writes"));
    let observed = |name: &str| -> String {
        common::test(&report, name)["failure"]["observed"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let leak = observed("fail_fd_leak");
    assert!(leak.contains("open file descriptors"), "{leak}");
    let zombie = observed("fail_zombie_child");
    assert!(zombie.starts_with("1 zombie children"), "{zombie}");
    let cut = observed("fail_payload_cut_short");
    assert!(cut.contains("5000 bytes"), "{cut}");
}

#[test]
fn hints_escalate_with_the_hint_option() {
    let run = |extra: &[&str]| -> String {
        let mut cmd = assert_cmd::Command::cargo_bin("cargo-grade").unwrap();
        cmd.args([
            "grade",
            "task9",
            "--only",
            "fail_with_escalating_hints",
            "--course",
        ])
        .arg(fixture())
        .args(extra)
        .env("NO_COLOR", "1")
        .env(
            "CARGO_GRADE_TARGET_DIR",
            common::course_root().join("target/cargo-grade-fixture"),
        );
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let first = run(&[]);
    assert!(first.contains("Hint: look at the first line"), "{first}");
    assert!(
        !first.contains("must be exactly"),
        "one hint by default: {first}"
    );
    let both = run(&["--hint", "2"]);
    assert!(both.contains("Hint: look at the first line"), "{both}");
    assert!(
        both.contains("Hint 2: the first line must be exactly `ready`"),
        "{both}"
    );
}
