// The notification and control sockets under attack by a local user
// (issue 13): a symlink swapped in for a socket file while it is set up.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ControlServer, ControlSetupError } from '../src/daemon/control.js';
import { constants as C, setSocketMode } from '../src/protocol/native.js';
import { NotificationSocket, SocketSetupError } from '../src/protocol/server.js';
import { LogCollector, isRoot, tempDir } from './support.js';

const NOBODY = 65534;

/** A directory nobody may write (as a chroot's var/run listed with -P), below a world-searchable one. */
function writableByNobody(): string {
  const root = tempDir('blocklistd-attack-');
  chmodSync(root, 0o755);
  const dir = join(root, 'run');
  mkdirSync(dir, { mode: 0o777 });
  chmodSync(dir, 0o777);
  return dir;
}

/** A root-owned file of mode 0600: what the attacker wants opened to everybody. */
function secretFile(): string {
  const path = join(tempDir('blocklistd-secret-'), 'shadow');
  writeFileSync(path, 'secret\n', { mode: 0o600 });
  return path;
}

/**
 * Runs, as nobody, a loop that replaces the socket file at `path` by a
 * symlink to `target` as soon as it appears; resolves, once it runs, to a
 * function that stops it and resolves to the number of swaps.  It ends by
 * itself after a minute, should this process die first.
 */
async function startSwapper(path: string, target: string): Promise<() => Promise<number>> {
  const script = `
    const fs = require('node:fs');
    const [path, target] = process.argv.slice(1);
    const tmp = path + '.swap';
    let swaps = 0;
    let stop = false;
    process.on('SIGTERM', () => (stop = true));
    setTimeout(() => (stop = true), 60000).unref();
    const loop = () => {
      if (stop) return console.log(swaps);
      for (let i = 0; i < 2000; i++) {
        try {
          if (fs.lstatSync(path).isSocket()) {
            try { fs.unlinkSync(tmp); } catch {}
            fs.symlinkSync(target, tmp);
            fs.renameSync(tmp, path);
            swaps++;
          }
        } catch {}
      }
      setImmediate(loop);
    };
    console.log('running');
    loop();`;
  const child = spawn(process.execPath, ['-e', script, path, target], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('running\n')) resolve();
    }),
  );
  return async () => {
    child.kill('SIGTERM');
    await exited;
    return Number(out.slice('running\n'.length).trim());
  };
}

/** Keeps a socket a moment, for the swapper to see it, then closes it. */
async function lingerThenClose(socket: { close(): void }): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 2));
  socket.close();
}

describe('socket files are never chmod-ed through a symlink', () => {
  test('setSocketMode refuses a symlink and a file that is no socket, and sets a socket', () => {
    const dir = tempDir();
    const target = join(dir, 'target');
    writeFileSync(target, '', { mode: 0o600 });
    symlinkSync(target, join(dir, 'link'));
    assert.equal(setSocketMode(join(dir, 'link'), 0o666, -1), C.ELOOP);
    assert.equal(setSocketMode(target, 0o666, -1), C.ENOTSOCK);
    assert.equal(statSync(target).mode & 0o777, 0o600);
    const socket = new NotificationSocket(join(dir, 's.sock'), { log: () => {}, mode: 0o600 });
    assert.equal(lstatSync(join(dir, 's.sock')).mode & 0o777, 0o600);
    assert.equal(setSocketMode(join(dir, 's.sock'), 0o640, process.getgid!()), 0);
    assert.equal(lstatSync(join(dir, 's.sock')).mode & 0o777, 0o640);
    socket.close();
  });

  const ROUNDS = 40;
  test(`a local user swapping in a symlink during set-up: ${ROUNDS} notification and control sockets`, { skip: !isRoot && 'needs root to run the attacker as nobody' }, async () => {
    const dir = writableByNobody();
    const target = secretFile();
    const notify = join(dir, 'blocklistd.sock');
    const control = join(dir, 'blocklistd.ctl');
    let refused = 0;
    for (const [path, open] of [
      [notify, async () => lingerThenClose(new NotificationSocket(notify, { log: () => {} }))],
      [control, async () => lingerThenClose(await ControlServer.open({ path: control, log: new LogCollector().log, handle: async () => ({}) }))],
    ] as const) {
      const stop = await startSwapper(path, target);
      try {
        for (let round = 0; round < ROUNDS; round++) {
          try {
            await open();
          } catch (e) {
            // a swap between bind and the mode, or a link left at the path: set-up fails, the target is untouched
            assert.ok(e instanceof SocketSetupError || e instanceof ControlSetupError, String(e));
            assert.match((e as Error).message, /Too many levels of symbolic links|Socket operation on non-socket|No such file|Address already in use|EADDRINUSE|is not a socket/);
            refused++;
          }
          try {
            unlinkSync(path);
          } catch {
            // the daemon removed it, or the swapper's link is gone
          }
          assert.equal(statSync(target).mode & 0o777, 0o600, `round ${round}: the target's mode changed`);
        }
      } finally {
        assert.ok((await stop()) > 0, 'the swapper never saw the socket');
      }
    }
    assert.equal(statSync(target).mode & 0o777, 0o600);
    console.log(`# ${refused} of ${2 * ROUNDS} set-ups refused because a symlink was swapped in`);
  });
});
