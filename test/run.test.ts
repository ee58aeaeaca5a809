// The helper runner against real processes: the shell scripts of
// test/fixtures/ stand in for the packet-filter control program.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  failureText,
  HelperRunner,
  unfinished,
  type Change,
  type HelperResult,
  type HelperRunnerOptions,
  type HelperTarget,
} from '../src/run/helper.js';
import { LogCollector, repoRoot, tempDir } from './support.js';

const fixtures = join(repoRoot, 'test/fixtures');
const fixture = (name: string): string => join(fixtures, name);
const dir = tempDir('blocklistd-run-');
/** Linux's value; node:fs does not export it. */
const O_CLOEXEC = 0o2000000;
let logSerial = 0;

/** What the record fixture does: its log file, its answer, its sleep, its exit status. */
interface FixtureEnv {
  HELPER_LOG?: string;
  HELPER_REPLY?: string;
  HELPER_SLEEP?: string;
  HELPER_EXIT?: string;
}

/** Sets the fixture variables of the environment the helpers inherit; the others are removed. */
function fixtureEnv(env: FixtureEnv): void {
  for (const key of ['HELPER_LOG', 'HELPER_REPLY', 'HELPER_SLEEP', 'HELPER_EXIT'] as const) {
    if (env[key] === undefined) delete process.env[key];
    else process.env[key] = env[key];
  }
}

/** A fresh log file for the record fixture, already in the environment along with `env`. */
function recordTo(env: Omit<FixtureEnv, 'HELPER_LOG'> = {}): string {
  const file = join(dir, `record-${++logSerial}.log`);
  fixtureEnv({ ...env, HELPER_LOG: file });
  return file;
}

function runner(program: string, options: Partial<HelperRunnerOptions> = {}): { runner: HelperRunner; logs: LogCollector } {
  const logs = new LogCollector();
  return { runner: new HelperRunner({ program, log: logs.log, ...options }), logs };
}

const target = (address: string, name = 'blocklistd'): HelperTarget => ({ name, proto: 'tcp', address, mask: 32, port: 22 });
const change = (action: 'add' | 'rem', address: string, id = ''): Change => ({ action, target: target(address), id });

/** The record fixture's argument text for a call. */
const changeArgs = (action: string, t: HelperTarget, id: string): string =>
  `[${action}][${t.name}][${t.proto}][${t.address}][${t.mask}][${t.port}][${id}]`;

/** One helper run as the record fixture saw it, in microseconds. */
interface Span {
  args: string;
  start: number;
  end: number;
}

/** The runs of a record log by their arguments (unique in every test). */
function spans(file: string): Map<string, Span> {
  const runs = new Map<string, Span>();
  for (const entry of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const [event, ns, ...rest] = entry.split(' ');
    const args = rest.join(' ');
    const us = Number(BigInt(ns!) / 1000n);
    const run = runs.get(args) ?? { args, start: NaN, end: NaN };
    if (event === 'start') run.start = us;
    else run.end = us;
    runs.set(args, run);
  }
  return runs;
}

