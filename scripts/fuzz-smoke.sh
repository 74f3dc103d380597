#!/usr/bin/env bash
# Smoke-run every fuzz target for a short time (default 60 s each; `scripts/fuzz-smoke.sh 300`
# for five minutes). Needs a nightly toolchain and cargo-fuzz; without them it says so and
# succeeds, so CI can call it unconditionally. Every target runs even when one fails; the
# script fails if any target does not build or finds a crash (its input is left in
# `fuzz/artifacts/<target>/`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke skipped: \`cargo +nightly fuzz\` is not available (needs a nightly toolchain and \`cargo install cargo-fuzz\`)"
  exit 0
fi

failed=()
for target in $(cargo +nightly fuzz list); do
  extra=()
  # A sandboxed guest has a 200 ms deadline: one input running 10 s is a hang. Full-length
  # inputs from the start: a few bytes make only trivial modules, and a minute is short.
  [ "$target" = sandbox ] && extra=(-timeout=10 -len_control=0)
  echo "== $target ($seconds s)"
  if ! cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" "${extra[@]}"; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke failed: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke passed"
