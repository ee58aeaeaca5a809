// errno texts without the addon (src/errno.ts): the same words as the C
// library's strerror, and conf, state and run load where the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { errnoMessage, errnoText } from '../src/errno.js';
import { strerror } from '../src/protocol/native.js';
import { repoRoot, run, tempDir } from './support.js';

test('errnoMessage says what the C library says for every errno of this platform', (t) => {
  if (process.platform !== 'linux') return t.skip('the table holds glibc texts: compared on Linux only');
  for (const [name, errno] of Object.entries(constants.errno)) assert.equal(errnoMessage(errno), strerror(errno), name);
  assert.equal(errnoMessage(-constants.errno.ENOENT), 'No such file or directory', 'the sign of a Node errno does not matter');
  assert.equal(errnoMessage(100000), strerror(100000));
});

test('errnoText: the errno text of a failed system call, else the message', () => {
  let failed: unknown;
  try {
    readFileSync(join(tempDir(), 'missing'));
  } catch (e) {
    failed = e;
  }
  assert.equal(errnoText(failed), 'No such file or directory');
  assert.equal(errnoText(new Error('plain')), 'plain');
  assert.equal(errnoText('a string'), 'a string');
  assert.equal(errnoText(undefined), 'undefined');
});

test('conf, state and run load without the native addon', async () => {
  const root = tempDir();
  // dist/ without build/: loading the addon fails there
  execFileSync('cp', ['-R', join(repoRoot, 'dist'), join(repoRoot, 'package.json'), root]);
  symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'));
  const modules = ['conf/load', 'conf/parse', 'conf/ruleset', 'conf/match', 'conf/format', 'state/store', 'state/entry', 'run/helper', 'errno', 'text'];
  const script = `for (const m of ${JSON.stringify(modules)}) await import(${JSON.stringify(root)} + '/dist/src/' + m + '.js'); console.log('loaded');`;
  const loaded = await run(process.execPath, ['--input-type=module', '-e', script]);
  assert.equal(loaded.stderr, '');
  assert.equal(loaded.stdout, 'loaded\n');
  const addon = await run(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(join(root, 'dist/src/protocol/native.js'))})`]);
  assert.notEqual(addon.code, 0, 'the addon is really hidden');
});
