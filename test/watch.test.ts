// blocklistd-watch (issue 14) without network namespaces: the pattern
// files and their diagnostics, the corpora of real log lines of
// test/fixtures/watch (each line's expected result, through the matcher
// and through `blocklistd-watch test`), and the file source against the
// real daemon: lines reported once each across rotation (rename, late
// writes to the old file) and truncation, a file that disappears and comes
// back, a 1 MB line and invalid UTF-8, a daemon restart (nothing read is
// lost), a watcher stopped and started again (from the offset it kept; a
// file rotated meanwhile read from its start), a pattern file with errors.  The line reader alone: lines cut
// anywhere, overlong lines skipped, the end of a stream.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { appendFileSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { describe, test, type TestContext } from 'node:test';
import { matchFileLine, matchJournalEntry, parseSyslog } from '../src/watch/matcher.js';
import { parsePattern, type Pattern } from '../src/watch/patterns.js';
import { LineReader } from '../src/lines.js';
import { loadPattern, testPattern } from '../src/watch/main.js';
import { DaemonProcess, WatchedProcess, repoRoot, run, tempDir, until } from './support.js';

const PATTERNS = join(repoRoot, 'etc/blocklistd-watch.d');
const CORPORA = join(repoRoot, 'test/fixtures/watch');
const watchBin = join(repoRoot, 'bin/blocklistd-watch');

const pattern = (name: string): Pattern => loadPattern(name, PATTERNS, (_l, m) => assert.fail(`diagnostic in ${name}: ${m}`));

/** A corpus: its lines and the result expected of each (`TYPE ADDRESS`, `-` or `other`). */
function corpus(file: string): { expected: string; line: string }[] {
  return readFileSync(join(CORPORA, file), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const tab = l.indexOf('\t');
      return { expected: l.slice(0, tab), line: l.slice(tab + 1) };
    });
}

const shown = (r: ReturnType<typeof testPattern>['lines'][number]['result']): string =>
  r === null ? '-' : r === 'other' ? 'other' : `${r.type} ${r.address}`;

describe('pattern files', () => {
  test('every shipped pattern loads without a diagnostic and has a corpus', () => {
    const names = readdirSync(PATTERNS)
      .filter((f) => f.endsWith('.conf'))
      .map((f) => f.slice(0, -'.conf'.length));
    assert.ok(names.includes('sshd'));
    for (const name of names) {
      const p = pattern(name);
      assert.ok(p.rules.length > 0, name);
      assert.ok(p.journal.length > 0 || p.programs.size > 0, `${name}: a journal match or a program`);
      assert.ok(readdirSync(CORPORA).includes(`${name}.corpus`), `${name}: test/fixtures/watch/${name}.corpus`);
    }
  });

  test('an error is reported as file:line and the rest of the file loads; a file without port or rule is refused', () => {
    const text = [
      'port ssh',
      'proto sctp',
      'fail ^Failed (?<addr>[0-9.]+',
      'fail ^Failed for \\S+ from (?<addr>[0-9.]+)$',
      'baduser ^Invalid user',
      'journal SYSLOG_IDENTIFIER=sshd',
      'journal _COMM',
      'colour blue',
      'ok ^Accepted for \\S+ from (?<addr>[0-9.]+)$',
    ].join('\n');
    const { pattern: p, diagnostics } = parsePattern('x', 'x.conf', text);
    assert.equal(diagnostics.length, 6, diagnostics.join('\n'));
    assert.equal(diagnostics[0], "x.conf:2: bad proto 'sctp': tcp or udp");
    assert.match(diagnostics[1], /^x\.conf:3: bad regular expression: .*Unterminated group/);
    assert.equal(diagnostics[2], 'x.conf:5: the regular expression has no (?<addr>...) group');
    assert.equal(
      diagnostics[3],
      "x.conf:6: journal field 'SYSLOG_IDENTIFIER' can be forged by a client: use one of _SYSTEMD_UNIT, " +
        '_COMM, _EXE, _PID, _UID, _TRANSPORT, _CMDLINE, _SYSTEMD_SLICE',
    );
    assert.equal(diagnostics[4], "x.conf:7: bad journal match '_COMM': FIELD=value");
    assert.equal(diagnostics[5], "x.conf:8: unknown keyword 'colour': port, proto, program, journal, fail, baduser, abuse, ok or suspect");
    assert.deepEqual(
      p!.rules.map((r) => `${r.type} ${r.where}`),
      ['fail x.conf:4', 'ok x.conf:9'],
    );
    assert.equal(parsePattern('y', 'y.conf', 'fail ^(?<addr>.*)$\n').pattern, undefined);
    assert.deepEqual(parsePattern('y', 'y.conf', 'port 22\n').diagnostics, [
      "y.conf: no rule (fail, baduser, abuse or ok): pattern 'y' not loaded",
    ]);
  });

  test('blocklistd-watch(8): every option of --help (and of test --help) is in the synopsis and the option list', async () => {
    const man = readFileSync(join(repoRoot, 'man/blocklistd-watch.8'), 'utf8');
    const synopsis = man.slice(man.indexOf('.Sh SYNOPSIS'), man.indexOf('.Sh DESCRIPTION'));
    const listed = new Set([...man.matchAll(/^\.It Fl (\S+)/gm)].map((m) => m[1]));
    for (const args of [['--help'], ['test', '--help']]) {
      const help = (await run(process.execPath, [watchBin, ...args])).stdout;
      const options = [...help.matchAll(/^ {2}(?:-\w, )?(--?[\w-]+)/gm)]
        .map((m) => m[1])
        .filter((o) => !['-h', '--help', '-V', '--version'].includes(o));
      assert.ok(options.length > 0, help);
      for (const o of options) {
        const word = o.replace(/^-/, '').replace(/^-/, '-');
        assert.ok(synopsis.includes(`Fl ${word}`), `${o} in the SYNOPSIS`);
        if (args[0] !== 'test' || o !== '--json') assert.ok(listed.has(word) || o === '--json', `${o} in an option list`);
      }
    }
  });
});

