// Robustness of the daemon process under load (issue 8), each test printing
// its figures: crash safety (kill -9 at random moments of a flood, twenty
// times: the database opens and is intact, no block the helper was asked
// for is lost, and a restart with -r puts exactly the database's blocks
// back into the packet filter), and an address spray (1,000,000 distinct
// addresses reported as a UDP server does: memory bounded, throughput).
// Malformed input, faulty helpers and hostile text are in robustness.test.ts.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { StateStore } from '../src/state/store.js';
import type { Entry } from '../src/types.js';
import { DaemonProcess, blprobe, controlStatus as status, freePort, repoRoot, run, tempDir, until } from './support.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A process's resident memory, in MB. */
function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** The fields of /proc/<pid>/stat after the command name: [0] state, [1] parent pid. */
function statOf(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The children of a process (helper calls, for the daemon). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name) && statOf(name)?.[1] === String(pid))
    .map(Number);
}

/** Exited (gone, or a zombie nobody reaps). */
const exited = (pid: number): boolean => {
  const state = statOf(pid)?.[0];
  return state === undefined || state === 'Z';
};

/** An entry, or a helper call, as the packet filter sees it: proto address/mask:port. */
const targetOf = (e: Entry): string => `${e.key.proto === 17 ? 'udp' : 'tcp'} ${e.key.address}/${e.key.lmask}:${e.key.port}`;

/** In the packet filter, or maybe (its add pending): what a restore re-adds (state/store.ts BLOCKED). */
const blocked = (e: Entry): boolean => e.id !== '' || (e.key.nfail >= 0 && e.count >= e.key.nfail);

/** The add and rem calls of the control fixture's log ("add <name> <proto> <address> <mask> <port> <id>"), and its flushes. */
function helperCalls(lines: readonly string[]): { action: string; target: string }[] {
  return lines.flatMap((line) => {
    const f = line.split(' ');
    if (f[0] === 'flush') return [{ action: 'flush', target: f[1] }];
    if (f[0] !== 'add' && f[0] !== 'rem') return [];
    return [{ action: f[0], target: `${f[2]} ${f[3]}/${f[4]}:${f[5]}` }];
  });
}

