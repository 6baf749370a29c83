#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image
# (Ubuntu): it installs what cargo-grade needs and builds the grader.
# Written by `cargo grade package gradescope @TASK@` (cargo-grade @GRADER_VERSION@).
#
# Every path is under $AUTOGRADER_ROOT (default /autograder), so the layout
# can be simulated anywhere. Steps that need the network are skipped, and
# say so, when CARGO_GRADE_OFFLINE=1; CARGO_GRADE_BIN=PATH uses a grader
# binary built elsewhere instead of building one here; CARGO_GRADE_TOOLCHAIN
# picks the Rust toolchain (default: the one the package was made with).
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
COURSE="$SRC/course"
TASK="@TASK@"
SLUG="@SLUG@"
FIRST_TEST="@FIRST_TEST@"
TOOLCHAIN="${CARGO_GRADE_TOOLCHAIN:-@TOOLCHAIN@}"
OFFLINE="${CARGO_GRADE_OFFLINE:-0}"

say() { printf 'setup.sh: %s\n' "$*"; }

# Whether a step that needs the network may run.
online() {
  if [ "$OFFLINE" = 1 ]; then
    say "skipped, it needs the network (CARGO_GRADE_OFFLINE=1): $*"
    return 1
  fi
  say "$*"
}

if online "apt-get install build-essential curl ca-certificates"; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    build-essential curl ca-certificates
fi

if online "install the Rust toolchain $TOOLCHAIN with rustup"; then
  if ! command -v rustup >/dev/null 2>&1; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --default-toolchain "$TOOLCHAIN"
  else
    rustup toolchain install --profile minimal "$TOOLCHAIN"
    rustup default "$TOOLCHAIN"
  fi
fi
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi

if online "cargo fetch: the crates of the grader and of the $SLUG starter"; then
  cargo fetch --locked --manifest-path "$COURSE/Cargo.toml"
  cargo fetch --locked --manifest-path "$COURSE/starter/$SLUG/Cargo.toml"
fi

mkdir -p "$SRC/bin"
if [ -n "${CARGO_GRADE_BIN:-}" ]; then
  say "using the grader binary $CARGO_GRADE_BIN (CARGO_GRADE_BIN) instead of building it"
  cp "$CARGO_GRADE_BIN" "$SRC/bin/cargo-grade"
else
  say "building the grader"
  cargo build --release --locked --offline --manifest-path "$COURSE/Cargo.toml" -p cargo-grade
  cp "$COURSE/target/release/cargo-grade" "$SRC/bin/cargo-grade"
fi
chmod 755 "$SRC/bin/cargo-grade"

# One test of the starter, so that its dependencies are compiled into the
# image and each submission compiles only its own code.
say "warming the build cache: grading the starter's $FIRST_TEST"
if ! "$SRC/bin/cargo-grade" "$TASK" --course "$COURSE" --only "$FIRST_TEST" --format json >/dev/null; then
  say "warning: grading the starter failed; submissions will still be graded"
fi
say "ready: run_autograder grades $ROOT/submission"
