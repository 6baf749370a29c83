#!/usr/bin/env python3
"""Benchmarks of the grader (issue 15): every speed and memory figure measured
side by side, with what an instructor would do instead. Prints a table of the
figures beside their targets and, with --json FILE, writes them. Asserts
nothing: a missed target is a figure, never a failure. The exit status is 0
unless the harness itself could not measure something.

    bench/run [--quick] [--json FILE] [--skip SECTION,...]

--quick: 3 warm grades per task instead of 5, 5 seeds per race mutant instead
of 20, the naive (fresh target directory) path on 4 submissions, extrapolated
to the class, and no run of the test suite. Figures measured with --quick say
so in the JSON (`quick`: true, and each section's `method`).

Python 3.11 standard library only. Run through bench/run (from anywhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What `cargo grade` runs: the alias builds the grader with profile `grade`.
GRADER = ROOT / "target" / "grade" / "cargo-grade"
BUILD_BENCH = ROOT / "target" / "release" / "examples" / "build_bench"
SECTIONS = ["warm", "build", "slowest", "sandbox", "flood", "batch", "naive",
            "race", "cold", "suite"]
MIB = 1024.0


class HarnessError(Exception):
    """Something the harness needed did not happen (not a missed target)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of every CPU since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


SETTLE_WINDOW_S = 0.2
SETTLE_BUSY = 0.15
SETTLE_WITHIN_S = 10.0
SETTLED = {"waits": 0, "waited_s": 0.0, "ran_out": 0}


def settle() -> None:
    """Waits (up to SETTLE_WITHIN_S) until the CPUs are quiet: a window of
    SETTLE_WINDOW_S in which less than SETTLE_BUSY of them was busy: no
    figure is taken while work the previous one started (or a neighbour's)
    still runs. Each window is a measurement; the wait ends on the condition or the
    deadline, and SETTLED counts both."""
    start = time.monotonic()
    before = cpu_ticks()
    while True:
        time.sleep(SETTLE_WINDOW_S)
        after = cpu_ticks()
        total, idle = after[0] - before[0], after[1] - before[1]
        before = after
        if total > 0 and 1 - idle / total < SETTLE_BUSY:
            break
        if time.monotonic() - start > SETTLE_WITHIN_S:
            SETTLED["ran_out"] += 1
            break
    SETTLED["waits"] += 1
    SETTLED["waited_s"] += time.monotonic() - start


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rnd(x, n=3):
    return None if x is None else round(x, n)


# --------------------------------------------------------------------------
# Running programs: wall time, CPU time of the program and all it waited for
# (wait4's rusage), the largest process of its tree, and optionally the
# program's own peak RSS (VmHWM, polled from /proc while it runs).


class Run:
    def __init__(self, rc, out, err, wall, cpu, tree_maxrss_kib, own_hwm_kib, first_out):
        self.rc, self.out, self.err = rc, out, err
        self.wall, self.cpu = wall, cpu
        self.tree_maxrss_kib, self.own_hwm_kib = tree_maxrss_kib, own_hwm_kib
        self.first_out = first_out


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def clean_env(extra: dict | None = None, drop=()) -> dict:
    env = dict(os.environ)
    for name in ("CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR", "CARGO_GRADE_TARGET_DIR", *drop):
        env.pop(name, None)
    env.setdefault("NO_COLOR", "1")
    if extra:
        env.update(extra)
    return env


def run(cmd, cwd=ROOT, env=None, poll_hwm=False, timeout=3600, log_file=None,
        watch_first_output=False) -> Run:
    """Runs cmd to completion in a session of its own (killed as a group on
    timeout). stdout and stderr go to temporary files (or both to log_file)."""
    cmd = [str(c) for c in cmd]
    env = clean_env() if env is None else env
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sink_out = open(log_file, "wb") if log_file else out
        sink_err = subprocess.STDOUT if log_file else err
        start = time.monotonic()
        first_out = [None]
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE if watch_first_output else sink_out,
                             stderr=sink_err, start_new_session=True)
        done = threading.Event()
        hwm = [0]
        threads = []
        if poll_hwm:
            def poll():
                while not done.is_set():
                    hwm[0] = max(hwm[0], vm_hwm_kib(p.pid))
                    done.wait(0.05)
            threads.append(threading.Thread(target=poll, daemon=True))
        if watch_first_output:
            def copy():
                while True:
                    chunk = p.stdout.read1(65536)
                    if not chunk:
                        break
                    if first_out[0] is None:
                        first_out[0] = time.monotonic() - start
                    sink_out.write(chunk)
            threads.append(threading.Thread(target=copy, daemon=True))

        def kill():
            if not done.is_set():
                log(f"timeout after {timeout} s: killing {cmd[0]} (pid {p.pid}) and its group")
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        for t in threads:
            t.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
        done.set()
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        for t in threads:
            t.join()
        if log_file:
            sink_out.close()
            return Run(p.returncode, b"", b"", wall, ru.ru_utime + ru.ru_stime,
                       ru.ru_maxrss, hwm[0], first_out[0])
        out.seek(0)
        err.seek(0)
        return Run(p.returncode, out.read(), err.read(), wall, ru.ru_utime + ru.ru_stime,
                   ru.ru_maxrss, hwm[0], first_out[0])


def must(r: Run, what: str, ok=(0,)) -> Run:
    if r.rc not in ok:
        tail = (r.err or r.out).decode(errors="replace")[-2000:]
        raise HarnessError(f"{what} exited with status {r.rc}:\n{tail}")
    return r


# --------------------------------------------------------------------------
# The course: tasks, references, starters, mutants.


def tasks():
    """[(id, slug)] of every task with a spec and a reference solution."""
    out = []
    for spec in sorted((ROOT / "specs").glob("task*.toml")):
        slug = spec.stem
        if (ROOT / "solutions" / slug).is_dir():
            out.append((slug.split("-", 1)[0], slug))
    return out


