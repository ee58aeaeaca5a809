// Who may use the control socket (issue 7): its file mode, the daemon's own
// SO_PEERCRED check and --control-group by number and name, tried as other
// uids under setpriv from a copy of the tree they can read (root only).
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  DaemonProcess,
  freePort,
  isRoot,
  parsed,
  requestStatus,
  run,
  sharedTree,
  snapshot,
  startDaemon,
  type RunResult,
} from './support.js';

/**
 * blocklistctl as another user: the real and effective ids changed, no
 * supplementary groups unless `groups`; run from a copy that user can read.
 */
const ctlAs = (uid: number, gid: number, args: string[], groups?: number[]): Promise<RunResult> =>
  run('setpriv', [
    `--reuid=${uid}`,
    `--regid=${gid}`,
    groups === undefined ? '--clear-groups' : `--groups=${groups.join(',')}`,
    process.execPath,
    join(sharedTree(), 'bin/blocklistctl'),
    ...args,
  ]);

/** node -e: connects to argv[1], sends nothing, prints as JSON what arrives until the close (or for 2 s). */
const PEEK = `const c = require('net').connect(process.argv[1]); let data = ''; let error = null;
c.setEncoding('utf8'); c.on('data', (d) => (data += d)); c.on('error', (e) => (error = e.code));
c.on('close', () => console.log(JSON.stringify({ data, error })));
setTimeout(() => { console.log(JSON.stringify({ data, error, open: true })); process.exit(0); }, 2000).unref();`;

