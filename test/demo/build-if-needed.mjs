// npm run demo, first step: compiles the TypeScript when what the demo runs
// (src/, test/demo/) is missing from dist/ or older than its source.  Plain
// JavaScript: it runs before anything is built.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '../../..');

function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
};

/** The first source whose output is missing or older, or undefined. */
function stale() {
  const config = mtime(join(root, 'tsconfig.json'));
  for (const dir of ['src', 'test/demo']) {
    for (const source of sources(join(root, dir))) {
      const rel = relative(root, source);
      const out = mtime(join(root, 'dist', rel.replace(/\.ts$/, '.js')));
      if (out < mtime(source) || out < config) return rel;
    }
  }
  return undefined;
}

const changed = stale();
if (changed !== undefined) {
  process.stdout.write(`demo: compiling the TypeScript (${changed} is newer than its build)\n`);
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
  if (tsc.status !== 0) {
    // tsc still writes its output; errors in files the demo does not use need not stop it
    const still = stale();
    if (still !== undefined || tsc.error !== undefined) {
      process.stderr.write(`demo: the build failed${still === undefined ? '' : ` (${still} was not compiled)`}\n`);
      process.exit(1);
    }
    process.stderr.write('demo: tsc reported errors (above), but the files the demo runs are compiled: going on\n');
  }
}
