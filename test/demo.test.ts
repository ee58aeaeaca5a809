// npm run demo (test/demo/demo.ts): it runs, tells the story it should, and
// exits 0; as root, also as an unprivileged user (uid 65534) on a copy of
// the repository without dist/, as on a fresh clone.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isRoot, repoRoot, run, type RunResult } from './support.js';

const NOBODY = 65534;

/** The run shows the expiry bug: the demo waited for the release in vain and the daemon never tried rem. */
/** The seconds stamp of the first line matching `pattern`, and the line's index. */
function at(out: string, pattern: RegExp): { index: number; seconds: number } {
  const lines = out.split('\n');
  const index = lines.findIndex((l) => pattern.test(l));
  assert.notEqual(index, -1, `no line matches ${pattern} in:\n${out}`);
  const stamp = /^\[\s*([\d.]+)s\]/.exec(lines[index]);
  return { index, seconds: stamp === null ? NaN : Number(stamp[1]) };
}

/** Each pattern matches a line after the line the one before matched. */
function inOrder(out: string, patterns: RegExp[]): void {
  const lines = out.split('\n');
  let from = 0;
  for (const [i, pattern] of patterns.entries()) {
    const index = lines.findIndex((l, n) => n >= from && pattern.test(l));
    assert.notEqual(index, -1, `no line matching ${pattern}${i > 0 ? ` after one matching ${patterns[i - 1]}` : ''} in:\n${out}`);
    from = index + 1;
  }
}

