#!/usr/bin/env bash
# Short fuzz run: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 45) on a copy
# of its committed corpus (fuzz/corpus/<target>), so the run never adds files to the tree.
# Fails on any crash, panic, timeout or out-of-memory, printing the saved input's path
# (under fuzz/artifacts/<target>/, which git ignores) and how to replay it. Closes with
# "fuzz: N passed, M failed".
#
# Works on the stable toolchain; no nightly is needed. The default build has no sanitizer
# (cargo-fuzz `--sanitizer none`), which passes rustc no `-Z` flag at all: the code under
# test is safe Rust, and the C it links (SQLite, aws-lc) is not instrumented by cargo-fuzz
# anyway, so AddressSanitizer would add little but a third more build time (the build of
# every dependency with coverage instrumentation is most of this script's time).
# FUZZ_SANITIZER=address works on stable too: RUSTC_BOOTSTRAP=1, set below, lets stable
# rustc accept the `-Zsanitizer` flag cargo-fuzz then passes.
#
# Two targets run at a time, one libFuzzer process each, which keeps both cores of a 2-core
# machine busy. cargo-fuzz is installed with `cargo install --locked` at a pinned version if
# it is missing or another version (about 30 s on a 2-core machine).
#
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh          # a longer run
#   FUZZ_TARGETS="filter patch" FUZZ_SANITIZER=address bash .ci/fuzz.sh
#   FUZZ_ARGS="-only_ascii=1" bash .ci/fuzz.sh  # more libFuzzer flags (later ones win)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${FUZZ_SECONDS:-45}"
TARGETS=(${FUZZ_TARGETS:-filter patch mapping request})

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Debug assertions on, so arithmetic overflow is a crash rather than a silent wrap.
FUZZ_FLAGS=(--release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")

started=$(date +%s)
cargo fuzz build "${FUZZ_FLAGS[@]}"
echo "fuzz build: $(($(date +%s) - started)) s"

work=$(mktemp -d)
# The request target's database: in shared memory where there is some (fsyncs cost
# nothing there), and removed with everything else when the script ends.
scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
export SCIM_FUZZ_SCRATCH="$scratch"
trap 'rm -rf "$work" "$scratch"' EXIT

dict_for() {
  case "$1" in
    filter) echo fuzz/dict/filter.dict ;;
    *) echo fuzz/dict/json.dict ;;
  esac
}

run_target() {
  local target=$1
  mkdir -p "$work/corpus/$target" "fuzz/artifacts/$target"
  cp -R "fuzz/corpus/$target/." "$work/corpus/$target/"
  cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$work/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -dict="$(dict_for "$target")" \
    -artifact_prefix="fuzz/artifacts/$target/" \
    -print_final_stats=1 \
    ${FUZZ_ARGS:-} \
    >"$work/$target.log" 2>&1
}

passed=0
failed=0
report() {
  local target=$1 status=$2
  local execs
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/$target.log")
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $target: ok, ${execs:-?} inputs in ${SECONDS_PER_TARGET} s"
  else
    failed=$((failed + 1))
    echo "fuzz $target: FAILED (exit $status); the end of its log:"
    tail -n 60 "$work/$target.log"
    grep -ho "Test unit written to [^ ]*" "$work/$target.log" | sed 's/^Test unit written to /crashing input: /' || true
    grep -ho "Test unit written to [^ ]*" "$work/$target.log" |
      sed "s|^Test unit written to |replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${FUZZ_FLAGS[*]} $target |" || true
  fi
}

i=0
while [ $i -lt ${#TARGETS[@]} ]; do
  batch=("${TARGETS[@]:$i:2}")
  pids=()
  for target in "${batch[@]}"; do
    run_target "$target" &
    pids+=($!)
  done
  for j in "${!batch[@]}"; do
    status=0
    wait "${pids[$j]}" || status=$?
    report "${batch[$j]}" "$status"
  done
  i=$((i + 2))
done

echo "fuzz run: $(($(date +%s) - started)) s including the build"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
