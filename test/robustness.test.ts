// Robustness of the daemon process under abuse (issue 8), each test printing
// its counts: malformed input (every blprobe fuzz case and 100,000 random
// datagrams interleaved with valid notifications, each counted exactly, no
// descriptor kept, memory bounded); faulty helpers (missing, not
// executable, failing, hanging, printing garbage: logged, the daemon keeps
// serving, adds and rems tried again until the helper works); hostile
// message text (escaped in the stderr, JSON and syslog logs, no line forged,
// never on a helper's command line or in a shell).
// Crash safety and the address spray are in robustness-load.test.ts.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { descriptorOf } from '../src/client/index.js';
import { Engine } from '../src/daemon/engine.js';
import { ClientSocket, constants, strerror } from '../src/protocol/native.js';
import { HEADER_SIZE, encodeNotification, encodeSockaddr, writeHost32 } from '../src/protocol/wire.js';
import type { HelperResult, HelperRunner } from '../src/run/helper.js';
import { StateStore } from '../src/state/store.js';
import { WireType } from '../src/types.js';
import {
  DaemonProcess,
  SyslogReceiver,
  controlStatus as status,
  cpuTicks,
  descriptors,
  escapeRegExp,
  freePort,
  isRoot,
  repoRoot,
  run,
  runBlprobe,
  startDaemon,
  tempDir,
  until,
  type ControlStatus as Status,
} from './support.js';

const FAULTY = join(repoRoot, 'test/fixtures/robustness/faulty');
const CONTROL = join(repoRoot, 'test/fixtures/control');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A process's resident memory, in MB. */
function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** Samples a process's RSS every 100 ms until stopped; the peak and the samples taken. */
function rssSampler(pid: number): { stop: () => { peak: number; samples: number } } {
  let peak = rssMB(pid);
  let samples = 1;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMB(pid));
      samples++;
    } catch {
      // exited: the test says so
    }
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return { peak, samples };
    },
  };
}

/** A small seeded generator (mulberry32): a failing run can be replayed with ROBUSTNESS_SEED. */
function generator(seed: number): {
  int: (n: number) => number;
  bytes: (n: number) => Buffer;
  pick: <T>(a: readonly T[]) => T;
  chance: (p: number) => boolean;
} {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const int = (n: number): number => Math.floor((next() / 2 ** 32) * n);
  return {
    int,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        const v = next();
        for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
      }
      return b;
    },
    pick: (a) => a[int(a.length)],
    chance: (p) => next() / 2 ** 32 < p,
  };
}

/**
 * A client of the daemon's socket that sends raw datagrams and never loses
 * one: the socket is non-blocking, so a full queue (EAGAIN: the daemon's
 * ring and the kernel's 10 datagrams) is waited out and the same datagram
 * sent again.  Any other error fails the test.
 */
class RawSender {
  private readonly socket = new ClientSocket();
  sent = 0;
  waits = 0;

  private constructor() {}

  /** Connects, waiting for a daemon that is still starting. */
  static async connect(path: string): Promise<RawSender> {
    const s = new RawSender();
    assert.equal(s.socket.open(), 0);
    let errno = -1;
    await until(() => (errno = s.socket.connect(path)) === 0, 10_000).catch(() => assert.fail(`connect ${path}: ${strerror(errno)}`));
    return s;
  }

  async send(datagram: Buffer, fd = -1): Promise<void> {
    for (;;) {
      const errno = this.socket.send(datagram, fd);
      if (errno === 0) {
        this.sent++;
        return;
      }
      if (errno !== constants.EAGAIN) assert.fail(`sendmsg: ${strerror(errno)}`);
      this.waits++;
      await sleep(1);
    }
  }

  close(): void {
    this.socket.close();
  }
}

/** A loopback TCP server on `port`; its clients connect from chosen addresses; the server side's descriptors. */
class Server {
  private readonly sockets: net.Socket[] = [];

  private constructor(private readonly server: net.Server) {}

