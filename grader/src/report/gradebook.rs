//! The files an instructor takes away from a batch, each rendered from the
//! reports of every submission (sorted by name), so a resumed batch or a
//! merge of shards that has the same reports writes the same bytes:
//!
//! - `grades.csv`: one row per submission, then one column per test;
//! - `junit.xml`: one testsuite per submission, one testcase per test;
//! - `summary.json` and `summary.html`: what the class missed.
//!
//! These are instructor outputs: hidden tests appear in full.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::result::{Outcome, Report, Status};
use crate::spec::Spec;

use super::safe::visible;

/// `grades.csv`: `submission, score, max_score, percent, status, reason`,
/// then a column per test of the spec (its points). A submission that could
/// not be graded has no score: its cells are empty, never a 0.
#[cfg(feature = "instructor-tools")]
pub fn grades_csv(spec: &Spec, reports: &[Report]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "submission".to_owned(),
        "score".into(),
        "max_score".into(),
        "percent".into(),
        "status".into(),
        "reason".into(),
    ];
    header.extend(spec.tests.iter().map(|t| t.name.clone()));
    w.write_record(&header).expect("writing to memory");
    for r in reports {
        let verdict = r.outcome.is_verdict();
        let cell = |v: String| if verdict { v } else { String::new() };
        let mut row = vec![
            r.submission_id.clone(),
            cell(r.score.to_string()),
            r.max_score.to_string(),
            cell(format!("{:.1}", r.percent())),
            r.outcome.label().to_owned(),
            r.outcome
                .reason()
                .map(|why| one_line(&visible(why)))
                .unwrap_or_default(),
        ];
        for t in &spec.tests {
            let points = r.tests.iter().find(|x| x.name == t.name);
            row.push(match points {
                Some(x) if verdict => x.score.to_string(),
                _ => String::new(),
            });
        }
        w.write_record(&row).expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("CSV of UTF-8 fields")
}

fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 300 {
        format!("{}...", line.chars().take(300).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// XML-escapes text that may hold anything a submission printed: control
/// characters (which XML 1.0 cannot carry even as references) are shown as
/// escapes first.
fn xml(text: &str) -> String {
    quick_xml::escape::escape(visible(text).as_str()).into_owned()
}

/// `junit.xml`: a testsuite per submission, a testcase per test; a lost
/// point is a `<failure>` with the explanation, a test the grader could not
/// run an `<error>`, a test not run (build failed, rejected) `<skipped>`.
pub fn junit_xml(spec: &Spec, reports: &[Report]) -> String {
    let count = |f: &dyn Fn(&Status) -> bool| -> usize {
        reports
            .iter()
            .flat_map(|r| &r.tests)
            .filter(|t| f(&t.status))
            .count()
    };
    let tests: usize = reports.iter().map(|r| r.tests.len()).sum();
    let failures = count(&|s| matches!(s, Status::Failed | Status::Timeout));
    let errors = count(&|s| *s == Status::Error);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">",
        xml(&format!("cargo-grade {}", spec.task.slug))
    );
    for r in reports {
        let n = |f: &dyn Fn(&Status) -> bool| r.tests.iter().filter(|t| f(&t.status)).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(&r.submission_id),
            r.tests.len(),
            n(&|s| matches!(s, Status::Failed | Status::Timeout)),
            n(&|s| *s == Status::Error),
            n(&|s| *s == Status::NotRun),
            r.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"score\" value=\"{}/{}\"/><property name=\"status\" value=\"{}\"/></properties>",
            r.score,
            r.max_score,
            r.outcome.label()
        );
        for t in &r.tests {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml(&t.name),
                xml(&format!("{}.{}", spec.task.id, r.submission_id)),
                t.duration_ms as f64 / 1000.0
            );
            let body = super::explain(r, t);
            match t.status {
                Status::Passed => out.push_str("/>\n"),
                Status::Failed | Status::Timeout => {
                    let message = t
                        .failure
                        .as_ref()
                        .map(|f| format!("expected {}", f.expected))
                        .unwrap_or_else(|| t.status.label().to_owned());
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        xml(&one_line(&message)),
                        t.status.label(),
                        xml(&body)
                    );
                }
                Status::Error => {
                    let _ = writeln!(
                        out,
                        ">\n      <error message=\"{}\">{}</error>\n    </testcase>",
                        xml(&one_line(
                            t.note.as_deref().unwrap_or("the grader could not run it")
                        )),
                        xml(&body)
                    );
                }
                Status::NotRun => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(&one_line(t.note.as_deref().unwrap_or("not run")))
                    );
                }
            }
        }
        if let Outcome::BuildFailed = r.outcome {
            let _ = writeln!(
                out,
                "    <system-out>{}</system-out>",
                xml(&r.build.diagnostics)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// What `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub task: String,
    pub submissions: usize,
    pub max_score: u32,
    /// Submissions per outcome label (`graded`, `build_failed`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Graded scores (verdicts only) in ten bins of percent: 0-9, ..., 90-99,
    /// and a last bin for 100.
    pub histogram: Vec<usize>,
    pub mean_percent: Option<f64>,
    pub median_percent: Option<f64>,
    /// Per test, in spec order: how many submissions (with a verdict) lost
    /// points in it: the concepts the class missed.
    pub tests: Vec<TestSummary>,
    pub build_failed: Vec<String>,
    pub ungradable: Vec<String>,
    pub rejected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TestSummary {
    pub name: String,
    pub points: u32,
    pub lost_by: usize,
    pub of: usize,
}

pub fn summary(spec: &Spec, reports: &[Report]) -> Summary {
    let verdicts: Vec<&Report> = reports.iter().filter(|r| r.outcome.is_verdict()).collect();
    let mut outcomes = BTreeMap::new();
    for r in reports {
        *outcomes.entry(r.outcome.label().to_owned()).or_insert(0) += 1;
    }
    let mut histogram = vec![0; 11];
    let mut percents: Vec<f64> = verdicts.iter().map(|r| r.percent()).collect();
    for p in &percents {
        histogram[((*p / 10.0).floor() as usize).min(10)] += 1;
    }
    percents.sort_by(|a, b| a.total_cmp(b));
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mean =
        (!percents.is_empty()).then(|| round(percents.iter().sum::<f64>() / percents.len() as f64));
    let median = (!percents.is_empty()).then(|| {
        let n = percents.len();
        round(if n % 2 == 1 {
            percents[n / 2]
        } else {
            (percents[n / 2 - 1] + percents[n / 2]) / 2.0
        })
    });
    let names = |f: &dyn Fn(&Outcome) -> bool| -> Vec<String> {
        reports
            .iter()
            .filter(|r| f(&r.outcome))
            .map(|r| r.submission_id.clone())
            .collect()
    };
    Summary {
        task: spec.task.id.clone(),
        submissions: reports.len(),
        max_score: spec.max_score(),
        outcomes,
        histogram,
        mean_percent: mean,
        median_percent: median,
        tests: spec
            .tests
            .iter()
            .map(|t| TestSummary {
                name: t.name.clone(),
                points: t.points,
                lost_by: verdicts
                    .iter()
                    .filter(|r| {
                        r.tests
                            .iter()
                            .find(|x| x.name == t.name)
                            .is_none_or(|x| x.score < x.max_score)
                    })
                    .count(),
                of: verdicts.len(),
            })
            .collect(),
        build_failed: names(&|o| *o == Outcome::BuildFailed),
        ungradable: names(&|o| matches!(o, Outcome::Ungradable(_))),
        rejected: names(&|o| matches!(o, Outcome::Rejected(_))),
    }
}

/// `summary.html`: one static page, no script, nothing fetched: a histogram
/// of scores and a bar per test, as inline SVG.
pub fn summary_html(s: &Summary) -> String {
    let h = |t: &str| quick_xml::escape::escape(visible(t).as_str()).into_owned();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{task}: class summary</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #222; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; text-align: left; }}\n\
         .bar {{ fill: #c0392b; }} .hist {{ fill: #2e86c1; }} text {{ font-size: 12px; }}\n\
         </style>\n</head>\n<body>\n<h1>{task}: {n} submissions</h1>\n",
        task = h(&s.task),
        n = s.submissions
    );
    let _ = writeln!(
        out,
        "<p>Outcomes: {}. Mean {}, median {}.</p>",
        s.outcomes
            .iter()
            .map(|(k, v)| format!("{} {}", h(k), v))
            .collect::<Vec<_>>()
            .join(", "),
        s.mean_percent.map_or("-".into(), |m| format!("{m:.1}%")),
        s.median_percent.map_or("-".into(), |m| format!("{m:.1}%"))
    );
    // Histogram: 11 bins.
    let (w, hgt, pad) = (560.0, 200.0, 30.0);
    let max = s.histogram.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / s.histogram.len() as f64;
    let _ = writeln!(out, "<h2>Scores</h2>\n<svg id=\"histogram\" role=\"img\" aria-label=\"histogram of scores\" width=\"{w}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">", hgt + 40.0);
    for (i, &count) in s.histogram.iter().enumerate() {
        let bh = (hgt - pad) * count as f64 / max;
        let x = pad + i as f64 * bw;
        let label = if i == 10 {
            "100".to_owned()
        } else {
            format!("{}-{}", i * 10, i * 10 + 9)
        };
        let _ = writeln!(
            out,
            "  <rect class=\"hist\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{label}%: {count}</title></rect>\n  <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{count}</text>\n  <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            hgt - bh,
            bw - 4.0,
            x + bw / 2.0,
            hgt - bh - 3.0,
            x + bw / 2.0,
            hgt + 15.0
        );
    }
    out.push_str("</svg>\n");
    // A bar per test: the share of submissions that lost points in it.
    let row = 22.0;
    let _ = writeln!(out, "<h2>Lost points, per test</h2>\n<svg id=\"tests\" role=\"img\" aria-label=\"submissions that lost points, per test\" width=\"760\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">", row * s.tests.len() as f64 + 10.0);
    for (i, t) in s.tests.iter().enumerate() {
        let share = if t.of == 0 {
            0.0
        } else {
            t.lost_by as f64 / t.of as f64
        };
        let y = i as f64 * row + 5.0;
        let _ = writeln!(
            out,
            "  <text x=\"0\" y=\"{:.1}\">{}</text>\n  <rect class=\"bar\" x=\"260\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {} of {}</title></rect>\n  <text x=\"{:.1}\" y=\"{:.1}\">{} of {}</text>",
            y + 14.0,
            h(&t.name),
            400.0 * share,
            row - 6.0,
            h(&t.name),
            t.lost_by,
            t.of,
            265.0 + 400.0 * share,
            y + 14.0,
            t.lost_by,
            t.of
        );
    }
    out.push_str("</svg>\n");
    for (title, names) in [
        ("Build failures", &s.build_failed),
        ("Could not be graded", &s.ungradable),
        ("Rejected", &s.rejected),
    ] {
        if !names.is_empty() {
            let _ = writeln!(
                out,
                "<h2>{title}</h2>\n<ul>{}</ul>",
                names
                    .iter()
                    .map(|n| format!("<li>{}</li>", h(n)))
                    .collect::<String>()
            );
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}