def slug_of(task: str) -> str:
    return next(s for t, s in tasks() if t == task)


def spec_of(slug: str) -> dict:
    return tomllib.loads((ROOT / "specs" / f"{slug}.toml").read_text())


def mutants_of(slug: str) -> list[dict]:
    path = ROOT / "solutions" / slug / "mutants.toml"
    return tomllib.loads(path.read_text()).get("mutant", []) if path.exists() else []


IGNORED = shutil.ignore_patterns("target", "alternatives", "mutants.toml")


def copy_crate(src: Path, dest: Path, mark: str | None = None) -> Path:
    """A copy of a crate (without target/); with mark, a comment appended to
    src/main.rs so that no two copies have the same sources."""
    shutil.copytree(src, dest, ignore=IGNORED)
    if mark is not None:
        main = dest / "src" / "main.rs"
        main.write_text(main.read_text() + f"\n// bench copy {mark}\n")
    return dest


def materialise(slug: str, mutant: dict, dest: Path) -> Path:
    copy_crate(ROOT / "solutions" / slug, dest)
    f = dest / mutant["file"]
    text = f.read_text()
    if text.count(mutant["find"]) != 1:
        raise HarnessError(f"mutant {mutant['name']}: `find` does not occur exactly once")
    f.write_text(text.replace(mutant["find"], mutant["replace"], 1))
    return dest


def grade(task: str, path: Path, *extra, env=None) -> tuple[Run, dict]:
    r = must(run([GRADER, "grade", task, "--path", path, "--format", "json", *extra], env=env),
             f"grade {task} {path}", ok=(0, 1))
    return r, json.loads(r.out)


@contextlib.contextmanager
def changed_reference(task: str, mark: str):
    """A copy of TASK's reference with a line of its own: changed sources, so
    the build runs (the build cache gives unchanged sources their binary).
    Removed afterwards."""
    slug = slug_of(task)
    changed = copy_crate(ROOT / "solutions" / slug, Path(tempfile.mkdtemp(prefix="bench-warm-")) / slug,
                         mark=f"{mark} {time.time_ns()}")
    try:
        yield changed
    finally:
        shutil.rmtree(changed.parent, ignore_errors=True)


def test_phase_s(report: dict) -> float:
    return (report["duration_ms"] - report["build"]["duration_ms"]) / 1000.0


# --------------------------------------------------------------------------
# Sections. Each fills `fig` (the JSON) and returns nothing; each is timed
# and its load average recorded.


def section_warm(a, fig, ctx):
    runs = a.runs
    fig["warm_grade_s"], fig["tests_only_s"], fig["build_s_by_task"] = {}, {}, {}
    fig["warm_grade_cpu_s"], fig["warm_regrade_s"] = {}, {}
    ctx["test_times"] = {}
    ctx["warm_cpu_wall"] = {}
    notes = []
    for task, slug in tasks():
        ref = ROOT / "solutions" / slug
        grade(task, ref)  # warm: dependencies prepared, shim built, files cached
        walls, tests, builds, cpus, pairs, regrades = [], [], [], [], [], []
        for i in range(runs):
            if task == "task3":
                # The bare compiler of the same crate, right before each grade,
                # so that both see the same load.
                ctx.setdefault("own_compile", []).append(bare_rustc("task3"))
            with changed_reference(task, f"warm {i}") as changed:
                settle()
                r, rep = grade(task, changed)
                regrades.append(grade(task, changed)[0].wall)
            if rep["score"] != rep["max_score"]:
                notes.append(f"{task} reference scored {rep['score']}/{rep['max_score']}")
            walls.append(r.wall)
            tests.append(test_phase_s(rep))
            builds.append(rep["build"]["duration_ms"] / 1000.0)
            cpus.append(r.cpu)
            pairs.append((r.wall, r.cpu, rep["build"]["duration_ms"] / 1000.0,
                          sum(t["duration_ms"] for t in rep["tests"]) / 1000.0))
            for t in rep["tests"]:
                ctx["test_times"].setdefault((task, t["name"]), []).append(t["duration_ms"] / 1000.0)
        fig["warm_grade_s"][task] = rnd(median(walls))
        fig["tests_only_s"][task] = rnd(median(tests))
        fig["build_s_by_task"][task] = rnd(median(builds))
        fig["warm_grade_cpu_s"][task] = rnd(median(cpus))
        fig["warm_regrade_s"][task] = rnd(median(regrades))
        ctx["warm_cpu_wall"][task] = pairs
        log(f"  {task}: warm grade {median(walls):.2f} s, tests {median(tests):.2f} s, "
            f"build {median(builds):.2f} s, CPU {median(cpus):.2f} s; "
            f"regrade of unchanged sources {median(regrades):.2f} s")
    fig["test_durations_s"] = {}
    for (task, name), ts in ctx["test_times"].items():
        fig["test_durations_s"].setdefault(task, {})[name] = rnd(median(ts))
    fig["build_s"] = fig["build_s_by_task"].get("task3")
    fig["methods"]["warm_grade_s"] = (
        f"median wall time of {runs} runs of `target/grade/cargo-grade grade TASK --path "
        "COPY --format json` (the binary `cargo grade` runs) after one warm-up grade "
        "(dependencies prepared), each COPY the reference with a line of its own, so that it "
        "is built (changed sources)")
    fig["methods"]["warm_regrade_s"] = (
        "the same, graded a second time unchanged: its binary comes from the build cache")
    fig["methods"]["tests_only_s"] = "median of the report's duration_ms - build.duration_ms"
    fig["methods"]["build_s"] = f"task3: median of the report's build.duration_ms over the {runs} warm grades"
    if notes:
        fig["notes"].extend(notes)