  static async open(port: number, host = '127.0.0.1'): Promise<Server> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    return new Server(server);
  }

  /** A connection from `client`: the accepted (connected) socket's descriptor, as a server passes it. */
  async accept(client = '127.0.0.1'): Promise<number> {
    const { port, address } = this.server.address() as net.AddressInfo;
    const accepted = new Promise<net.Socket>((resolve) => this.server.once('connection', resolve));
    const connection = net.connect({ port, host: address, localAddress: client });
    connection.on('error', () => {});
    this.sockets.push(connection, await accepted);
    return descriptorOf(this.sockets.at(-1)!)!;
  }

  /** The listening socket: not connected, so the daemon takes the address in the message. */
  get listeningFd(): number {
    return (this.server as unknown as { _handle: { fd: number } })._handle.fd;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

const total = (counts: Record<string, number> | undefined): number => Object.values(counts ?? {}).reduce((a, b) => a + b, 0);

/** Every datagram the daemon took off its socket: dropped, or a notification (matched or not). */
const accounted = (s: Status): number => total(s.counters.notifications) + total(s.counters.notifications_dropped);

/** blocklistd in the foreground without -d: its daemon log goes to syslog or, with --log-format json, to stdout. */
class ForegroundDaemon {
  stdout = '';
  stderr = '';
  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
  ) {
    child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  get socket(): string {
    return join(this.dir, 'blocklistd.sock');
  }
  get control(): string {
    return join(this.dir, 'blocklistd.ctl');
  }
  get helperLog(): string {
    return join(this.dir, 'helper.log');
  }

  static async start(t: TestContext, config: string, args: string[]): Promise<ForegroundDaemon> {
    const dir = tempDir('blocklistd-robust-');
    writeFileSync(join(dir, 'blocklistd.conf'), config);
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, 'bin/blocklistd'),
        '--foreground',
        '-c',
        join(dir, 'blocklistd.conf'),
        '-C',
        CONTROL,
        '-D',
        join(dir, 'blocklistd.db'),
        '-s',
        join(dir, 'blocklistd.sock'),
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HELPER_LOG: join(dir, 'helper.log') } },
    );
    const daemon = new ForegroundDaemon(child, dir);
    t.after(() => {
      child.kill('SIGKILL');
    });
    // the control socket comes after the notification socket
    await until(() => existsSync(daemon.control) || child.exitCode !== null, 10_000);
    assert.equal(child.exitCode, null, `the daemon exited: ${daemon.stderr}`);
    return daemon;
  }

  helperCalls(): string[] {
    return existsSync(this.helperLog)
      ? readFileSync(this.helperLog, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
  }
}

