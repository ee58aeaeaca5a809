// The control socket's `report` request and `blocklistctl report` (issue
// 14), end to end against the real daemon with the recording helper
// fixture: the count arithmetic of each type under the rules, nfail, the
// helper's add at the limit, a reset by `ok`; port names, udp, IPv6 and
// IPv4-mapped addresses; how `[local]` rules with an address treat a
// report; the log line and the counters; bad requests that change
// nothing; who may report; many reports pipelined on one connection.
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  Connection,
  DaemonProcess,
  ctl,
  freePort,
  isRoot,
  parsed,
  run,
  sharedTree,
  startDaemon,
  until,
  type Json,
  type RunResult,
} from './support.js';

/** `blocklistctl report --json` against the daemon. */
async function report(daemon: DaemonProcess, args: string[]): Promise<Json> {
  return parsed(await ctl(['report', '--json', '--control', daemon.control, ...args]));
}

/** Sends `requests` on one connection at once, returns the answers in order. */
async function pipelined(path: string, requests: Json[]): Promise<Json[]> {
  const connection = await Connection.open(path);
  try {
    connection.send(requests.map((r) => `${JSON.stringify(r)}\n`).join(''));
    return await connection.answers(requests.length);
  } finally {
    connection.close();
  }
}

const entryOf = (daemon: DaemonProcess, address: string, port: number): Json | undefined =>
  daemon.entries().find((e) => e.key.address === address && e.key.port === port);

