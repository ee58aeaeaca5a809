// blocklistctl reload and status through the control socket (issue 7), end
// to end against the real daemon: a reload's diagnostics, a configuration
// with errors that changes nothing (file:line shown); the status's version,
// uptime, sockets, rules, entries, helper queue and counters, in human and
// --json output.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AUTH_FAIL } from '../src/index.js';
import { Reporter, counted, ctl, escapeRegExp, freePort, isRoot, parsed, repoRoot, requestStatus, startDaemon, until } from './support.js';

const { version: VERSION } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

describe('blocklistctl control commands against a running daemon', () => {
  test('reload: diagnostics returned; a configuration with errors changes nothing (exit 1, file:line shown)', async (t) => {
    const [p1, p2, p3] = await Promise.all([freePort(), freePort(), freePort()]);
    const daemon = await startDaemon(t, `${p1} stream * * * 1 1h\n`);
    const control = daemon.control;
    const conf = daemon.config;
    assert.deepEqual((await requestStatus(daemon)).rules, { local: 1, remote: 0 });

    // a warning is no error: applied, and the diagnostic printed with its place
    writeFileSync(conf, `${p1} stream * * * 1 1h\n${p2} stream * * * 1 1h extra\n`);
    let r = await ctl(['reload', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${conf}:2: extra fields ignored: extra\nconfiguration reloaded: 2 local, 0 remote rules\n`);
    r = await ctl(['reload', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parsed(r).result, { diagnostics: [`${conf}:2: extra fields ignored: extra`], rules: { local: 2, remote: 0 } });

    // the new rule is in force: a failure on p2 blocks (nfail 1)
    const r2 = await Reporter.connect(daemon.socket, p2, '127.0.0.2');
    t.after(() => r2.close());
    r2.report(AUTH_FAIL, 'on-p2');
    await daemon.settled('on-p2');
    await until(() => daemon.helperCalls().includes(`add blocklistd tcp 127.0.0.2 32 ${p2} ''`));

    // an error: p2's rule dropped and p3 added in the file, but nothing of it applies
    writeFileSync(conf, `${p1} stream * * * 1 1h\n${p3} stream * * * 1 1h\n${p2} stream * * * abc 1h\n`);
    r = await ctl(['reload', '--control', control]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `${conf}:3: Bad number for nfail [abc]\nblocklistctl: reload: 1 error in the configuration: nothing changed\n`);
    r = await ctl(['reload', '--json', '--control', control]);
    assert.equal(r.code, 1);
    assert.deepEqual(parsed(r), {
      ok: false,
      command: 'reload',
      error: {
        code: 'config_error',
        message: '1 error in the configuration: nothing changed',
        details: { diagnostics: [`${conf}:3: Bad number for nfail [abc]`] },
      },
    });
    assert.deepEqual((await requestStatus(daemon)).rules, { local: 2, remote: 0 });
    // still the old rules: p3 has none, p2's still counts
    const r3 = await Reporter.connect(daemon.socket, p3, '127.0.0.3');
    t.after(() => r3.close());
    r3.report(AUTH_FAIL, 'on-p3');
    await daemon.settled('on-p3');
    r2.report(AUTH_FAIL, 'on-p2-again');
    await daemon.settled('on-p2-again');
    const notifications = (await requestStatus(daemon)).counters.notifications;
    assert.equal(notifications['auth_fail:no_rule'], 1, 'p3 met no rule');
    assert.equal(notifications['auth_fail:matched'], 2, 'p2 still matched');
    assert.equal(daemon.entries().find((e) => e.key.port === p2)?.count, 4, 'AUTH_FAIL counts 2');
    assert.equal(
      daemon.entries().some((e) => e.key.port === p3),
      false,
    );

    // no configuration at all: refused the same way
    rmSync(conf);
    r = await ctl(['reload', '--json', '--control', control]);
    assert.equal(r.code, 1);
    assert.equal(parsed(r).error.code, 'config_error');
    assert.match(parsed(r).error.message, new RegExp(`cannot read ${escapeRegExp(conf)}: nothing changed`));
    assert.deepEqual((await requestStatus(daemon)).rules, { local: 2, remote: 0 });
  });

  test('status: version, uptime, sockets, rules, entries, blocked, helper queue and counters, human and --json', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 2 1h\n[remote]\n192.0.2.0/24:${port} stream * * * 5 1h\n`);
    const control = daemon.control;
    const reporter = await Reporter.connect(daemon.socket, port, '127.0.0.6');
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 's1');
    await daemon.settled('s1');
    reporter.report(AUTH_FAIL, 's2');
    await daemon.settled('s2');
    await until(() => daemon.entries().some((e) => e.id !== ''));
    let r = await ctl(['block', '-t', '1h', '--control', control, '192.0.2.60']);
    assert.equal(r.code, 0, r.stderr);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // an uptime of at least a second

    r = await ctl(['status', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    const s = parsed(r).result;
    assert.equal(s.version, VERSION);
    assert.equal(s.pid, daemon.child.pid);
    assert.ok(Number.isInteger(s.uptime) && s.uptime >= 1 && s.uptime < 60, `uptime ${s.uptime}`);
    assert.ok(Math.abs(Date.parse(s.started) - (Date.now() - s.uptime * 1000)) < 2000, s.started);
    assert.equal(s.config, daemon.config);
    assert.equal(s.database, daemon.db);
    assert.deepEqual(s.sockets, [daemon.socket]);
    assert.equal(s.control, control);
    assert.equal(s.metrics, null);
    assert.equal(s.debug, 2);
    assert.deepEqual(s.rules, { local: 1, remote: 1 });
    // no [remote] line allow-lists loopback here: a warning (checks.ts), not an error
    const loopback = (s.problems as { severity: string; code: string; message: string }[]).filter((p) => p.code === 'loopback_not_allowed');
    assert.deepEqual(
      loopback.map((p) => p.severity),
      ['warning'],
    );
    assert.match(
      loopback[0]!.message,
      /^no \[remote\] rule with nfail \* covers 127\.0\.0\.1 and ::1 for every \[local\] rule: the host may block itself;/,
    );
    assert.equal(s.entries, 2);
    assert.equal(s.blocked, 2);
    assert.deepEqual(
      {
        program: s.helper.program,
        batchMode: s.helper.batchMode,
        pending: s.helper.pending,
        running: s.helper.running,
        adds: s.helper.adds,
        rems: s.helper.rems,
      },
      { program: join(repoRoot, 'test/fixtures/control'), batchMode: false, pending: 0, running: 0, adds: 0, rems: 0 },
    );
    assert.deepEqual(counted(s.counters.notifications), { 'auth_fail:matched': 2 });
    assert.deepEqual(counted(s.counters.notifications_dropped), {});
    assert.deepEqual(counted(s.counters.blocks), { limit: 1, manual: 1 });
    assert.deepEqual(counted(s.counters.releases), {});
    assert.deepEqual(counted(s.counters.helper_calls), { 'capabilities:ok': 1, 'add:ok': 2 });
    assert.deepEqual(counted(s.counters.control_requests), { 'block:ok': 1 }, 'the status itself is counted after its answer');

    r = await ctl(['status', '-s', daemon.socket]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n');
    const expected = [
      new RegExp(`^blocklistd ${escapeRegExp(VERSION)}, pid ${daemon.child.pid}, up \\d+s \\(since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`),
      new RegExp(`^configuration  ${escapeRegExp(daemon.config)}: 1 local, 1 remote rules$`),
      /^problems       warning: no \[remote\] rule with nfail \* covers 127\.0\.0\.1 and ::1 /,
      new RegExp(`^database       ${escapeRegExp(daemon.db)}: 2 entries, 2 blocked$`),
      new RegExp(`^sockets        ${escapeRegExp(daemon.socket)}$`),
      new RegExp(`^socket queues  ${escapeRegExp(daemon.socket)}: ${isRoot ? 1024 : '\\d+'} in the kernel, 0 waiting$`),
      new RegExp(`^control        ${escapeRegExp(control)}$`),
      /^metrics        off$/,
      new RegExp(`^helper         ${escapeRegExp(join(repoRoot, 'test/fixtures/control'))}: 0 running, 0 queued$`),
      /^notifications  2: auth_fail:matched 2$/,
      /^of them reports 0: none$/,
      /^dropped        0: none$/,
      /^blocks         2: (limit 1, manual 1|manual 1, limit 1)$/,
      /^releases       0: none$/,
      /^helper calls   3: /,
      /^debug level    2$/,
      /^$/,
    ];
    assert.equal(lines.length, expected.length, r.stdout);
    for (const [i, pattern] of expected.entries()) assert.match(lines[i], pattern);
  });
});