BB_ONE = re.compile(r"rustc alone (\d+) ms wall, (\d+) ms CPU; one build (\d+) ms wall .*?, (\d+) ms CPU")
BB_MANY = re.compile(r"(\d+) builds on (\d+) cores: one after another (\d+) ms wall \((\d+) ms CPU\), "
                     r"all at once (\d+) ms wall \((\d+) ms CPU\)")


def bare_rustc(task: str) -> float:
    """One run of build_bench: the wall time of the bare rustc command."""
    r = must(run([BUILD_BENCH, task, 1, 1]), f"build_bench {task}")
    m = BB_ONE.search(r.out.decode())
    if not m:
        raise HarnessError(f"build_bench {task} printed no figures:\n{r.out.decode()}")
    return int(m.group(1)) / 1000.0


def section_build(a, fig, ctx):
    fig["build_bench"] = {}
    ctx["build_cpu_s"] = {}
    for task, _ in tasks():
        n = a.runs if task == "task3" else 3
        at_once = 2 if task == "task3" else 1
        r = must(run([BUILD_BENCH, task, n, at_once]), f"build_bench {task}")
        text = r.out.decode()
        m = BB_ONE.search(text)
        if not m:
            raise HarnessError(f"build_bench {task} printed no figures:\n{text}")
        rustc_wall, rustc_cpu, one_wall, one_cpu = (int(x) / 1000.0 for x in m.groups())
        entry = {"rustc_alone_wall_s": rustc_wall, "rustc_alone_cpu_s": rustc_cpu,
                 "one_build_wall_s": one_wall, "one_build_cpu_s": one_cpu, "runs": n}
        m = BB_MANY.search(text)
        if m and task == "task3":
            k, cores, seq_wall, seq_cpu, par_wall, par_cpu = (int(x) for x in m.groups())
            entry.update({"builds_at_once": k, "sequential_wall_s": seq_wall / 1000.0,
                          "at_once_wall_s": par_wall / 1000.0})
        fig["build_bench"][task] = entry
        ctx["build_cpu_s"][task] = one_cpu
        log(f"  {task}: rustc alone {rustc_wall:.2f} s ({rustc_cpu:.2f} s CPU), "
            f"one build {one_wall:.2f} s ({one_cpu:.2f} s CPU)")
    if ctx.get("own_compile"):
        fig["own_compile_s"] = rnd(median(ctx["own_compile"]))
        fig["methods"]["own_compile_s"] = (
            "median wall time of the bare recorded `rustc` command of the task3 reference "
            "(dependencies prepared; no jail, no staging), one run of grader/examples/build_bench.rs "
            f"task3 right before each of the {len(ctx['own_compile'])} warm task3 grades whose "
            "build.duration_ms make build_s, so that both see the same load")
    else:
        fig["own_compile_s"] = fig["build_bench"]["task3"]["rustc_alone_wall_s"]
        fig["methods"]["own_compile_s"] = (
            "grader/examples/build_bench.rs task3: median wall time of the bare recorded `rustc` "
            "command of the task3 reference (dependencies prepared), alone, no jail")
    fig["methods"]["build_bench"] = (
        "grader/examples/build_bench.rs TASK RUNS AT_ONCE, run on its own after the warm grades: "
        "the bare rustc command and one whole build (stage, jail, compile, copy), medians, wall "
        "and CPU; for task3 also 2 builds one after another and at once")
    # Work versus waiting per task, now that the build's own CPU is known.
    work_share = {}
    for task, pairs in ctx.get("warm_cpu_wall", {}).items():
        bcpu = ctx["build_cpu_s"].get(task, 0.0)
        shares = [max(0.0, cpu - bcpu) / max(1e-6, tests) for _, cpu, _, tests in pairs]
        work_share[task] = rnd(median(shares), 2)
    if work_share:
        fig["work_share"] = work_share
        fig["waiting_share"] = {t: rnd(max(0.0, 1.0 - s), 2) for t, s in work_share.items()}
        fig["work_share_grade"] = {
            t: rnd(median([cpu / wall for wall, cpu, _, _ in pairs]), 2)
            for t, pairs in ctx["warm_cpu_wall"].items()}
        fig["methods"]["work_share"] = (
            "per task, median over the warm grades of (CPU time of the grader and every process "
            "it waited for, from wait4's rusage, minus the build's CPU as build_bench measures "
            "one build of the reference) / (the sum of the report's tests' duration_ms: the "
            "test time, as if the tests ran one at a time; `cargo grade` runs them a core's worth "
            "at once), i.e. cpu / (test time * 1 core); waiting_share = "
            "1 - work_share (time no process of the test used a CPU: deadlines, sleeps, pipes, "
            "or a machine busy with others). work_share_grade: cpu / wall of the whole grade")


def section_slowest(a, fig, ctx):
    times = ctx.get("test_times")
    if not times:
        raise HarnessError("needs the warm section")
    top = sorted(times.items(), key=lambda kv: -median(kv[1]))[:5]
    out = []
    for (task, name), ts in top:
        bcpu = ctx.get("build_cpu_s", {}).get(task, 0.0)
        shares = []
        for _ in range(3):
            r, rep = grade(task, ROOT / "solutions" / slug_of(task), "--only", name)
            ran = [t for t in rep["tests"] if t["status"] != "not_run"]
            dur = sum(t["duration_ms"] for t in ran) / 1000.0
            bwall = rep["build"]["duration_ms"] / 1000.0
            shares.append(max(0.0, r.cpu - bcpu) / max(1e-6, r.wall - bwall))
        s = median(shares)
        out.append({"task": task, "test": name, "duration_s": rnd(median(ts)),
                    "work_share": rnd(s, 2), "waiting_share": rnd(max(0.0, 1 - s), 2),
                    "tests_run_with_only": [t["name"] for t in ran]})
        log(f"  {task} {name}: {median(ts):.2f} s, work share {s:.2f}")
    fig["slowest_tests"] = out
    fig["methods"]["slowest_tests"] = (
        "the five largest median durations (report's duration_ms) over the warm grades of all "
        "tasks; each one's work_share from 3 grades with `--only NAME`: (CPU - build CPU) / "
        "(wall - build wall), grader start-up included (so an upper bound on work)")