describe('robustness: malformed input', () => {
  test(
    'every blprobe fuzz case and 100,000 random datagrams among 5,000 valid notifications: all counted ' +
      'exactly, no descriptor kept, memory bounded',
    async (t) => {
      const seed = Number(process.env.ROBUSTNESS_SEED ?? Date.now() % 2 ** 31);
      const rnd = generator(seed);
      const [counted, stranger, fuzzPort] = [await freePort(), await freePort(), await freePort()];
      // `counted` blocks nobody (nfail *): every valid BAD_USER adds exactly 1 to its one entry;
      // no rule has `stranger` or `fuzzPort`, so what decodes there is counted as no_rule
      const daemon = await startDaemon(t, `${counted} stream * * * * 1h\n`);
      const pid = daemon.child.pid!;
      const controlPath = join(daemon.dir, 'blocklistd.ctl');
      await status(controlPath);
      await sleep(200); // the status connection closed
      const fdsBefore = descriptors(pid);
      const rssBefore = rssMB(pid);
      const rss = rssSampler(pid);

      // what a server could pass: the counted connection, and for the random datagrams sockets of
      // every kind on a port without a rule, a file, a character device and a unix socket
      const countedServer = await Server.open(counted);
      const strangerServer = await Server.open(stranger);
      const valid = { fd: await countedServer.accept('127.0.0.2') };
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(stranger, '127.0.0.1', resolve));
      const udp6 = dgram.createSocket({ type: 'udp6', ipv6Only: true });
      await new Promise<void>((resolve) => udp6.bind(stranger, '::1', resolve));
      const file = openSync(join(tempDir(), 'file'), 'w');
      const devnull = openSync('/dev/null', 'r');
      const unixServer = net.createServer();
      const unixPath = join(tempDir(), 'u.sock');
      await new Promise<void>((resolve) => unixServer.listen(unixPath, resolve));
      const unixClient = net.connect(unixPath);
      const unixAccepted = await new Promise<net.Socket>((resolve) => unixServer.once('connection', resolve));
      t.after(() => {
        countedServer.close();
        strangerServer.close();
        udp.close();
        udp6.close();
        closeSync(file);
        closeSync(devnull);
        unixClient.destroy();
        unixAccepted.destroy();
        unixServer.close();
      });
      const strangers = [
        -1,
        await strangerServer.accept('127.0.0.3'),
        strangerServer.listeningFd,
        descriptorOf(udp)!,
        descriptorOf(udp6)!,
        file,
        devnull,
        descriptorOf(unixAccepted)!,
      ];

      // the reference client's fuzz cases at the same time, from its own process
      const PER_CASE = 400;
      const fuzzing = runBlprobe(['-s', daemon.socket, '-z', 'all', '-n', String(PER_CASE), '-p', String(fuzzPort), '-P', String(pid)]);

      const RANDOM = 100_000;
      const VALID_EVERY = 20;
      const sender = await RawSender.connect(daemon.socket);
      t.after(() => sender.close());
      const kinds = { raw: 0, structured: 0, truncated: 0, refused: 0 };
      let validSent = 0;
      const sendStart = Date.now();
      for (let i = 0; i < RANDOM; i++) {
        if (i % VALID_EVERY === 0) {
          await sender.send(encodeNotification(WireType.BADUSER, null, Buffer.from(`valid ${validSent}`)), valid.fd);
          validSent++;
        }
        const r = rnd.int(100);
        if (r < 35) {
          // bytes alone, half of them with a valid version word
          const b = rnd.bytes(rnd.int(601));
          if (b.length >= 8 && rnd.chance(0.5)) writeHost32(b, 4, 1);
          await sender.send(b, rnd.pick(strangers));
          kinds.raw++;
        } else if (r < 70) {
          // a header that looks right, its fields taken from values that matter and random ones
          const family = rnd.pick(['inet', 'inet6'] as const);
          let sa = encodeSockaddr(family, rnd.bytes(16), rnd.int(65536));
          if (rnd.chance(0.2)) sa = rnd.bytes(rnd.pick([2, 16, 28, 128]));
          const b = encodeNotification(
            rnd.pick([0, 1, 2, 3, 4, 5, 99, rnd.int(2 ** 32)]),
            rnd.chance(0.7) ? sa : null,
            rnd.bytes(rnd.int(300)),
          );
          if (rnd.chance(0.2)) writeHost32(b, 12, rnd.pick([0, 7, 16, 28, 200, rnd.int(2 ** 32)]));
          if (rnd.chance(0.2)) writeHost32(b, 0, rnd.int(2 ** 32));
          if (rnd.chance(0.1)) writeHost32(b, 4, rnd.int(2 ** 32));
          await sender.send(b, rnd.pick(strangers));
          kinds.structured++;
        } else if (r < 90) {
          // a valid notification cut inside its header, with the counted connection: never counted
          const whole = encodeNotification(rnd.pick([1, 2, 3, 4]), null, Buffer.from('cut'));
          await sender.send(whole.subarray(0, rnd.int(HEADER_SIZE)), valid.fd);
          kinds.truncated++;
        } else {
          // complete, with the counted connection, but a version or a type the daemon refuses
          const b = encodeNotification(rnd.pick([0, 5, 6, 99, 2 ** 31]), null, rnd.bytes(rnd.int(64)));
          if (rnd.chance(0.5)) writeHost32(b, 4, 2 + rnd.int(2 ** 32 - 2));
          await sender.send(b, valid.fd);
          kinds.refused++;
        }
        if (i % 2000 === 0) await new Promise((resolve) => setImmediate(resolve)); // the daemon's log keeps flowing
      }
      const sendSeconds = (Date.now() - sendStart) / 1000;

      const fuzz = await fuzzing;
      assert.equal(fuzz.code, 0, fuzz.stdout + fuzz.stderr);
      // "fuzz short     sent 400/400  barrier ok  pid alive  fds 20 -> 20"
      const cases = [...fuzz.stdout.matchAll(/^fuzz (\S+)\s+sent (\d+)\/(\d+)\s+barrier (\S+)\s+pid (\S+)/gm)];
      assert.equal(cases.length, 15, fuzz.stdout);
      for (const [line, , sent, of, barrier, alive] of cases) {
        assert.equal(sent, of, line);
        assert.equal(barrier, 'ok', line);
        assert.equal(alive, 'alive', line);
      }
      const fuzzSent = cases.reduce((n, c) => n + Number(c[2]), 0) + cases.length; // each case ends with its barrier

      const expected = sender.sent + fuzzSent;
      let s = await status(controlPath);
      const deadline = Date.now() + 60_000;
      while (accounted(s) < expected && Date.now() < deadline) {
        await sleep(200);
        s = await status(controlPath);
      }
      const memory = rss.stop();
      assert.equal(daemon.child.exitCode, null, 'the daemon survived');
      assert.equal(
        accounted(s),
        expected,
        `every datagram taken off the socket is a notification or a counted drop: ${JSON.stringify(s.counters)}`,
      );
      assert.equal(s.counters.notifications['bad_user:matched'], validSent, 'every valid notification matched its rule');
      for (const [key, n] of Object.entries(s.counters.notifications))
        if (key.endsWith(':matched') && key !== 'bad_user:matched') assert.equal(n, 0, key);
      const entries = daemon.entries();
      assert.deepEqual(
        entries.map((e) => [e.key.address, e.key.port, e.count]),
        [['127.0.0.2', counted, validSent]],
        'the one entry counts every valid notification, once',
      );
      // the descriptors received are closed on a thread of their own: wait for it
      await until(() => descriptors(pid) === fdsBefore, 10_000).catch(() => {});
      const fdsAfter = descriptors(pid);
      assert.equal(fdsAfter, fdsBefore, 'the daemon keeps no descriptor');
      const rssAfter = rssMB(pid);
      assert.ok(memory.peak < 300, `RSS peaked at ${memory.peak.toFixed(0)} MB`);
      const dropped = Object.entries(s.counters.notifications_dropped)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ');
      t.diagnostic(`seed ${seed} (ROBUSTNESS_SEED to replay)`);
      t.diagnostic(
        `${RANDOM} random datagrams (${kinds.raw} raw, ${kinds.structured} header-shaped, ${kinds.truncated} ` +
          `truncated headers and ${kinds.refused} refused ones with the counted connection) ` +
          `and ${validSent} valid notifications sent in ${sendSeconds.toFixed(1)} s (${sender.waits} waits on ` +
          `a full queue); blprobe: 15 fuzz cases, ${fuzzSent} datagrams`,
      );
      t.diagnostic(
        `daemon: ${accounted(s)} datagrams accounted of ${expected} sent; ${validSent} valid notifications, ` +
          `all ${entries[0].count} counted; dropped: ${dropped}`,
      );
      t.diagnostic(
        `fds ${fdsBefore} -> ${fdsAfter}, RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MB (peak ` +
          `${memory.peak.toFixed(0)} MB over ${memory.samples} samples)`,
      );
    },
  );
});

