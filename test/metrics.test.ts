// The Prometheus listener (issue 7) against the real daemon: a known
// sequence of notifications, malformed datagrams, blocks, releases, helper
// calls and control requests, then the exact counts scraped; what the
// listener serves and refuses; --metrics' address checks; the rule labels,
// build and reload metrics (issue 15), and the shipped Grafana dashboard
// against what the daemon exports.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ABUSIVE_BEHAVIOR, AUTH_FAIL, AUTH_OK, BAD_USER, Blocklist, type BlocklistAction } from '../src/index.js';
import { USAGE } from '../src/daemon/options.js';
import { StateStore } from '../src/state/store.js';
import {
  Reporter,
  ctl,
  freePort,
  isRoot,
  repoRoot,
  run,
  runBlprobe,
  startDaemon,
  stateKey,
  tempDir,
  until,
  type RunResult,
} from './support.js';

interface Response {
  status: number;
  contentType: string;
  body: string;
}

function request(url: string, method = 'GET'): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'] ?? '', body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A scrape as `name{label="value",…}` (labels sorted) → value. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    samples.set(
      sampleKey(m[1], Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]))),
      Number(m[3]),
    );
  }
  return samples;
}

function sampleKey(name: string, labels: Record<string, string> = {}): string {
  const list = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return list.length === 0 ? name : `${name}{${list.join(',')}}`;
}

async function scrape(address: string): Promise<Map<string, number>> {
  const r = await request(`http://${address}/metrics`);
  assert.equal(r.status, 200, r.body);
  return parseExposition(r.body);
}

