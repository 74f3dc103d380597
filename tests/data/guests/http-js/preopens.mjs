// Loaded with `node --import` while jco builds the guest: jco's own build tools run on Node's
// WASI shim (`@bytecodealliance/preview2-shim`), which starts with no preopened directory and
// so cannot read the WIT. This gives every copy of the shim installed next to this file the
// file system the build runs in.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SHIM = join('@bytecodealliance', 'preview2-shim', 'dist', 'nodejs', 'filesystem.js');

function* shims(modules) {
  if (!existsSync(modules)) return;
  const direct = join(modules, SHIM);
  if (existsSync(direct)) yield direct;
  for (const scope of readdirSync(modules)) {
    const packages = scope.startsWith('@') ? readdirSync(join(modules, scope)).map((p) => join(scope, p)) : [scope];
    for (const p of packages) yield* shims(join(modules, p, 'node_modules'));
  }
}

for (const path of shims(join(dirname(fileURLToPath(import.meta.url)), 'node_modules'))) {
  const shim = await import(pathToFileURL(path));
  shim._setPreopens({ '/': '/' });
}
