#!/usr/bin/env bash
# Build the serve tests' `wasi:http` guests with real toolchains that no one here wrote, from
# the sources in tests/data/guests/http-*: a Python handler with componentize-py (PyPI) and a
# JavaScript handler with jco and componentize-js (npm).
#
# Usage: scripts/build-toolchain-guests.sh [OUTDIR]   (default: target/toolchain-guests)
#
# The toolchains are installed, at pinned versions, into OUTDIR/tools when missing. Each guest
# is built once per hash of its source, the toolchain versions and the WIT (the `wasi:http`
# 0.2.12 WIT that ships with the `wasmtime-wasi-http` crate Warrant builds with, found through
# `cargo metadata`), into OUTDIR/<hash>/; a second run is a cache hit. Builds are not
# reproducible (the toolchains embed what they like), which is why tests sign what was built
# rather than compare it. Prints `python=PATH` and `js=PATH`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/toolchain-guests}"
componentize_py_version=0.25.1
jco_version=1.35.0
componentize_js_version=0.23.0
world='wasi:http/proxy@0.2.12'
mkdir -p "$out/tools"
out="$(cd "$out" && pwd)"
tools="$out/tools"

wit="$(cargo metadata --format-version 1 --manifest-path "$root/Cargo.toml" \
  | python3 -c 'import json, os, sys
packages = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in packages if p["name"] == "wasmtime-wasi-http") + "/wit")')"
[ -f "$wit/deps/http.wit" ] || { echo "no wasi:http WIT at $wit" >&2; exit 1; }

# componentize-py, in a virtual environment of its own.
cpy="$tools/python/bin/componentize-py"
if [ ! -x "$cpy" ] || [ "$("$tools/python/bin/python" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p')" != "$componentize_py_version" ]; then
  python3 -m venv "$tools/python" >&2
  "$tools/python/bin/python" -m pip install -q "componentize-py==$componentize_py_version" >&2
fi

# jco and componentize-js, with the shim fix-up loaded at build time (see preopens.mjs).
jco="$tools/js/node_modules/.bin/jco"
if [ ! -x "$jco" ] || ! grep -q "\"version\": \"$jco_version\"" "$tools/js/node_modules/@bytecodealliance/jco/package.json"; then
  npm install --prefix "$tools/js" --no-audit --no-fund --loglevel=error \
    "@bytecodealliance/jco@$jco_version" "@bytecodealliance/componentize-js@$componentize_js_version" >&2
fi
cp "$root/tests/data/guests/http-js/preopens.mjs" "$tools/js/preopens.mjs"

hash_of() {
  # The guest's sources, the toolchains' versions and the WIT, in a stable order.
  {
    echo "componentize-py $componentize_py_version jco $jco_version componentize-js $componentize_js_version $world"
    (cd "$1" && find . -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum)
    (cd "$wit" && find . -type f -name '*.wit' | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -c1-16
}

python_src="$root/tests/data/guests/http-python"
python_out="$out/$(hash_of "$python_src")/python.wasm"
if [ ! -f "$python_out" ]; then
  mkdir -p "$(dirname "$python_out")"
  work="$(mktemp -d)"
  # Built from a copy: the toolchain leaves `__pycache__` next to the sources it reads.
  cp -r "$python_src" "$work/src"
  (cd "$work" && "$cpy" -d "$wit" -w "$world" componentize -p "$work/src" app -o "$work/python.wasm" >&2)
  mv "$work/python.wasm" "$python_out"
  rm -rf "$work"
fi

js_src="$root/tests/data/guests/http-js"
js_out="$out/$(hash_of "$js_src")/js.wasm"
if [ ! -f "$js_out" ]; then
  mkdir -p "$(dirname "$js_out")"
  # jco reads the WIT from under its working directory.
  work="$(mktemp -d "$tools/js/build.XXXXXX")"
  cp -r "$wit" "$work/wit"
  cp "$js_src/app.js" "$work/app.js"
  (cd "$work" && node --import "$tools/js/preopens.mjs" "$jco" componentize app.js --wit wit -n "$world" -o js.wasm >&2)
  mv "$work/js.wasm" "$js_out"
  rm -rf "$work"
fi

echo "python=$python_out"
echo "js=$js_out"