/** The loopback TCP ports a process listens on, from its socket inodes and the kernel's tables. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local address, state 0A (LISTEN), inode
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9])) ports.push(parseInt(f[1].split(':')[1], 16));
    }
  }
  return ports;
}

const blocklistd = (args: string[], env: Record<string, string> = {}): Promise<RunResult> =>
  run(process.execPath, [join(repoRoot, 'bin/blocklistd'), ...args], { env });

const occurrences = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0;

describe('blocklistd --metrics', () => {
  test('a known sequence of events, counted exactly, and as `status` reports it', async (t) => {
    const [matched, forever, noRule, fuzzPort, metricsPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const address = `127.0.0.1:${metricsPort}`;
    const dir = tempDir('blocklistd-metrics-');
    // one block in the database for -r to restore
    const store = StateStore.open(join(dir, 'blocklistd.db'));
    store.put({ key: stateKey('192.0.2.9'), count: 3, last: Math.floor(Date.now() / 1000), id: 'old-id' });
    store.close();
    const daemon = await startDaemon(t, `${matched} stream * * * 3 2\n${forever} stream * * * 1 *\n`, ['-r', '--metrics', address], {
      dir,
    });
    const control = join(dir, 'blocklistd.ctl');
    await daemon.waitFor(new RegExp(`metrics on http://127\\.0\\.0\\.1:${metricsPort}/metrics`));
    assert.deepEqual(listeningPorts(daemon.child.pid!), [metricsPort]);
    await until(() => daemon.entries().some((e) => e.id === 'id-192.0.2.9:22'));

    let serial = 0;
    const reporters: Reporter[] = [];
    t.after(() => reporters.forEach((r) => r.close()));
    const reporter = async (port: number, client: string): Promise<Reporter> => {
      const r = await Reporter.connect(daemon.socket, port, client);
      reporters.push(r);
      return r;
    };
    const report = async (r: Reporter, action: BlocklistAction): Promise<void> => {
      const text = `m${++serial}`;
      r.report(action, text);
      await daemon.settled(text);
    };

    // every type once where no rule matches
    const stranger = await reporter(noRule, '127.0.0.1');
    for (const action of [AUTH_FAIL, ABUSIVE_BEHAVIOR, BAD_USER, AUTH_OK] as BlocklistAction[]) await report(stranger, action);

    // 1 + 2 reach nfail 3: a block, released by expiry two seconds later (awaited at the end)
    const expiring = await reporter(matched, '127.0.0.2');
    await report(expiring, BAD_USER);
    await report(expiring, AUTH_FAIL);
    await daemon.waitFor(new RegExp(`blocked 127\\.0\\.0\\.2/32:${matched} for 2 seconds`));

    // a helper that gives no rule id: the add fails, nothing is blocked
    expiring.close(); // its server holds the port
    daemon.helperMode('silent');
    const refused = await reporter(matched, '127.0.0.3');
    await report(refused, ABUSIVE_BEHAVIOR);
    await daemon.waitFor(new RegExp(`add blocklistd tcp 127\\.0\\.0\\.3/32:${matched}: the helper gave no rule id`));
    daemon.helperMode('ok');
    await report(refused, AUTH_OK); // matched, but there is nothing to reset

    // a forever block, lifted by AUTH_OK
    const reset = await reporter(forever, '127.0.0.4');
    await report(reset, AUTH_FAIL);
    await until(() => daemon.entries().some((e) => e.key.address === '127.0.0.4' && e.id !== ''));
    await report(reset, AUTH_OK);
    await daemon.waitFor(new RegExp(`released 127\\.0\\.0\\.4/32:${forever} after -1 seconds`));

    // malformed datagrams of the reference client, 2 of each kind, each kind followed by its barrier (an AUTH_OK no rule matches)
    const kinds = ['short', 'empty', 'badver', 'nofd', 'twofd', 'file', 'udp', 'salen7', 'family', 'v6onv4', 'badtype'];
    const fuzz = await runBlprobe(['-s', daemon.socket, '-p', String(fuzzPort), '-z', kinds.join(','), '-n', '2']);
    assert.equal(fuzz.code, 0, fuzz.stdout + fuzz.stderr);
    assert.equal(occurrences(fuzz.stdout, /sent 2\/2 {2}barrier ok/g), kinds.length, fuzz.stdout);
    await until(() => occurrences(daemon.stderr, /processing type=2 remote=127\.0\.0\.1:\d+ msg=""/g) === kinds.length);
    // a server that reports its unix-socket client: the passed socket's local side is no internet address
    const unixServer = net.createServer();
    const unixPath = join(dir, 'server.sock');
    await new Promise<void>((resolve) => unixServer.listen(unixPath, resolve));
    const unixClient = net.connect(unixPath);
    const accepted = await new Promise<net.Socket>((resolve) => unixServer.once('connection', resolve));
    const client = new Blocklist({ socketPath: daemon.socket, logger: null });
    assert.equal(client.notify(AUTH_FAIL, accepted, 'unix'), true);
    await daemon.waitFor(/unsupported family 1/);
    client.close();
    unixClient.destroy();
    accepted.destroy();
    unixServer.close();

    // control requests: a manual block and its release, an unblock of nothing, a status
    let r = await ctl(['block', '-p', String(noRule), '-t', '1h', '--control', control, '10.7.7.7']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctl(['unblock', '--control', control, '10.7.7.7']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctl(['unblock', '--control', control, '10.7.7.7']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no entry for 10\.7\.7\.7/);

    await daemon.waitFor(new RegExp(`released 127\\.0\\.0\\.2/32:${matched} after 2 seconds`));
    await until(() => daemon.entries().length === 1);
    r = await ctl(['status', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    const status = (
      JSON.parse(r.stdout) as {
        result: { counters: Record<string, Record<string, number>>; entries: number; blocked: number; metrics: string };
      }
    ).result;

    const samples = await scrape(address);
    const expected: [string, Record<string, string>, number][] = [
      ['blocklistd_notifications_total', { type: 'auth_fail', outcome: 'matched', rule: 'blocklistd' }, 2],
      ['blocklistd_notifications_total', { type: 'auth_fail', outcome: 'no_rule', rule: '' }, 1],
      ['blocklistd_notifications_total', { type: 'bad_user', outcome: 'matched', rule: 'blocklistd' }, 1],
      ['blocklistd_notifications_total', { type: 'bad_user', outcome: 'no_rule', rule: '' }, 1],
      ['blocklistd_notifications_total', { type: 'abusive_behavior', outcome: 'matched', rule: 'blocklistd' }, 1],
      ['blocklistd_notifications_total', { type: 'abusive_behavior', outcome: 'no_rule', rule: '' }, 1],
      ['blocklistd_notifications_total', { type: 'auth_ok', outcome: 'matched', rule: 'blocklistd' }, 2],
      ['blocklistd_notifications_total', { type: 'auth_ok', outcome: 'no_rule', rule: '' }, 1 + kinds.length],
      ['blocklistd_notifications_dropped_total', { reason: 'recv' }, 0],
      ['blocklistd_notifications_dropped_total', { reason: 'credentials' }, 4], // nofd, twofd
      ['blocklistd_notifications_dropped_total', { reason: 'short' }, 4], // short, empty
      ['blocklistd_notifications_dropped_total', { reason: 'version' }, 2],
      ['blocklistd_notifications_dropped_total', { reason: 'peer' }, 8], // file, udp, salen7, family
      ['blocklistd_notifications_dropped_total', { reason: 'local' }, 1],
      ['blocklistd_notifications_dropped_total', { reason: 'netns' }, 0],
      ['blocklistd_notifications_dropped_total', { reason: 'untrusted' }, 0],
      ['blocklistd_notifications_dropped_total', { reason: 'family' }, 2], // v6onv4
      ['blocklistd_notifications_dropped_total', { reason: 'type' }, 2],
      ['blocklistd_notifications_dropped_total', { reason: 'rate_limit' }, 0], // root's reports are never limited
      ['blocklistd_notifications_dropped_total', { reason: 'self' }, 0], // no --allow-self
      ['blocklistd_evictions_total', {}, 0],
      ['blocklistd_blocks_total', { origin: 'limit', rule: 'blocklistd' }, 2],
      ['blocklistd_blocks_total', { origin: 'restore', rule: 'blocklistd' }, 1],
      ['blocklistd_blocks_total', { origin: 'manual', rule: 'blocklistd' }, 1],
      ['blocklistd_releases_total', { origin: 'expiry', rule: 'blocklistd' }, 1],
      ['blocklistd_releases_total', { origin: 'reset', rule: 'blocklistd' }, 1],
      ['blocklistd_releases_total', { origin: 'manual', rule: 'blocklistd' }, 1],
      ['blocklistd_helper_calls_total', { action: 'capabilities', result: 'ok' }, 1],
      ['blocklistd_helper_calls_total', { action: 'flush', result: 'ok' }, 1],
      ['blocklistd_helper_calls_total', { action: 'add', result: 'ok' }, 4], // restore, two limits, manual
      ['blocklistd_helper_calls_total', { action: 'add', result: 'failed' }, 1],
      ['blocklistd_helper_calls_total', { action: 'rem', result: 'ok' }, 3],
      ['blocklistd_helper_duration_seconds_count', { action: 'capabilities' }, 1],
      ['blocklistd_helper_duration_seconds_count', { action: 'flush' }, 1],
      ['blocklistd_helper_duration_seconds_count', { action: 'add' }, 5],
      ['blocklistd_helper_duration_seconds_count', { action: 'rem' }, 3],
      ['blocklistd_control_requests_total', { command: 'block', result: 'ok' }, 1],
      ['blocklistd_control_requests_total', { command: 'unblock', result: 'ok' }, 1],
      ['blocklistd_control_requests_total', { command: 'unblock', result: 'error' }, 1],
      ['blocklistd_control_requests_total', { command: 'status', result: 'ok' }, 1],
      ['blocklistd_entries', {}, 1],
      ['blocklistd_blocked_entries', {}, 1],
    ];
    // a series still at 0 may be missing: a test of its own checks that
    for (const [name, labels, value] of expected) assert.equal(samples.get(sampleKey(name, labels)) ?? 0, value, sampleKey(name, labels));
    for (const family of [
      'blocklistd_notifications_total',
      'blocklistd_notifications_dropped_total',
      'blocklistd_blocks_total',
      'blocklistd_releases_total',
      'blocklistd_helper_calls_total',
      'blocklistd_control_requests_total',
    ]) {
      const listed = new Set(expected.filter(([name]) => name === family).map(([name, labels]) => sampleKey(name, labels)));
      assert.deepEqual(
        [...samples.keys()].filter((k) => k.startsWith(`${family}{`) && !listed.has(k)),
        [],
        `${family}: no other series`,
      );
    }
    // every valid notification passed through a receive batch
    const valid = [...samples].filter(([k]) => k.startsWith('blocklistd_notifications_total{')).reduce((sum, [, v]) => sum + v, 0);
    assert.equal(samples.get('blocklistd_receive_batch_size_sum'), valid);
    const batches = samples.get('blocklistd_receive_batch_size_count')!;
    assert.ok(batches >= 1 && batches <= valid, `${batches} batches`);
    assert.equal(samples.get('blocklistd_receive_batch_size_bucket{le="+Inf"}'), batches);
    assert.ok(samples.get('blocklistd_helper_duration_seconds_sum{action="add"}')! > 0);

    // status: the same counters, before its own request was counted
    assert.equal(status.metrics, address);
    assert.equal(status.entries, 1);
    assert.equal(status.blocked, 1);
    assert.deepEqual(status.counters.blocks, { limit: 2, restore: 1, manual: 1 });
    assert.deepEqual(status.counters.releases, { expiry: 1, reset: 1, manual: 1 });
    assert.equal(status.counters.notifications['auth_ok:no_rule'], 1 + kinds.length);
    assert.equal(status.counters.notifications_dropped.peer, 8);
    assert.deepEqual(status.counters.control_requests, { 'block:ok': 1, 'unblock:ok': 1, 'unblock:error': 1 });
  });

  test('GET /metrics only; the process metrics under their standard names, and no gauge named _total', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', String(port)]);
    await daemon.waitFor(new RegExp(`metrics on http://127\\.0\\.0\\.1:${port}/metrics`));
    const base = `http://127.0.0.1:${port}`;
    const ok = await request(`${base}/metrics?name[]=x`);
    assert.equal(ok.status, 200);
    assert.match(ok.contentType, /^text\/plain; version=0\.0\.4/);
    const samples = parseExposition(ok.body);
    for (const name of [
      'process_cpu_seconds_total',
      'process_cpu_user_seconds_total',
      'process_start_time_seconds',
      'process_resident_memory_bytes',
      'process_open_fds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ]) {
      assert.ok(samples.has(name), name);
    }
    assert.deepEqual(
      [...samples.keys()].filter((k) => !/^(blocklistd|process|nodejs)_/.test(k)),
      [],
    );
    // Prometheus reserves _total for counters
    const types = [...ok.body.matchAll(/^# TYPE (\S+) (\w+)$/gm)];
    assert.ok(types.length > 20, `${types.length} metrics`);
    assert.deepEqual(
      types.filter(([, name, type]) => name.endsWith('_total') && type !== 'counter').map(([line]) => line),
      [],
    );
    assert.match(ok.body, /^# TYPE blocklistd_helper_duration_seconds histogram$/m);
    assert.match(ok.body, /^# TYPE blocklistd_entries gauge$/m);
    for (const [path, method] of [
      ['/', 'GET'],
      ['/metricsx', 'GET'],
      ['/metrics/', 'GET'],
      ['/metrics', 'POST'],
      ['/metrics', 'DELETE'],
    ]) {
      const r = await request(`${base}${path}`, method);
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    assert.equal((await request(`${base}/metrics`)).status, 200, 'still serving');
  });

  test('the series of every notification type and outcome, rule and drop reason are there from the start, at 0', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', `127.0.0.1:${port}`]);
    await daemon.waitFor(/metrics on /);
    const samples = await scrape(`127.0.0.1:${port}`);
    for (const type of ['auth_fail', 'auth_ok', 'abusive_behavior', 'bad_user']) {
      assert.equal(
        samples.get(sampleKey('blocklistd_notifications_total', { type, outcome: 'matched', rule: 'blocklistd' })),
        0,
        `${type} matched`,
      );
      assert.equal(samples.get(sampleKey('blocklistd_notifications_total', { type, outcome: 'no_rule', rule: '' })), 0, `${type} no_rule`);
    }
    for (const origin of ['limit', 'restore', 'manual'])
      assert.equal(samples.get(sampleKey('blocklistd_blocks_total', { origin, rule: 'blocklistd' })), 0, origin);
    for (const origin of ['expiry', 'reset', 'manual'])
      assert.equal(samples.get(sampleKey('blocklistd_releases_total', { origin, rule: 'blocklistd' })), 0, origin);
    // no series of a name the configuration does not have, until one is needed
    assert.deepEqual(
      [...samples.keys()].filter((k) => k.includes('rule="_other"')),
      [],
    );
    for (const reason of ['recv', 'credentials', 'short', 'version', 'peer', 'local', 'netns', 'untrusted', 'family', 'type']) {
      assert.equal(samples.get(sampleKey('blocklistd_notifications_dropped_total', { reason })), 0, reason);
    }
    // the socket's kernel queue: --queue's default as root, the sysctl's value otherwise
    const queue = samples.get(sampleKey('blocklistd_socket_queue_length', { socket: daemon.socket }));
    if (isRoot) assert.equal(queue, 1024);
    else assert.ok(queue !== undefined && queue >= 1);
    assert.equal(samples.get(sampleKey('blocklistd_socket_waiting', { socket: daemon.socket })), 0);
  });

  test('requests for commands the daemon does not know add no series of their own', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', `127.0.0.1:${port}`]);
    await daemon.waitFor(/metrics on /);
    const connection = net.connect(join(daemon.dir, 'blocklistd.ctl'));
    t.after(() => connection.destroy());
    let answers = '';
    connection.on('data', (d: Buffer) => (answers += d.toString()));
    connection.write(['nonsense-1', 'nonsense-2'].map((command) => `${JSON.stringify({ version: 1, command })}\n`).join(''));
    await until(() => answers.split('\n').length === 3);
    assert.match(answers, /unknown_command/);
    const known = new Set(['status', 'block', 'unblock', 'flush', 'reload', 'invalid', 'connect', 'oversized', 'unknown']);
    const samples = await scrape(`127.0.0.1:${port}`);
    const commands = [...samples.keys()].flatMap((k) => /^blocklistd_control_requests_total\{command="([^"]*)"/.exec(k)?.[1] ?? []);
    assert.deepEqual(
      commands.filter((c) => !known.has(c)),
      [],
    );
    assert.equal(
      samples.get(sampleKey('blocklistd_control_requests_total', { command: 'unknown', result: 'error' })),
      2,
      'counted under "unknown"',
    );
  });

  test('[::1]:port: served on the IPv6 loopback only', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', `[::1]:${port}`]);
    await daemon.waitFor(/metrics on /);
    const samples = await scrape(`[::1]:${port}`);
    assert.equal(samples.get('blocklistd_entries'), 0);
    await assert.rejects(request(`http://127.0.0.1:${port}/metrics`), { code: 'ECONNREFUSED' });
  });

  test('[::1]:port: the log and `status` show the address with its brackets', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', `[::1]:${port}`]);
    await daemon.waitFor(/metrics on /);
    assert.match(daemon.stderr, new RegExp(`metrics on http://\\[::1\\]:${port}/metrics`));
    const status = await ctl(['status', '--json', '--control', join(daemon.dir, 'blocklistd.ctl')]);
    assert.equal((JSON.parse(status.stdout) as { result: { metrics: string } }).result.metrics, `[::1]:${port}`);
  });

  test('a port in use: the daemon exits 1 with a message, before touching the packet filter, its sockets removed', async (t) => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    t.after(() => busy.close());
    const port = (busy.address() as net.AddressInfo).port;
    const dir = tempDir('blocklistd-metrics-');
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(conf, '22 stream * * * 3 1h\n');
    const r = await blocklistd(
      [
        '-d',
        '-f',
        '-c',
        conf,
        '-C',
        join(repoRoot, 'test/fixtures/control'),
        '-D',
        join(dir, 'blocklistd.db'),
        '-s',
        join(dir, 'blocklistd.sock'),
        '--metrics',
        `127.0.0.1:${port}`,
      ],
      {
        HELPER_LOG: join(dir, 'helper.log'),
      },
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`metrics listener 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
    assert.deepEqual(
      readFileSync(join(dir, 'helper.log'), 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
      ['capabilities'],
      'no flush',
    );
    assert.equal(existsSync(join(dir, 'blocklistd.sock')), false, 'notification socket removed');
  });

  test('a failed start removes the control socket file it bound, as it does the notification socket', async (t) => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    t.after(() => busy.close());
    const dir = tempDir('blocklistd-metrics-');
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(conf, '22 stream * * * 3 1h\n');
    const port = (busy.address() as net.AddressInfo).port;
    const r = await blocklistd([
      '-d',
      '-c',
      conf,
      '-C',
      join(repoRoot, 'test/fixtures/control'),
      '-D',
      join(dir, 'blocklistd.db'),
      '-s',
      join(dir, 'blocklistd.sock'),
      '--metrics',
      `127.0.0.1:${port}`,
    ]);
    assert.equal(r.code, 1);
    assert.equal(existsSync(join(dir, 'blocklistd.ctl')), false);
  });

  test('a bad --metrics address is a usage error', async () => {
    for (const bad of ['localhost', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:http', '::1:9100', '[::1]', ':']) {
      const r = await blocklistd(['-d', '--metrics', bad]);
      assert.equal(r.code, 2, bad);
      assert.equal(r.stderr, `blocklistd: bad metrics address '${bad}': host:port\n${USAGE}\n`);
    }
    const missing = await blocklistd(['-d', '--metrics']);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, `blocklistd: option '--metrics' requires an argument\n${USAGE}\n`);
  });

  test('without --metrics nothing listens, and status says so', async (t) => {
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', []);
    await daemon.waitFor(/control socket /);
    assert.deepEqual(listeningPorts(daemon.child.pid!), []);
    assert.doesNotMatch(daemon.stderr, /metrics on /);
    const status = await ctl(['status', '--json', '--control', join(daemon.dir, 'blocklistd.ctl')]);
    assert.equal((JSON.parse(status.stdout) as { result: { metrics: string | null } }).result.metrics, null);
  });

  test('an idle daemon sleeps: with --metrics its event loop wakes about once a second, without it not at all', async (t) => {
    /** Context switches of all the daemon's threads over `ms`. */
    const switches = async (pid: number, ms: number): Promise<number> => {
      const count = (): number =>
        readdirSync(`/proc/${pid}/task`).reduce((sum, task) => {
          const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
          return (
            sum +
            Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]) +
            Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1])
          );
        }, 0);
      const before = count();
      await new Promise((resolve) => setTimeout(resolve, ms));
      return count() - before;
    };
    const port = await freePort();
    const plain = await startDaemon(t, '22 stream * * * 3 1h\n', []);
    const scraped = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', String(port)]);
    await Promise.all([plain.waitFor(/control socket /), scraped.waitFor(/metrics on /)]);
    // start-up work (the first GCs, the helper's exit) settles first
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [quiet, monitored] = await Promise.all([switches(plain.child.pid!, 3000), switches(scraped.child.pid!, 3000)]);
    t.diagnostic(`context switches in 3 s: ${quiet} without --metrics, ${monitored} with it`);
    // prom-client's default event-loop monitor alone made about 300
    assert.ok(quiet <= 15, `${quiet} without --metrics`);
    assert.ok(monitored <= 30, `${monitored} with --metrics`);
  });
});