def section_sandbox(a, fig, ctx):
    ref = ROOT / "solutions" / "task3-shm-counter"
    res = {}
    for label, extra in (("every_protection", {}),
                         ("no_namespaces_no_own_user",
                          {"CARGO_GRADE_ISOLATION": "none", "CARGO_GRADE_USER": "keep"})):
        env = clean_env(extra)
        grade("task3", ref, env=env)
        res[label] = rnd(median([grade("task3", ref, env=env)[0].wall for _ in range(a.runs)]))
    fig["sandbox_cost_s"] = res
    fig["methods"]["sandbox_cost_s"] = (
        f"task3 reference, median wall of {a.runs} grades with every protection, and with "
        "CARGO_GRADE_ISOLATION=none CARGO_GRADE_USER=keep")
    log(f"  task3: {res}")


def section_flood(a, fig, ctx):
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        crate = copy_crate(ROOT / "starter" / "task1-signals", Path(tmp) / "flood")
        shutil.copy(ROOT / "grader" / "tests" / "hostile" / "output_flood.rs", crate / "src" / "main.rs")
        r, rep = grade("task1", crate)
    flooded = 0
    for t in rep["tests"]:
        for line in (t.get("failure") or {}).get("stderr_tail", []) or []:
            m = re.search(r"flood stopped after (\d+) bytes", line)
            if m:
                flooded = max(flooded, int(m.group(1)))
    fig["flood_grader_peak_rss_mib"] = rnd(rep["environment"]["grader_peak_rss_kib"] / MIB, 1)
    fig["flood"] = {"grade_wall_s": rnd(r.wall), "largest_flood_bytes_one_test": flooded,
                    "score": rep["score"], "max_score": rep["max_score"]}
    fig["methods"]["flood_grader_peak_rss_mib"] = (
        "the report's environment.grader_peak_rss_kib (the grader's own VmHWM) for a full task1 "
        "grade of the starter with src/main.rs = grader/tests/hostile/output_flood.rs (1 GiB, "
        "one line, per run of the program; largest_flood_bytes_one_test is what it reports "
        "having written)")
    log(f"  flood: grader peak {fig['flood_grader_peak_rss_mib']} MiB, {flooded} bytes in one test")


def make_class(dest: Path) -> dict[str, str]:
    """The 40-submission task3 class: 30 references, 5 starters, 5 mutants."""
    slug = "task3-shm-counter"
    kinds = {}
    for i in range(1, 31):
        copy_crate(ROOT / "solutions" / slug, dest / f"ref-{i:02}", mark=f"ref {i}")
        kinds[f"ref-{i:02}"] = "reference"
    for i in range(1, 6):
        copy_crate(ROOT / "starter" / slug, dest / f"starter-{i:02}", mark=f"starter {i}")
        kinds[f"starter-{i:02}"] = "starter"
    for m in mutants_of(slug)[:5]:
        materialise(slug, m, dest / f"mutant-{m['name']}")
        kinds[f"mutant-{m['name']}"] = "mutant"
    return kinds


def warm_task3_once(mark: str) -> float:
    """One warm grade of the task3 reference, sources changed (as section_warm)."""
    with changed_reference("task3", mark) as changed:
        settle()
        return grade("task3", changed)[0].wall


def section_batch(a, fig, ctx):
    # The machine's speed drifts by 10-30% within minutes (its neighbours'
    # load), more than the target's margin: so the batches alternate with
    # warm task3 grades, and the target compares the two measured in the
    # same minutes (warm_task3_alongside_s), as well as the warm section's.
    rounds = 1 if a.quick else 3
    walls, cpus, hwms, warm, fulls = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        subs = Path(tmp) / "submissions"
        kinds = make_class(subs)
        ctx["class_kinds"] = kinds
        n = len(kinds)
        for k in range(rounds):
            warm += [warm_task3_once(f"alongside {3 * k + j}") for j in range(3)]
            out = Path(tmp) / f"out-{k}"
            settle()
            r = must(run([GRADER, "batch", "task3", subs, "--out", out, "--jobs", 2, "--color", "never"],
                         poll_hwm=True), "batch task3")
            reports = {p.stem: json.loads(p.read_text()) for p in (out / ".results").glob("*.json")}
            walls.append(r.wall)
            cpus.append(r.cpu)
            refs = [rep for name, rep in reports.items() if kinds.get(name) == "reference"]
            fulls.append(sum(1 for rep in refs if rep["score"] == rep["max_score"]))
            hwms.append(max([r.own_hwm_kib] + [rep["environment"].get("grader_peak_rss_kib", 0)
                                                for rep in reports.values()]))
            log(f"  batch {k + 1}/{rounds}: {r.wall:.1f} s for {n} ({r.wall / n:.3f} s each), "
                f"warm task3 just before {median(warm[-3:]):.3f} s")
        warm += [warm_task3_once(f"alongside {3 * rounds + j}") for j in range(3)]
        ctx["batch_reports"] = reports
    peak = max(hwms)
    full = min(fulls)  # the worst run's
    wall = median(walls)
    fig["batch_per_submission_s"] = rnd(wall / n)
    fig["batch_grader_peak_rss_mib"] = rnd(peak / MIB, 1)
    fig["batch"] = {
        "submissions": n, "jobs": 2, "runs": rounds, "wall_s": rnd(wall),
        "wall_s_each_run": [rnd(w) for w in walls], "cpu_s": rnd(median(cpus)),
        "busy_share_of_2_cores": rnd(median(cpus) / (2 * wall)),
        "warm_task3_alongside_s": rnd(median(warm)),
        "warm_task3_alongside_each_s": [rnd(w) for w in warm],
        "graded": sum(1 for rep in reports.values() if rep["outcome"]["kind"] == "graded"),
        "references_full_marks": f"{full}/{len(refs)}",
        "tree_largest_process_rss_mib": rnd(r.tree_maxrss_kib / MIB, 1),
        "median_report_duration_s": rnd(median([rep["duration_ms"] / 1000 for rep in reports.values()])),
    }
    fig["methods"]["batch_per_submission_s"] = (
        f"median over {rounds} runs of wall time / N of `cargo-grade batch task3 DIR --out OUT --jobs 2` "
        "over a class of 30 copies of the reference (each with a comment of its own), 5 of the "
        "starter and the first 5 mutants of solutions/task3-shm-counter/mutants.toml. "
        "batch.warm_task3_alongside_s: the median of warm task3 grades (as warm_grade_s) taken 3 "
        "before each run and 3 after the last, the warm grade the target compares it with "
        "(the machine's speed drifts between sections)")
    fig["methods"]["batch_grader_peak_rss_mib"] = (
        "the batch process's own peak RSS: the larger of its VmHWM polled from /proc every 50 ms "
        "and every result's environment.grader_peak_rss_kib, the largest over the runs. (wait4's "
        "ru_maxrss, as /usr/bin/time %M reports it, is the largest single process of the tree, a "
        "rustc or a student program: batch.tree_largest_process_rss_mib)")
    log(f"  batch: {wall:.1f} s for {n} ({wall / n:.3f} s each, median of {rounds}), warm task3 "
        f"alongside {median(warm):.3f} s, references full {full}/{len(refs)}, grader peak "
        f"{peak / MIB:.1f} MiB")


