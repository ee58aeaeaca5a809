// blocklistctl's control commands given bad arguments (issue 7): exit 1 with
// a message naming the fault, in human and --json output, and nothing changed
// in the helper's calls or the database.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { counted, ctl, freePort, parsed, requestStatus, snapshot, startDaemon } from './support.js';

describe('blocklistctl control commands against a running daemon', () => {
  test('bad arguments: exit 1 with a message naming the fault, in human and --json output; nothing changed', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const control = daemon.control;
    const r0 = await ctl(['block', '-t', '1h', '--control', control, '192.0.2.70']);
    assert.equal(r0.code, 0, r0.stderr);
    const before = snapshot(daemon);
    const cases: [string[], string][] = [
      [['block', '300.1.1.1'], "bad address '300\\.1\\.1\\.1'"],
      [['block', 'example.org', '-t', '1h'], "bad address 'example\\.org'"],
      [['block', '192.0.2.1/', '-t', '1h'], "bad address '192\\.0\\.2\\.1/'"],
      [['block', '192.0.2.1/33', '-t', '1h'], "bad mask '/33' for '192\\.0\\.2\\.1': 0 to 32"],
      [['block', '2001:db8::1/129', '-t', '1h'], "bad mask '/129' for '2001:db8::1': 0 to 128"],
      [['block', '192.0.2.1', '-p', '99999'], "bad port '99999'"],
      [['block', '192.0.2.1', '-p', 'no-such-service'], "bad port 'no-such-service'"],
      [['block', '192.0.2.1', '-t', 'soon'], "bad duration 'soon'"],
      [['block', '192.0.2.1', '-t', '0'], "bad duration '0'"],
      [['block', '192.0.2.1', '-p', '22', '-P', 'icmp', '-t', '1h'], "bad protocol 'icmp': tcp or udp"],
      [['block', '192.0.2.1', '-P', 'udp', '-t', '1h'], 'a protocol needs a port'],
      [['block', '192.0.2.1', '-n', 'two words', '-t', '1h'], "bad rule name 'two words': blanks are not allowed"],
      [['block', '192.0.2.1'], 'no rule matches 192\\.0\\.2\\.1: give a duration'],
      [['block', '192.0.2.70', '-p', '22', '-t', '1h', '-n', 'x'.repeat(200)], "bad rule name 'x+': longer than 127 bytes"],
      [['unblock', '300.1.1.1'], "bad address '300\\.1\\.1\\.1'"],
      [['unblock', '192.0.2.70/40'], "bad mask '/40'"],
      [['unblock', '192.0.2.70', '-p', 'nope'], "bad port 'nope'"],
      [['flush', 'a\tb'], "bad rule name 'a\\\\x09b': control characters are not allowed"],
      [['flush', 'a\u0085b'], "bad rule name 'a\\\\x85b': control characters are not allowed"],
      [['block', '192.0.2.1', '-n', 'a\u00a0b', '-t', '1h'], "bad rule name 'a\u00a0b': blanks are not allowed"],
    ];
    // every case in human output, every third also with --json (the same answer, printed as it is)
    const withJson = (i: number): boolean => i % 3 === 0;
    const results = await Promise.all(
      cases.map(([args], i) =>
        Promise.all([ctl([...args, '--control', control]), withJson(i) ? ctl([...args, '--json', '--control', control]) : undefined]),
      ),
    );
    for (const [i, [args, message]] of cases.entries()) {
      const [human, json] = results[i];
      assert.equal(human.code, 1, args.join(' '));
      assert.equal(human.stdout, '', args.join(' '));
      assert.match(human.stderr, new RegExp(`^blocklistctl: ${args[0]}: ${message}`), args.join(' '));
      if (json === undefined) continue;
      assert.equal(json.code, 1, args.join(' '));
      assert.equal(parsed(json).error.code, 'bad_argument', args.join(' '));
      assert.match(parsed(json).error.message, new RegExp(`^${message}`), args.join(' '));
    }
    // what blocklistctl itself refuses: usage, exit 2, the daemon not asked
    const usage: [string[], string][] = [
      [['unblock'], 'unblock: give an address, or --all'],
      [['unblock', '--all', '192.0.2.70'], 'unblock: give an address, or --all'],
      [['block'], "block: missing required argument 'address'"],
      [['block', '-x', '192.0.2.1'], "block: invalid option -- 'x'"],
      [['status', 'extra', 'words'], "status: too many arguments for 'status'. Expected 0 arguments but got 2."],
    ];
    const complaints = await Promise.all(usage.map(([args]) => ctl([...args, '--control', control])));
    for (const [i, r] of complaints.entries()) {
      assert.equal(r.code, 2, usage[i][0].join(' '));
      assert.ok(r.stderr.startsWith(`${usage[i][1]}\nUsage: blocklistctl `), r.stderr);
    }
    assert.deepEqual(snapshot(daemon), before);
    const refused: Record<string, number> = { 'block:ok': 1 };
    cases.forEach(([args], i) => (refused[`${args[0]}:error`] = (refused[`${args[0]}:error`] ?? 0) + (withJson(i) ? 2 : 1)));
    assert.deepEqual(counted((await requestStatus(daemon)).counters.control_requests), refused);
  });
});
