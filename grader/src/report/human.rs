//! The report a student reads in a terminal: a line per test, then, for each
//! lost point, what the grader did, expected and observed, the hint and the
//! command that reproduces it. Colour comes and goes with the terminal
//! (`anstream` drops it when piped or when `NO_COLOR` is set).

use std::io::Write;

use anstyle::{AnsiColor, Style};

use super::safe::visible as v;
use crate::result::{Outcome, Report, Status, TestResult};
use crate::spec::Visibility;

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const CYAN: Style = AnsiColor::Cyan.on_default();

fn status_style(status: Status) -> (Style, &'static str) {
    match status {
        Status::Passed => (GREEN, "PASS"),
        Status::Failed => (RED, "FAIL"),
        Status::Timeout => (YELLOW, "TIME"),
        Status::Error => (YELLOW, "ERR "),
        Status::NotRun => (DIM, "SKIP"),
    }
}

/// Writes the report; `out` is usually `anstream::stdout()`.
pub fn render(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{BOLD}cargo-grade{BOLD:#} {} · {BOLD}{}{BOLD:#} {} · submission {} · seed {}",
        report.grader_version,
        report.task,
        report.title,
        v(&report.submission),
        report.seed
    )?;
    if report.environment.protections.is_empty() {
        writeln!(
            out,
            "{DIM}isolation: {}{DIM:#}",
            report.environment.isolation
        )?;
    } else {
        writeln!(out, "{DIM}sandbox:{DIM:#}")?;
        for p in &report.environment.protections {
            if p.active {
                writeln!(out, "  {DIM}- {}: {}{DIM:#}", p.name, p.detail)?;
            } else {
                writeln!(
                    out,
                    "  {YELLOW}- NOT ACTIVE: {}: {}{YELLOW:#}",
                    p.name, p.detail
                )?;
            }
        }
    }
    match &report.outcome {
        Outcome::BuildFailed => {
            writeln!(
                out,
                "{RED}build failed{RED:#}: your code does not compile, so every test scores 0."
            )?;
            writeln!(out, "{}", v(report.build.diagnostics.trim_end()))?;
        }
        Outcome::Rejected(why) => {
            writeln!(
                out,
                "{RED}submission rejected{RED:#}: {}; nothing of it was built or run, so every test scores 0.",
                v(why)
            )?;
        }
        Outcome::Ungradable(why) => {
            writeln!(out, "{YELLOW}could not grade{YELLOW:#}: {}", v(why))?;
            writeln!(
                out,
                "This is a problem of the grader or the machine, not a verdict on your code."
            )?;
        }
        Outcome::Graded => {
            writeln!(
                out,
                "build: ok ({:.1} s)",
                report.build.duration_ms as f64 / 1000.0
            )?;
        }
    }
    writeln!(out)?;
    test_lines(report, out)?;
    details(report, out, usize::MAX)?;
    writeln!(out)?;
    score_line(report, out)
}

/// Watch mode's view: the score first, a line per test, then the first
/// failure (or first shared cause) in full.
pub fn render_summary_first(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    score_line(report, out)?;
    match &report.outcome {
        Outcome::BuildFailed => {
            writeln!(out, "{RED}build failed{RED:#}: your code does not compile.")?;
            writeln!(out, "{}", v(report.build.diagnostics.trim_end()))?;
            return Ok(());
        }
        Outcome::Rejected(why) | Outcome::Ungradable(why) => {
            writeln!(out, "{YELLOW}not graded{YELLOW:#}: {}", v(why))?;
            return Ok(());
        }
        Outcome::Graded => {}
    }
    writeln!(out)?;
    test_lines(report, out)?;
    let shown = details(report, out, 1)?;
    let failed = report
        .tests
        .iter()
        .filter(|t| !matches!(t.status, Status::Passed | Status::NotRun))
        .count();
    if failed > shown {
        writeln!(
            out,
            "{DIM}({} more failed; `cargo grade {}` without --watch explains each){DIM:#}",
            failed - shown,
            report.task
        )?;
    }
    Ok(())
}

fn test_lines(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let width = report.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &report.tests {
        let (style, label) = status_style(t.status);
        writeln!(
            out,
            "  {style}{label}{style:#}  {:<width$}  {:>2}/{:<2}  {DIM}{:.2} s{DIM:#}",
            t.name,
            t.score,
            t.max_score,
            t.duration_ms as f64 / 1000.0
        )?;
    }
    Ok(())
}