def section_naive(a, fig, ctx):
    slug = "task3-shm-counter"
    starter = ROOT / "starter" / slug
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp:
        tmp = Path(tmp)
        kinds = make_class(tmp / "class")
        names = sorted(kinds)
        if a.quick:
            names = ["ref-01", "ref-02", "ref-03", next(n for n in names if kinds[n] == "mutant")]
        jobs = list(names)
        lock = threading.Lock()
        results, errors = [], []

        def lane():
            while True:
                with lock:
                    if not jobs:
                        return
                    name = jobs.pop(0)
                try:
                    crate = tmp / "crates" / name
                    crate.mkdir(parents=True)
                    shutil.copytree(tmp / "class" / name / "src", crate / "src")
                    shutil.copy(starter / "Cargo.toml", crate / "Cargo.toml")
                    shutil.copy(starter / "Cargo.lock", crate / "Cargo.lock")
                    target = tmp / "targets" / name
                    b = run(["cargo", "build", "--offline", "--locked", "--quiet"], cwd=crate,
                            env=clean_env({"CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never"}))
                    shutil.rmtree(target, ignore_errors=True)
                    g, rep = grade("task3", crate)
                    with lock:
                        results.append((name, b.wall, b.rc, g.wall, rep["build"]["duration_ms"] / 1000.0))
                except Exception as e:  # noqa: BLE001 -- reported below
                    with lock:
                        errors.append(f"{name}: {e}")

        start = time.monotonic()
        lanes = [threading.Thread(target=lane) for _ in range(2)]
        for t in lanes:
            t.start()
        for t in lanes:
            t.join()
        wall = time.monotonic() - start
    if errors:
        raise HarnessError("naive path: " + "; ".join(errors))
    n = len(results)
    grader_rebuild = sum(r[4] for r in results)
    per = (wall - grader_rebuild / 2) / n
    fig["naive_per_submission_s"] = rnd(per)
    fig["naive"] = {
        "submissions_measured": n, "lanes": 2, "wall_s": rnd(wall),
        "median_cargo_build_s": rnd(median([r[1] for r in results])),
        "cargo_build_failures": sum(1 for r in results if r[2] != 0),
        "median_grade_s": rnd(median([r[3] for r in results])),
        "one_at_a_time_s": rnd(median([r[1] + r[3] - r[4] for r in results])),
        "extrapolated_to": len(kinds) if a.quick else None,
        "extrapolated_class_wall_s": rnd(per * len(kinds)),
    }
    b = fig.get("batch_per_submission_s")
    fig["batch_vs_naive_ratio"] = rnd(per / b, 2) if b else None
    fig["methods"]["naive_per_submission_s"] = (
        "the fresh-container alternative, two submissions at a time (as --jobs 2): for each, the "
        "submission's src/ with the starter's Cargo.toml and Cargo.lock, `cargo build --offline "
        "--locked` (debug, as the grader builds) into a fresh CARGO_TARGET_DIR (CARGO_HOME shared: "
        "nothing downloaded), then its tests graded by cargo-grade; per submission = (wall - the "
        "grader's own rebuild, its build.duration_ms / 2 lanes) / N; naive.one_at_a_time_s: the "
        "median of one submission's cargo build + test phase, no overlap"
        + (f"; --quick: measured on {n} of the {len(kinds)} submissions "
           f"({', '.join(names)}) and extrapolated (so few that both lanes build at once "
           "most of the time, which overstates the per-submission cost)" if a.quick else ""))
    fig["methods"]["batch_vs_naive_ratio"] = "naive_per_submission_s / batch_per_submission_s"
    log(f"  naive: {per:.2f} s per submission over {n} (cargo build median "
        f"{fig['naive']['median_cargo_build_s']} s)")


