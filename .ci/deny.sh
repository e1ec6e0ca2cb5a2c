#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (policy in deny.toml at the repository root).
#
# Runs `cargo deny --locked check` for bans, licenses and sources, one check at a time, and
# closes with a line "cargo-deny: N passed, M failed"; exits non-zero if any check failed.
#
# The advisories check is NOT run by default: cargo-deny fetches the RustSec advisory
# database as a git repository from GitHub, and this CI's network reaches only the package
# registries, not GitHub (no registry ships a copy of the database either). deny.toml records
# the advisories that were checked by hand instead. Where GitHub is reachable, run
#   CARGO_DENY_ADVISORIES=1 bash .ci/deny.sh
# to add the advisories check (it then counts like the others).
#
# cargo-deny is installed with `cargo install --locked` at a pinned version if the binary in
# ~/.cargo/bin is missing or is another version. That compiles it from source: about
# 3.5 minutes on a 2-core machine; later runs on the same machine reuse the binary and the
# checks take about 3 s. Inclusion graphs are hidden to keep the log short; drop
# --hide-inclusion-graph below (or run `cargo deny check bans` by hand) to see where a crate
# comes from.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2   # newest release; needs rustc >= 1.88

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

installed_version() {
  command -v cargo-deny >/dev/null 2>&1 || return 0
  cargo-deny --version 2>/dev/null | awk '{print $2}'
}

have=$(installed_version)
if [ "$have" != "$CARGO_DENY_VERSION" ]; then
  echo "installing cargo-deny $CARGO_DENY_VERSION (found: ${have:-none}); this compiles it, a few minutes"
  start=$SECONDS
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
  echo "cargo-deny installed in $((SECONDS - start)) s"
fi
cargo deny --version

checks=(bans licenses sources)
if [ "${CARGO_DENY_ADVISORIES:-0}" = "1" ]; then
  checks=(advisories "${checks[@]}")
else
  echo "advisories: not checked here (advisory database is on GitHub, unreachable from CI);"
  echo "            see the [advisories] notes in deny.toml; CARGO_DENY_ADVISORIES=1 enables it"
fi

passed=0
failed=0
failed_names=()
for check in "${checks[@]}"; do
  echo
  echo "-- cargo deny check $check --"
  if cargo deny --locked check --hide-inclusion-graph "$check"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$check")
  fi
done

echo
if [ "$failed" -gt 0 ]; then
  echo "failed checks: ${failed_names[*]}"
fi
echo "cargo-deny: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