/// Explains up to `most` failures, a cause shared by several tests once;
/// returns how many tests the explanations covered.
fn details(report: &Report, out: &mut dyn Write, most: usize) -> std::io::Result<usize> {
    let causes = super::root_causes(report);
    let (mut shown, mut covered) = (0, 0);
    for (i, t) in report.tests.iter().enumerate() {
        if matches!(t.status, Status::Passed | Status::NotRun) {
            continue;
        }
        let cause = causes.iter().find(|c| c.members.contains(&i));
        if cause.is_some_and(|c| c.members[0] != i) {
            continue;
        }
        if shown == most {
            break;
        }
        shown += 1;
        covered += cause.map_or(1, |c| c.members.len());
        writeln!(out)?;
        if let Some(c) = cause {
            let names: Vec<&str> = c
                .members
                .iter()
                .map(|&m| report.tests[m].name.as_str())
                .collect();
            let lost: u32 = c
                .members
                .iter()
                .map(|&m| report.tests[m].max_score - report.tests[m].score)
                .sum();
            writeln!(
                out,
                "{RED}{} tests failed for one cause ({lost} points): {}{RED:#}",
                names.len(),
                names.join(", ")
            )?;
        }
        explain(report, t, out)?;
        if let Some(c) = cause {
            let others: Vec<&str> = c.members[1..]
                .iter()
                .map(|&m| report.tests[m].name.as_str())
                .collect();
            writeln!(
                out,
                "{DIM}The same failure took down {} (rerun one with --only NAME).{DIM:#}",
                others.join(", ")
            )?;
        }
    }
    Ok(covered)
}

fn score_line(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let style = if report.score == report.max_score {
        GREEN
    } else {
        BOLD
    };
    writeln!(
        out,
        "{style}Score: {}/{} ({:.0}%){style:#}  {DIM}seed {} · {:.1} s{DIM:#}",
        report.score,
        report.max_score,
        report.percent(),
        report.seed,
        report.duration_ms as f64 / 1000.0
    )?;
    Ok(())
}

fn explain(report: &Report, t: &TestResult, out: &mut dyn Write) -> std::io::Result<()> {
    let (style, _) = status_style(t.status);
    writeln!(
        out,
        "{style}── {} ({} of {} points lost: {}){style:#}",
        t.name,
        t.max_score - t.score,
        t.max_score,
        t.status.label()
    )?;
    if !t.description.is_empty() && t.visibility == Visibility::Visible {
        writeln!(out, "{DIM}{}{DIM:#}", t.description.trim())?;
    }
    // What a hidden test shows was decided by `Report::for_audience`: a
    // failure still here is one this audience may read.
    match (&t.failure, t.visibility) {
        (Some(f), _) => {
            writeln!(out, "{BOLD}What the grader did:{BOLD:#}")?;
            for (i, action) in f.actions.iter().enumerate() {
                let marker = if i + 1 == f.actions.len() { "→" } else { " " };
                writeln!(out, "  {marker} {}. {}", i + 1, v(action))?;
            }
            writeln!(
                out,
                "{BOLD}Expected:{BOLD:#} {GREEN}{}{GREEN:#}",
                v(&f.expected)
            )?;
            writeln!(
                out,
                "{BOLD}Observed:{BOLD:#} {RED}{}{RED:#}",
                v(&f.observed)
            )?;
            if !t.faults.is_empty() {
                writeln!(
                    out,
                    "{BOLD}Faults injected:{BOLD:#} {}",
                    v(&t.faults.join("; "))
                )?;
            }
            if !t.leftovers.is_empty() {
                writeln!(out, "{BOLD}Left behind (the grader removed it):{BOLD:#}")?;
                for line in &t.leftovers {
                    writeln!(out, "  - {}", v(line))?;
                }
            }
            for (label, tail) in [("stdout", &f.stdout_tail), ("stderr", &f.stderr_tail)] {
                if !tail.is_empty() {
                    writeln!(out, "{BOLD}Last lines of {label}:{BOLD:#}")?;
                    for line in tail {
                        writeln!(out, "  {DIM}|{DIM:#} {}", v(line))?;
                    }
                }
            }
        }
        (_, Visibility::Hidden) => {
            writeln!(out, "This is a hidden test: its details are not shown.")?
        }
        (None, _) => writeln!(out, "{}", v(t.note.as_deref().unwrap_or("").trim_end()))?,
    }
    for (i, hint) in t.hints.iter().enumerate() {
        match i {
            0 => writeln!(out, "{BOLD}Hint:{BOLD:#} {}", v(hint))?,
            _ => writeln!(out, "{BOLD}Hint {}:{BOLD:#} {}", i + 1, v(hint))?,
        }
    }
    writeln!(
        out,
        "{BOLD}Reproduce:{BOLD:#} {CYAN}{}{CYAN:#}",
        v(&report.reproduce(&t.name))
    )?;
    Ok(())
}