describe('report', () => {
  test(
    'fail counts 2, baduser 1, the limit blocks through the helper, ok resets; human and --json output; ' +
      'the log line and counters say report',
    async (t) => {
      const port = await freePort();
      const daemon = await startDaemon(t, `[local]\n${port} stream * * * 3 1h\n`);
      const control = daemon.control;

      let r = await ctl(['report', '--control', control, '-t', 'baduser', '-p', String(port), '198.51.100.7', 'Invalid user bob']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `reported 198.51.100.7: 198.51.100.7/32 port ${port}/tcp (blocklistd) count 1/3\n`);
      assert.equal(entryOf(daemon, '198.51.100.7', port)?.count, 1);
      await daemon.waitFor(/processing type=4 remote=198\.51\.100\.7:0 msg="Invalid user bob" uid=0 gid=0 report source=blocklistctl/);
      assert.deepEqual(
        daemon.helperCalls().filter((c) => c.startsWith('add')),
        [],
      );

      const a = await report(daemon, ['-t', 'fail', '-p', String(port), '--source', 'sshd', '198.51.100.7']);
      assert.equal(a.result.matched, true);
      assert.equal(a.result.entry.count, 3);
      assert.equal(a.result.entry.blocked, true);
      await daemon.waitFor(/processing type=1 remote=198\.51\.100\.7:0 msg="" uid=0 gid=0 report source=sshd/);
      await daemon.waitFor(/blocked 198\.51\.100\.7\/32:/);
      assert.ok(daemon.helperCalls().includes(`add blocklistd tcp 198.51.100.7 32 ${port} ''`), daemon.helperCalls().join('\n'));

      r = await ctl(['report', '--control', control, '-t', 'ok', '-p', String(port), '198.51.100.7']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `reported 198.51.100.7: 198.51.100.7/32 port ${port}/tcp (blocklistd) count 0/3\n`);
      // an entry reset to last 0 is due at once: its block is lifted and it goes
      await until(() => daemon.helperCalls().some((c) => c.startsWith(`rem blocklistd tcp 198.51.100.7 32 ${port}`)));
      await until(() => entryOf(daemon, '198.51.100.7', port) === undefined);

      const s = parsed(await ctl(['status', '--json', '--control', control])).result;
      const nonzero = (c: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(c).filter(([, v]) => v > 0));
      assert.deepEqual(nonzero(s.counters.reports), { 'bad_user:matched': 1, 'auth_fail:matched': 1, 'auth_ok:matched': 1 });
      assert.deepEqual(nonzero(s.counters.control_requests), { 'report:ok': 3 });
    },
  );

  test('abuse blocks at once; nfail * never blocks; a port by service name; udp meets only udp rules', async (t) => {
    const [p1, p2] = [await freePort(), await freePort()];
    const daemon = await startDaemon(t, `[local]\n${p1} stream * * * 5 1h\n${p2} dgram * * * * 1h\nssh stream * * * 3 6h\n`);
    let a = await report(daemon, ['-t', 'abuse', '-p', String(p1), '203.0.113.9']);
    assert.equal(a.result.entry.count, 5);
    assert.equal(a.result.entry.blocked, true);

    for (let i = 0; i < 4; i++) a = await report(daemon, ['-t', 'fail', '-p', String(p2), '-P', 'udp', '203.0.113.10']);
    assert.equal(a.result.entry.count, 8);
    assert.equal(a.result.entry.blocked, false);

    a = await report(daemon, ['-t', 'fail', '-p', String(p2), '203.0.113.10']);
    assert.deepEqual(a.result, { address: '203.0.113.10', matched: false }, 'tcp does not meet the dgram rule');

    a = await report(daemon, ['-t', 'fail', '-p', 'ssh', '203.0.113.11']);
    assert.equal(a.result.entry.port, 22);
    assert.equal(a.result.entry.name, 'blocklistd');
    await daemon.waitFor(/blocked 203\.0\.113\.9\/32:/);
    assert.deepEqual(
      daemon.helperCalls().filter((c) => c.startsWith('add')),
      [`add blocklistd tcp 203.0.113.9 32 ${p1} ''`],
    );
  });

  test(
    'IPv6 and IPv4-mapped addresses; the local address is the unspecified one: a [local] rule with an ' + 'address does not meet a report',
    async (t) => {
      const port = await freePort();
      const daemon = await startDaemon(t, `[local]\n192.0.2.1:${port} stream * * * 1 1h\n${port} stream * * * 3 1h\n`);
      let a = await report(daemon, ['-t', 'fail', '-p', String(port), '2001:db8::7']);
      assert.equal(a.result.address, '2001:db8::7');
      assert.equal(a.result.entry.count, 2);
      assert.equal(a.result.entry.lmask, 128);
      a = await report(daemon, ['-t', 'fail', '-p', String(port), '::ffff:192.0.2.77']);
      assert.equal(a.result.address, '192.0.2.77', 'an IPv4-mapped address is the IPv4 client');
      assert.equal(a.result.entry.address, '192.0.2.77');
      assert.equal(a.result.entry.nfail, 3, 'the rule for any local address, not the one for 192.0.2.1');
    },
  );

  test('a bad request gets a clear error and changes nothing', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `[local]\n${port} stream * * * 3 1h\n`);
    const control = daemon.control;
    const cases: [Json, RegExp][] = [
      [{ type: 'fail', address: '198.51.100.300', port }, /bad address '198\.51\.100\.300'/],
      [{ type: 'fail', address: 'example.org', port }, /bad address 'example\.org'/],
      [{ type: 'fail', address: '198.51.100.1/24', port }, /bad address/],
      [{ type: 'fail', address: 'fe80::1%eth0', port }, /bad address/],
      [{ type: 'failed', address: '198.51.100.1', port }, /report needs a type: fail, baduser, abuse, ok/],
      [{ address: '198.51.100.1', port }, /report needs a type/],
      [{ type: 'fail', port }, /report needs an address/],
      [{ type: 'fail', address: '198.51.100.1' }, /report needs a port/],
      [{ type: 'fail', address: '198.51.100.1', port: 'nosuchservice' }, /bad port 'nosuchservice'/],
      [{ type: 'fail', address: '198.51.100.1', port, proto: 'sctp' }, /bad protocol 'sctp'/],
      [{ type: 'fail', address: '198.51.100.1', port, source: 'two words' }, /bad source 'two words'/],
      [{ type: 'fail', address: ['198.51.100.1'], port }, /"address" must be a string/],
    ];
    const answers = await pipelined(
      control,
      cases.map(([args], id) => ({ version: 1, id, command: 'report', args })),
    );
    for (const [i, [args, message]] of cases.entries()) {
      assert.equal(answers[i].id, i);
      assert.equal(answers[i].error?.code, 'bad_argument', JSON.stringify(args));
      assert.match(answers[i].error.message, message);
    }
    assert.deepEqual(daemon.entries(), []);
    assert.doesNotMatch(daemon.stderr, /processing type/);

    const r = await ctl(['report', '--control', control, '-t', 'fail', '-p', String(port), '300.1.1.1']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "blocklistctl: report: bad address '300.1.1.1': an IPv4 or IPv6 address\n");
    const missing = await ctl(['report', '--control', control, '-p', String(port), '192.0.2.1']);
    assert.equal(missing.code, 2, 'a usage error');
    assert.match(missing.stderr, /required option '-t <type>' not specified/);
  });

  test('the message is cut at 128 bytes and escaped as a wire message is', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `[local]\n${port} stream * * * 3 1h\n`);
    await report(daemon, ['-t', 'fail', '-p', String(port), '192.0.2.5', `say "hi"\x1b[31m ${'x'.repeat(200)}`]);
    const m = /msg="(.*)" uid=0/.exec(daemon.stderr);
    assert.ok(m, daemon.stderr);
    assert.ok(m[1].startsWith('say \\"hi\\"\\x1b[31m x'), m[1]);
    assert.equal(m[1].length, 128 + 2 + 3, 'two escaped quotes, one escaped escape');
  });

  test('1,000 reports pipelined on one connection: answered in order, all counted', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `[local]\n${port} stream * * * * 1h\n`);
    const requests = Array.from({ length: 1000 }, (_, i) => ({
      version: 1,
      id: i,
      command: 'report',
      args: { type: 'baduser', address: `10.0.${i % 4}.1`, port, source: 'bench' },
    }));
    const start = process.hrtime.bigint();
    const answers = await pipelined(daemon.control, requests);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.deepEqual(
      answers.map((a) => a.id),
      requests.map((r) => r.id),
    );
    assert.ok(answers.every((a) => a.result?.matched === true));
    assert.deepEqual(
      daemon
        .entries()
        .map((e) => e.count)
        .sort(),
      [250, 250, 250, 250],
    );
    t.diagnostic(`1000 pipelined reports in ${ms.toFixed(0)} ms (${Math.round(1000 / (ms / 1000))}/s, the daemon at -dd)`);
  });

  test(
    'who may report: as the other commands, a user outside --control-group is refused',
    { skip: isRoot ? false : 'needs root to run blocklistctl as another user' },
    async (t) => {
      const port = await freePort();
      const daemon = await startDaemon(t, `[local]\n${port} stream * * * 3 1h\n`, ['--control-group', '65534']);
      chmodSync(daemon.dir, 0o755); // the socket's own mode and the daemon's check decide
      const as = (groups: string): Promise<RunResult> =>
        run('setpriv', [
          '--reuid=65534',
          '--regid=65533',
          `--groups=${groups}`,
          process.execPath,
          join(sharedTree(), 'bin/blocklistctl'),
          'report',
          '--json',
          '--control',
          daemon.control,
          '-t',
          'fail',
          '-p',
          String(port),
          '192.0.2.9',
        ]);
      const refused = parsed(await as('65533'));
      assert.equal(refused.error.code, 'access_denied');
      assert.deepEqual(daemon.entries(), []);
      const allowedRun = await as('65534');
      const allowed = parsed(allowedRun);
      assert.ok(allowed.result, allowedRun.stdout + allowedRun.stderr);
      assert.equal(allowed.result.entry.count, 2);
      await daemon.waitFor(/remote=192\.0\.2\.9:0 msg="" uid=65534 gid=65533 report source=blocklistctl/);
    },
  );
});