def race_sensitive(slug: str):
    spec = spec_of(slug)
    race = {t["name"] for t in spec.get("test", [])
            if t.get("rounds", 1) > 1 or t.get("cpus") == "seeded"}
    return race, [m for m in mutants_of(slug) if race & set(m["catches"])]


def section_race(a, fig, ctx):
    seeds = list(range(1, a.seeds + 1))
    detection, by_test, listed = {}, {}, []
    for task, slug in tasks():
        race, mutants = race_sensitive(slug)
        if not mutants:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-race-") as tmp:
            subs = Path(tmp) / "submissions"
            for m in mutants:
                materialise(slug, m, subs / m["name"])
                listed.append({"task": task, "mutant": m["name"], "catches": m["catches"],
                               "race_tests": sorted(race & set(m["catches"]))})
            lost = {m["name"]: 0 for m in mutants}
            lost_in = {m["name"]: {t: 0 for t in sorted(race & set(m["catches"]))} for m in mutants}
            for seed in seeds:
                out = Path(tmp) / f"out-{seed}"
                must(run([GRADER, "batch", task, subs, "--seed", seed, "--out", out, "--jobs", 2,
                          "--color", "never"]), f"batch {task} --seed {seed}")
                for m in mutants:
                    rep = json.loads((out / ".results" / f"{m['name']}.json").read_text())
                    if rep["outcome"]["kind"] == "graded" and rep["score"] < rep["max_score"]:
                        lost[m["name"]] += 1
                    for t in rep["tests"]:
                        if t["name"] in lost_in[m["name"]] and t["score"] < t["max_score"]:
                            lost_in[m["name"]][t["name"]] += 1
        for m in mutants:
            key = f"{task}/{m['name']}"
            detection[key] = rnd(lost[m["name"]] / len(seeds))
            by_test[key] = {t: rnd(c / len(seeds)) for t, c in lost_in[m["name"]].items()}
            log(f"  {key}: lost points in {lost[m['name']]}/{len(seeds)} seeds; race tests {by_test[key]}")
    fig["race_detection"] = detection
    fig["race_detection_by_race_test"] = by_test
    fig["race_mutants"] = listed
    fig["methods"]["race_detection"] = (
        f"for each mutant whose `catches` include a test with rounds > 1 or cpus = \"seeded\": "
        f"the fraction of {len(seeds)} seeds (1..{len(seeds)}) in which it lost points "
        "(`cargo-grade batch TASK DIR --seed S --out OUT`, OUT/.results/NAME.json score < "
        "max_score); race_detection_by_race_test: the fraction in which each such race test "
        "itself took points off" + ("; --quick: 5 seeds, not 20" if a.quick else ""))


def section_cold(a, fig, ctx):
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        clone = Path(tmp) / "clone"
        must(run(["git", "clone", "--quiet", ROOT, clone]), "git clone")
        head = run(["git", "rev-parse", "--short", "HEAD"], cwd=clone).out.decode().strip()
        env = clean_env()
        log(f"  fresh clone of {ROOT} at {head}: cargo grade task1 (grader and deps built from scratch)")
        cold = must(run(["cargo", "grade", "task1"], cwd=clone, env=env, watch_first_output=True),
                    "cold cargo grade task1")
        # The alias's build has no instructors' commands: the first of them
        # (the cheapest: a PrairieLearn question written) waits for the
        # build that has them, on top of the student's.
        tools = must(run(["cargo", "grade", "package", "prairielearn", "task1", "--out",
                          Path(tmp) / "question"], cwd=clone, env=env),
                     "first instructor command")
        again = must(run(["cargo", "grade", "package", "prairielearn", "task1", "--out",
                          Path(tmp) / "question2"], cwd=clone, env=env),
                     "instructor command again")
        # Where it went: the same again with only the grader's prepared
        # dependencies removed, then fully warm.
        shutil.rmtree(clone / "target" / "cargo-grade")
        prep = must(run(["cargo", "grade", "task1"], cwd=clone, env=env), "cargo grade task1 (grader built)")
        warm = must(run(["cargo", "grade", "task1"], cwd=clone, env=env), "cargo grade task1 (warm)")
    fig["cold_first_grade_s"] = rnd(cold.wall, 1)
    fig["cold"] = {
        "commit": head, "first_output_s": rnd(cold.first_out, 1), "cpu_s": rnd(cold.cpu, 1),
        "with_grader_built_s": rnd(prep.wall, 2),
        "grader_build_estimate_s": rnd(cold.wall - prep.wall, 1),
        "warm_alias_grade_s": rnd(warm.wall, 2),
        "first_instructor_command_s": rnd(tools.wall, 1),
        "instructor_command_again_s": rnd(again.wall, 2),
    }
    fig["methods"]["cold_first_grade_s"] = (
        "wall time of `cargo grade task1` (the alias: cargo run --profile grade of the grader, then a "
        "grade of the task1 starter) in a fresh `git clone` of the repository's HEAD, empty target "
        "directory, until the report is printed and the command exits; CARGO_HOME (~/.cargo) "
        "shared, so no crate is downloaded again. with_grader_built_s: the same with only "
        "target/cargo-grade removed (dependencies prepared again, grade); warm_alias_grade_s: again. "
        "The alias builds the grader without the feature instructor-tools; "
        "first_instructor_command_s: `cargo grade package prairielearn task1` right after the cold "
        "grade (the build with the instructors' commands compiled on top, then the package written); "
        "instructor_command_again_s: the same again")
    log(f"  cold: {cold.wall:.1f} s (grader build about {cold.wall - prep.wall:.1f} s, "
        f"prepare+grade {prep.wall:.1f} s, warm alias {warm.wall:.2f} s); first instructor "
        f"command {tools.wall:.1f} s, again {again.wall:.2f} s")


