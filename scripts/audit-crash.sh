#!/usr/bin/env bash
# The audit log's crash test at release scale: a writer is SIGKILLed at random moments
# ROUNDS times (default 10000); after every kill the log must open, verify, and hold every
# acknowledged record. `cargo test` runs the same test with 200 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
WARRANT_AUDIT_CRASH_ROUNDS="${1:-10000}" \
  cargo test --release -p tests --test it sigkill_at_random_moments -- --nocapture
