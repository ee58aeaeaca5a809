// End to end, for real: two network namespaces joined by a veth pair.  The
// server namespace runs blocklistd (-d, its own config, database and
// socket) with bin/blocklistd-helper's nftables back end, and the demo's
// login server (test/demo/login-server.ts) on 10.97.0.1 and fd97::1 port
// 2222, reporting each login; the client namespace holds an attacker
// (10.97.0.2, fd97::2) and a user (10.97.0.3, fd97::3).  The attacker fails
// logins until its SYNs go unanswered; the user still logs in; `blocklistctl
// dump -b` and `nft list` show the blocks; a restart with -r after the
// firewall lost its rules installs them again; after the duration the
// attacker gets through again.  Once with the client API as the reporter,
// once with the independent C client blprobe (the blocklist_sa form: the
// client's address in the message).  Needs root.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { AttemptOutcome, AttemptResult } from './demo/attacker.js';
import {
  WatchedProcess,
  blprobe,
  deleteNamespaces,
  escapeRegExp,
  isRoot,
  killWatched,
  repoRoot,
  run,
  succeeds,
  tempDir,
  vethPair,
} from './support.js';

process.env.PATH = `/usr/sbin:/sbin:${process.env.PATH ?? '/usr/bin:/bin'}`;

const PORT = 2222;
/** nfail of the rule: AUTH_FAIL counts 2, so the 2nd failure blocks. */
const NFAIL = 3;
const FAILURES_TO_BLOCK = Math.ceil(NFAIL / 2);
/** The rule's duration: long enough for the checks and a restart before the first block expires. */
const DURATION = 14;
const TABLE = 'blocklistd_e2e';
/** How long a connection attempt is given before it counts as dropped. */
const CONNECT_MS = 1000;

const SERVER = { 4: '10.97.0.1', 6: 'fd97::1' } as const;
const ATTACKER = { 4: '10.97.0.2', 6: 'fd97::2' } as const;
const USER = { 4: '10.97.0.3', 6: 'fd97::3' } as const;
type Family = 4 | 6;
const mask = (f: Family): number => (f === 4 ? 32 : 128);

const missing = ['ip', 'nft', 'flock'].filter((p) => spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0);
const skip = !isRoot ? 'needs root (network namespaces, nftables)' : missing.length > 0 ? `missing programs: ${missing.join(', ')}` : false;

// --- namespaces ------------------------------------------------------------

// whatever happens, nothing is left behind: a failed test (t.after), an exception (support.ts at exit), an interrupt
function cleanUp(): void {
  killWatched();
  deleteNamespaces();
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    cleanUp();
    process.kill(process.pid, signal);
  });
}
/** The server and client namespaces, joined by a veth pair, removed after the test (their processes first). */
async function network(t: TestContext): Promise<{ srv: string; cli: string }> {
  t.after(killWatched);
  return vethPair(
    t,
    'ble',
    [`${SERVER[4]}/24`, `${SERVER[6]}/64`],
    [`${ATTACKER[4]}/24`, `${USER[4]}/24`, `${ATTACKER[6]}/64`, `${USER[6]}/64`],
  );
}

// --- processes in the server namespace ----------------------------------------

interface Server {
  srv: string;
  cli: string;
  dir: string;
  db: string;
  sock: string;
  config: string;
  helperConf: string;
}

