// The control socket's file (issue 7): blocklistctl when the daemon is not
// there (no socket file, a stale one a killed daemon left, which the next
// daemon replaces), --control-socket elsewhere, --no-control-socket, and a
// second daemon refused on a control socket in use.
import assert from 'node:assert/strict';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { controlRequest, ctl, escapeRegExp, freePort, parsed, repoRoot, requestStatus, run, startDaemon, tempDir } from './support.js';

describe('blocklistctl when the daemon is not there', () => {
  const COMMANDS = [['status'], ['reload'], ['flush'], ['block', '-t', '1h', '192.0.2.1'], ['unblock', '--all']];

  async function notRunning(where: string[], path: string, commands = COMMANDS, reason = `no control socket at ${path}`): Promise<void> {
    const results = await Promise.all(commands.map((args) => Promise.all([ctl([...args, ...where]), ctl([...args, ...where, '--json'])])));
    for (const [i, [human, json]] of results.entries()) {
      const command = commands[i][0];
      assert.equal(human.code, 1, command);
      assert.equal(human.stdout, '');
      assert.equal(human.stderr, `blocklistctl: ${command}: blocklistd is not running (${reason}; see --control and -s)\n`);
      assert.equal(json.code, 1, command);
      assert.deepEqual(parsed(json), {
        ok: false,
        command,
        error: { code: 'not_running', message: `blocklistd is not running (${reason}; see --control and -s)` },
      });
    }
  }

  test('no socket file: "not running", exit 1, for every command, human and --json', async () => {
    const dir = tempDir('blocklistctl-');
    await notRunning(['-s', join(dir, 'blocklistd.sock')], join(dir, 'blocklistd.ctl'));
    // a socket path without .sock: .ctl appended, as the daemon does
    await notRunning(['-s', join(dir, 'bl')], join(dir, 'bl.ctl'), [['status']]);
    if (!existsSync('/var/run/blocklistd.ctl')) {
      const r = await ctl(['status']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no control socket at \/var\/run\/blocklistd\.ctl/);
    }
  });

  test('a stale socket file (the daemon was killed): "not running"; the next daemon replaces it', async (t) => {
    const port = await freePort();
    const config = `${port} stream * * * 3 1h\n`;
    const daemon = await startDaemon(t, config);
    const control = daemon.control;
    await daemon.stop('SIGKILL');
    assert.ok(statSync(control).isSocket(), 'the killed daemon left its socket file');
    await notRunning(['--control', control], control, [['status'], ['block', '-t', '1h', '192.0.2.1']], `nothing listens on ${control}`);
    // a file that is no socket at all reads the same to the client
    const plain = join(daemon.dir, 'plain.ctl');
    writeFileSync(plain, '');
    const r = await ctl(['status', '--control', plain]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /blocklistd is not running/);

    const again = await startDaemon(t, config, [], { dir: daemon.dir });
    assert.equal((await requestStatus(again)).pid, again.child.pid);
  });

  test('--control-socket elsewhere, --no-control-socket, and a second daemon on a control socket in use', async (t) => {
    const port = await freePort();
    const elsewhere = join(tempDir('blocklistd-ctl-'), 'admin.ctl');
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, ['--control-socket', elsewhere]);
    assert.equal(existsSync(daemon.control), false);
    let r = await ctl(['status', '--json', '--control', elsewhere]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(parsed(r).result.control, elsewhere);
    r = await ctl(['status', '-s', daemon.socket]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not running/);

    // a second daemon with other files but the same control socket: refused before it takes over anything
    const dir = tempDir('blocklistd-second-');
    writeFileSync(join(dir, 'blocklistd.conf'), `${port} stream * * * 3 1h\n`);
    const second = await run(
      process.execPath,
      [
        join(repoRoot, 'bin/blocklistd'),
        '-d',
        '-c',
        join(dir, 'blocklistd.conf'),
        '-C',
        join(repoRoot, 'test/fixtures/control'),
        '-D',
        join(dir, 'db'),
        '-s',
        join(dir, 'blocklistd.sock'),
        '--control-socket',
        elsewhere,
      ],
      {
        env: { HELPER_LOG: join(dir, 'helper.log') },
      },
    );
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`control socket ${escapeRegExp(elsewhere)}: another daemon is handling it`));
    assert.equal((await controlRequest(elsewhere, 'status')).result.pid, daemon.child.pid, 'the first one still serves');

    // a group that does not exist: the daemon does not start
    const unknown = await run(
      process.execPath,
      [
        join(repoRoot, 'bin/blocklistd'),
        '-d',
        '-c',
        join(dir, 'blocklistd.conf'),
        '-C',
        join(repoRoot, 'test/fixtures/control'),
        '-D',
        join(dir, 'db'),
        '-s',
        join(dir, 'blocklistd.sock'),
        '--control-group',
        'no-such-group-here',
      ],
      {
        env: { HELPER_LOG: join(dir, 'helper.log') },
      },
    );
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /--control-group: unknown group 'no-such-group-here'/);

    const none = await startDaemon(t, `${port} stream * * * 3 1h\n`, ['--no-control-socket']);
    await none.waitFor(/listening on /);
    assert.equal(existsSync(none.control), false);
    r = await ctl(['status', '-s', none.socket]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /blocklistd is not running/);
  });
});
