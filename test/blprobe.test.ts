// Interoperability with an independent C peer (../shared/tools/blprobe),
// which speaks the protocol as sshd linked with libblocklist does, and its
// malformed datagrams: each dropped with the spec's log line, every
// descriptor closed, the receiver alive.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { toText } from '../src/conf/ip.js';
import { WireType } from '../src/types.js';
import { Receiver, blprobe, endpointText, freePort, openDescriptors, runBlprobe, tempDir, until } from './support.js';

describe('blprobe, an independent C client', () => {
  const path = join(tempDir(), 'blocklistd.sock');
  let receiver: Receiver;

  before(async () => {
    await blprobe();
    receiver = new Receiver(path);
  });
  after(() => receiver.close());

  /** Runs blprobe against the receiver; returns what arrived, without its closing barrier. */
  async function probe(args: string[]): Promise<{ stdout: string; received: typeof receiver.received }> {
    const start = receiver.received.length;
    const result = await runBlprobe(['-s', path, ...args]);
    assert.equal(result.code, 0, `blprobe ${args.join(' ')}: ${result.stdout}${result.stderr}`);
    // blprobe's exit may be seen before the receiving thread hands over its last datagram
    await until(
      () => receiver.received.length > start && receiver.received.at(-1)!.type === WireType.DELETE && receiver.received.at(-1)!.text === '',
    ).catch(() => {});
    const received = receiver.received.slice(start);
    const barrier = received.pop();
    assert.equal(barrier?.type, WireType.DELETE, 'the barrier arrives last');
    assert.equal(barrier?.text, '');
    return { stdout: result.stdout, received };
  }

  const conversations: { name: string; args: string[]; type: number; local: string; family: string; socketType: string }[] = [
    { name: 'TCP over IPv4', args: ['-m', 'ssh'], type: WireType.ADD, local: '127.0.0.1', family: 'inet', socketType: 'stream' },
    {
      name: 'TCP over IPv6',
      args: ['-6', '-t', 'baduser', '-m', 'ssh'],
      type: WireType.BADUSER,
      local: '::1',
      family: 'inet6',
      socketType: 'stream',
    },
    {
      name: 'UDP over IPv4',
      args: ['-u', '-t', 'abuse', '-m', 'dns'],
      type: WireType.ABUSE,
      local: '127.0.0.1',
      family: 'inet',
      socketType: 'dgram',
    },
    {
      name: 'UDP over IPv6',
      args: ['-u', '-6', '-t', 'ok', '-m', 'dns'],
      type: WireType.DELETE,
      local: '::1',
      family: 'inet6',
      socketType: 'dgram',
    },
    {
      name: 'TCP on a dual-stack socket seen from IPv4',
      args: ['-L', '::ffff:127.0.0.1', '-m', 'ssh'],
      type: WireType.ADD,
      local: '::ffff:127.0.0.1',
      family: 'inet6',
      socketType: 'stream',
    },
  ];
  for (const c of conversations) {
    test(`a real server conversation: ${c.name}`, async () => {
      const port = await freePort();
      const { stdout, received } = await probe([...c.args, '-p', String(port), '-n', '3']);
      // "server tcp 127.0.0.1:6161, client 127.0.0.1:36060; sending ..."
      const client = /client \[?([^\]\s]+?)\]?:(\d+);/.exec(stdout);
      assert.ok(client, stdout);
      assert.equal(received.length, 3);
      for (const n of received) {
        assert.equal(n.type, c.type);
        assert.equal(n.text, c.args[c.args.indexOf('-m') + 1]);
        assert.equal(n.uid, process.getuid!());
        assert.equal(n.socketType, c.socketType);
        assert.deepEqual(endpointText(n.local), { family: c.family, address: c.local, port });
        assert.deepEqual(endpointText(n.remote), { family: c.family, address: client[1], port: Number(client[2]) });
        assert.equal(n.explicitPeer, c.socketType === 'dgram');
      }
    });
  }

  test('an explicit peer with the listening socket, and a connected socket whose peer wins', async () => {
    const port = await freePort();
    let { received } = await probe(['-a', '192.0.2.7', '-p', String(port)]);
    assert.deepEqual(endpointText(received[0].remote), { family: 'inet', address: '192.0.2.7', port: 0 });
    assert.equal(received[0].explicitPeer, true);
    ({ received } = await probe(['-a', '192.0.2.7', '-l', '-p', String(port)]));
    assert.equal(toText(received[0].remote), '127.0.0.1');
    assert.equal(received[0].explicitPeer, false);
  });

  const PER_CASE = 750;
  const fuzzCases: { kind: string; lines: [string, string][]; valid?: number }[] = [
    { kind: 'short', lines: [['err', 'message too short 16']] },
    { kind: 'empty', lines: [['err', 'message too short 0']] },
    { kind: 'badver', lines: [['err', 'bad version 2']] },
    { kind: 'nofd', lines: [['err', 'message missing  fd']] },
    {
      kind: 'twofd',
      lines: [
        ['err', 'unexpected cmsg_len 24 != 20'],
        ['err', 'message missing  fd'],
      ],
    },
    { kind: 'file', lines: [['err', 'getpeername failed (Socket operation on non-socket)']] },
    { kind: 'udp', lines: [['err', 'unconnected socket with no peer in message']] },
    { kind: 'salen7', lines: [['err', 'bad client passed socket length 16 != 7']] },
    { kind: 'salen200', lines: [['err', 'bad client passed socket length 16 != 200']] },
    { kind: 'family', lines: [['err', 'bad client passed socket length 28 != 16']] },
    { kind: 'bigmsg', lines: [['debug', 'message text truncated from 400 to 128 bytes']], valid: PER_CASE },
    { kind: 'badtype', lines: [['err', 'unknown message 99']] },
    { kind: 'random', lines: [] },
    {
      kind: 'twofd34',
      lines: [
        ['err', 'unexpected cmsg_len 24 != 20'],
        ['err', 'message missing  fd'],
      ],
    },
    { kind: 'v6onv4', lines: [['err', 'mismatched family 10 != 2']] },
  ];

  test(`every fuzz case, ${PER_CASE} times each: dropped with its log line, no descriptor kept`, async () => {
    const port = await freePort();
    const descriptorsBefore = openDescriptors();
    let sent = 0;
    for (const c of fuzzCases) {
      receiver.logs.clear();
      const { stdout, received } = await probe(['-z', c.kind, '-n', String(PER_CASE), '-p', String(port), '-P', String(process.pid)]);
      // "fuzz short     sent 750/750  barrier ok  pid alive  fds 20 -> 20"
      const report = /sent (\d+)\/(\d+)\s+barrier ok\s+pid alive\s+fds (\d+) -> (\d+)/.exec(stdout);
      assert.ok(report, stdout);
      assert.equal(report[1], String(PER_CASE));
      // blprobe's first count may catch our spawn's pipes still open: it must not grow
      assert.ok(Number(report[4]) <= Number(report[3]), `${c.kind}: descriptors ${report[3]} -> ${report[4]}`);
      sent += Number(report[1]);
      for (const [level, message] of c.lines) assert.equal(receiver.logs.count(level as 'err', message), PER_CASE, `${c.kind}: ${message}`);
      if (c.kind === 'random') {
        const known = new RegExp(
          `^(${[
            String.raw`message too short \d+`,
            String.raw`bad version \d+`,
            String.raw`unknown message -?\d+`,
            'message missing {2}fd',
            String.raw`header length \d+ != \d+ received`,
            String.raw`message text truncated from \d+ to 128 bytes`,
            'unconnected socket with no peer in message',
            'bad client passed socket (family|length) .*',
            String.raw`mismatched family \d+ != \d+`,
          ].join('|')})$`,
        );
        for (const line of receiver.logs.lines) assert.match(line.message, known);
      } else {
        assert.equal(receiver.logs.lines.length, c.lines.length * PER_CASE, `${c.kind}: nothing else logged`);
        assert.equal(received.length, c.valid ?? 0);
      }
      if (c.kind === 'bigmsg') for (const n of received) assert.equal(n.text, 'A'.repeat(128));
    }
    assert.ok(sent >= 10_000, `${sent} malformed datagrams`);
    assert.equal(openDescriptors(), descriptorsBefore, 'descriptors of this process after the fuzz');
  });
});