describe('blocklistd --metrics for dashboards (issue 15)', () => {
  test(
    'rule names as labels, bound at each load; _other for a name the configuration lacks; build info; ' +
      'reload success, time and rule counts',
    async (t) => {
      const [ssh, web, metricsPort] = await Promise.all([freePort(), freePort(), freePort()]);
      const address = `127.0.0.1:${metricsPort}`;
      const before = Date.now() / 1000;
      const daemon = await startDaemon(t, `${ssh} stream * * ssh 3 1h\n${web} stream * * -web 1 1h\n`, ['--metrics', address]);
      await daemon.waitFor(/metrics on /);
      const control = join(daemon.dir, 'blocklistd.ctl');
      const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

      let samples = await scrape(address);
      assert.equal(samples.get(sampleKey('blocklistd_build_info', { version, node: process.version, platform: process.platform })), 1);
      assert.equal(samples.get('blocklistd_reload_success'), 1);
      const loadedAt = samples.get('blocklistd_reload_timestamp_seconds')!;
      assert.ok(loadedAt >= Math.floor(before) && loadedAt <= Date.now() / 1000, `loaded at ${loadedAt}`);
      assert.equal(samples.get(sampleKey('blocklistd_config_rules', { section: 'local' })), 2);
      assert.equal(samples.get(sampleKey('blocklistd_config_rules', { section: 'remote' })), 0);
      const rules = (name: string): Set<string> =>
        new Set([...samples.keys()].filter((k) => k.startsWith(`${name}{`)).flatMap((k) => /rule="([^"]*)"/.exec(k)?.[1] ?? []));
      // the rules' names and -R's (a manual block no rule matches gets it)
      assert.deepEqual(rules('blocklistd_blocks_total'), new Set(['ssh', 'blocklistd-web', 'blocklistd']));
      assert.deepEqual(rules('blocklistd_notifications_total'), new Set(['', 'ssh', 'blocklistd-web', 'blocklistd']));

      const reporter = await Reporter.connect(daemon.socket, web, '127.0.0.7');
      t.after(() => reporter.close());
      reporter.report(AUTH_FAIL, 'w1');
      await daemon.waitFor(new RegExp(`blocked 127\\.0\\.0\\.7/32:${web} for 3600 seconds`));
      let r = await ctl(['block', '-t', '1h', '-n', 'custom', '--control', control, '10.1.1.1']);
      assert.equal(r.code, 0, r.stderr);
      r = await ctl(['unblock', '--control', control, '10.1.1.1']);
      assert.equal(r.code, 0, r.stderr);
      samples = await scrape(address);
      assert.equal(
        samples.get(sampleKey('blocklistd_notifications_total', { type: 'auth_fail', outcome: 'matched', rule: 'blocklistd-web' })),
        1,
      );
      assert.equal(samples.get(sampleKey('blocklistd_notifications_total', { type: 'auth_fail', outcome: 'matched', rule: 'ssh' })), 0);
      assert.equal(samples.get(sampleKey('blocklistd_blocks_total', { origin: 'limit', rule: 'blocklistd-web' })), 1);
      assert.equal(samples.get(sampleKey('blocklistd_blocks_total', { origin: 'manual', rule: '_other' })), 1);
      assert.equal(samples.get(sampleKey('blocklistd_releases_total', { origin: 'manual', rule: '_other' })), 1);
      assert.equal(
        samples.get(sampleKey('blocklistd_blocks_total', { origin: 'manual', rule: 'custom' })),
        undefined,
        'no series of its own',
      );
      // status sums the rules up
      const status = JSON.parse((await ctl(['status', '--json', '--control', control])).stdout) as {
        result: { counters: Record<string, Record<string, number>> };
      };
      assert.deepEqual(status.result.counters.blocks, { limit: 1, restore: 0, manual: 1 });
      assert.equal(status.result.counters.notifications['auth_fail:matched'], 1);

      // a reload binds the new names; the old ones keep their counts
      writeFileSync(daemon.config, `${ssh} stream * * ssh 3 1h\n${ssh} dgram * * fresh 3 1h\n[remote]\n10.0.0.0/8:${ssh} * * * /24 = =\n`);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      r = await ctl(['reload', '--control', control]);
      assert.equal(r.code, 0, r.stderr);
      samples = await scrape(address);
      assert.equal(samples.get(sampleKey('blocklistd_blocks_total', { origin: 'limit', rule: 'fresh' })), 0);
      assert.equal(samples.get(sampleKey('blocklistd_blocks_total', { origin: 'limit', rule: 'blocklistd-web' })), 1);
      assert.equal(samples.get(sampleKey('blocklistd_config_rules', { section: 'local' })), 2);
      assert.equal(samples.get(sampleKey('blocklistd_config_rules', { section: 'remote' })), 1);
      assert.equal(samples.get('blocklistd_reload_success'), 1);
      const reloadedAt = samples.get('blocklistd_reload_timestamp_seconds')!;
      assert.ok(reloadedAt > loadedAt, `${reloadedAt} after ${loadedAt}`);

      // a configuration with an error: refused over the control socket, applied without the bad line on SIGHUP; either way a failed load
      writeFileSync(daemon.config, `${ssh} stream * * ssh 3 1h\n${ssh} stream * * ssh three 1h\n`);
      r = await ctl(['reload', '--control', control]);
      assert.equal(r.code, 1);
      samples = await scrape(address);
      assert.equal(samples.get('blocklistd_reload_success'), 0);
      assert.equal(samples.get('blocklistd_reload_timestamp_seconds'), reloadedAt);
      const mark = daemon.stderr.length;
      daemon.child.kill('SIGHUP');
      await daemon.waitFor(/reloaded .*: 1 rules/, mark);
      samples = await scrape(address);
      assert.equal(samples.get('blocklistd_reload_success'), 0);
      assert.equal(samples.get(sampleKey('blocklistd_config_rules', { section: 'local' })), 1);
      writeFileSync(daemon.config, `${ssh} stream * * ssh 3 1h\n`);
      daemon.child.kill('SIGHUP');
      await daemon.waitFor(/reloaded .*: 1 rules .*0 added, 0 removed, 0 changed/, mark);
      samples = await scrape(address);
      assert.equal(samples.get('blocklistd_reload_success'), 1);
    },
  );

  test('the Grafana dashboard (etc/grafana/blocklistd.json): every metric its queries name is exported', async (t) => {
    const dashboard = JSON.parse(readFileSync(join(repoRoot, 'etc/grafana/blocklistd.json'), 'utf8')) as {
      panels: { type: string; title: string; targets?: { expr: string }[] }[];
      templating: { list: { name: string; type: string; query: unknown }[] };
    };
    // importable with a Prometheus chosen at import: a data source variable that every query uses
    assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'));
    const queries: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node !== null && typeof node === 'object') {
        for (const [key, value] of Object.entries(node)) {
          if (['expr', 'query', 'definition'].includes(key) && typeof value === 'string') queries.push(value);
          else walk(value);
        }
      }
    };
    walk(dashboard);
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 15, `${panels.length} panels`);
    for (const p of panels) assert.ok((p.targets ?? []).length > 0 && p.targets!.every((q) => q.expr !== ''), `${p.title}: a query`);
    const text = JSON.stringify(dashboard);
    for (const m of text.matchAll(/"datasource":\{"type":"(\w+)","uid":"([^"]*)"\}/g))
      assert.deepEqual([m[1], m[2]], ['prometheus', '${datasource}']);

    const port = await freePort();
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n', ['--metrics', `127.0.0.1:${port}`]);
    await daemon.waitFor(/metrics on /);
    const body = (await request(`http://127.0.0.1:${port}/metrics`)).body;
    const exported = new Map([...body.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map((m) => [m[1], m[2]]));
    const named = new Set(queries.flatMap((q) => [...q.matchAll(/\b(?:blocklistd|process|nodejs)_\w+/g)].map((m) => m[0])));
    assert.ok(named.size >= 20, `${named.size} metrics named`);
    const missing = [...named].filter((name) => {
      if (exported.has(name)) return false;
      const histogram = /^(.*)_(?:bucket|sum|count)$/.exec(name)?.[1];
      return histogram === undefined || exported.get(histogram) !== 'histogram';
    });
    assert.deepEqual(missing, [], 'named by the dashboard, not exported');
    // and the dashboard shows what matters: every metric of the daemon's own
    const unshown = [...exported.keys()].filter(
      (name) => name.startsWith('blocklistd_') && !named.has(name) && ![...named].some((n) => n.startsWith(`${name}_`)),
    );
    assert.deepEqual(unshown, [], 'exported, not on the dashboard');
  });
});
