// The two starters of the helpers (src/run/start.ts): posix_spawn through
// the addon blspawn and child_process.spawn start a helper alike.  Each
// runs in a child process of its own (test/fixtures/start-probe.mjs), with
// BLOCKLISTD_SPAWN choosing the starter, and reports what the helpers saw.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, tempDir } from './support.js';

/** What a helper started by `starter` sees: its ids, signal masks, descriptors, argv[0]; and what the daemon learns. */
interface Facts {
  starter: string;
  /** pid, process group, session: the helper leads a session of its own. */
  pid: number;
  pgid: number;
  sid: number;
  sigIgn: string;
  sigBlk: string;
  argv0: string;
  stdin: string;
  stdout: string;
  stderr: boolean;
  env: string;
  answer: string;
  input: string;
  exit: [number | null, string | null];
  killed: [number | null, string | null];
  /** Zombies of the daemon once every helper has exited: none. */
  zombies: number;
  missing: number;
}

/**
 * What the probe reports, started by `starter`; `wrapper`: the command that runs it; `busy`: with another helper
 * running meanwhile (the addon then starts them in libuv's thread pool, else on the event loop's thread).
 */
function facts(starter: 'posix_spawn' | 'fork', wrapper: string[] = [], busy = false): Facts {
  const command = [...wrapper, process.execPath, join(repoRoot, 'test/fixtures/start-probe.mjs')];
  const out = execFileSync(command[0]!, command.slice(1), {
    env: { ...process.env, BLOCKLISTD_SPAWN: starter === 'fork' ? 'fork' : '', START_PROBE_BUSY: busy ? '1' : '' },
    encoding: 'utf8',
  });
  return JSON.parse(out) as Facts;
}

const linux = process.platform === 'linux';

test('both starters start a helper alike: a session of its own, default signals, argv[0], stdio, environment, exit', () => {
  const forked = facts('fork');
  assert.equal(forked.starter, 'fork');
  const spawned = facts('posix_spawn');
  assert.equal(spawned.starter, linux ? 'posix_spawn' : 'fork', 'posix_spawn wherever pidfds exist');
  // the addon's two ways: on the event loop's thread when no other helper runs, in the thread pool beside one
  const pooled = facts('posix_spawn', [], true);
  for (const f of [forked, spawned, pooled]) {
    assert.equal(f.pgid, f.pid, `${f.starter}: its own process group`);
    assert.equal(f.sid, f.pid, `${f.starter}: its own session`);
    assert.equal(f.sigIgn, 'SigIgn:\t0000000000000000', `${f.starter}: no signal ignored (the daemon ignores SIGPIPE)`);
    assert.equal(f.sigBlk, 'SigBlk:\t0000000000000000', `${f.starter}: no signal blocked`);
    assert.equal(f.argv0, 'control');
    assert.equal(f.stdin, '/dev/null');
    assert.match(f.stdout, /^socket:/, `${f.starter}: stdout a socket pair, as libuv makes it`);
    assert.ok(f.stderr, `${f.starter}: the daemon's stderr`);
    assert.equal(f.env, 'inherited ', `${f.starter}: the daemon's environment as it is now`);
    assert.equal(f.input, 'batch input', `${f.starter}: stdin a pipe when asked`);
    assert.equal(f.answer, 'given', `${f.starter}: an environment of its own`);
    assert.deepEqual(f.exit, [3, null]);
    assert.deepEqual(f.killed, [null, 'SIGKILL']);
    assert.equal(f.zombies, 0, `${f.starter}: every helper reaped`);
    assert.equal(f.missing, -2, `${f.starter}: ENOENT for a missing program`);
  }
});

const SECCOMP_HEADER = '/usr/include/seccomp.h';
const EPERM = 1;
const ENOSYS = 38;

test(
  'where a seccomp filter refuses pidfd_open, child_process starts the helpers; a kernel without it (ENOSYS) likewise',
  { skip: !linux ? 'Linux only' : !existsSync(SECCOMP_HEADER) ? `no ${SECCOMP_HEADER} (libseccomp-dev)` : false },
  () => {
    const deny = join(tempDir('blocklistd-start-'), 'deny-syscall');
    execFileSync('cc', ['-O2', '-o', deny, join(repoRoot, 'test/fixtures/deny-syscall.c'), '-lseccomp']);
    for (const errno of [EPERM, ENOSYS]) {
      const f = facts('posix_spawn', [deny, 'pidfd_open', String(errno)]);
      assert.equal(f.starter, 'fork', `pidfd_open failing with ${errno}`);
      assert.deepEqual(f.exit, [3, null]);
      assert.equal(f.zombies, 0);
    }
  },
);