NEXTEST_RESULT = re.compile(r"^\s+(PASS|FAIL|SIGSEGV|SIGABRT|TIMEOUT|LEAK)\s+\[\s*([\d.]+)s\]\s+(?:\(\s*\d+/\d+\)\s+)?(\S+)\s+(\S+)")


def section_suite(a, fig, ctx):
    """The README's test command: `cargo nextest run --workspace --locked`
    (every binary's tests from one queue, .config/nextest.toml), then
    `cargo test --doc --workspace --locked` (nextest runs no doc tests)."""
    if a.quick:
        fig["test_suite_s"] = None
        fig["methods"]["test_suite_s"] = "skipped with --quick"
        log("  skipped with --quick")
        return
    comp = run(["cargo", "nextest", "run", "--workspace", "--locked", "--no-run"], timeout=7200)
    must(comp, "cargo nextest run --no-run")
    docs_comp = run(["cargo", "test", "--doc", "--workspace", "--locked", "--no-run"], timeout=7200)
    logf = Path(tempfile.gettempdir()) / f"bench-suite-{os.getpid()}.log"
    load_before = loadavg()
    r = run(["cargo", "nextest", "run", "--workspace", "--locked", "--no-fail-fast"],
            timeout=7200, log_file=logf)
    docs = run(["cargo", "test", "--doc", "--workspace", "--locked"], timeout=7200)
    by_binary, tests, seen = {}, [], set()
    for line in logf.read_text(errors="replace").splitlines():
        m = NEXTEST_RESULT.match(line)
        if not m:
            continue
        status, secs, binary, name = m.group(1), float(m.group(2)), m.group(3), m.group(4)
        if (binary, name) in seen:  # the summary at the end lists failures again
            continue
        seen.add((binary, name))
        tests.append({"binary": binary, "test": name, "status": status.lower(), "s": secs})
        b = by_binary.setdefault(binary, {"binary": binary, "passed": 0, "failed": 0, "test_s_sum": 0.0,
                                          "slowest_test_s": 0.0})
        b["passed" if status == "PASS" else "failed"] += 1
        b["test_s_sum"] = round(b["test_s_sum"] + secs, 2)
        b["slowest_test_s"] = max(b["slowest_test_s"], secs)
    binaries = sorted(by_binary.values(), key=lambda b: -b["test_s_sum"])
    tests.sort(key=lambda t: -t["s"])
    fig["test_suite_s"] = rnd(r.wall + docs.wall, 1)
    fig["test_suite"] = {
        "command": "cargo nextest run --workspace --locked && cargo test --doc --workspace --locked",
        "exit_status": r.rc, "doc_tests_exit_status": docs.rc,
        "nextest_s": rnd(r.wall, 1), "doc_tests_s": rnd(docs.wall, 1),
        "compile_s": rnd(comp.wall + docs_comp.wall, 1), "cpu_s": rnd(r.cpu + docs.cpu, 1),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "tests_run": len(tests), "sum_of_test_s": rnd(sum(t["s"] for t in tests), 1),
        "log": str(logf), "binaries_by_test_time": binaries, "slowest_tests": tests[:10],
    }
    fig["methods"]["test_suite_s"] = (
        "wall time of the README's test command at the repository root: `cargo nextest run "
        "--workspace --locked` (a test per core at a time from one queue of every binary's tests) "
        "plus `cargo test --doc --workspace --locked`, both compiled beforehand with --no-run "
        "(test_suite.compile_s); per binary, the number of tests and the sum of their times as "
        "nextest reports them (tests of different binaries overlap, so the sums exceed the wall)")
    log(f"  suite: {r.wall + docs.wall:.0f} s (exit {r.rc}, doc tests {docs.rc}), {len(tests)} tests, "
        f"sum of test times {sum(t['s'] for t in tests):.0f} s")


# --------------------------------------------------------------------------
# The table.


def targets(fig) -> list[tuple[str, object, str, bool | None]]:
    rows = []

    def row(name, value, target, ok):
        rows.append((name, value, target, None if value is None or ok is None else bool(ok)))

    for task, v in (fig.get("warm_grade_s") or {}).items():
        row(f"warm_grade_s {task}", v, "<= 2 s", v is not None and v <= 2)
    for task, v in (fig.get("tests_only_s") or {}).items():
        row(f"tests_only_s {task}", v, "", None)
    b, o = fig.get("build_s"), fig.get("own_compile_s")
    row("own_compile_s (task3 rustc alone)", o, "", None)
    row("build_s (task3)", b, f"<= 1.3 x own_compile_s = {1.3 * o:.3f} s" if o else "<= 1.3 x own_compile_s",
        None if b is None or o is None else b <= 1.3 * o)
    bp = fig.get("batch_per_submission_s")
    w3 = (fig.get("batch") or {}).get("warm_task3_alongside_s")
    row("batch_per_submission_s (task3, 40, --jobs 2)", bp,
        f"<= 0.6 x warm task3 alongside = {0.6 * w3:.3f} s" if w3 else "<= 0.6 x warm task3",
        None if bp is None or w3 is None else bp <= 0.6 * w3)
    w3s = (fig.get("warm_grade_s") or {}).get("task3")
    if bp is not None and w3s:
        row(f"  (0.6 x warm_grade_s task3 = {0.6 * w3s:.3f} s)", bp, "", None)
    row("naive_per_submission_s", fig.get("naive_per_submission_s"), "", None)
    ratio = fig.get("batch_vs_naive_ratio")
    row("batch_vs_naive_ratio (naive / batch)", ratio, ">= 5", ratio is not None and ratio >= 5)
    for key, v in (fig.get("race_detection") or {}).items():
        row(f"race_detection {key}", v, "1.0", v == 1.0)
    for key, tests in (fig.get("race_detection_by_race_test") or {}).items():
        for t, v in tests.items():
            row(f"  caught by race test {t}", v, "(1.0)", v == 1.0)
    c = fig.get("cold_first_grade_s")
    row("cold_first_grade_s", c, "<= 30 s", c is not None and c <= 30)
    for name in ("flood_grader_peak_rss_mib", "batch_grader_peak_rss_mib"):
        v = fig.get(name)
        row(name, v, "<= 32 MiB", v is not None and v <= 32)
    s = fig.get("test_suite_s")
    row("test_suite_s", s, "<= 360 s", s is not None and s <= 360)
    return rows


