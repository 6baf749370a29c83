#!/usr/bin/env bash
# PrairieLearn's external grader runs this for every submission: it grades
# the files in $PL_GRADE_ROOT/student (default /grade/student) against
# @TASK@ and writes $PL_GRADE_ROOT/results/results.json.
# Written by `cargo grade package prairielearn @TASK@` (cargo-grade @GRADER_VERSION@).
#
# The grader comes from the image (cargo-grade on PATH, see image/Dockerfile
# beside this question), or from CARGO_GRADE_BIN. A submission that could
# not be graded is "gradable": false, never a score of 0.
set -uo pipefail

ROOT="${PL_GRADE_ROOT:-/grade}"
TESTS="$ROOT/tests"
COURSE="$TESTS/course"
STUDENT="$ROOT/student"
RESULTS="$ROOT/results"
TASK="@TASK@"
SLUG="@SLUG@"

mkdir -p "$RESULTS"
rm -f "$RESULTS/results.json" "$RESULTS/results.json.partial"

# A result that says, without a score, that grading did not happen.
not_gradable() {
  local why="$1"
  printf '{"gradable": false, "message": "COULD NOT GRADE: %s. This is a fault of the grader or the machine, not a verdict on your code: no score is given.", "format_errors": ["COULD NOT GRADE: %s"], "tests": []}\n' \
    "$why" "$why" >"$RESULTS/results.json"
  echo "run.sh: could not grade: $why"
  exit 0
}

BIN="${CARGO_GRADE_BIN:-$(command -v cargo-grade || true)}"
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  not_gradable "the grader (cargo-grade) is not installed in this image"
fi

# The crate among the student's files: src/main.rs, a folder holding it,
# or loose .rs files (what pl-file-upload gives: main.rs and its modules).
find_crate() {
  local dir
  for dir in "$STUDENT" "$STUDENT/starter/$SLUG" "$STUDENT"/*/; do
    dir="${dir%/}"
    if [ -f "$dir/src/main.rs" ]; then
      printf '%s\n' "$dir"
      return
    fi
  done
  local staged="$ROOT/staged-submission"
  rm -rf "$staged"
  mkdir -p "$staged/src"
  if compgen -G "$STUDENT/*.rs" >/dev/null; then
    cp "$STUDENT"/*.rs "$staged/src/"
  fi
  printf '%s\n' "$staged"
}

crate="$(find_crate)"
args=("$TASK" --course "$COURSE" --path "$crate" --format prairielearn)
if [ -d "$TESTS/instructor-specs" ]; then
  args+=(--instructor-specs "$TESTS/instructor-specs")
fi
"$BIN" "${args[@]}" >"$RESULTS/results.json.partial"
status=$?
# Graded (0, 1), or not gradable with the grader's own reason (2, with a
# result): either way the grader's result stands.
if [ -s "$RESULTS/results.json.partial" ]; then
  mv -f "$RESULTS/results.json.partial" "$RESULTS/results.json"
  echo "run.sh: cargo-grade exited with status $status; results in $RESULTS/results.json"
  exit 0
fi
not_gradable "cargo-grade exited with status $status without a result"