describe('matching', () => {
  const sshd = pattern('sshd');

  test("syslog headers: the traditional and the RFC 3339 form; another program's line is not the service's", () => {
    assert.deepEqual(parseSyslog('Dec  4 14:00:00 host sshd[123]: Failed password for root from 192.0.2.1 port 2 ssh2'), {
      program: 'sshd',
      message: 'Failed password for root from 192.0.2.1 port 2 ssh2',
    });
    assert.deepEqual(parseSyslog('2026-12-04T14:00:00.123456+00:00 host sshd-session[9]: Invalid user x from 2001:db8::1 port 2'), {
      program: 'sshd-session',
      message: 'Invalid user x from 2001:db8::1 port 2',
    });
    assert.equal(matchFileLine(sshd, 'Dec  4 14:00:00 host cron[1]: Failed password for root from 192.0.2.1 port 2 ssh2'), 'other');
    const r = matchFileLine(sshd, 'Dec  4 14:00:00 host sshd-session[1]: Failed password for root from 192.0.2.1 port 2 ssh2');
    assert.equal(r !== 'other' && r.match?.address, '192.0.2.1');
  });

  test('a user name cannot put another address in a line; a host name (UseDNS) reports nothing', () => {
    const r = matchFileLine(sshd, 'Invalid user x from 203.0.113.1 port 22 from 192.0.2.9 port 4711');
    assert.ok(r !== 'other');
    assert.equal(r.match?.address, '192.0.2.9');
    assert.equal(r.match?.user, 'x from 203.0.113.1 port 22');
    const h = matchFileLine(sshd, 'Failed password for root from attacker.example port 4711 ssh2');
    assert.ok(h !== 'other');
    assert.equal(h.match, undefined);
  });

  test("journal entries are the service's by trusted fields only: SYSLOG_IDENTIFIER=sshd from logger is not", () => {
    const message = 'Failed password for root from 192.0.2.1 port 2 ssh2';
    assert.equal(
      matchJournalEntry(sshd, {
        MESSAGE: message,
        SYSLOG_IDENTIFIER: 'sshd',
        _COMM: 'logger',
        _EXE: '/usr/bin/logger',
        _TRANSPORT: 'syslog',
      }),
      undefined,
    );
    assert.equal(
      matchJournalEntry(sshd, { MESSAGE: message, SYSLOG_IDENTIFIER: 'sshd', _COMM: 'sshd', _EXE: '/home/eve/sshd' }),
      undefined,
    );
    assert.equal(matchJournalEntry(sshd, { MESSAGE: message, _EXE: '/usr/sbin/sshd' })?.match?.type, 'fail');
    assert.equal(
      matchJournalEntry(sshd, { MESSAGE: message, _SYSTEMD_UNIT: 'ssh.service', _COMM: 'sshd-session' })?.match?.address,
      '192.0.2.1',
    );
    // a message that is not UTF-8 comes as an array of bytes
    const bytes = [...Buffer.from('Invalid user \xff from 192.0.2.3 port 5', 'latin1')];
    assert.equal(matchJournalEntry(sshd, { MESSAGE: bytes, _EXE: '/usr/sbin/sshd' })?.match?.address, '192.0.2.3');
  });

  for (const file of readdirSync(CORPORA).filter((f) => f.endsWith('.corpus'))) {
    test(`corpus ${file}: every line as expected, through the matcher and through blocklistd-watch test`, async () => {
      const name = file.slice(0, -'.corpus'.length);
      const rows = corpus(file);
      const report = testPattern(pattern(name), file, rows.map((r) => r.line).join('\n'));
      assert.deepEqual(
        report.lines.map((l, i) => `${i + 1}: ${shown(l.result)}`),
        rows.map((r, i) => `${i + 1}: ${r.expected}`),
      );
      const dir = tempDir();
      const log = join(dir, 'log');
      writeFileSync(log, rows.map((r) => `${r.line}\n`).join(''));
      const cli = await run(process.execPath, [watchBin, 'test', '--json', '--patterns', PATTERNS, '--pattern', name, log]);
      assert.equal(cli.code, 0, cli.stderr);
      const json = JSON.parse(cli.stdout) as typeof report;
      assert.deepEqual(
        json.lines.map((l) => shown(l.result)),
        rows.map((r) => r.expected),
      );
      assert.equal(json.counts.matched, rows.filter((r) => r.expected !== '-' && r.expected !== 'other').length);
    });
  }

  test('blocklistd-watch test: each line, the counts and the failure-like lines nothing matched', async () => {
    const dir = tempDir();
    const log = join(dir, 'auth.log');
    writeFileSync(
      log,
      [
        'Dec  4 14:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 2 ssh2',
        'Dec  4 14:00:01 host sshd[1]: Connection closed by authenticating user root 192.0.2.1 port 2 [preauth]',
        'Dec  4 14:00:02 host CRON[2]: pam_unix(cron:session): session opened for user root',
        'Dec  4 14:00:03 host sshd[3]: Accepted publickey for ann from 2001:db8::5 port 3 ssh2: ED25519 SHA256:x',
        '',
      ].join('\n'),
    );
    const r = await run(process.execPath, [watchBin, 'test', '--patterns', PATTERNS, '--pattern', 'sshd', log]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        '1: fail 192.0.2.1 user=root\tDec  4 14:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 2 ssh2',
        '2: -\tDec  4 14:00:01 host sshd[1]: Connection closed by authenticating user root 192.0.2.1 port 2 [preauth]',
        '3: other\tDec  4 14:00:02 host CRON[2]: pam_unix(cron:session): session opened for user root',
        '4: ok 2001:db8::5 user=ann\tDec  4 14:00:03 host sshd[3]: Accepted publickey for ann from ' +
          '2001:db8::5 port 3 ssh2: ED25519 SHA256:x',
        '',
        '4 lines: 2 matched (fail 1, ok 1), 1 unmatched, 1 of other programs',
        '1 unmatched lines look like failures:',
        '2: Dec  4 14:00:01 host sshd[1]: Connection closed by authenticating user root 192.0.2.1 port 2 [preauth]',
        '',
      ].join('\n'),
    );
    // journalctl -o json output: the entries of sshd by its trusted fields; logger's forgery is another program's
    const journal = join(dir, 'journal.json');
    const message = 'Failed password for root from 192.0.2.1 port 2 ssh2';
    writeFileSync(
      journal,
      [
        { MESSAGE: message, SYSLOG_IDENTIFIER: 'sshd', _COMM: 'sshd', _EXE: '/usr/sbin/sshd', _SYSTEMD_UNIT: 'ssh.service' },
        { MESSAGE: message, SYSLOG_IDENTIFIER: 'sshd', _COMM: 'logger', _UID: '1000' },
        { MESSAGE: 'Server listening on 0.0.0.0 port 22.', _EXE: '/usr/sbin/sshd' },
      ]
        .map((e) => `${JSON.stringify(e)}\n`)
        .join(''),
    );
    const j = await run(process.execPath, [watchBin, 'test', '--json', '--patterns', PATTERNS, '--pattern', 'sshd', journal]);
    assert.equal(j.code, 0, j.stderr);
    const report = JSON.parse(j.stdout) as { lines: { result: unknown; text: string }[]; counts: Record<string, unknown> };
    const first = report.lines[0].result as { type: string; address: string; user: string; rule: string };
    assert.deepEqual([first.type, first.address, first.user], ['fail', '192.0.2.1', 'root']);
    assert.match(first.rule, /\/sshd\.conf:\d+$/);
    assert.deepEqual(
      report.lines.slice(1).map((l) => l.result),
      ['other', null],
    );
    assert.deepEqual(report.counts, { lines: 3, matched: 1, unmatched: 1, other: 1, byType: { fail: 1 } });

    const bad = await run(process.execPath, [watchBin, 'test', '--patterns', PATTERNS, '--pattern', 'nosuch', log]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^blocklistd-watch: pattern 'nosuch': ENOENT/);
  });
});