/** The demo's narrative, in order, with the client's uid in the daemon's log. */
function assertStory(r: RunResult, uid: number): void {
  const out = r.stdout;
  assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${out}\nstderr:\n${r.stderr}`);
  const port = /a login server on 127\.0\.0\.1:(\d+) reports/.exec(out)?.[1];
  assert.ok(port !== undefined, out);
  // the sample configuration and the drop-in beside it
  assert.match(out, /var\/demo\/blocklistd\.conf -> etc\/blocklistd\.conf \(the sample, as it is\)/);
  assert.match(out, new RegExp(`blocklistd\\.conf\\.d/demo\\.conf: "${port} stream \\* \\* \\* 3 5"`));
  assert.match(out, /nfail\s+3: blocked at the 2nd AUTH_FAIL/);
  assert.match(out, /and "\[remote\] 127\.0\.0\.64\/26 \* \* \* = = =": the demo's "internet"/);
  const ip = (a: string): string => a.replace(/\./g, '\\.');
  const attacker = `${ip('127.0.0.66')}/32:${port}`;
  // the demo's own lines come in this order
  inOrder(out, [
    /bob +127\.0\.0\.70 logs in as bob\/biulder: "denied"/,
    /bob +127\.0\.0\.70 logs in as bob\/builder: "welcome bob"/,
    // the host itself: the sample's loopback allow-list says why it is never blocked
    /The host itself \(127\.0\.0\.1\) fails to log in: never blocked, the sample allow-lists loopback/,
    /\$ blocklistctl test -c var\/demo\/blocklistd\.conf 127\.0\.0\.1 \d+$/,
    /^\s+remote rule\s+\S*blocklistd\.conf:\d+\s+127\.0\.0\.0\/8\s+\*\s+\*\s+\*\s+=\s+\*\s+=$/,
    /^\s+nfail\s+\*: never blocked$/,
    /local +127\.0\.0\.1 logs in as root\/123456: "denied"/,
    /127\.0\.0\.1 has 2 points, and nfail \* \(never\): no block, however many/,
    /local +127\.0\.0\.1 logs in as root\/password: "denied"/,
    /127\.0\.0\.1 has 4 points, and nfail \* \(never\): no block, however many/,
    /attacker 127\.0\.0\.66 logs in as root\/123456: "denied"/,
    /failure 1 counted: 127\.0\.0\.66 has 2\/3 points/,
    /\$ blocklistctl dump -D var\/demo\/blocklistd\.db$/,
    new RegExp(`^\\s+blocklistd\\s+${attacker}\\s+2/3\\s`),
    /attacker 127\.0\.0\.66 logs in as root\/password: "denied"/,
    /failure 2 counted: 127\.0\.0\.66 has 4\/3 points/,
    new RegExp(`127\\.0\\.0\\.66 is blocked on port ${port} after 2 failures`),
    /\$ blocklistctl dump -b -r -D var\/demo\/blocklistd\.db$/,
    new RegExp(`^\\s+blocklistd\\s+${attacker}\\s+blocklistd:${attacker}\\s+4/3\\s+[1-5]s$`),
    /\$ blocklistctl dump -a -D var\/demo\/blocklistd\.db$/,
    new RegExp(`^\\s+blocklistd\\s+${attacker}\\s+blocklistd:${attacker}\\s+4/3\\s`),
    /alice +127\.0\.0\.10 logs in as alice\/wonderland: "welcome alice"/,
    /The block is lifted 5 s after the last failure/,
    /\$ blocklistctl dump -a -D var\/demo\/blocklistd\.db$/,
    /daemon stopped \(exit status 0\)/,
    /demo finished in [\d.]+ s/,
  ]);
  // and the daemon's log lines in this one
  inOrder(out, [
    /daemon \| listening on \S*var\/demo\/blocklistd\.sock$/,
    new RegExp(`daemon \\| processing type=1 remote=127\\.0\\.0\\.70:\\d+ msg="bad password for bob" uid=${uid} gid=${uid}$`),
    /daemon \| process: final db state for 127\.0\.0\.70: count=2\/3 /,
    new RegExp(`daemon \\| processing type=2 remote=127\\.0\\.0\\.70:\\d+ msg="login bob" uid=${uid} gid=${uid}$`),
    /daemon \| process: final db state for 127\.0\.0\.70: count=0\/3 /,
    /daemon \| processing type=1 remote=127\.0\.0\.66:\d+ msg="bad password for root"/,
    /daemon \| process: final db state for 127\.0\.0\.66: count=2\/3 /,
    /daemon \| process: final db state for 127\.0\.0\.66: count=4\/3 /,
    new RegExp(`daemon \\| blocklistd-helper: add blocklistd tcp 127\\.0\\.0\\.66 32 ${port} $`),
    new RegExp(`daemon \\| add returns OK blocklistd:${attacker}$`),
    new RegExp(`daemon \\| blocked ${attacker} for 5 seconds$`),
    /daemon \| processing type=2 remote=127\.0\.0\.10:\d+ msg="login alice"/,
    new RegExp(`daemon \\| blocklistd-helper: rem blocklistd tcp 127\\.0\\.0\\.66 32 ${port} blocklistd:${attacker}$`),
    new RegExp(`daemon \\| released ${attacker} after 5 seconds \\(blocked \\d+s\\)$`),
  ]);
  // what waits for what: the daemon listens before the first login, blocks before dump -b, releases before the last dump
  inOrder(out, [/daemon \| listening on/, /bob +127\.0\.0\.70 logs in/]);
  inOrder(out, [/daemon \| blocked 127\.0\.0\.66/, /\$ blocklistctl dump -b -r/]);
  inOrder(out, [/daemon \| released 127\.0\.0\.66/, /\$ blocklistctl dump -a/]);
  // the entry is gone after the release: the last dump shows the header only
  const lines = out.split('\n');
  const lastDump = lines.map((l) => /\$ blocklistctl dump -a/.test(l)).lastIndexOf(true);
  assert.match(lines[lastDump + 1], /^\s+rulename\s+address\/ma:port/);
  assert.doesNotMatch(lines[lastDump + 2], /127\.0\.0\.66/);
  // the release comes 5 s after the block (the expiry is at most a second late)
  const blocked = at(out, /daemon \| blocked 127\.0\.0\.66/).seconds;
  const released = at(out, /daemon \| released 127\.0\.0\.66/).seconds;
  assert.ok(released - blocked >= 4.4 && released - blocked <= 7, `blocked at ${blocked} s, released at ${released} s`);
  assert.ok(at(out, /demo finished/).seconds < 20, 'the demo takes less than 20 s');
  assert.doesNotMatch(out, /demo failed/);
  assert.doesNotMatch(out, /daemon \| blocked 127\.0\.0\.1\//, 'the host is never blocked');
  assert.doesNotMatch(out, /blocklistd-helper: add \S+ tcp 127\.0\.0\.1 /, 'the helper is never asked to block the host');
}

test('npm run demo: failures counted, the block, dump, a legitimate login, the release, a clean stop, exit 0', async (t) => {
  const start = Date.now();
  const r = await run('env', ['-C', repoRoot, 'npm', 'run', '--silent', 'demo']);
  t.diagnostic(`npm run demo: ${((Date.now() - start) / 1000).toFixed(1)} s`);
  assertStory(r, process.getuid!());
  assert.ok(existsSync(join(repoRoot, 'var/demo/blocklistd.db')), 'the database is under ./var/demo/');
});

test(
  'npm run demo as uid 65534 on a copy of the repository without dist/ (a fresh clone after npm ci, unbuilt): it builds and runs',
  { skip: isRoot ? false : 'needs root to run as another user (setpriv)' },
  async (t) => {
    const copy = mkdtempSync(join(tmpdir(), 'blocklistd-demo-clone-'));
    t.after(() => rmSync(copy, { recursive: true, force: true }));
    // what a clone has after `npm ci`, less the compiled TypeScript
    const entries = ['package.json', 'package-lock.json', 'tsconfig.json', 'bin', 'etc', 'src', 'test', 'build', 'node_modules'];
    const cp = await run('cp', ['-a', ...entries.map((e) => join(repoRoot, e)), copy]);
    assert.equal(cp.code, 0, cp.stderr);
    const chown = await run('chown', ['-R', `${NOBODY}:${NOBODY}`, copy]);
    assert.equal(chown.code, 0, chown.stderr);
    const start = Date.now();
    const r = await run('setpriv', [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      'env',
      '-C',
      copy,
      `HOME=${copy}`,
      `npm_config_cache=${join(copy, '.npm')}`,
      'npm',
      'run',
      '--silent',
      'demo',
    ]);
    t.diagnostic(`npm run demo as uid ${NOBODY}, building first: ${((Date.now() - start) / 1000).toFixed(1)} s`);
    assert.match(r.stdout, /demo: compiling the TypeScript/);
    // the whole build may report errors in test files the demo does not use; the demo must run all the same
    const story = { ...r, stdout: r.stdout.slice(r.stdout.indexOf('blocklistd demo:')) };
    assertStory(story, NOBODY);
    assert.ok(existsSync(join(copy, 'var/demo/blocklistd.db')));
  },
);

test(
  "the helper's log back end writes a batch's calls to stderr as it does single calls (what npm start " + 'shows after a restore with -r)',
  async () => {
    const env = { BLOCKLISTD_BACKEND: 'log', BLOCKLISTD_HELPER_CONF: join(tmpdir(), 'blocklistd-no-such-helper.conf') };
    const input = 'add blocklistd tcp 192.0.2.7 32 22 \nrem blocklistd tcp 192.0.2.8 32 22 blocklistd:192.0.2.8/32:22\n';
    const r = await run('sh', [join(repoRoot, 'bin/blocklistd-helper'), 'batch'], { env, input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'OK blocklistd:192.0.2.7/32:22\nOK\n');
    assert.match(r.stderr, /add blocklistd tcp 192\.0\.2\.7 32 22/);
    assert.match(r.stderr, /rem blocklistd tcp 192\.0\.2\.8 32 22/);
  },
);
