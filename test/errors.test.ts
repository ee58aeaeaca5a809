// One error vocabulary: errno texts without the addon (src/errno.ts), the
// same words as the C library's strerror; conf, state and run load where the
// addon is not built; a bug at start-up is reported with its stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { errnoMessage, errnoText } from '../src/errno.js';
import { strerror } from '../src/protocol/native.js';
import { SyslogReceiver, repoRoot, run, tempDir } from './support.js';

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
  const modules = [
    'conf/load',
    'conf/parse',
    'conf/ruleset',
    'conf/match',
    'conf/format',
    'state/store',
    'state/entry',
    'run/helper',
    'errno',
    'text',
  ];
  const paths = modules.map((m) => join(root, 'dist/src', `${m}.js`));
  const script = `for (const path of ${JSON.stringify(paths)}) await import(path); console.log('loaded');`;
  const loaded = await run(process.execPath, ['--input-type=module', '-e', script]);
  assert.equal(loaded.stderr, '');
  assert.equal(loaded.stdout, 'loaded\n');
  const addonPath = join(root, 'dist/src/protocol/native.js');
  const addon = await run(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(addonPath)})`]);
  assert.notEqual(addon.code, 0, 'the addon is really hidden');
});

test('a bug at start-up is an internal error with its stack, in the log and on stderr; a known failure stays one line', async (t) => {
  const dir = tempDir();
  const syslog = new SyslogReceiver();
  t.after(() => syslog.close());
  const args = ['node', 'blocklistd', '--foreground', '--syslog-socket', syslog.path, '-c', '/dev/null'];
  args.push('-D', join(dir, 'db'), '-s', join(dir, 's.sock'));
  // a programming error injected into start(): nothing else of the daemon is replaced
  const script = (start: string): string => `
    import { Daemon, FatalError } from ${JSON.stringify(join(repoRoot, 'dist/src/daemon/daemon.js'))};
    import { main } from ${JSON.stringify(join(repoRoot, 'dist/src/daemon/main.js'))};
    Daemon.prototype.start = async function () { ${start} };
    await main(${JSON.stringify(args)});`;
  const bug = join(dir, 'bug.mjs');
  writeFileSync(bug, script('return undefined.programmingError;'));
  const crashed = await run(process.execPath, [bug]);
  assert.equal(crashed.code, 1);
  const stack =
    /^blocklistd: internal error: TypeError: Cannot read properties of undefined \(reading 'programmingError'\)\n {4}at Daemon\.start /;
  assert.match(crashed.stderr, stack);
  // syslog gets one record a line
  const records = await syslog.wait(2);
  assert.match(records[0]!, /internal error: TypeError: Cannot read properties of undefined/);
  assert.match(records[1]!, /: +at Daemon\.start /);
  const known = join(dir, 'known.mjs');
  writeFileSync(known, script("throw new FatalError('a known failure');"));
  const failed = await run(process.execPath, [known]);
  assert.deepEqual([failed.code, failed.stderr], [1, 'blocklistd: a known failure\n']);
});

test('every error class says its name', async () => {
  const { StateError } = await import('../src/state/store.js');
  const { LockError } = await import('../src/state/lock.js');
  const { FatalError } = await import('../src/daemon/daemon.js');
  const { StartupError, UsageError } = await import('../src/daemon/options.js');
  const { ControlSetupError } = await import('../src/daemon/control.js');
  const { EngineBusy } = await import('../src/daemon/manual.js');
  const { ControlError } = await import('../src/protocol/control.js');
  const { SocketSetupError } = await import('../src/protocol/server.js');
  const { WatchError } = await import('../src/watch/main.js');
  const errors = [
    new StateError('m'),
    new LockError('m'),
    new FatalError('m'),
    new StartupError('m'),
    new UsageError('m'),
    new ControlSetupError('m'),
    new EngineBusy('m', 'busy'),
    new ControlError('busy', 'm'),
    new SocketSetupError('m', 'EINVAL'),
    new WatchError('m'),
  ];
  for (const e of errors) assert.equal(e.name, e.constructor.name);
  assert.equal(new StateError('m').code, 'unavailable');
});