def print_table(fig) -> None:
    rows = targets(fig)
    w = max(len(r[0]) for r in rows) + 2
    tw = max([34] + [len(r[2]) + 2 for r in rows])
    print()
    print(f"cargo-grade benchmarks  ({fig['machine']['cores']} cores, load average "
          f"{fig['machine']['loadavg_start']} at start, {fig['machine']['loadavg_end']} at end"
          f"{', --quick' if fig['quick'] else ''})")
    print(f"{'figure':<{w}}{'measured':>12}  {'target':<{tw}}verdict")
    for name, value, target, ok in rows:
        v = "skipped" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        verdict = "" if ok is None and not target else ("n/a" if ok is None else ("PASS" if ok else "MISS"))
        print(f"{name:<{w}}{v:>12}  {target:<{tw}}{verdict}")
    if fig.get("slowest_tests"):
        print("\nslowest tests (median s; share of their time doing work vs waiting):")
        for t in fig["slowest_tests"]:
            print(f"  {t['task']} {t['test']:<32}{t['duration_s']:>7.3f} s  work {t['work_share']:.2f}  "
                  f"waiting {t['waiting_share']:.2f}")
    if fig.get("work_share"):
        print("\nper task, test phase: " + ", ".join(
            f"{t} work {s:.2f} / waiting {fig['waiting_share'][t]:.2f}" for t, s in fig["work_share"].items()))
    if fig.get("sandbox_cost_s"):
        print(f"sandbox cost, task3: {fig['sandbox_cost_s']}")
    if fig.get("errors"):
        print("\nharness errors:")
        for k, v in fig["errors"].items():
            print(f"  {k}: {v.splitlines()[0] if v else ''}")
    print("\nmethods:")
    for k, v in fig["methods"].items():
        print(f"  {k}: {v}")
    for n in fig.get("notes", []):
        print(f"note: {n}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and seeds, naive path on 4 submissions, no test suite")
    ap.add_argument("--json", metavar="FILE", help="write the figures here")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    a = ap.parse_args()
    a.runs = 3 if a.quick else 5
    a.seeds = 5 if a.quick else 20
    skip = {s for s in a.skip.split(",") if s}
    if skip - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(skip - set(SECTIONS)))}")
    json_path = Path(a.json).resolve() if a.json else None
    fig = {
        "machine": {"cores": os.cpu_count(), "loadavg_start": loadavg(),
                    "kernel": os.uname().release, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "quick": a.quick, "json": str(json_path) if json_path else None,
        "methods": {}, "notes": [], "errors": {}, "sections": {},
    }
    for tool in (["rustc", "--version"], ["cargo", "--version"]):
        fig["machine"][tool[0]] = subprocess.run(tool, capture_output=True, text=True).stdout.strip()
    fig["machine"]["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                              capture_output=True, text=True).stdout.strip()
    log(f"building the grader (profile grade, as `cargo grade` does) and build_bench (release); "
        f"load average {loadavg()}")
    must(run(["cargo", "build", "--profile", "grade", "--quiet", "--locked", "-p", "cargo-grade",
              "--bin", "cargo-grade"]), "cargo build --profile grade")
    must(run(["cargo", "build", "--release", "--quiet", "--locked", "-p", "cargo-grade",
              "--example", "build_bench"]), "cargo build --release --example build_bench")
    ctx: dict = {}
    funcs = {"warm": section_warm, "build": section_build, "slowest": section_slowest,
             "sandbox": section_sandbox, "flood": section_flood, "batch": section_batch,
             "naive": section_naive, "race": section_race, "cold": section_cold, "suite": section_suite}
    for name in SECTIONS:
        if name in skip:
            fig["sections"][name] = {"skipped": True}
            continue
        la = loadavg()
        log(f"{name} (load average {la})")
        start = time.monotonic()
        try:
            funcs[name](a, fig, ctx)
        except Exception as e:  # noqa: BLE001 -- the harness reports and goes on
            fig["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"  {name} failed: {e}")
        fig["sections"][name] = {"s": rnd(time.monotonic() - start, 1), "loadavg_before": la}
    fig["machine"]["loadavg_end"] = loadavg()
    fig["settle"] = {"waits": SETTLED["waits"], "waited_s": rnd(SETTLED["waited_s"], 1),
                     "ran_out": SETTLED["ran_out"], "busy_below": SETTLE_BUSY,
                     "window_s": SETTLE_WINDOW_S, "within_s": SETTLE_WITHIN_S}
    fig["methods"]["settle"] = (
        "before each warm grade and each batch run, the harness waits until a window of "
        f"{SETTLE_WINDOW_S} s has less than {SETTLE_BUSY:.0%} of the CPUs busy (at most "
        f"{SETTLE_WITHIN_S:.0f} s; ran_out counts the waits that hit that bound), so that no "
        "figure is taken while work the previous one started still runs")
    if SETTLED["ran_out"]:
        fig["notes"].append(f"{SETTLED['ran_out']} of {SETTLED['waits']} waits for quiet CPUs "
                            f"ran out after {SETTLE_WITHIN_S:.0f} s: those figures were taken under load")
    fig["targets"] = [{"figure": n, "value": v, "target": t, "pass": ok} for n, v, t, ok in targets(fig)]
    print_table(fig)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(fig, indent=2) + "\n")
        log(f"figures written to {json_path}")
    return 1 if fig["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
