#!/usr/bin/env bash
# Run every fuzz target briefly (default 30 s each). Needs nightly and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
for target in $(cargo +nightly fuzz list); do
  echo "== $target ($seconds s)"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds"
done