describe('robustness: crash safety', () => {
  test(
    '20 rounds of kill -9 at a random moment of a flood: the database opens intact, no block lost, -r ' + 'restores exactly its blocks',
    async (t) => {
      const ROUNDS = 20;
      const seed = Number(process.env.ROBUSTNESS_SEED ?? Date.now() % 2 ** 31);
      let s = seed;
      const random = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
      const port = await freePort();
      const dir = tempDir('blocklistd-crash-');
      // UDP, as blocklist_sa reports: the 2nd AUTH_FAIL blocks for 3 s, so that older blocks are released meanwhile
      const config = `${port} dgram * * * 3 3\n`;
      const helperLog = join(dir, 'helper.log');
      const logLines = (): string[] =>
        existsSync(helperLog)
          ? readFileSync(helperLog, 'utf8')
              .split('\n')
              .filter((l) => l !== '')
          : [];
      const probe = await blprobe();
      const floods = new Set<ChildProcess>();
      t.after(() => floods.forEach((c) => c.kill('SIGKILL')));
      const totals = { acknowledged: 0, helperAdds: 0, restored: 0, maxRestored: 0, inFlight: 0, rems: 0 };
      const t0 = Date.now();

      /** Where the last restart's calls start in the helper's log, and the blocks it had to restore. */
      let restoring = { from: 0, expected: new Set<string>() };
      /** The adds after the flush of the last restart, but for addresses of this round's flood: the restore's. */
      const restoreAdds = (round: number): string[] => {
        const calls = helperCalls(logLines().slice(restoring.from));
        const flush = calls.findIndex((c) => c.action === 'flush');
        const ours = [`udp 10.${round}.0.`, `udp 2001:db8:${round}::`];
        return flush === -1
          ? []
          : calls
              .slice(flush + 1)
              .filter((c) => c.action === 'add' && !ours.some((p) => c.target.startsWith(p)))
              .map((c) => c.target);
      };

      /** Starts with -r and checks that the calls after the flush add exactly the database's blocks. */
      const restart = async (round: number): Promise<DaemonProcess> => {
        const expected = existsSync(join(dir, 'blocklistd.db')) ? readBlocks() : new Set<string>();
        const from = logLines().length;
        // odd rounds in batch mode: the restore and the blocks go in batches
        const daemon = await DaemonProcess.start({ config, dir, args: ['-r'], env: round % 2 === 1 ? { HELPER_BATCH: '1' } : {} });
        t.after(() => daemon.stop('SIGKILL'));
        restoring = { from, expected };
        if (round === 0) return daemon;
        await until(() => restoreAdds(round).length >= expected.size, 20_000).catch(() => {});
        await daemon.waitFor(/restoring \d+ blocks/);
        const adds = restoreAdds(round);
        assert.deepEqual(
          [...adds].sort(),
          [...expected].sort(),
          `round ${round}: the packet filter after -r holds the database's blocks, each once`,
        );
        assert.match(daemon.stderr, new RegExp(`restoring ${expected.size} blocks`));
        totals.restored += adds.length;
        totals.maxRestored = Math.max(totals.maxRestored, adds.length);
        return daemon;
      };

      /** The database as a crash left it: it opens read-only, is intact; its blocks. */
      const readBlocks = (): Set<string> => {
        const db = new Database(join(dir, 'blocklistd.db'), { readonly: true, fileMustExist: true });
        try {
          assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
        } finally {
          db.close();
        }
        const store = StateStore.open(join(dir, 'blocklistd.db'), { readonly: true });
        try {
          return new Set([...store.entries()].filter((e) => blocked(e) && e.last !== 0).map(targetOf));
        } finally {
          store.close();
        }
      };

      let daemon = await restart(0);
      for (let round = 0; round < ROUNDS; round++) {
        // two UDP servers, IPv4 and IPv6, 100 new addresses each: 200 notifications in 1 s, the
        // first 100 count, the next 100 block
        const flood = (args: string[]): ChildProcess => {
          const child = spawn(
            probe,
            ['-s', daemon.socket, '-u', '-p', String(port), '-F', '200', '-M', '100', '-R', '200', '-m', '', '-w', '0', ...args],
            { stdio: 'ignore' },
          );
          floods.add(child);
          child.once('exit', () => floods.delete(child));
          return child;
        };
        const senders = [flood(['-A', `10.${round}.0.1`]), flood(['-6', '-A', `2001:db8:${round}::1`])];
        const at = daemon.stderr.length;
        const delay = Math.floor(random() * 1200);
        await sleep(delay);

        // frozen, its helper calls listed, then killed: the calls it started can be waited for
        const pid = daemon.child.pid!;
        process.kill(pid, 'SIGSTOP');
        const helpers = childrenOf(pid);
        process.kill(pid, 'SIGKILL');
        await daemon.exited;
        await until(() => helpers.every(exited), 10_000);
        for (const c of senders) c.kill('SIGKILL');
        await Promise.all(
          senders.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => new Promise((resolve) => c.once('exit', resolve))),
        );

        // no block lost: every target whose last helper call was an add is blocked in the database
        // (its entry was committed at its limit before the add started, and leaves only after a rem worked)
        const inDatabase = readBlocks();
        const last = new Map<string, string>();
        for (const c of helperCalls(logLines())) if (c.action !== 'flush') last.set(c.target, c.action);
        const added = [...last].filter(([, action]) => action === 'add').map(([target]) => target);
        assert.deepEqual(
          added.filter((target) => !inDatabase.has(target)),
          [],
          `round ${round}: blocks the helper was asked for, missing from the database after kill -9 at ${delay} ms`,
        );
        // acknowledged: the helper answered and the daemon logged the block; in the database unless released since
        const acknowledged = new Set([...daemon.stderr.slice(at).matchAll(/^blocked (\S+) for 3 seconds$/gm)].map((m) => `udp ${m[1]}`))
          .size;
        for (const [, target] of daemon.stderr.matchAll(/^blocked (\S+) for 3 seconds$/gm)) {
          assert.ok(
            inDatabase.has(`udp ${target}`) || last.get(`udp ${target}`) === 'rem',
            `round ${round}: acknowledged block ${target} lost`,
          );
        }
        // and the restore of this daemon's start added nothing more than the database's blocks
        if (round > 0)
          assert.deepEqual(restoreAdds(round).sort(), [...restoring.expected].sort(), `round ${round}: the restore's adds, complete`);
        totals.acknowledged += acknowledged;
        totals.inFlight += helpers.length > 0 ? 1 : 0;
        t.diagnostic(
          `round ${round + 1}: kill -9 at ${delay} ms with ${helpers.length} helper calls running; ${acknowledged} blocks acknowledged; ` +
            `the database holds ${inDatabase.size} blocks, among them all ${added.length} the helper was asked to add and not to remove`,
        );
        daemon = await restart(round + 1);
      }
      // the last restart restored the last crash's blocks: a clean stop now
      await until(() => daemon.stderr.includes('restoring '));
      assert.equal(await daemon.stop('SIGTERM'), 0);
      readBlocks();
      const calls = helperCalls(logLines());
      totals.helperAdds = calls.filter((c) => c.action === 'add').length;
      totals.rems = calls.filter((c) => c.action === 'rem').length;
      const seconds = (Date.now() - t0) / 1000;
      t.diagnostic(
        `seed ${seed} (ROBUSTNESS_SEED to replay); ${ROUNDS} kills in ${seconds.toFixed(1)} s, ` +
          `${totals.inFlight} of them with helper calls running`,
      );
      t.diagnostic(
        `${totals.acknowledged} blocks acknowledged, ${totals.helperAdds} adds and ${totals.rems} rems asked of the helper, none lost; ` +
          `${ROUNDS} restarts with -r restored ${totals.restored} blocks (at most ${totals.maxRestored} at ` +
          `once), each exactly the database's`,
      );
      assert.ok(totals.acknowledged > 0, 'blocks happened');
    },
  );
});

