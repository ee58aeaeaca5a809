// blocklistctl unblock and flush through the control socket (issue 7), end
// to end against the real daemon with the recording helper fixture: by
// address, network, port and name, and --all, rem called for blocks and the
// entries deleted; flush of each name.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AUTH_FAIL } from '../src/index.js';
import { Reporter, ctl, errorLine, freePort, parsed, startDaemon, type Json } from './support.js';

describe('blocklistctl control commands against a running daemon', () => {
  test('unblock: by address, network, port and name, and --all; rem called for blocks, entries deleted', async (t) => {
    const [port, other] = await Promise.all([freePort(), freePort()]);
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n${other} stream * * * 3 1h\n`);
    const control = daemon.control;
    const block = async (...args: string[]): Promise<void> => {
      const r = await ctl(['block', '--control', control, ...args]);
      assert.equal(r.code, 0, r.stderr);
    };
    await block('-p', String(port), '192.0.2.30');
    await block('-p', String(other), '192.0.2.30');
    await block('-p', String(port), '-n', 'special', '192.0.2.31');
    await block('-p', String(port), '-n', 'special', '192.0.2.32');
    await block('-t', '1h', '203.0.113.0/24');
    await block('-t', '1h', '2001:db8:1::/48');
    // an entry counting failures but not blocked: deleted without a rem
    const reporter = await Reporter.connect(daemon.socket, port, '127.0.0.5');
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 'counting');
    await daemon.settled('counting');
    assert.equal(daemon.entries().length, 7);
    const rems = (): string[] => daemon.helperCalls().filter((c) => c.startsWith('rem '));

    // one port of an address
    let r = await ctl(['unblock', '-p', String(other), '--control', control, '192.0.2.30']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `released 192.0.2.30/32 port ${other}/tcp (blocklistd)\n1 released, 0 deleted without a block, 0 failed\n`);
    assert.deepEqual(rems(), [`rem blocklistd tcp 192.0.2.30 32 ${other} id-192.0.2.30:${other}`]);
    assert.ok(
      daemon.entries().some((e) => e.key.address === '192.0.2.30' && e.key.port === port),
      'the other port stays',
    );

    // a name: only that rule's entry of the address
    r = await ctl(['unblock', '-n', 'special', '--json', '--control', control, '192.0.2.31']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parsed(r).result.counts, { released: 1, deleted: 0, failed: 0 });
    assert.equal(parsed(r).result.released[0].address, '192.0.2.31');

    // an address inside a blocked network lifts the network's block
    r = await ctl(['unblock', '--control', control, '203.0.113.77']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^released 203\.0\.113\.0\/24 every port \(blocklistd\)\n/);
    assert.ok(rems().includes(`rem blocklistd '' 203.0.113.0 24 '' id-203.0.113.0:`), rems().join('\n'));
    r = await ctl(['unblock', '--control', control, '2001:db8:1:2::9/64']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^released 2001:db8:1::\/48 every port/);

    // the entry that was only counting: deleted, the packet filter not asked
    const before = rems().length;
    r = await ctl(['unblock', '--control', control, '127.0.0.5']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `deleted 127.0.0.5/32 port ${port}/tcp (blocklistd)\n0 released, 1 deleted without a block, 0 failed\n`);
    assert.equal(rems().length, before);

    // nothing there: exit 1, human and JSON
    r = await ctl(['unblock', '--control', control, '192.0.2.99']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, errorLine('unblock', 'no entry for 192\\.0\\.2\\.99'));
    r = await ctl(['unblock', '--json', '-p', '1', '--control', control, '192.0.2.30']);
    assert.equal(r.code, 1);
    assert.equal(parsed(r).error.code, 'not_found');

    // --all: what is left (192.0.2.30 on port, 192.0.2.32 special), each released
    r = await ctl(['unblock', '--all', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parsed(r).result.counts, { released: 2, deleted: 0, failed: 0 });
    assert.deepEqual(daemon.entries(), []);
    assert.ok(rems().includes(`rem special tcp 192.0.2.32 32 ${port} id-192.0.2.32:${port}`));
    r = await ctl(['dump', '-a', '-n', '-D', daemon.db]);
    assert.equal(r.stdout, '');
    r = await ctl(['unblock', '--all', '--control', control]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, errorLine('unblock', 'no entry for any address'));

    // a rem the packet filter refuses: the entry stays, exit 1
    await block('-t', '1h', '192.0.2.40');
    daemon.helperMode('remfail');
    r = await ctl(['unblock', '--control', control, '192.0.2.40']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^failed 192\.0\.2\.40\/32 every port \(blocklistd\): rem failed/m);
    assert.match(r.stderr, errorLine('unblock', 'nothing unblocked'));
    assert.equal(daemon.entries().length, 1);
  });

  test('flush [name]: the helper flushes each name, the entries of those names go', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const control = daemon.control;
    for (const [name, address] of [
      ['alpha', '192.0.2.50'],
      ['alpha', '192.0.2.51'],
      ['beta', '192.0.2.52'],
      ['blocklistd', '192.0.2.53'],
    ]) {
      const r = await ctl(['block', '-t', '1h', '-n', name, '--control', control, address]);
      assert.equal(r.code, 0, r.stderr);
    }
    let r = await ctl(['flush', '--control', control, 'alpha']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'flushed alpha: 2 entries deleted\n');
    assert.deepEqual(daemon.helperCalls().slice(-1), ['flush alpha']);
    assert.deepEqual(
      daemon
        .entries()
        .map((e) => e.key.name)
        .sort(),
      ['beta', 'blocklistd'],
    );

    // a name without entries: flushed all the same (the packet filter may hold some)
    r = await ctl(['flush', '--json', '--control', control, 'gamma']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parsed(r).result, { names: [{ name: 'gamma', ok: true, deleted: 0 }] });
    // any name the configuration allows, non-ASCII ones too: the helper makes its filter object names of it
    r = await ctl(['flush', '--json', '--control', control, 'ä']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parsed(r).result, { names: [{ name: 'ä', ok: true, deleted: 0 }] });

    // no name: every name of the rules and of the database
    r = await ctl(['flush', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    const names = (parsed(r).result.names as Json[]).map((n) => [n.name, n.deleted]).sort();
    assert.deepEqual(names, [
      ['beta', 1],
      ['blocklistd', 1],
    ]);
    const flushes = daemon.helperCalls().filter((c) => c.startsWith('flush '));
    assert.deepEqual(flushes.slice(0, 3), ['flush alpha', 'flush gamma', 'flush ä']);
    assert.deepEqual(flushes.slice(3).sort(), ['flush beta', 'flush blocklistd']);
    assert.deepEqual(daemon.entries(), []);
    r = await ctl(['flush', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'flushed blocklistd: 0 entries deleted\n');
  });
});