/** blocklistd -d in the server namespace, the nftables back end in table TABLE. */
async function startDaemon(s: Server, restore: boolean): Promise<WatchedProcess> {
  const args = ['-d', '-c', s.config, '-D', s.db, '-s', s.sock, ...(restore ? ['-r'] : [])];
  const env = [
    `BLOCKLISTD_BACKEND=nftables`,
    `BLOCKLISTD_HELPER_CONF=${s.helperConf}`,
    `BLOCKLISTD_HELPER_LOCK=${join(s.dir, 'helper.lock')}`,
  ];
  // ip netns exec execs the program: the child's pid is the daemon's
  const child = spawn('ip', ['netns', 'exec', s.srv, 'env', ...env, process.execPath, join(repoRoot, 'bin/blocklistd'), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const daemon = new WatchedProcess('blocklistd', child, [child.stderr]);
  await daemon.waitFor(/^listening on /m);
  return daemon;
}

/** The login server in the server namespace on both addresses, reporting with the client API or blprobe. */
async function startLoginServer(s: Server, reporter: string | undefined): Promise<WatchedProcess> {
  const args = [
    join(repoRoot, 'dist/test/demo/login-server.js'),
    '-l',
    SERVER[4],
    '-l',
    SERVER[6],
    '-p',
    String(PORT),
    '-s',
    s.sock,
    ...(reporter === undefined ? [] : ['--blprobe', reporter]),
  ];
  // its stderr: blprobe's complaints while the daemon is down, expected
  const child = spawn('ip', ['netns', 'exec', s.srv, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const server = new WatchedProcess('login-server', child);
  await server.waitFor(new RegExp(`^listening on \\[${escapeRegExp(SERVER[6])}\\]:${PORT}$`, 'm'));
  return server;
}

/** One login from the client namespace. */
async function login(s: Server, from: string, user: string, password: string): Promise<AttemptResult> {
  const to = from.includes(':') ? SERVER[6] : SERVER[4];
  const args = [
    join(repoRoot, 'dist/test/demo/attacker.js'),
    '-h',
    to,
    '-p',
    String(PORT),
    '-b',
    from,
    '-u',
    user,
    '-w',
    password,
    '-t',
    String(CONNECT_MS),
  ];
  const r = await succeeds(run('ip', ['netns', 'exec', s.cli, process.execPath, ...args]), `login from ${from}`);
  return JSON.parse(r.stdout) as AttemptResult;
}

const userLogin = (s: Server, f: Family): Promise<AttemptResult> => login(s, USER[f], 'alice', 'wonderland');

/** The blocks in table TABLE as `proto address port`, sorted; [] without the table. */
async function nftBlocks(s: Server): Promise<string[]> {
  const r = await run('ip', ['netns', 'exec', s.srv, 'nft', '-j', 'list', 'table', 'inet', TABLE]);
  if (r.code !== 0) return [];
  const items = (JSON.parse(r.stdout) as { nftables: { set?: { name: string; elem?: unknown[] } }[] }).nftables;
  const blocks: string[] = [];
  for (const { set } of items) {
    for (const e of set?.elem ?? []) {
      const element = e as { concat?: unknown[]; elem?: { val: { concat: unknown[] } } };
      const concat = element.concat ?? element.elem?.val.concat ?? [];
      blocks.push(concat.map((v) => (typeof v === 'object' && v !== null && 'prefix' in v ? JSON.stringify(v) : String(v))).join(' '));
    }
  }
  return blocks.sort();
}

const blockOf = (f: Family): string => `tcp ${ATTACKER[f]} ${PORT}`;

async function dumpBlocked(s: Server): Promise<string> {
  return (
    await succeeds(run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), 'dump', '-b', '-n', '-D', s.db]), 'blocklistctl dump -b')
  ).stdout;
}

/**
 * The attacker fails logins from `ATTACKER[f]` until a connection goes
 * unanswered; each failure is waited for in the daemon's log (and the block's
 * helper call), so the outcome does not depend on timing.  Returns the
 * number of failures answered.
 */
async function attack(t: TestContext, s: Server, daemon: WatchedProcess, f: Family): Promise<number> {
  const passwords = ['123456', 'password', 'qwerty', 'letmein', 'dragon', 'monkey'];
  let failures = 0;
  for (const password of passwords) {
    const from = daemon.mark;
    const r = await login(s, ATTACKER[f], 'root', password);
    if (r.outcome !== 'denied') {
      assert.equal(r.outcome, 'no-connect' satisfies AttemptOutcome, `attempt ${failures + 1} from ${ATTACKER[f]}: ${JSON.stringify(r)}`);
      t.diagnostic(`IPv${f}: ${ATTACKER[f]} blocked after ${failures} failed logins; the next SYN went unanswered for ${r.ms} ms`);
      return failures;
    }
    failures++;
    await daemon.waitFor(
      new RegExp(`^process: final db state for ${escapeRegExp(ATTACKER[f])}: count=${2 * failures}/${NFAIL} `, 'm'),
      from,
    );
    if (2 * failures >= NFAIL)
      await daemon.waitFor(new RegExp(`^blocked ${escapeRegExp(ATTACKER[f])}/${mask(f)}:${PORT} for ${DURATION} seconds$`, 'm'), from);
  }
  assert.fail(`${ATTACKER[f]} was never blocked`);
}

async function flow(t: TestContext, reporter: string | undefined): Promise<void> {
  const { srv, cli } = await network(t);
  const dir = tempDir('blocklistd-e2e-');
  const s: Server = {
    srv,
    cli,
    dir,
    db: join(dir, 'blocklistd.db'),
    sock: join(dir, 'blocklistd.sock'),
    config: join(dir, 'blocklistd.conf'),
    helperConf: join(dir, 'blocklistd-helper.conf'),
  };
  writeFileSync(s.config, `[local]\n${PORT}\tstream\t*\t*\t*\t${NFAIL}\t${DURATION}\n`);
  writeFileSync(s.helperConf, `backend=nftables\nnft_table=${TABLE}\n`);
  let daemon = await startDaemon(s, false);
  const server = await startLoginServer(s, reporter);
  t.after(async () => {
    await server.stop();
    await daemon.stop();
  });

  // before: everyone gets in
  assert.deepEqual(
    (await Promise.all([userLogin(s, 4), userLogin(s, 6)])).map((r) => r.outcome),
    ['welcome', 'welcome'],
  );

  // IPv4: blocked after nfail points; the other address still logs in
  assert.equal(await attack(t, s, daemon, 4), FAILURES_TO_BLOCK);
  const blockedAt = Date.now();
  const [user4, again4] = await Promise.all([userLogin(s, 4), login(s, ATTACKER[4], 'root', 'again')]);
  assert.equal(user4.outcome, 'welcome', `${USER[4]} while ${ATTACKER[4]} is blocked`);
  assert.equal(again4.outcome, 'no-connect', `${ATTACKER[4]} stays blocked`);

  // IPv6 likewise; the IPv4 block holds
  assert.equal(await attack(t, s, daemon, 6), FAILURES_TO_BLOCK);
  const [user6, user4b, again4b] = await Promise.all([userLogin(s, 6), userLogin(s, 4), login(s, ATTACKER[4], 'root', 'again')]);
  assert.deepEqual([user6.outcome, user4b.outcome, again4b.outcome], ['welcome', 'welcome', 'no-connect']);

  // what the database and the packet filter hold
  const dump = await dumpBlocked(s);
  for (const f of [4, 6] as const) {
    assert.match(
      dump,
      new RegExp(`^blocklistd\\s+${escapeRegExp(ATTACKER[f])}/${mask(f)}:${PORT}\\s+\\S+\\s+4/${NFAIL}\\s`, 'm'),
      `dump -b:\n${dump}`,
    );
  }
  assert.equal(dump.trim().split('\n').length, 2, `dump -b:\n${dump}`);
  assert.deepEqual(await nftBlocks(s), [blockOf(4), blockOf(6)]);

  // the firewall loses its rules while the daemon is down (a reboot, nft -f with flush ruleset) ...
  assert.equal(await daemon.stop(), 0, 'the daemon stops cleanly');
  await succeeds(run('ip', ['netns', 'exec', srv, 'nft', 'delete', 'table', 'inet', TABLE]), 'nft delete table');
  assert.deepEqual(await nftBlocks(s), []);
  // (the daemon is down: these failures are not counted)
  const open = await Promise.all([login(s, ATTACKER[4], 'root', 'x'), login(s, ATTACKER[6], 'root', 'x')]);
  assert.deepEqual(
    open.map((r) => r.outcome),
    ['denied', 'denied'],
    'without the rules the attacker gets through',
  );

  // ... and a restart with -r installs the blocks again
  const restartedAt = Date.now();
  t.diagnostic(`restart with -r ${((restartedAt - blockedAt) / 1000).toFixed(1)} s after the first block`);
  assert.ok(
    restartedAt - blockedAt < (DURATION - 3) * 1000,
    `the restart came ${restartedAt - blockedAt} ms after the first block: too slow for a ${DURATION} s duration`,
  );
  daemon = await startDaemon(s, true);
  await daemon.waitFor(/^restoring 2 blocks$/m);
  await daemon.waitFor(/^add returns OK/m, 0);
  const deadline = Date.now() + 5000;
  while ((await nftBlocks(s)).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await nftBlocks(s), [blockOf(4), blockOf(6)], 'nft list after the restart with -r');
  const after = await Promise.all([
    login(s, ATTACKER[4], 'root', 'x'),
    login(s, ATTACKER[6], 'root', 'x'),
    userLogin(s, 4),
    userLogin(s, 6),
  ]);
  assert.deepEqual(
    after.map((r) => r.outcome),
    ['no-connect', 'no-connect', 'welcome', 'welcome'],
    'after the restart with -r',
  );
  t.diagnostic(`restart with -r: blocks back ${Date.now() - restartedAt} ms after the start`);

  // after the duration the blocks are released and the attacker gets through
  for (const f of [4, 6] as const) {
    await daemon.waitFor(
      new RegExp(`^released ${escapeRegExp(ATTACKER[f])}/${mask(f)}:${PORT} after ${DURATION} seconds \\(blocked (?:\\d+m)?\\d+s\\)$`, 'm'),
      0,
      (DURATION + 5) * 1000,
    );
  }
  t.diagnostic(`released ${((Date.now() - blockedAt) / 1000).toFixed(1)} s after the first block (duration ${DURATION} s)`);
  assert.deepEqual(await nftBlocks(s), []);
  assert.equal((await dumpBlocked(s)).trim(), '');
  const released = await Promise.all([login(s, ATTACKER[4], 'root', 'x'), login(s, ATTACKER[6], 'root', 'x')]);
  assert.deepEqual(
    released.map((r) => r.outcome),
    ['denied', 'denied'],
    'after the release the attacker connects again',
  );
  assert.equal(await daemon.stop(), 0, 'the daemon stops cleanly');
}

test(
  'end to end with the client API: a Node login server reports, nftables drops the attacker (IPv4, ' +
    'IPv6), -r restores, the duration releases',
  { skip },
  async (t) => {
    await flow(t, undefined);
  },
);

test('end to end with the independent C client blprobe reporting (blocklist_sa, the address in the message)', { skip }, async (t) => {
  await flow(t, await blprobe());
});
