#!/usr/bin/env bash
# Run Warrant's whole test suite on a fresh Debian machine.
#
# Installs what the tests start for real when it is missing (Debian's `docker-registry`, the
# CNCF distribution registry; `skopeo`, used as an independent OCI tool; `openssl`, which makes
# the test CA for outgoing HTTPS; `containerd` and `runc`, which run the shim's tests; and what
# the shim builds with), then checks formatting, lints with warnings as errors, and
# runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The containerd shim: a real containerd and runc for its tests; protoc, libseccomp and
# libsystemd (and pkg-config to find them) to build runwasi's shim libraries.
[ -x /usr/bin/containerd ] || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
dpkg -s libsystemd-dev >/dev/null 2>&1 || need+=(libsystemd-dev)
dpkg -s libdbus-1-dev >/dev/null 2>&1 || need+=(libdbus-1-dev)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# A fresh machine builds the tree once: incremental state would only cost disk (gigabytes).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The broker alone, without the `internals` feature the tests enable: the library and its
# example build against the public interface only, with no warning.
public_only="$(mktemp)"
cargo check -p broker --lib --bins --examples --locked 2>&1 | tee "$public_only"
if grep -q '^warning' "$public_only"; then echo "warnings without the internals feature" >&2; exit 1; fi
rm -f "$public_only"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status="${PIPESTATUS[0]}"
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