describe('robustness: address spray', () => {
  test(
    '1,000,000 distinct addresses reported as a UDP server does (blocklist_sa): every one counted, ' + 'memory bounded, throughput',
    async (t) => {
      const N = 1_000_000;
      const port = await freePort();
      const dir = tempDir('blocklistd-spray-');
      // every address counted (nfail *: no helper call), but those of one /24, blocked at once
      writeFileSync(join(dir, 'blocklistd.conf'), `${port} dgram * * * * 1h\n[remote]\n10.0.0.0/24:${port} * * * -spray 1 1h\n`);
      const control = join(dir, 'blocklistd.ctl');
      const daemon = spawn(
        process.execPath,
        [
          join(repoRoot, 'bin/blocklistd'),
          ...['--foreground', '--log-format', 'json', '-c', join(dir, 'blocklistd.conf'), '-C', join(repoRoot, 'test/fixtures/control')],
          ...['-D', join(dir, 'blocklistd.db'), '-s', join(dir, 'blocklistd.sock')],
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HELPER_LOG: join(dir, 'helper.log') } },
      );
      let stderr = '';
      daemon.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      t.after(() => daemon.kill('SIGKILL'));
      await until(() => existsSync(control) || daemon.exitCode !== null, 10_000);
      const pid = daemon.pid!;
      const rssBefore = rssMB(pid);
      let peak = rssBefore;
      const samples: number[] = [];
      const sampler = setInterval(() => {
        try {
          const rss = rssMB(pid);
          samples.push(rss);
          peak = Math.max(peak, rss);
        } catch {
          // exited: asserted below
        }
      }, 250);
      t.after(() => clearInterval(sampler));

      const t0 = Date.now();
      const r = await run(await blprobe(), [
        '-s',
        join(dir, 'blocklistd.sock'),
        '-u',
        '-p',
        String(port),
        '-F',
        String(N),
        '-M',
        String(N),
        '-A',
        '10.0.0.1',
        '-m',
        '',
        '-w',
        '120000',
      ]);
      const seconds = (Date.now() - t0) / 1000;
      clearInterval(sampler);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // "flood: daemon processed all after 8.980 s = 111355/s"
      const m = /daemon processed all after ([\d.]+) s = (\d+)\/s/.exec(r.stdout);
      assert.ok(m, r.stdout);
      const rate = Number(m[2]);
      assert.equal(daemon.exitCode, null, `the daemon survived: ${stderr}`);

      const s = await status(control);
      assert.equal(s.counters.notifications['auth_fail:matched'], N, 'every notification counted');
      assert.equal(s.entries, N, 'one entry per address');
      await until(
        () =>
          (existsSync(join(dir, 'helper.log')) ? (readFileSync(join(dir, 'helper.log'), 'utf8').match(/^add /gm)?.length ?? 0) : 0) === 255,
        10_000,
      );
      assert.equal(s.blocked, 255, 'the /24 blocked, address by address');
      const rssAfter = rssMB(pid);
      const size = (name: string): number => (existsSync(join(dir, name)) ? statSync(join(dir, name)).size / 2 ** 20 : 0);
      t.diagnostic(
        `${N} notifications from ${N} distinct addresses in ${seconds.toFixed(1)} s; the daemon processed ` +
          `${rate}/s (blprobe: ${r.stdout.trim().split('\n').join('; ')})`,
      );
      t.diagnostic(
        `${s.entries} entries, ${s.blocked} blocked through the helper; database ` +
          `${size('blocklistd.db').toFixed(0)} MB + WAL ${size('blocklistd.db-wal').toFixed(0)} MB on disk`,
      );
      t.diagnostic(`RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MB, peak ${peak.toFixed(0)} MB over ${samples.length} samples`);
      assert.ok(peak < 300, `RSS peaked at ${peak.toFixed(0)} MB`);
      assert.ok(rate > 5000, `${rate} notifications/s`);
    },
  );
});
