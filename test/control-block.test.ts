// blocklistctl block through the control socket (issue 7), end to end
// against the real daemon with the recording helper fixture: the helper adds
// it and the database records it, in human and --json output, released at
// expiry; a helper that refuses or is killed at --helper-timeout; an entry
// whose add is running is busy.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ctl, errorLine, freePort, parsed, requestStatus, startDaemon, until } from './support.js';

describe('blocklistctl control commands against a running daemon', () => {
  test('block: the helper adds it, the database records it (dump -b), human and --json output; released at expiry', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const control = daemon.control;

    // the defaults come from the rule a failure on that port would meet: its name and duration
    let r = await ctl(['block', '-p', String(port), '--control', control, '192.0.2.10']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(
      r.stdout,
      new RegExp(
        `^blocked 192\\.0\\.2\\.10/32 port ${port}/tcp \\(blocklistd\\) for 1h, until \\d{4}/\\d\\d/\\d\\d \\d\\d:\\d\\d:\\d\\d\\n$`,
      ),
    );
    assert.deepEqual(daemon.helperCalls().slice(-1), [`add blocklistd tcp 192.0.2.10 32 ${port} ''`]);

    // everything given, found by -s (the control socket beside the notification socket), as JSON
    r = await ctl(['block', '-p', '53', '-P', 'udp', '-n', 'dns', '-t', '2s', '--json', '-s', daemon.socket, '198.51.100.77/24']);
    assert.equal(r.code, 0, r.stderr);
    const { result } = parsed(r);
    assert.equal(result.renewed, false);
    assert.deepEqual(
      {
        address: result.entry.address,
        lmask: result.entry.lmask,
        port: result.entry.port,
        proto: result.entry.proto,
        name: result.entry.name,
        duration: result.entry.duration,
        id: result.entry.id,
        blocked: result.entry.blocked,
      },
      { address: '198.51.100.0', lmask: 24, port: 53, proto: 17, name: 'dns', duration: 2, id: 'id-198.51.100.0:53', blocked: true },
    );
    assert.deepEqual(daemon.helperCalls().slice(-1), [`add dns udp 198.51.100.0 24 53 ''`]);

    // an IPv6 network, every port, for good
    r = await ctl(['block', '-t', 'forever', '--control', control, '[2001:db8::5]/48']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'blocked 2001:db8::/48 every port (blocklistd) for good\n');
    assert.deepEqual(daemon.helperCalls().slice(-1), [`add blocklistd '' 2001:db8:: 48 '' ''`]);

    // blocked again: the entry's time renewed, the packet filter not asked twice
    const adds = daemon.helperCalls().length;
    r = await ctl(['block', '-p', String(port), '--control', control, '192.0.2.10']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^already blocked, renewed 192\.0\.2\.10\/32 /);
    assert.equal(daemon.helperCalls().length, adds);

    // all three in the database as blocked entries, as the dump shows them
    r = await ctl(['dump', '-b', '-n', '-D', daemon.db]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(rows.length, 3, r.stdout);
    assert.ok(
      rows.some((l) => /^dns\t +198\.51\.100\.0\/24:53\tid-198\.51\.100\.0:53\t1\/1\t/.test(l)),
      r.stdout,
    );
    assert.ok(
      rows.some((l) => new RegExp(`^blocklistd\\t +192\\.0\\.2\\.10/32:${port}\\tid-192\\.0\\.2\\.10:${port}\\t`).test(l)),
      r.stdout,
    );
    assert.ok(
      rows.some((l) => /^blocklistd\t +2001:db8::\/48:\*\tid-2001:db8:::\t1\/1\tnever$/.test(l)),
      r.stdout,
    );

    // the two-second block is released by expiry like any other: rem with its id, entry gone
    await until(() => daemon.helperCalls().includes('rem dns udp 198.51.100.0 24 53 id-198.51.100.0:53'), 8000);
    await until(() => !daemon.entries().some((e) => e.key.name === 'dns'));
    r = await ctl(['dump', '-b', '-n', '-D', daemon.db]);
    assert.equal(r.stdout.split('\n').filter((l) => l !== '').length, 2, r.stdout);
    assert.equal((await requestStatus(daemon)).counters.releases.expiry, 1);
  });

  test('block: the helper refusing is an error (exit 1), nothing blocked; an entry whose add is running is busy', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const control = daemon.control;
    daemon.helperMode('silent'); // add prints no rule id
    let r = await ctl(['block', '-t', '1h', '--control', control, '192.0.2.20']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, errorLine('block', 'the packet filter did not take the block'));
    r = await ctl(['block', '-t', '1h', '--json', '--control', control, '192.0.2.20']);
    assert.equal(r.code, 1);
    assert.equal(parsed(r).error.code, 'helper_failed');
    assert.equal(daemon.entries().filter((e) => e.id !== '').length, 0, 'nothing blocked');

    // a slow add: a second block of the same entry meanwhile is refused as busy, other connections are served
    daemon.helperMode('slow');
    const first = ctl(['block', '-t', '1h', '--json', '--control', control, '192.0.2.21']);
    await until(() => daemon.helperCalls().some((c) => c.startsWith("add blocklistd '' 192.0.2.21 ")));
    const during = await requestStatus(daemon);
    assert.equal(during.helper.adds, 1, 'the add in flight shows in status');
    assert.equal(during.helper.running, 1, 'the helper running shows in status');
    r = await ctl(['block', '-t', '1h', '--json', '--control', control, '192.0.2.21']);
    assert.equal(r.code, 1);
    assert.equal(parsed(r).error.code, 'busy');
    r = await first;
    assert.equal(r.code, 0, r.stdout);
    assert.equal(parsed(r).result.entry.id, 'id-192.0.2.21:');
  });

  test(
    'block: a helper killed at --helper-timeout may have blocked: exit 1 saying so, the entry kept at ' + 'its limit without id',
    async (t) => {
      const port = await freePort();
      const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, ['--helper-timeout', '1']);
      const control = daemon.control;
      daemon.helperMode('hang');
      const r = await ctl(['block', '-t', '1h', '--json', '--control', control, '192.0.2.30']);
      assert.equal(r.code, 1);
      assert.equal(parsed(r).error.code, 'helper_failed');
      assert.match(
        parsed(r).error.message,
        /^the helper did not finish \(.*: timed out\): the block may be in the packet filter until the entry expires$/,
      );
      const entries = daemon.entries().filter((e) => e.key.address === '192.0.2.30');
      assert.deepEqual(
        entries.map((e) => [e.id, e.count >= e.key.nfail]),
        [['', true]],
      );
    },
  );
});