describe(
  'who may use the control socket',
  { skip: isRoot ? false : 'not root: cannot run blocklistctl as another uid or chown the socket' },
  () => {
    const NOBODY = 65534;
    const OTHER = 65533; // a uid and gid no account has

    async function daemonFor(t: TestContext, args: string[] = []): Promise<DaemonProcess> {
      const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, args);
      chmodSync(daemon.dir, 0o755); // the socket's own mode is what is tried, not its directory's
      return daemon;
    }

    test('the default socket is 0600: another uid cannot connect (EACCES), "permission denied", exit 1', async (t) => {
      const daemon = await daemonFor(t);
      const control = daemon.control;
      const st = statSync(control);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(st.uid, 0);
      const before = snapshot(daemon);
      const [human, json, block] = await Promise.all([
        ctlAs(NOBODY, NOBODY, ['status', '--control', control]),
        ctlAs(NOBODY, NOBODY, ['status', '--json', '--control', control]),
        ctlAs(NOBODY, NOBODY, ['block', '-t', '1h', '--control', control, '192.0.2.80']),
      ]);
      const message = `permission denied: ${control} (run as root, or as a member of the daemon's --control-group)`;
      assert.equal(human.code, 1);
      assert.equal(human.stderr, `blocklistctl: status: ${message}\n`);
      assert.equal(json.code, 1);
      assert.deepEqual(parsed(json), { ok: false, command: 'status', error: { code: 'access_denied', message } });
      assert.equal(block.code, 1);
      assert.equal(block.stderr, `blocklistctl: block: ${message}\n`);
      assert.deepEqual(snapshot(daemon), before);
    });

    test('the socket opened to all (0666): the daemon itself refuses other uids by SO_PEERCRED, access_denied', async (t) => {
      const daemon = await daemonFor(t);
      const control = daemon.control;
      chmodSync(control, 0o666);
      const before = snapshot(daemon);
      // a client that only listens: the daemon's refusal, then the close
      const listen = await run('setpriv', [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        '--clear-groups',
        process.execPath,
        '-e',
        PEEK,
        control,
      ]);
      assert.equal(listen.code, 0, listen.stderr);
      const denied = { version: 1, error: { code: 'access_denied', message: `access denied: uid ${NOBODY} may not control blocklistd` } };
      assert.deepEqual(JSON.parse(listen.stdout), { data: `${JSON.stringify(denied)}\n`, error: null });
      // blocklistctl's requests, whatever it manages to print (see the next test), do nothing
      const [human, json, block, unblock] = await Promise.all([
        ctlAs(NOBODY, NOBODY, ['status', '--control', control]),
        ctlAs(NOBODY, NOBODY, ['status', '--json', '--control', control]),
        ctlAs(NOBODY, NOBODY, ['block', '-t', '1h', '--control', control, '192.0.2.81']),
        ctlAs(OTHER, OTHER, ['unblock', '--all', '--json', '--control', control]),
      ]);
      for (const r of [human, json, block, unblock]) {
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.doesNotMatch(r.stdout, /"result"/);
      }
      assert.deepEqual(snapshot(daemon), before, 'nothing was done for them');
      await daemon.waitFor(new RegExp(`control: uid ${NOBODY} \\(pid \\d+\\) refused`));
      await daemon.waitFor(new RegExp(`control: uid ${OTHER} \\(pid \\d+\\) refused`));
      // root is still served, and the refusals were counted as such
      assert.equal((await requestStatus(daemon)).counters.control_requests['connect:error'], 5);
    });

    test('refused by SO_PEERCRED, blocklistctl prints the daemon\'s "access denied" (human and --json), every time', async (t) => {
      const daemon = await daemonFor(t);
      const control = daemon.control;
      chmodSync(control, 0o666);
      const runs = await Promise.all(
        Array.from({ length: 3 }, () =>
          Promise.all([
            ctlAs(NOBODY, NOBODY, ['status', '--control', control]),
            ctlAs(NOBODY, NOBODY, ['status', '--json', '--control', control]),
          ]),
        ),
      );
      for (const [human, json] of runs) {
        assert.equal(human.stderr, `blocklistctl: status: access denied: uid ${NOBODY} may not control blocklistd\n`);
        assert.deepEqual(parsed(json), {
          ok: false,
          command: 'status',
          error: { code: 'access_denied', message: `access denied: uid ${NOBODY} may not control blocklistd` },
        });
      }
    });

    test('--control-group GID: the socket 0660 of that group, whose members are served; others are not', async (t) => {
      const daemon = await daemonFor(t, ['--control-group', String(NOBODY)]);
      const control = daemon.control;
      const st = statSync(control);
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, NOBODY);
      // its gid is the group's
      let r = await ctlAs(OTHER, NOBODY, ['status', '--json', '--control', control]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(parsed(r).result.pid, daemon.child.pid);
      r = await ctlAs(NOBODY, NOBODY, ['block', '-t', '1h', '--control', control, '192.0.2.82']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(daemon.helperCalls().includes(`add blocklistd '' 192.0.2.82 32 '' ''`));
      // neither its gid nor a member: the file mode keeps it out
      r = await ctlAs(OTHER, OTHER, ['status', '--control', control]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^blocklistctl: status: permission denied: /);
    });

    test('--control-group NAME: a user the group lists as a member is served with it as a supplementary group', async (t) => {
      // a group of this system that lists an existing user, other than root
      let found: { group: string; gid: number; uid: number; userGid: number } | undefined;
      for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
        const [group, , gid, members = ''] = line.split(':');
        for (const user of members.split(',').filter((u) => u !== '')) {
          const entry = await run('getent', ['passwd', user]);
          const [, , uid, userGid] = entry.stdout.trim().split(':');
          if (entry.code === 0 && Number(uid) !== 0 && Number(userGid) !== Number(gid))
            found ??= { group, gid: Number(gid), uid: Number(uid), userGid: Number(userGid) };
        }
      }
      if (found === undefined) return t.skip('no group in /etc/group lists a non-root user whose primary group it is not');
      const daemon = await daemonFor(t, ['--control-group', found.group]);
      const control = daemon.control;
      assert.equal(statSync(control).gid, found.gid);
      const r = await ctlAs(found.uid, found.userGid, ['status', '--json', '--control', control], [found.gid]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(parsed(r).result.pid, daemon.child.pid);
    });

    test('--control-group GID: a process with the group among its supplementary groups is served', async (t) => {
      const daemon = await daemonFor(t, ['--control-group', String(NOBODY)]);
      const control = daemon.control;
      // the file mode lets it in (supplementary groups count there); what does the daemon say?
      const peek = await run('setpriv', [
        `--reuid=${OTHER}`,
        `--regid=${OTHER}`,
        `--groups=${NOBODY}`,
        process.execPath,
        '-e',
        PEEK,
        control,
      ]);
      assert.equal(peek.code, 0, peek.stderr);
      assert.doesNotMatch(peek.stdout, /access_denied/);
      const r = await ctlAs(OTHER, OTHER, ['status', '--json', '--control', control], [NOBODY]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });
  },
);