// --- the file source against the daemon ------------------------------------------

/** The watcher as a process, its log watched; killed after the test. */
function startWatcher(t: TestContext, args: string[]): WatchedProcess {
  const child = spawn(process.execPath, [watchBin, '-d', '--patterns', PATTERNS, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  return new WatchedProcess('blocklistd-watch', child, [child.stderr]);
}

const fail = (address: string): string => `Dec  4 14:00:00 host sshd[7]: Failed password for root from ${address} port 4711 ssh2\n`;

/** The count of each address's entry: 2 per failure reported. */
const counts = (daemon: DaemonProcess): Record<string, number> => Object.fromEntries(daemon.entries().map((e) => [e.key.address, e.count]));

async function reported(daemon: DaemonProcess, expected: Record<string, number>): Promise<void> {
  try {
    await until(() => Object.entries(expected).every(([a, n]) => counts(daemon)[a] === n), 10_000);
  } catch {
    assert.deepEqual(counts(daemon), { ...counts(daemon), ...expected });
  }
}

describe('the file source', () => {
  test(
    'rotation by rename (with late writes to the old file), truncation, removal and return, a 1 MB line, ' +
      'invalid UTF-8, a daemon restart: every line reported once',
    async (t) => {
      const config = 'ssh stream * * * * 1h\n';
      let daemon = await DaemonProcess.start({ config });
      t.after(() => daemon.stop('SIGKILL'));
      const dir = tempDir();
      const log = join(dir, 'auth.log');
      writeFileSync(log, fail('192.0.2.250')); // before the start: not read
      const state = join(dir, 'state.json');
      let w = startWatcher(t, ['-s', daemon.socket, '--state', state, '--file', log, '--pattern', 'sshd']);
      await w.waitFor(/watching file/, 0, 10_000);
      await new Promise((r) => setTimeout(r, 300));

      appendFileSync(log, fail('192.0.2.1') + fail('192.0.2.1'));
      await reported(daemon, { '192.0.2.1': 4 });

      // logrotate: rename, the server still writes to the old file a moment (a last line without its newline), then to a new one
      renameSync(log, `${log}.1`);
      appendFileSync(`${log}.1`, fail('192.0.2.2').trimEnd());
      writeFileSync(log, fail('192.0.2.3'));
      await reported(daemon, { '192.0.2.2': 2, '192.0.2.3': 2 });

      // copytruncate
      truncateSync(log, 0);
      await new Promise((r) => setTimeout(r, 1500));
      appendFileSync(log, fail('192.0.2.4'));
      await reported(daemon, { '192.0.2.4': 2 });

      // a line of 1 MB, invalid UTF-8, then a good line
      appendFileSync(log, `${'x'.repeat(1 << 20)}\n`);
      appendFileSync(
        log,
        Buffer.concat([Buffer.from('Dec  4 14:00:00 host sshd[7]: Invalid user \xff\xfe from 192.0.2.5 port 1\n', 'latin1')]),
      );
      appendFileSync(log, fail('192.0.2.6'));
      await reported(daemon, { '192.0.2.5': 1, '192.0.2.6': 2 });
      assert.match(w.text, /a line longer than 65536 bytes skipped/);

      // the daemon restarts: what is read meanwhile is sent when it is back
      await daemon.stop();
      appendFileSync(log, fail('192.0.2.7'));
      await w.waitFor(/192\.0\.2\.7/, 0, 10_000);
      daemon = await DaemonProcess.start({ config, dir: daemon.dir });
      await reported(daemon, { '192.0.2.7': 2 });

      // removed, then back
      rmSync(log);
      await w.waitFor(/removed; waiting for it/, 0, 15_000);
      writeFileSync(log, fail('192.0.2.8'));
      await reported(daemon, { '192.0.2.8': 2 });

      assert.equal(counts(daemon)['192.0.2.250'], undefined, 'lines before the first start are not read');
      assert.deepEqual(counts(daemon), {
        '192.0.2.1': 4,
        '192.0.2.2': 2,
        '192.0.2.3': 2,
        '192.0.2.4': 2,
        '192.0.2.5': 1,
        '192.0.2.6': 2,
        '192.0.2.7': 2,
        '192.0.2.8': 2,
      });
      assert.equal(w.child.exitCode, null, 'still running');
      w.child.kill('SIGTERM');
      assert.equal(await w.exited, 0);

      // stopped: lines written meanwhile are read at the next start, from the offset kept, and nothing before them
      assert.equal(
        (JSON.parse(readFileSync(state, 'utf8')) as { files: Record<string, { pos: number }> }).files[log].pos,
        readFileSync(log).length,
      );
      appendFileSync(log, fail('192.0.2.9'));
      w = startWatcher(t, ['-s', daemon.socket, '--state', state, '--file', log, '--pattern', 'sshd']);
      await reported(daemon, { '192.0.2.9': 2 });
      w.child.kill('SIGTERM');
      assert.equal(await w.exited, 0);
      // rotated while it was stopped: the new file is read from its start
      renameSync(log, `${log}.2`);
      writeFileSync(log, fail('192.0.2.10'));
      w = startWatcher(t, ['-s', daemon.socket, '--state', state, '--file', log, '--pattern', 'sshd']);
      await reported(daemon, { '192.0.2.10': 2 });
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(
        counts(daemon),
        {
          '192.0.2.1': 4,
          '192.0.2.2': 2,
          '192.0.2.3': 2,
          '192.0.2.4': 2,
          '192.0.2.5': 1,
          '192.0.2.6': 2,
          '192.0.2.7': 2,
          '192.0.2.8': 2,
          '192.0.2.9': 2,
          '192.0.2.10': 2,
        },
        'nothing read twice',
      );
      w.child.kill('SIGTERM');
      assert.equal(await w.exited, 0);
    },
  );

  test('a pattern file with an error: file:line logged, the rest loads; command-line errors', async (t) => {
    const daemon = await DaemonProcess.start({ config: 'ssh stream * * * * 1h\n' });
    t.after(() => daemon.stop('SIGKILL'));
    const dir = tempDir();
    const patternFile = join(dir, 'mine.conf');
    writeFileSync(patternFile, 'port ssh\nfail ^Failed (?<addr>\nfail ^bad login from (?<addr>\\S+)$\n');
    const log = join(dir, 'app.log');
    writeFileSync(log, '');
    const w = startWatcher(t, ['-s', daemon.socket, '--state', join(dir, 'state.json'), '--file', log, '--pattern', patternFile]);
    await w.waitFor(/watching file/, 0, 10_000);
    assert.match(w.text, new RegExp(`${patternFile}:2: bad regular expression`));
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(log, 'bad login from 198.51.100.4\n');
    await reported(daemon, { '198.51.100.4': 2 });
    await daemon.waitFor(/remote=198\.51\.100\.4:0 msg="bad login from 198\.51\.100\.4" uid=0 gid=0 report source=mine/);

    // the sources of a configuration file; an error in it is file:line, the good lines are read
    const conf = join(dir, 'watch.conf');
    const other = join(dir, 'other.log');
    writeFileSync(other, '');
    writeFileSync(conf, `# a comment\nfile ${other} ${patternFile}\nfiles ${other}\n`);
    const c = startWatcher(t, ['-s', daemon.socket, '--state', join(dir, 'state2.json'), '-c', conf]);
    await c.waitFor(/watching file/, 0, 10_000);
    assert.match(c.text, new RegExp(`${conf}:3: expected 'journal PATTERN' or 'file PATH PATTERN'`));
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(other, 'bad login from 198.51.100.5\n');
    await reported(daemon, { '198.51.100.5': 2 });

    const noPattern = await run(process.execPath, [watchBin, '--file', log]);
    assert.equal(noPattern.code, 2, 'a usage error');
    assert.match(noPattern.stderr, /--file .*: needs a --pattern after it/);
    const unusable = await run(process.execPath, [watchBin, '--patterns', PATTERNS, '--file', log, '--pattern', 'nosuch']);
    assert.equal(unusable.code, 1);
    assert.match(unusable.stderr, /pattern 'nosuch'.*source skipped[\s\S]*no source to read/);
  });
});

describe('the line reader', () => {
  test(
    'lines cut anywhere in the chunks; an overlong line skipped whole, told once, the next read; end() ' + 'gives the unfinished line',
    () => {
      const lines: string[] = [];
      let tooLong = 0;
      const reader = new LineReader(8, () => tooLong++);
      const text = Buffer.concat([
        Buffer.from('one\ntwo\nthis is too long\nthree\n'),
        Buffer.from([0xff, 0xfe, 0x21, 0x0a]),
        Buffer.from('four'),
      ]);
      for (let i = 0; i < text.length; i += 3) reader.push(text.subarray(i, i + 3), (l) => lines.push(l));
      assert.deepEqual(lines, ['one', 'two', 'three', '\ufffd\ufffd!']);
      assert.equal(tooLong, 1);
      reader.end((l) => lines.push(l));
      assert.equal(lines.at(-1), 'four');
      reader.end((l) => lines.push(l));
      assert.equal(lines.length, 5, 'nothing more');
    },
  );
});

describe('faults', () => {
  test(
    'a line of 64 KiB built against each shipped pattern (user names full of "from ADDR port N", digits, ' +
      'brackets) is matched in milliseconds',
    () => {
      const fillers = [
        'x from 192.0.2.1 port 1 ',
        '1'.repeat(16),
        ']: user "a", client: 1.2.3.4, server: ',
        '>, method=PLAIN, rip=1.2.3.4, lip=',
        ' (10.0.0.1[10.0.0.1]): USER ',
        '[1.2.3.4]: SASL ',
      ];
      for (const file of readdirSync(CORPORA).filter((f) => f.endsWith('.corpus'))) {
        const p = pattern(file.slice(0, -'.corpus'.length));
        for (const { expected, line } of corpus(file)) {
          if (expected === '-' || expected === 'other') continue;
          for (const filler of fillers) {
            // the filler where the user name or the host name is, or before the end
            const long = filler.repeat(Math.ceil(60_000 / filler.length));
            const cut = line.search(/user=<|user "|USER |\[|for |user /);
            const attack = cut === -1 ? `${line}${long}` : `${line.slice(0, cut + 5)}${long}${line.slice(cut + 5)}`;
            const start = performance.now();
            matchFileLine(p, attack);
            const ms = performance.now() - start;
            assert.ok(
              ms < 250,
              `${file}: ${ms.toFixed(0)} ms for ${JSON.stringify(attack.slice(0, 80))}… (filler ${JSON.stringify(filler)})`,
            );
          }
        }
      }
    },
  );

  test('a journal that cannot be read: said once, tried again every second, the watcher goes on', async (t) => {
    const dir = tempDir();
    const w = startWatcher(t, [
      '--control',
      join(dir, 'none.ctl'),
      '--state',
      join(dir, 'state', 'state.json'),
      '--journal-directory',
      join(dir, 'no-journal'),
      '--journal',
      '--pattern',
      'sshd',
    ]);
    await w.waitFor(/journalctl exited/, 0, 10_000);
    await new Promise((r) => setTimeout(r, 3500));
    assert.equal(w.text.split('journalctl exited').length - 1, 1, w.text);
    assert.equal(w.child.exitCode, null);
    w.child.kill('SIGTERM');
    assert.equal(await w.exited, 0);
  });
});