/** The largest number of runs in progress at one instant. */
function maxOverlap(runs: Iterable<Span>): number {
  // At equal times an end comes before a start: touching runs do not overlap.
  const events = [...runs].flatMap((r) => [
    { t: r.start, d: 1 },
    { t: r.end, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (now += e.d));
  return max;
}

/** Asserts that the runs happened one after another in the given order. */
function assertSequential(runs: Map<string, Span>, order: string[]): void {
  for (let i = 1; i < order.length; i++) {
    const before = runs.get(order[i - 1]!)!;
    const after = runs.get(order[i]!)!;
    assert.ok(after.start >= before.end, `${after.args} started before ${before.args} ended`);
  }
}

test('the helper runs directly, with argv[0] "control" and the exact arguments', async () => {
  // /bin/sh as the helper: a binary, so its /proc/<pid>/cmdline is the vector as passed (fixtures/argv0/add).
  const cwd = process.cwd();
  process.chdir(fixture('argv0'));
  try {
    const { runner: sh } = runner('/bin/sh');
    const t: HelperTarget = { name: 'blocklistd', proto: 'tcp', address: '2001:db8::', mask: 64, port: 22 };
    const result = await sh.change('add', t, '');
    assert.equal(result.line, 'control|add|blocklistd|tcp|2001:db8::|64|22||');
  } finally {
    process.chdir(cwd);
  }

  const log = recordTo();
  const { runner: record } = runner(fixture('record'));
  const t: HelperTarget = { name: 'blocklistd-ext', proto: 'udp', address: '192.0.2.0', mask: 24, port: 53 };
  await record.change('rem', t, 'id 2');
  await record.flush('');
  // The log file reached the helper through the inherited environment.
  assert.deepEqual([...spans(log).keys()], ['[rem][blocklistd-ext][udp][192.0.2.0][24][53][id 2]', '[flush][]']);
});

test('the first line of the output is the answer, the id without "OK ", cut to 63 bytes', async () => {
  const { runner: record } = runner(fixture('record'));
  const cases: [reply: string, line: string | undefined, id: string | undefined][] = [
    ['OK 42\\n', 'OK 42', '42'],
    ['OK\\n', 'OK', 'OK'],
    ['OK \\n', 'OK ', ''],
    ['OKAY\\n', 'OKAY', 'OKAY'],
    [' OK x\\n', ' OK x', ' OK x'],
    ['OK without newline', 'OK without newline', 'without newline'],
    ['first\\nsecond\\n', 'first', 'first'],
    ['\\n', '', ''],
    ['\\nsecond\\n', '', ''],
    ['', undefined, undefined],
    [`OK ${'x'.repeat(100)}\\n`, `OK ${'x'.repeat(100)}`, 'x'.repeat(63)],
    // 2-byte characters: the 32nd would end at byte 64
    [`OK ${'é'.repeat(40)}\\n`, `OK ${'é'.repeat(40)}`, 'é'.repeat(31)],
    // The line itself stops at 4096 bytes, here after 3 + 2046 × 2.
    [`OK ${'é'.repeat(3000)}\\n`, `OK ${'é'.repeat(2046)}`, 'é'.repeat(31)],
  ];
  for (const [reply, line, id] of cases) {
    fixtureEnv({ HELPER_REPLY: reply });
    const result = await record.change('add', target('192.0.2.1'), '');
    assert.deepEqual(
      result,
      {
        outcome: line === undefined ? 'failed' : 'ok',
        line,
        id,
        exitCode: 0,
        signal: null,
        timedOut: false,
        error: undefined,
        cancelled: false,
      },
      JSON.stringify(reply),
    );
  }
});

test('debug traces the call and its answer in upstream wording, only at debug level 1 and up', async () => {
  let level = 0;
  const program = fixture('record');
  const { runner: record, logs } = runner(program, { debug: () => level });
  fixtureEnv({ HELPER_REPLY: 'OK 7\\n' });
  await record.change('add', target('192.0.2.1'), '');
  assert.deepEqual(logs.lines, []);

  level = 1;
  await record.change('rem', target('192.0.2.1'), '7');
  fixtureEnv({});
  await record.flush('blocklistd');
  assert.deepEqual(logs.lines, [
    { level: 'debug', message: `run ${program} [control rem blocklistd tcp 192.0.2.1 32 22 7]` },
    { level: 'debug', message: 'rem returns OK 7' },
    { level: 'debug', message: `run ${program} [control flush blocklistd]` },
    { level: 'debug', message: 'flush returns (null)' },
  ]);
});

test('a helper that does not finish in time is killed and the call fails', async () => {
  fixtureEnv({});
  const program = fixture('hang');
  const { runner: hang, logs } = runner(program, { timeoutMs: 300 });
  const started = Date.now();
  const result = await hang.change('add', target('192.0.2.1'), '');
  // The shell's child (a sleep) dies with it: the whole process group is killed.
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  assert.deepEqual(result, {
    outcome: 'timeout',
    line: undefined,
    id: undefined,
    exitCode: null,
    signal: 'SIGKILL',
    timedOut: true,
    error: undefined,
    cancelled: false,
  });
  assert.deepEqual(logs.lines, [{ level: 'err', message: `${program} add timed out after 0.3 s, killed` }]);
  assert.equal(hang.pending, 0);
});

test('a timed-out helper dies with every process it started: no change reaches the filter after the daemon gave up', async () => {
  // Before, only the shell was killed and its subshell made the change a moment later.
  const log = recordTo();
  const { runner: late } = runner(fixture('late-change'), { timeoutMs: 300 });
  const result = await late.change('add', target('192.0.2.1'), '');
  assert.equal(result.timedOut, true);
  assert.equal(result.line, undefined);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(existsSync(log) ? readFileSync(log, 'utf8') : '', '', 'the subshell survived the timeout');
});

test('the answer is read when the helper exits: a process it leaves in the background does not hold the call', async () => {
  // The background process keeps stdout open for 3 s; upstream waits for the exit too.
  const { runner: background } = runner(fixture('background'), { timeoutMs: 10_000 });
  fixtureEnv({ HELPER_REPLY: 'OK bg\\n' });
  let started = Date.now();
  const result = await background.change('add', target('192.0.2.1'), '');
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  assert.deepEqual(result, {
    outcome: 'ok',
    line: 'OK bg',
    id: 'bg',
    exitCode: 0,
    signal: null,
    timedOut: false,
    error: undefined,
    cancelled: false,
  });
  // A batch's answer is many lines: all of them are read, none waits for the background process.
  fixtureEnv({ HELPER_REPLY: 'OK 1\\n\\nOK 3\\n' });
  started = Date.now();
  const results = await background.batch([1, 2, 3].map((i) => ({ action: 'add', target: target(`192.0.2.${i}`), id: '' })));
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  assert.deepEqual(
    results.map((r) => r.id),
    ['1', undefined, '3'],
  );
  fixtureEnv({});
});

test(
  'a character split between two reads of the answer stays whole; a batch line is cut at 4096 bytes on ' + 'a character boundary',
  async () => {
    const split = runner(fixture('split-utf8')).runner;
    assert.deepEqual(
      (await split.batch([change('add', '192.0.2.1'), change('add', '192.0.2.2')])).map((r) => r.id),
      ['aé', 'b'],
    );
    assert.equal((await split.change('add', target('192.0.2.1'), '')).line, 'OK aé');
    // 2-byte characters: 3 + 2046 × 2 = 4095 bytes, the next one would end at byte 4097
    fixtureEnv({ HELPER_REPLY: `OK ${'é'.repeat(3000)}\\nOK b\\n` });
    const results = await runner(fixture('record')).runner.batch([change('add', '192.0.2.1'), change('add', '192.0.2.2')]);
    assert.deepEqual(
      results.map((r) => r.line),
      [`OK ${'é'.repeat(2046)}`, 'OK b'],
    );
    fixtureEnv({});
  },
);

test(
  'the outcome is decided once: an add works with a line, a rem or flush with a line or exit status 0, ' +
    'capabilities with exit status 0',
  async () => {
    const { runner: record } = runner(fixture('record'));
    const cases: [call: () => Promise<HelperResult>, reply: string, exit: string, outcome: HelperResult['outcome']][] = [
      [() => record.change('add', target('192.0.2.1'), ''), 'OK 1\\n', '0', 'ok'],
      [() => record.change('add', target('192.0.2.1'), ''), 'OK 1\\n', '1', 'ok'],
      [() => record.change('add', target('192.0.2.1'), ''), '', '0', 'failed'],
      [() => record.change('rem', target('192.0.2.1'), '1'), '', '0', 'ok'],
      [() => record.change('rem', target('192.0.2.1'), '1'), 'OK\\n', '1', 'ok'],
      [() => record.change('rem', target('192.0.2.1'), '1'), '', '1', 'failed'],
      [() => record.flush('blocklistd'), '', '1', 'failed'],
      [() => record.flush('blocklistd'), '', '0', 'ok'],
    ];
    for (const [call, reply, exit, outcome] of cases) {
      fixtureEnv({ HELPER_REPLY: reply, HELPER_EXIT: exit });
      const result = await call();
      assert.equal(result.outcome, outcome, `${reply} ${exit}`);
      assert.equal(unfinished(result), false);
    }
    fixtureEnv({});
    // a line that is not a list of words, from a program that exits 1: no capabilities
    fixtureEnv({ HELPER_REPLY: 'usage: control add|rem|flush\\n', HELPER_EXIT: '1' });
    assert.deepEqual(await record.capabilities(), new Set());
    fixtureEnv({});
    const stopped = runner(fixture('record')).runner;
    await stopped.stop(0);
    const cancelled = await stopped.flush('blocklistd');
    assert.equal(cancelled.outcome, 'cancelled');
    assert.equal(unfinished(cancelled), false);
    assert.equal(failureText(cancelled), '');
  },
);

test('a program that cannot be started fails the call with the C library text', async () => {
  fixtureEnv({});
  for (const [program, reason] of [
    [fixture('missing'), 'No such file or directory'],
    [fixture('not-executable'), 'Permission denied'],
  ] as const) {
    const { runner: broken, logs } = runner(program);
    const result = await broken.flush('blocklistd');
    assert.deepEqual(result, {
      outcome: 'error',
      line: undefined,
      id: undefined,
      exitCode: null,
      signal: null,
      timedOut: false,
      error: reason,
      cancelled: false,
    });
    assert.deepEqual(logs.lines, [{ level: 'err', message: `popen ${program} failed (${reason})` }]);
    assert.equal(broken.pending, 0);
  }
});

test('an argument the system cannot pass fails the call instead of throwing', async () => {
  const { runner: record, logs } = runner(fixture('record'));
  const result = await record.change('add', target('192.0.2.1'), 'nul\0byte');
  assert.equal(typeof result.error, 'string');
  assert.equal(result.line, undefined);
  assert.equal(logs.lines.length, 1);
  assert.equal(record.pending, 0);
});

test('a helper may write more after its answer without getting SIGPIPE', async () => {
  fixtureEnv({});
  const { runner: chatty } = runner(fixture('chatty'));
  const result = await chatty.change('add', target('192.0.2.1'), '');
  assert.equal(result.line, 'OK chatty');
  assert.equal(result.id, 'chatty');
  assert.equal(result.signal, null);
  assert.equal(result.exitCode, 0);
});

test('calls for one target run one after another in submission order; other targets run meanwhile', async () => {
  const log = recordTo({ HELPER_SLEEP: 'random' });
  const { runner: record } = runner(fixture('record'), { concurrency: 4 });
  const targets = [target('192.0.2.1'), target('192.0.2.2'), target('192.0.2.1', 'other'), target('2001:db8::1')];
  const byTarget = new Map<HelperTarget, string[]>(targets.map((t) => [t, []]));
  const calls: Promise<HelperResult>[] = [];
  for (let i = 0; i < 24; i++) {
    const t = targets[i % 3 === 0 ? 0 : i % targets.length]!;
    const action = byTarget.get(t)!.length % 2 === 0 ? 'add' : 'rem';
    byTarget.get(t)!.push(changeArgs(action, t, `c${i}`));
    calls.push(record.change(action, t, `c${i}`));
  }
  await Promise.all(calls);
  const runs = spans(log);
  assert.equal(runs.size, 24);
  for (const order of byTarget.values()) assertSequential(runs, order);
  const overlap = maxOverlap(runs.values());
  assert.ok(overlap > 1 && overlap <= 4, `overlap ${overlap}`);
});

test('a flush waits for the earlier calls of its name and holds back the later ones', async () => {
  const log = recordTo({ HELPER_SLEEP: '0.2' });
  const { runner: record } = runner(fixture('record'), { concurrency: 4 });
  const a = target('192.0.2.1', 'n1');
  const b = target('192.0.2.2', 'n1');
  const c = target('192.0.2.3', 'n2');
  const d = target('192.0.2.4', 'n1');
  const e = target('192.0.2.5', 'n2');
  await Promise.all([
    record.change('add', a, 'a'),
    record.change('add', b, 'b'),
    record.change('add', c, 'c'),
    record.flush('n1'),
    record.change('add', d, 'd'),
    record.change('add', e, 'e'),
    record.change('rem', a, 'a2'),
  ]);
  const runs = spans(log);
  const run = (args: string): Span => runs.get(args)!;
  const flush = run('[flush][n1]');
  for (const before of [changeArgs('add', a, 'a'), changeArgs('add', b, 'b')])
    assert.ok(flush.start >= run(before).end, `flush started before ${before} ended`);
  for (const after of [changeArgs('add', d, 'd'), changeArgs('rem', a, 'a2')])
    assert.ok(run(after).start >= flush.end, `${after} started before the flush ended`);
  // Name n2 is not held back by the flush of n1.
  assert.ok(run(changeArgs('add', e, 'e')).start < flush.start, 'add of n2 waited for the flush of n1');
  assert.ok(run(changeArgs('add', c, 'c')).start < run(changeArgs('add', a, 'a')).end);
});

test('no more than `concurrency` helpers run at once', async () => {
  const log = recordTo({ HELPER_SLEEP: '0.15' });
  const { runner: record } = runner(fixture('record'), { concurrency: 3 });
  const calls = Array.from({ length: 10 }, (_, i) => record.change('add', target(`192.0.2.${i + 1}`), ''));
  assert.equal(record.pending, 10);
  await Promise.all(calls);
  assert.equal(record.pending, 0);
  assert.equal(maxOverlap(spans(log).values()), 3);
});

test('a call waiting for its target does not hold back later calls for other targets', async () => {
  const log = recordTo({ HELPER_SLEEP: '0.3' });
  const { runner: record } = runner(fixture('record'), { concurrency: 2 });
  const a = target('192.0.2.1');
  const b = target('192.0.2.2');
  await Promise.all([record.change('add', a, ''), record.change('rem', a, 'x'), record.change('add', b, '')]);
  const runs = spans(log);
  assert.ok(runs.get(changeArgs('add', b, ''))!.start < runs.get(changeArgs('add', a, ''))!.end);
  assertSequential(runs, [changeArgs('add', a, ''), changeArgs('rem', a, 'x')]);
});

test('stop cancels the calls not started and waits for the running ones', async () => {
  const log = recordTo({ HELPER_SLEEP: '0.3', HELPER_REPLY: 'OK 1\\n' });
  const { runner: record, logs } = runner(fixture('record'), { concurrency: 1 });
  const first = record.change('add', target('192.0.2.1'), '');
  const queued = [record.change('add', target('192.0.2.2'), ''), record.flush('blocklistd')];
  let firstDone = false;
  void first.then(() => (firstDone = true));
  const stopped = record.stop(5000);
  for (const result of await Promise.all(queued)) assert.equal(result.cancelled, true);
  assert.equal(firstDone, false, 'the queued calls resolved only after the running one');
  await stopped;
  assert.equal(firstDone, true);
  assert.equal((await first).id, '1');
  assert.equal(record.pending, 0);
  assert.equal(spans(log).size, 1);
  assert.deepEqual(logs.lines, []);
  // Once stopped, nothing starts any more.
  assert.equal((await record.flush('blocklistd')).cancelled, true);
  assert.equal(spans(log).size, 1);
});

test('stop kills the helpers still running after the grace time', async () => {
  fixtureEnv({});
  const program = fixture('hang');
  const { runner: hang, logs } = runner(program);
  const running = hang.change('rem', target('192.0.2.1'), '1');
  const started = Date.now();
  await hang.stop(200);
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  const result = await running;
  assert.equal(result.signal, 'SIGKILL');
  assert.equal(result.timedOut, false);
  assert.equal(result.cancelled, false);
  assert.deepEqual(logs.lines, [{ level: 'err', message: `${program} rem still running at shutdown, killed` }]);
  assert.equal(hang.pending, 0);
});

test('stop without grace kills a helper that is still starting', async () => {
  fixtureEnv({});
  const program = fixture('hang');
  const { runner: hang } = runner(program);
  // posix_spawn runs in the thread pool: the kill may come before the pid is known, and waits for it
  const running = hang.change('rem', target('192.0.2.1'), '1');
  const started = Date.now();
  await hang.stop(0);
  const result = await running;
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  assert.equal(result.signal, 'SIGKILL');
  assert.equal(hang.pending, 0);
});

/** Where the test process's descriptors above 2 point, split by the close-on-exec flag. */
function ownDescriptors(): { closeOnExec: Set<string>; inheritable: Set<string> } {
  const closeOnExec = new Set<string>();
  const inheritable = new Set<string>();
  for (const n of readdirSync('/proc/self/fd').filter((n) => Number(n) > 2)) {
    let where: string;
    let flags: number;
    try {
      where = readlinkSync(`/proc/self/fd/${n}`);
      flags = parseInt(/^flags:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${n}`, 'utf8'))![1]!, 8);
    } catch {
      continue; // the descriptor readdir used
    }
    (flags & O_CLOEXEC ? closeOnExec : inheritable).add(where);
  }
  return { closeOnExec, inheritable };
}

test('no descriptor of the daemon reaches the helper', async () => {
  const probe = join(dir, 'descriptor-probe');
  const fd = openSync(probe, 'w');
  try {
    const log = recordTo();
    // Descriptors this process inherited without close-on-exec (from the test
    // runner, a shell) pass to every child; none of ours may.
    const { closeOnExec, inheritable } = ownDescriptors();
    assert.ok(closeOnExec.has(probe));
    const { runner: fds } = runner(fixture('fds'));
    await fds.flush('blocklistd');
    const theirs = new Map(
      readFileSync(log, 'utf8')
        .split('\n')
        .flatMap((line) => {
          const m = / (\d+) -> (.*)$/.exec(line);
          return m ? [[Number(m[1]), m[2]!] as const] : [];
        }),
    );
    assert.equal(theirs.get(0), '/dev/null');
    // libuv makes the stdout "pipe" a socket pair
    assert.match(theirs.get(1) ?? '', /^(pipe|socket):/);
    assert.ok(theirs.has(2));
    assert.ok(![...theirs.values()].includes(probe), `${probe} leaked`);
    // Besides the script the shell reads, only what this process itself inherited.
    for (const [n, where] of theirs)
      if (n > 2) assert.ok(where === fixture('fds') || inheritable.has(where), `descriptor ${n} -> ${where} leaked`);
  } finally {
    closeSync(fd);
  }
});

describe('batch mode', () => {
  const helperScript = join(repoRoot, 'bin/blocklistd-helper');
  /** The real helper with its log back end, recording to a file of its own. */
  function logHelper(): { runner: HelperRunner; log: string } {
    const log = join(dir, `helper-${++logSerial}.log`);
    const conf = join(dir, `helper-${logSerial}.conf`);
    writeFileSync(conf, `backend=log\nlog_file=${log}\n`);
    process.env.BLOCKLISTD_HELPER_CONF = conf;
    return { runner: runner(helperScript).runner, log };
  }

  test('capabilities: the words of the first line; none from a helper that does not know the command', async () => {
    assert.deepEqual(await logHelper().runner.capabilities(), new Set(['batch', 'batch-flush', 'check', 'timeout', 'cut']));
    fixtureEnv({ HELPER_REPLY: 'Unknown command\\n' });
    assert.deepEqual(await runner(fixture('record')).runner.capabilities(), new Set(['Unknown', 'command']));
    fixtureEnv({});
    assert.deepEqual(await runner(fixture('not-executable')).runner.capabilities(), new Set());
    // upstream's helper exits 1 after its complaint
    const { runner: failing } = runner(fixture('control'));
    process.env.HELPER_MODE = 'remfail';
    try {
      assert.deepEqual(await failing.capabilities(), new Set());
    } finally {
      delete process.env.HELPER_MODE;
    }
  });

  test('batch: one process, the operations on stdin one per line, one result per operation in order', async () => {
    const { runner: helper, log } = logHelper();
    const results = await helper.batch([
      change('add', '192.0.2.1'),
      change('rem', '192.0.2.2', 'old2'),
      change('add', '2001:db8::1', 'old3'),
    ]);
    assert.deepEqual(
      results.map((r) => [r.line, r.id]),
      [
        ['OK blocklistd:192.0.2.1/32:22', 'blocklistd:192.0.2.1/32:22'],
        ['OK', 'OK'],
        ['OK blocklistd:2001:db8::1/32:22', 'blocklistd:2001:db8::1/32:22'],
      ],
    );
    assert.equal(
      readFileSync(log, 'utf8'),
      'add blocklistd tcp 192.0.2.1 32 22 \nrem blocklistd tcp 192.0.2.2 32 22 old2\nadd blocklistd tcp 2001:db8::1 32 22 old3\n',
    );
  });

  test('batch with flushes: the flush lines first, the results those of the changes', async () => {
    const { runner: helper, log } = logHelper();
    const results = await helper.batch([change('add', '192.0.2.1', 'old1'), change('add', '192.0.2.2')], ['blocklistd', 'other']);
    assert.deepEqual(
      results.map((r) => r.id),
      ['blocklistd:192.0.2.1/32:22', 'blocklistd:192.0.2.2/32:22'],
    );
    assert.equal(
      readFileSync(log, 'utf8'),
      'flush blocklistd\nflush other\nadd blocklistd tcp 192.0.2.1 32 22 old1\nadd blocklistd tcp 192.0.2.2 32 22 \n',
    );
  });

  test('batch with flushes: waits for the running calls of the names it flushes, and holds back later ones', async () => {
    const log = recordTo({ HELPER_SLEEP: '0.2', HELPER_REPLY: 'OK\n' });
    const { runner: record } = runner(fixture('record'), { concurrency: 4 });
    const a = target('192.0.2.1');
    const b = target('192.0.2.2');
    await Promise.all([
      record.change('add', a, 'first'),
      record.batch([change('add', '192.0.2.9')], ['blocklistd']),
      record.change('rem', b, 'last'),
    ]);
    assertSequential(spans(log), [changeArgs('add', a, 'first'), '[batch]', changeArgs('rem', b, 'last')]);
  });

  test('batch: an empty line or a missing one fails that operation only', async () => {
    fixtureEnv({ HELPER_REPLY: 'OK a\\n\\nOK c\\n' });
    const results = await runner(fixture('record')).runner.batch([
      change('add', '192.0.2.1'),
      change('add', '192.0.2.2'),
      change('add', '192.0.2.3'),
      change('add', '192.0.2.4'),
    ]);
    assert.deepEqual(
      results.map((r) => r.id),
      ['a', undefined, 'c', undefined],
    );
    // the batch exited 0, but a change without its line has no exit status of its own: a rem so answered is retried
    assert.deepEqual(
      results.map((r) => r.exitCode),
      [0, null, 0, null],
    );
    assert.ok(results.every((r) => !('lines' in r)));
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['ok', 'failed', 'ok', 'failed'],
    );
  });

  test('batch: the changes of a batch that timed out are unfinished', async () => {
    fixtureEnv({ HELPER_REPLY: 'OK a\\n', HELPER_SLEEP: '10' });
    const results = await runner(fixture('record'), { timeoutMs: 300 }).runner.batch([
      change('add', '192.0.2.1'),
      change('add', '192.0.2.2'),
    ]);
    fixtureEnv({});
    assert.deepEqual(
      results.map((r) => [r.outcome, unfinished(r)]),
      [
        ['timeout', true],
        ['timeout', true],
      ],
    );
  });

  test('batch: waits for a running call of one of its targets, and holds back later ones', async () => {
    const log = recordTo({ HELPER_SLEEP: '0.2', HELPER_REPLY: 'OK\\n' });
    const { runner: record } = runner(fixture('record'), { concurrency: 4 });
    const a = target('192.0.2.1');
    await Promise.all([
      record.change('add', a, 'first'),
      record.batch([change('rem', '192.0.2.1', 'x'), change('add', '192.0.2.9')]),
      record.change('rem', a, 'last'),
    ]);
    const runs = spans(log);
    assertSequential(runs, [changeArgs('add', a, 'first'), '[batch]', changeArgs('rem', a, 'last')]);
  });
});
