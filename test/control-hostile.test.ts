// Hostile and careless clients on the control socket (issue 7): malformed
// requests, pipelining, a request a byte at a time, the 64 KiB limit, 10 MiB
// lines, a client that sends its oversized line or never reads: each gets
// its answer or is dropped, and other connections are served meanwhile.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import { REQUEST_MAX_BYTES } from '../src/protocol/control.js';
import {
  Connection,
  DaemonProcess,
  descriptors,
  freePort,
  requestStatus,
  startDaemon,
  steadyDescriptors,
  until,
  type Json,
} from './support.js';

/** A daemon, a second connection already answered (it must stay served), and the daemon's steady descriptor count. */
async function watched(
  t: TestContext,
): Promise<{ daemon: DaemonProcess; control: string; pid: number; other: Connection; baseline: number }> {
  const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
  const control = daemon.control;
  const pid = daemon.child.pid!;
  const other = await Connection.open(control);
  t.after(() => other.close());
  await other.ask('status', {}, 'warm');
  return { daemon, control, pid, other, baseline: await steadyDescriptors(pid) };
}

describe('hostile and careless clients on the control socket', () => {
  test('malformed requests: each gets its error answer, in order, and the connection goes on serving', async (t) => {
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
    const c = await Connection.open(daemon.control);
    t.after(() => c.close());
    const notObject = { code: 'bad_request', message: 'the request is not a JSON object' };
    const cases: [string | Buffer, Json][] = [
      ['not json', { error: { code: 'bad_request', message: 'the request is not JSON' } }],
      ['{"version":1,"command":"status"', { error: { code: 'bad_request', message: 'the request is not JSON' } }],
      ['[{"version":1,"command":"status"}]', { error: notObject }],
      ['"status"', { error: notObject }],
      ['42', { error: notObject }],
      ['null', { error: notObject }],
      [
        '{"version":2,"id":7,"command":"status"}',
        { id: 7, error: { code: 'unsupported_version', message: 'protocol version 2 is not supported (this daemon speaks 1)' } },
      ],
      [
        '{"version":"1","id":7,"command":"status"}',
        { id: 7, error: { code: 'unsupported_version', message: 'protocol version "1" is not supported (this daemon speaks 1)' } },
      ],
      [
        '{"version":0,"command":"status"}',
        { error: { code: 'unsupported_version', message: 'protocol version 0 is not supported (this daemon speaks 1)' } },
      ],
      ['{"version":1,"id":4}', { id: 4, error: { code: 'bad_request', message: 'the request has no "command" string' } }],
      [
        '{"version":1,"id":5,"command":["status"]}',
        { id: 5, error: { code: 'bad_request', message: 'the request has no "command" string' } },
      ],
      [
        '{"version":1,"id":6,"command":"status","args":[1]}',
        { id: 6, error: { code: 'bad_request', message: '"args" is not a JSON object' } },
      ],
      [
        '{"version":1,"id":6,"command":"status","args":"x"}',
        { id: 6, error: { code: 'bad_request', message: '"args" is not a JSON object' } },
      ],
      [
        '{"version":1,"id":"u","command":"shutdown"}',
        { id: 'u', error: { code: 'unknown_command', message: "unknown command 'shutdown'" } },
      ],
      [
        '{"version":1,"id":"p","command":"__proto__"}',
        { id: 'p', error: { code: 'unknown_command', message: "unknown command '__proto__'" } },
      ],
      ['{"version":1,"id":"s","command":"STATUS"}', { id: 's', error: { code: 'unknown_command', message: "unknown command 'STATUS'" } }],
      // arguments of the wrong type
      [
        '{"version":1,"id":10,"command":"block","args":{"address":true}}',
        { id: 10, error: { code: 'bad_argument', message: '"address" must be a string' } },
      ],
      [
        '{"version":1,"id":11,"command":"block","args":{"address":["192.0.2.1"],"duration":"1h"}}',
        { id: 11, error: { code: 'bad_argument', message: '"address" must be a string' } },
      ],
      [
        '{"version":1,"id":12,"command":"block","args":{"address":"192.0.2.1","port":{},"duration":"1h"}}',
        { id: 12, error: { code: 'bad_argument', message: '"port" must be a string' } },
      ],
      [
        '{"version":1,"id":13,"command":"block","args":{"address":"192.0.2.1","duration":false}}',
        { id: 13, error: { code: 'bad_argument', message: '"duration" must be a string' } },
      ],
      ['{"version":1,"id":14,"command":"block","args":{}}', { id: 14, error: { code: 'bad_argument', message: 'block needs an address' } }],
      [
        '{"version":1,"id":15,"command":"unblock","args":{"all":"yes"}}',
        { id: 15, error: { code: 'bad_argument', message: 'unblock needs an address, or all' } },
      ],
      [
        '{"version":1,"id":16,"command":"unblock","args":{"all":true,"address":"192.0.2.1"}}',
        { id: 16, error: { code: 'bad_argument', message: 'unblock needs an address, or all' } },
      ],
      [
        '{"version":1,"id":17,"command":"flush","args":{"name":{"n":1}}}',
        { id: 17, error: { code: 'bad_argument', message: '"name" must be a string' } },
      ],
      // bytes that are no text
      [
        Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x1b, 0x5b, 0x32, 0x4a, 0x07, 0xc3, 0x28]),
        { error: { code: 'bad_request', message: 'the request is not JSON' } },
      ],
      [
        Buffer.concat([Buffer.from('{"version":1,"id":18,"command":"st'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
        { id: 18, error: { code: 'unknown_command', message: "unknown command 'st\uFFFD\uFFFD'" } },
      ],
      [
        '{"version":1,"id":19,"command":"stat\\u0000us"}',
        { id: 19, error: { code: 'unknown_command', message: "unknown command 'stat\u0000us'" } },
      ],
      // nesting as deep as 64 KiB allows
      [`${'['.repeat(32_000)}${']'.repeat(32_000)}`, { error: notObject }],
      [
        `{"version":1,"id":20,"command":"status","args":{"a":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}}`,
        { id: 20, result: 'status' },
      ],
    ];
    // one at a time: each answer before the next request
    for (const [request, expected] of cases) {
      const before = c.lines.length;
      c.send(Buffer.concat([Buffer.from(request), Buffer.from('\n')]));
      const [answer] = (await c.answers(before + 1)).slice(-1);
      if (expected.result === 'status') assert.equal(answer.result?.pid, daemon.child.pid, String(request).slice(0, 80));
      else assert.deepEqual(answer, { version: 1, ...expected }, String(request).slice(0, 80));
    }
    // blank lines are no requests; a CRLF line is one
    c.send('\n  \n\t\n{"version":1,"id":"crlf","command":"status"}\r\n');
    const [last] = (await c.answers(cases.length + 1)).slice(-1);
    assert.equal(last.id, 'crlf');
    assert.equal(last.result.pid, daemon.child.pid);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(c.lines.length, cases.length + 1, 'nothing more');
    assert.equal(daemon.child.exitCode, null);
    assert.deepEqual(daemon.entries(), []);
    assert.deepEqual(daemon.helperCalls(), ['capabilities']);
  });

  test(
    'pipelining: several requests in one write are answered in order with their ids, a slow one holding ' + 'back only its own connection',
    async (t) => {
      const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
      const control = daemon.control;
      const c = await Connection.open(control);
      t.after(() => c.close());
      const requests: Json[] = [
        { version: 1, id: 1, command: 'status' },
        { version: 1, id: 'two', command: 'block', args: { address: '192.0.2.100', duration: '1h' } },
        { version: 1, id: { three: [3] }, command: 'nope' },
        { version: 1, id: null, command: 'unblock', args: { address: '192.0.2.100' } },
        { version: 1, command: 'unblock', args: { address: '192.0.2.100' } },
        { version: 1, id: 6, command: 'block', args: { address: 'bad' } },
        { version: 1, id: 7, command: 'status' },
      ];
      c.send(requests.map((r) => `${JSON.stringify(r)}\n`).join(''));
      const answers = await c.answers(requests.length);
      assert.deepEqual(
        answers.map((a) => [a.id, 'result' in a ? 'result' : a.error.code]),
        [
          [1, 'result'],
          ['two', 'result'],
          [{ three: [3] }, 'unknown_command'],
          [null, 'result'],
          [undefined, 'not_found'],
          [6, 'bad_argument'],
          [7, 'result'],
        ],
      );
      assert.equal('id' in answers[4], false, 'no id asked, none given');
      assert.equal(answers[1].result.entry.address, '192.0.2.100');
      assert.equal(answers[3].result.counts.released, 1);
      assert.equal(answers[6].result.counters.control_requests['block:ok'], 1, 'the last status saw the block done before it');

      // a block whose add takes a second, then a status, in one write: the status waits for the block on
      // this connection, while a status on another connection is answered at once
      daemon.helperMode('slow');
      const other = await Connection.open(control);
      t.after(() => other.close());
      const sent = performance.now();
      const slowBlock = JSON.stringify({ version: 1, id: 'slow', command: 'block', args: { address: '192.0.2.101', duration: '1h' } });
      c.send(`${slowBlock}\n${JSON.stringify({ version: 1, id: 'after', command: 'status' })}\n`);
      await until(() => daemon.helperCalls().some((l) => l.includes('192.0.2.101')));
      const quick = await other.ask('status', {}, 'other');
      const quickMs = performance.now() - sent;
      assert.equal(c.lines.length, requests.length, 'the slow block is still running');
      assert.equal(quick.result.helper.adds, 1);
      const [slow, after] = (await c.answers(requests.length + 2)).slice(-2);
      const slowMs = performance.now() - sent;
      assert.equal(slow.id, 'slow');
      assert.equal(slow.result.entry.address, '192.0.2.101');
      assert.equal(after.id, 'after');
      assert.equal(after.result.helper.adds, 0, 'answered after the block');
      assert.ok(quickMs < slowMs && slowMs >= 900, `other connection ${quickMs.toFixed(0)} ms, slow block ${slowMs.toFixed(0)} ms`);
    },
  );

  test('a request arriving a byte at a time is answered once; a last line without newline, then the close, is not run', async (t) => {
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
    const control = daemon.control;
    const pid = daemon.child.pid!;
    await requestStatus(daemon); // the first request sets up what stays (a descriptor of the thread pool)
    const baseline = await steadyDescriptors(pid);
    const c = await Connection.open(control);
    t.after(() => c.close());
    for (const byte of Buffer.from(`${JSON.stringify({ version: 1, id: 'drip', command: 'status' })}\n`)) {
      c.send(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const [answer] = await c.answers(1);
    assert.equal(answer.id, 'drip');
    assert.equal(answer.result.pid, pid);

    const cut = await Connection.open(control);
    cut.send(JSON.stringify({ version: 1, id: 'cut', command: 'block', args: { address: '192.0.2.110', duration: '1h' } }));
    cut.socket.end();
    await Promise.race([cut.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('not closed')), 5000))]);
    assert.deepEqual(cut.lines, []);
    assert.equal(cut.partial, '');
    c.close();
    // a status after it: had the block run, it would have been before
    assert.equal((await requestStatus(daemon)).counters.control_requests['block:ok'] ?? 0, 0);
    assert.deepEqual(daemon.helperCalls(), ['capabilities']);
    assert.deepEqual(daemon.entries(), []);
    await until(() => descriptors(pid) <= baseline);
  });

  test('64 KiB is the longest request; a byte more is too_large and the connection closed', async (t) => {
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
    const control = daemon.control;
    const line = (length: number): string => {
      const head = '{"version":1,"id":"big","command":"status","args":{"pad":"';
      const tail = '"}}';
      return `${head}${'x'.repeat(length - head.length - tail.length)}${tail}`;
    };
    assert.equal(Buffer.byteLength(line(REQUEST_MAX_BYTES)), REQUEST_MAX_BYTES);
    const fits = await Connection.open(control);
    t.after(() => fits.close());
    fits.send(`${line(REQUEST_MAX_BYTES)}\n${JSON.stringify({ version: 1, id: 'next', command: 'status' })}\n`);
    const answers = await fits.answers(2);
    assert.deepEqual(
      answers.map((a) => [a.id, typeof a.result]),
      [
        ['big', 'object'],
        ['next', 'object'],
      ],
    );

    const over = await Connection.open(control);
    t.after(() => over.close());
    over.send(`${line(REQUEST_MAX_BYTES + 1)}\n${JSON.stringify({ version: 1, id: 'never', command: 'status' })}\n`);
    await over.closed;
    assert.deepEqual(
      over.lines.map((l) => JSON.parse(l) as Json),
      [{ version: 1, error: { code: 'too_large', message: `request longer than ${REQUEST_MAX_BYTES} bytes: connection closed` } }],
    );
    assert.equal((await requestStatus(daemon)).counters.control_requests['oversized:error'], 1);
  });

  test(
    '10 MiB lines, in one write or trickled: too_large, connection closed; meanwhile another connection ' + 'is answered without delay',
    async (t) => {
      const { daemon, control, pid, other, baseline } = await watched(t);
      const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
      const rssBefore = rss();
      const MiB = 1024 * 1024;
      const payload = Buffer.alloc(10 * MiB, '{"version":1,"command":"status","args":{"x":"');
      payload[payload.length - 1] = 10;

      // status requests on the other connection all along, each answer timed
      const answered: { at: number; ms: number }[] = [];
      let asking = true;
      const loop = (async () => {
        for (let i = 0; asking; i++) {
          const t0 = performance.now();
          const a = await other.ask('status', {}, i);
          assert.equal(a.id, i);
          assert.equal(a.result.pid, pid);
          answered.push({ at: performance.now(), ms: performance.now() - t0 });
        }
      })();
      await until(() => answered.length >= 3);

      // one connection sends its 10 MiB in 4 KiB pieces every 2 ms, as a slow client would (5 s for all of it)
      const trickle = await Connection.open(control);
      t.after(() => trickle.close());
      const trickleStart = performance.now();
      let trickled = 0;
      while (!trickle.isClosed && trickled < payload.length) {
        trickle.send(payload.subarray(trickled, trickled + 4096));
        trickled += 4096;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await trickle.closed;
      const trickleEnd = performance.now();
      // four more at once, each in a single write
      const big = await Promise.all(Array.from({ length: 4 }, () => Connection.open(control)));
      t.after(() => big.forEach((b) => b.close()));
      const bigStart = performance.now();
      for (const b of big) b.send(payload);
      await Promise.all(big.map((b) => b.closed));
      const bigEnd = performance.now();
      const lastSeen = answered.length;
      await until(() => answered.length >= lastSeen + 3);
      asking = false;
      await loop;

      const TOO_LARGE = {
        version: 1,
        error: { code: 'too_large', message: `request longer than ${REQUEST_MAX_BYTES} bytes: connection closed` },
      };
      let told = 0;
      for (const c of [trickle, ...big]) {
        if (c.lines.length > 0 || c.error?.code !== 'EPIPE') {
          assert.deepEqual(
            c.lines.map((l) => JSON.parse(l) as Json),
            [TOO_LARGE],
            c.error?.code,
          );
          told++;
        }
        // else Node dropped the socket on its own write's EPIPE before reading the answer (see the todo test below)
      }
      assert.ok(told >= 1, 'the answer reached at least one of them');
      assert.ok(trickled < 1 * MiB, `the daemon stopped reading early (${trickled} bytes trickled)`);
      const during = (from: number, to: number): number[] => answered.filter((a) => a.at >= from && a.at <= to).map((a) => a.ms);
      const worst = Math.max(...answered.map((a) => a.ms));
      t.diagnostic(
        `trickle closed after ${(trickleEnd - trickleStart).toFixed(0)} ms and ${trickled} bytes, with ` +
          `${during(trickleStart, trickleEnd).length} status answers meanwhile; ` +
          `single writes closed after ${(bigEnd - bigStart).toFixed(0)} ms; ${answered.length} status answers, ` +
          `the slowest in ${worst.toFixed(1)} ms; ` +
          `daemon RSS ${((rss() - rssBefore) / MiB).toFixed(1)} MiB more`,
      );
      assert.ok(during(trickleStart, trickleEnd).length >= 3, 'status answered while the trickle went on');
      assert.ok(worst < 1000, `a status took ${worst.toFixed(0)} ms`);
      assert.ok(rss() - rssBefore < 40 * MiB, 'the 50 MiB sent were not kept');
      await until(() => descriptors(pid) <= baseline + 1); // + the other connection
      assert.equal(daemon.child.exitCode, null);
    },
  );

  test('a client still sending its oversized line reads the too_large answer, every time', async (t) => {
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
    const control = daemon.control;
    const payload = Buffer.alloc(10 * 1024 * 1024, 'x');
    const lost: string[] = [];
    // the loss is a race: try often, four at a time
    for (let i = 0; i < 100; i++) {
      const clients = await Promise.all(Array.from({ length: 4 }, () => Connection.open(control)));
      for (const c of clients) c.send(payload);
      for (const c of clients) {
        await c.closed;
        if (c.lines.length !== 1) lost.push(c.error?.code ?? 'none');
      }
    }
    assert.deepEqual(lost, [], `${lost.length} of 400 lost the answer (${[...new Set(lost)].join(', ')})`);
  });

  test('a client that sends but never reads cannot stall the daemon, and is dropped once 16 MiB of answers pile up', async (t) => {
    const { daemon, control, pid, other, baseline } = await watched(t);

    // each answer carries its 48 KiB id back: 400 of them are 19 MiB the client never reads
    const sink = await Connection.open(control);
    t.after(() => sink.close());
    sink.socket.pause();
    const id = 'i'.repeat(48 * 1024);
    const COUNT = 400;
    sink.send(Array.from({ length: COUNT }, (_, i) => `${JSON.stringify({ version: 1, id: `${i}${id}`, command: 'status' })}\n`).join(''));
    const latencies: number[] = [];
    let dropped = false;
    for (let i = 0; !dropped || i < 10; i++) {
      const t0 = performance.now();
      const a = await other.ask('status', {}, i);
      assert.equal(a.result.pid, pid);
      latencies.push(performance.now() - t0);
      dropped = descriptors(pid) <= baseline;
      assert.ok(i < 2000, 'the silent client was never dropped');
    }
    const worst = Math.max(...latencies);
    t.diagnostic(`${latencies.length} status answers on another connection meanwhile, the slowest in ${worst.toFixed(1)} ms`);
    assert.ok(worst < 1000, `a status took ${worst.toFixed(0)} ms`);
    // reading now, it gets what was left in its queue, whole and in order, then the end (or
    // nothing: its own unfinished write fails with EPIPE and Node drops the socket)
    sink.socket.resume();
    await sink.closed;
    assert.ok(sink.lines.length < COUNT, `${sink.lines.length} answers`);
    sink.lines.forEach((l, i) => assert.equal((JSON.parse(l) as Json).id, `${i}${id}`));
    assert.equal(daemon.child.exitCode, null);
  });
});