describe('robustness: faulty helpers', () => {
  /** The helper the daemon runs (-C), which each phase replaces, breaks or removes. */
  function installer(dir: string): (fault: 'ok' | 'missing' | 'not-executable' | 'fail' | 'hang' | 'garbage' | 'nul') => void {
    const helper = join(dir, 'helper');
    return (fault) => {
      writeFileSync(join(dir, 'fault'), `${fault}\n`);
      if (fault === 'missing') {
        rmSync(helper, { force: true });
        return;
      }
      // a copy renamed into place: never a half-written helper
      const next = `${helper}.next`;
      copyFileSync(FAULTY, next);
      chmodSync(next, fault === 'not-executable' ? 0o644 : 0o755);
      renameSync(next, helper);
    };
  }

  test(
    'missing, not executable, exits non-zero, hangs past --helper-timeout: each logged, the daemon keeps ' +
      'serving, adds and rems tried again until the helper works',
    async (t) => {
      const dir = tempDir('blocklistd-faulty-');
      const helper = join(dir, 'helper');
      const install = installer(dir);
      install('ok');
      const [blocking, serving, lift] = [await freePort(), await freePort(), await freePort()];
      // blocking: the first AUTH_FAIL blocks for an hour; serving: counts, never blocks; lift: blocks, for AUTH_OK to lift
      const config = `${blocking} stream * * * 2 1h\n${serving} stream * * * * 1h\n${lift} stream * * -lift 1 1h\n`;
      const daemon = await startDaemon(t, config, ['-C', helper, '--helper-timeout', '1', '--rem-retry', '1'], {
        dir,
        env: { FAULT_MODE_FILE: join(dir, 'fault') },
      });
      const controlPath = join(dir, 'blocklistd.ctl');
      const sender = await RawSender.connect(daemon.socket);
      t.after(() => sender.close());
      const servers = new Map<number, Server>();
      t.after(() => servers.forEach((s) => s.close()));
      /** A connection from `client` to a server on `port`: its descriptor. */
      const peer = async (port: number, client: string): Promise<number> => {
        if (!servers.has(port)) servers.set(port, await Server.open(port));
        return servers.get(port)!.accept(client);
      };
      let serial = 0;
      /** Sends a notification and waits until its batch is committed. */
      const notify = async (fd: number, type: number): Promise<void> => {
        const text = `f${++serial}`;
        await sender.send(encodeNotification(type, null, Buffer.from(text)), fd);
        await daemon.settled(text);
      };
      const servingPeer = await peer(serving, '127.0.0.9');
      let served = 0;
      /** The daemon keeps serving: a notification is counted, `status` answers. */
      const stillServing = async (): Promise<Status> => {
        await notify(servingPeer, WireType.BADUSER);
        served++;
        assert.equal(daemon.entries().find((e) => e.key.port === serving)?.count, served, 'a later notification is processed');
        return status(controlPath);
      };
      const entryOf = (address: string, port: number): { count: number; id: string } | undefined =>
        daemon.entries().find((e) => e.key.address === address && e.key.port === port);
      const failures = (from: number, pattern: RegExp): number =>
        daemon.stderr.slice(from).match(new RegExp(pattern.source, 'g'))?.length ?? 0;

      const faults = [
        {
          fault: 'missing',
          log: [`popen ${escapeRegExp(helper)} failed \\(No such file or directory\\)`],
          reason: ' \\(No such file or directory\\)',
        },
        {
          fault: 'not-executable',
          log: [`popen ${escapeRegExp(helper)} failed \\(Permission denied\\)`],
          reason: ' \\(Permission denied\\)',
        },
        { fault: 'fail', log: ['faulty: refusing add'], reason: ' \\(exit status 3\\)' },
        { fault: 'hang', log: [`${escapeRegExp(helper)} add timed out after 1 s, killed`], reason: ' \\(timed out\\)' },
      ] as const;

      // adds: a failed add saves nothing (G16) and is tried again on the next failure, not by itself;
      // an add killed at its timeout may have reached the filter: its entry stays at its limit without id
      for (const [i, f] of faults.entries()) {
        const client = `127.0.0.${20 + i}`;
        const p = await peer(blocking, client);
        install(f.fault);
        const at = daemon.stderr.length;
        const failed = new RegExp(`add blocklistd tcp ${escapeRegExp(client)}/32:${blocking}: the helper gave no rule id${f.reason}[;\\n]`);
        const kept = f.fault === 'hang';
        /** The entry after a failed add: none (the failure not saved), or at its limit without id (kept). */
        const failedState = (count: number): boolean =>
          kept
            ? entryOf(client, blocking)?.count === count && entryOf(client, blocking)?.id === ''
            : entryOf(client, blocking) === undefined;
        await notify(p, WireType.ADD);
        await daemon.waitFor(failed, at);
        for (const line of f.log) await daemon.waitFor(new RegExp(line), at);
        // the line is logged just before the entry is put back
        await until(() => failedState(2), 2000).catch(() =>
          assert.fail(`${f.fault}: the failure that needed the helper is ${kept ? 'kept at its limit' : 'not saved'}`),
        );
        await stillServing();
        await notify(p, WireType.ADD);
        await until(() => failures(at, failed) === 2, 5000);
        await until(() => failedState(4), 2000);
        install('ok');
        await notify(p, WireType.ADD);
        await daemon.waitFor(new RegExp(`blocked ${escapeRegExp(client)}/32:${blocking} for 3600 seconds`), at);
        await until(() => entryOf(client, blocking)?.id === `id-${client}:${blocking}`);
        assert.equal(
          entryOf(client, blocking)!.count,
          kept ? 6 : 2,
          `${f.fault}: blocked by the failure after the helper was fixed, counted ${kept ? 'with the kept ones' : 'once'}`,
        );
        t.diagnostic(`add with the helper ${f.fault}: 2 tries failed and logged, the third blocked ${client}`);
      }
      assert.equal(failures(0, /: the helper gave no rule id/), 2 * faults.length, 'a failed add is not tried again by itself');

      // rems: a block lifted by AUTH_OK (released by the next expiry pass) while the helper is broken
      // stays, its rem tried again every --rem-retry second, through every fault
      const client = '127.0.0.30';
      const p = await peer(lift, client);
      await notify(p, WireType.ADD);
      await until(() => entryOf(client, lift)?.id === `id-${client}:${lift}`);
      const remAt = daemon.stderr.length;
      for (const [i, f] of faults.entries()) {
        install(f.fault);
        const at = daemon.stderr.length;
        if (i === 0) await notify(p, WireType.DELETE);
        await daemon.waitFor(
          new RegExp(`rem blocklistd-lift tcp ${escapeRegExp(client)}/32:${lift} failed${f.reason}; retrying in 1 s`),
          at,
        );
        assert.equal(entryOf(client, lift)?.id, `id-${client}:${lift}`, `${f.fault}: the entry waits with its rule id`);
        await stillServing();
      }
      install('ok');
      await daemon.waitFor(new RegExp(`released ${escapeRegExp(client)}/32:${lift} after 3600 seconds`), remAt);
      await until(() => entryOf(client, lift) === undefined);
      const remFailures = failures(remAt, /rem blocklistd-lift .* failed.*; retrying in 1 s/);

      const s = await stillServing();
      const calls = s.counters.helper_calls;
      t.diagnostic(`rem: ${remFailures} failed tries through the ${faults.length} faults, released once the helper worked`);
      t.diagnostic(`helper calls: ${JSON.stringify(calls)}; ${served} notifications served meanwhile`);
      assert.equal(calls['add:error'], 4, 'missing and not executable: 2 each');
      assert.equal(calls['add:failed'], 2);
      assert.equal(calls['add:timeout'], 2);
      assert.equal(calls['add:ok'], faults.length + 1);
      assert.equal(calls['rem:ok'], 1);
      assert.equal(
        total(calls) -
          (calls['capabilities:ok'] ?? 0) -
          calls['add:error'] -
          calls['add:failed'] -
          calls['add:timeout'] -
          calls['add:ok'] -
          calls['rem:ok'],
        remFailures,
      );
      assert.equal(daemon.child.exitCode, null);
    },
  );

  /**
   * A block made while the helper prints `fault`'s garbage, released by its rem (given the id back)
   * once AUTH_OK lifts it; the daemon serves meanwhile.  Resolves with the id stored.
   */
  async function garbageBlock(t: TestContext, fault: 'garbage' | 'nul'): Promise<string> {
    const dir = tempDir('blocklistd-faulty-');
    const helper = join(dir, 'helper');
    const install = installer(dir);
    install('ok');
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 1h\n`, ['-C', helper, '--rem-retry', '1'], {
      dir,
      env: { FAULT_MODE_FILE: join(dir, 'fault') },
    });
    const sender = await RawSender.connect(daemon.socket);
    t.after(() => sender.close());
    const server = await Server.open(port);
    t.after(() => server.close());
    install(fault);
    const fd = await server.accept('127.0.0.40');
    await sender.send(encodeNotification(WireType.ADD, null, Buffer.from('g1')), fd);
    await daemon.waitFor(new RegExp(`blocked 127\\.0\\.0\\.40/32:${port} for 3600 seconds`));
    install('ok');
    await until(() => daemon.entries()[0]?.id !== '');
    const id = daemon.entries()[0].id;
    t.diagnostic(`rule id stored: ${JSON.stringify(id)} (${Buffer.byteLength(id)} bytes)`);
    // the first line, "OK " removed, invalid UTF-8 shown as U+FFFD: one line, at most 63 bytes
    assert.ok(id.startsWith('g\u0001\u001b[2J\ufffd\ufffd\r\tx'), JSON.stringify(id));
    // a NUL ends the id as it ends a C string in upstream
    if (fault === 'nul') assert.equal(id, 'g\u0001\u001b[2J\ufffd\ufffd\r\tx');
    else assert.ok(id.endsWith('end') && !id.includes('\n') && Buffer.byteLength(id) <= 63);
    assert.equal((await status(join(dir, 'blocklistd.ctl'))).entries, 1, 'the daemon serves');
    // AUTH_OK lifts the block at the next expiry pass
    await sender.send(encodeNotification(WireType.DELETE, null, Buffer.from('g2')), fd);
    await daemon.waitFor(new RegExp(`released 127\\.0\\.0\\.40/32:${port} after 3600 seconds`), 0, 5000);
    await until(() => daemon.entries().length === 0);
    assert.ok(daemon.helperCalls().includes(`ok rem blocklistd tcp 127.0.0.40 32 ${port} ${id}`), 'the rem got the id back');
    return id;
  }

  test(
    'a helper that prints garbage (control characters, invalid UTF-8, 300 kB without a newline): its ' +
      'first line is the rule id, the rem gets it back',
    async (t) => {
      await garbageBlock(t, 'garbage');
    },
  );

  test('a helper whose rule id holds a NUL byte: the block is still released', async (t) => {
    await garbageBlock(t, 'nul');
  });
});

describe('robustness: hostile message text', () => {
  // short, so that the commands fit in the 128 bytes of text
  const marks = tempDir('bs-');

  /** Texts meant to forge log lines, break the JSON, or run commands; and how the daemon must show them. */
  function hostile(): { tag: string; text: Buffer; shown: string }[] {
    const control = Buffer.from([...Array(32).keys(), 0x7f]);
    const named: Record<number, string> = { 9: '\\t', 10: '\\n', 13: '\\r' };
    const hex = (b: Buffer): string => [...b].map((c) => named[c] ?? `\\x${c.toString(16).padStart(2, '0')}`).join('');
    const cases: [Buffer, string][] = [
      [Buffer.from('ok\nblocked 6.6.6.6/32:22 for 3600 seconds'), 'ok\\nblocked 6.6.6.6/32:22 for 3600 seconds'],
      [
        Buffer.from('\r\n<30>Jan  1 00:00:00 blocklistd[1]: forged record\r\n'),
        '\\r\\n<30>Jan  1 00:00:00 blocklistd[1]: forged record\\r\\n',
      ],
      [control, hex(control)],
      // invalid UTF-8: bytes that never start a sequence, an overlong form, a lone continuation, a surrogate,
      // a 5-byte form, then a valid é and a sequence cut at the end
      [
        Buffer.from([0xff, 0xfe, 0xc0, 0xaf, 0x80, 0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80, 0xc3, 0xa9, 0xe2, 0x82]),
        '\\xff\\xfe\\xc0\\xaf\\x80\\xed\\xa0\\x80\\xf8\\x88\\x80\\x80\\x80é\\xe2\\x82',
      ],
      // C1 next line, the Unicode line and paragraph separators, a right-to-left override, a terminal escape
      [Buffer.from('\u0085\u2028\u2029\u202e\u001b[31mred'), '\\xc2\\x85\\xe2\\x80\\xa8\\xe2\\x80\\xa9\\xe2\\x80\\xae\\x1b[31mred'],
      [Buffer.from(`$(touch ${marks}/1)\`touch ${marks}/2\``), `$(touch ${marks}/1)\`touch ${marks}/2\``],
      [Buffer.from(`;touch ${marks}/3|touch ${marks}/4&&touch ${marks}/5'"`), `;touch ${marks}/3|touch ${marks}/4&&touch ${marks}/5'\\"`],
      // a double quote gets a backslash: the text cannot close msg="…" and forge fields after it
      [Buffer.from('"}\n{"level":"crit","msg":"forged json"}'), '\\"}\\n{\\"level\\":\\"crit\\",\\"msg\\":\\"forged json\\"}'],
      [Buffer.from('x" uid=0 gid=0'), 'x\\" uid=0 gid=0'],
      // backslashes are doubled: the text cannot pass for an escape
      [Buffer.from('a\\nb\\x41'), 'a\\\\nb\\\\x41'],
    ];
    const out = cases.map(([text, shown], i) => ({
      tag: `H${i}:`,
      text: Buffer.concat([Buffer.from(`H${i}:`), text]),
      shown: `H${i}:${shown}`,
    }));
    // cut at 128 bytes inside a character, a forged line after the cut
    const tag = `H${out.length}:`;
    const fill = 'A'.repeat(127 - tag.length);
    out.push({ tag, text: Buffer.from(`${tag}${fill}é\nforged after the cut`), shown: `${tag}${fill}\\xc3` });
    return out;
  }

  /** Nothing a terminal or a log reader would take for a line break, a control or a reordering. */
  const unsafe = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufffd]/u;

  /**
   * Sends each text from its own client (nfail 2: each one blocks, so the helper runs for it), waits
   * until `lines()` shows it, then checks what every log line and the helper's command lines show.
   */
  async function check(t: TestContext, port: number, socket: string, lines: () => string[], helperCalls: () => string[]): Promise<void> {
    const server = await Server.open(port);
    t.after(() => server.close());
    const sender = await RawSender.connect(socket);
    t.after(() => sender.close());
    const texts = hostile();
    for (const [i, h] of texts.entries()) {
      await sender.send(encodeNotification(WireType.ADD, null, h.text), await server.accept(`127.0.0.${100 + i}`));
      // one at a time: a syslog socket queues 10 datagrams, and the daemon never waits for it
      await until(() => lines().some((l) => l.includes(h.tag)), 5000);
    }
    await until(() => helperCalls().filter((c) => c.startsWith('add ')).length === texts.length, 5000);
    const all = lines();
    for (const [i, h] of texts.entries()) {
      const shown = all.filter((l) => l.includes(h.tag));
      assert.equal(shown.length, 1, `${h.tag} on one line`);
      assert.match(
        shown[0],
        new RegExp(`^processing type=1 remote=127\\.0\\.0\\.${100 + i}:\\d+ msg="${escapeRegExp(h.shown)}" uid=\\d+ gid=\\d+$`),
      );
      assert.doesNotMatch(shown[0], /\t/);
    }
    for (const line of all) {
      assert.doesNotMatch(line, unsafe, `no control character in ${JSON.stringify(line)}`);
      assert.doesNotMatch(line, /^(blocked 6\.6\.6\.6|<30>|\{"level|forged)/, `a forged line: ${JSON.stringify(line)}`);
    }
    assert.equal(all.filter((l) => l.includes('forged')).length, 2, 'forged text only inside the two processing lines that carry it');
    // the helper's command lines carry the address, never the text
    assert.deepEqual(
      helperCalls()
        .filter((c) => c !== 'capabilities')
        .sort(),
      texts.map((_, i) => `add blocklistd tcp 127.0.0.${100 + i} 32 ${port} ''`).sort(),
    );
    for (const n of [1, 2, 3, 4, 5]) assert.equal(existsSync(join(marks, String(n))), false, `no shell ran 'touch ${marks}/${n}'`);
    t.diagnostic(
      `${texts.length} hostile texts: ${texts.length} log lines of ${all.length} show them, escaped; ` +
        `${texts.length} helper calls, none with the text; no file touched`,
    );
  }

  test('stderr (-d): escaped, one line each, no forged line, never on the helper command line', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 2 1h\n`);
    await check(
      t,
      port,
      daemon.socket,
      () => daemon.stderr.split('\n'),
      () => daemon.helperCalls(),
    );
  });

  test('--log-format json: every line parses, the text escaped inside its message, no forged record', async (t) => {
    const port = await freePort();
    const daemon = await ForegroundDaemon.start(t, `${port} stream * * * 2 1h\n`, ['--log-format', 'json']);
    const records = (): { level: string; msg: string }[] =>
      daemon.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { level: string; msg: string });
    await check(
      t,
      port,
      daemon.socket,
      () => records().map((r) => r.msg),
      () => daemon.helperCalls(),
    );
    assert.ok(records().every((r) => r.level !== 'crit'));
    for (const line of daemon.stdout.split('\n')) assert.doesNotMatch(line, unsafe, 'the JSON lines themselves');
  });

  test('syslog: one record per message, each with its header, the text escaped', async (t) => {
    const port = await freePort();
    const syslog = new SyslogReceiver();
    t.after(() => syslog.close());
    const daemon = await ForegroundDaemon.start(t, `${port} stream * * * 2 1h\n`, ['--syslog-socket', syslog.path]);
    const head = /^<\d+>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d blocklistd\[\d+\]: /;
    const messages = (): string[] =>
      syslog.records.map((r) => {
        assert.match(r, head, 'every record is a whole syslog record');
        return r.replace(head, '');
      });
    await check(t, port, daemon.socket, messages, () => daemon.helperCalls());
    assert.equal(daemon.stderr, '', 'nothing went elsewhere');
  });
});

describe('robustness: expiry on an idle daemon', () => {
  // Found by the faulty-helper test, whose block sometimes never expired: the daemon's expiry is
  // one timer aimed at the second after the next deadline.  The engine alone, with a clock that
  // moves to the next second during the pass, shows it without depending on the scheduler.
  test('an expiry pass that straddles a second boundary still leaves a timer for the block that falls due', async (t) => {
    const store = StateStore.open(join(tempDir(), 'state.db'));
    const key = {
      family: 2,
      address: '192.0.2.1',
      lmask: 32,
      port: 22,
      proto: 6,
      uid: -1,
      name: 'blocklistd',
      rmask: -1,
      nfail: 1,
      duration: 2,
    };
    store.put({ key, count: 2, last: 1000, id: 'id1' }); // expired once the clock reads 1003
    const rems: string[] = [];
    const helper = {
      change: (action: string, target: { address: string }, id: string): Promise<HelperResult> => {
        rems.push(`${action} ${target.address} ${id}`);
        return Promise.resolve({
          outcome: 'ok',
          line: 'OK',
          id: '',
          exitCode: 0,
          signal: null,
          timedOut: false,
          error: undefined,
          cancelled: false,
        });
      },
    } as unknown as HelperRunner;
    // the pass starts in second 1002 (its timer fired a little early); the second ends before it re-arms
    const clock = [1002, 1003];
    const engine = new Engine({
      store,
      helper,
      families: { inet: 2, inet6: 10 },
      log: () => {},
      debug: () => 0,
      clock: () => (clock.length > 1 ? clock.shift()! : clock[0]),
      remRetry: 60,
    });
    t.after(() => {
      engine.stop();
      store.close();
    });
    engine.expire();
    await until(() => rems.length > 0, 2000).catch(() => {});
    assert.deepEqual(rems, ['rem 192.0.2.1 id1'], 'released by the next pass');
  });
});

describe('robustness: a full disk', { skip: isRoot ? false : 'needs root: mounts a small tmpfs' }, () => {
  // Found under issue 13: with the database on a full disk, each expiry pass ran `rem` for the same
  // blocks again, counted each as a release and logged each failure, at once and forever (75 % CPU,
  // 190 error lines/s).  A tmpfs filled up makes SQLite's writes fail as a full disk does.
  for (const mode of ['one call per change', 'batch mode']) {
    test(
      `expiry backs off (${mode}): each block released once and counted once, one error line, little CPU; ` +
        `written when space comes back`,
      async (t) => {
        const N = 50;
        const disk = tempDir('blocklistd-full-');
        await run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', disk]);
        t.after(() => run('umount', ['-l', disk]));
        const db = join(disk, 'blocklistd.db');
        const port = await freePort();
        const store = StateStore.open(db);
        const last = Math.floor(Date.now() / 1000);
        store.transaction(() => {
          for (let i = 0; i < N; i++) {
            const key = {
              family: 2,
              address: `10.4.0.${i}`,
              lmask: 32,
              port,
              proto: 6,
              uid: -1,
              name: 'blocklistd',
              rmask: -1,
              nfail: 1,
              duration: 3,
            };
            store.put({ key, count: 1, last, id: `id${i}` });
          }
        });
        store.close();
        // the database on the small disk, the rest (the helper's log) elsewhere
        const daemon = await DaemonProcess.start({
          config: `${port} stream * * * 1 3\n`,
          args: ['-D', db],
          env: mode === 'batch mode' ? { HELPER_BATCH: '1' } : {},
        });
        t.after(() => daemon.stop('SIGKILL'));
        // full before the blocks expire
        const filler = join(disk, 'filler');
        const fd = openSync(filler, 'w');
        try {
          for (const chunk = Buffer.alloc(65536); ;) writeSync(fd, chunk);
        } catch (e) {
          assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
        } finally {
          closeSync(fd);
        }
        const failedAt = await daemon.waitFor(/state_put: failed \(database or disk is full\)/, 0, 15_000);
        const pid = daemon.child.pid!;
        const ticks = cpuTicks(pid);
        await sleep(6000);
        const cpu = (cpuTicks(pid) - ticks) / 6;
        const rems = daemon.helperCalls().filter((c) => c.startsWith('rem '));
        const released = daemon.stderr.match(/^released 10\.4\.0\.\d+\/32:\d+ after 3 seconds \(blocked \d+s\)$/gm) ?? [];
        const errors = daemon.stderr.slice(failedAt).match(/^state_put: failed/gm) ?? [];
        t.diagnostic(
          `full disk, 6 s: ${rems.length} rems for ${N} blocks, ${released.length} released lines, ` +
            `${errors.length} error lines, ${cpu.toFixed(1)} clock ticks of CPU a second`,
        );
        assert.equal(rems.length, N, 'one rem per block');
        assert.equal(new Set(rems).size, N);
        assert.equal(released.length, N, 'each released once');
        assert.equal(errors.length, 1, 'one error line');
        assert.ok(cpu < 10, `${cpu.toFixed(1)} ticks a second`);
        assert.equal((await status(join(daemon.dir, 'blocklistd.ctl'))).counters.releases.expiry, N, 'each release counted once');

        rmSync(filler);
        await daemon.waitFor(/state_put: writes work again/, failedAt, 30_000);
        const after = StateStore.open(db, { readonly: true });
        try {
          assert.deepEqual([...after.entries()], [], 'the released entries deleted');
        } finally {
          after.close();
        }
        assert.equal(daemon.helperCalls().filter((c) => c.startsWith('rem ')).length, N, 'and not released again');
        assert.equal((await status(join(daemon.dir, 'blocklistd.ctl'))).counters.releases.expiry, N);
      },
    );
  }
});
