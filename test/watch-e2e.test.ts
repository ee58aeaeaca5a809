// blocklistd-watch end to end, for real (issue 14): Debian's OpenSSH sshd
// in a network namespace, attacked from a second one with the real ssh
// client and sshpass; blocklistd with the sample configuration's `ssh`
// rule and the nftables back end in the server namespace; the watcher as
// nobody (groups systemd-journal and the daemon's --control-group).
//
// 1. sshd logging to a file (-E), the watcher's file source: the attacker
//    is blocked after two failed passwords (its next connection times out)
//    while another address still logs in.
// 2. sshd logging to syslog, received by a real systemd-journald started
//    in a private mount namespace (this machine runs no systemd): a line
//    forged with `logger -t sshd` by an unprivileged user blocks nothing;
//    the attacker is blocked; a successful login resets the count; a
//    watcher stopped and started again goes on from its cursor, neither
//    losing nor repeating an entry.
// Needs root, ip, nft, sshd, sshpass, unshare, nsenter, systemd-journald.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { WatchedProcess, escapeRegExp, isRoot, repoRoot, run, sharedTree, succeeds, tempDir, vethPair, type RunResult } from './support.js';

process.env.PATH = `/usr/sbin:/sbin:${process.env.PATH ?? '/usr/bin:/bin'}`;

const JOURNALD = '/lib/systemd/systemd-journald';
const SERVER = '10.99.0.1';
const ATTACKER = '10.99.0.2';
const USER = '10.99.0.3';
const ATTACKER2 = '10.99.0.4';
const TABLE = 'blocklistd_watch_e2e';
const NOBODY = 65534;

const missing = ['ip', 'nft', 'sshd', 'sshpass', 'ssh', 'ssh-keygen', 'unshare', 'nsenter', 'setpriv', 'logger'].filter(
  (p) => spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0,
);
if (!existsSync(JOURNALD)) missing.push(JOURNALD);
const skip = !isRoot
  ? 'needs root (network and mount namespaces, nftables, setpriv)'
  : missing.length > 0
    ? `missing programs (see .ci/run): ${missing.join(', ')}`
    : false;

/** The server and client namespaces joined by a veth pair. */
const network = (t: TestContext): Promise<{ srv: string; cli: string }> =>
  vethPair(
    t,
    'blw',
    [`${SERVER}/24`],
    [ATTACKER, USER, ATTACKER2].map((a) => `${a}/24`),
  );

/**
 * A private mount namespace with its own /run/systemd, /run/log and /dev
 * (the devices bound from the real one, /dev/log to journald's socket):
 * journald started in it is the system's journal for what runs in it,
 * and nothing of it reaches the host.  Returns the pid that holds it.
 */
async function mountNamespace(t: TestContext, dir: string): Promise<WatchedProcess> {
  const script = `
set -e
mount --make-rprivate /
mkdir -p /run/systemd /run/log ${dir}/olddev
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /run/log
mkdir -p /run/systemd/journal /run/log/journal
# as systemd-tmpfiles prepares it: the journal readable by the group systemd-journal
chgrp systemd-journal /run/log/journal
chmod 2755 /run/log/journal
mount --rbind /dev ${dir}/olddev
mount -t tmpfs -o mode=755 tmpfs /dev
for d in null zero full random urandom tty ptmx; do
  if [ -e ${dir}/olddev/$d ]; then touch /dev/$d; mount --bind ${dir}/olddev/$d /dev/$d; fi
done
mkdir /dev/pts /dev/shm
mount --rbind ${dir}/olddev/pts /dev/pts
mount --rbind ${dir}/olddev/shm /dev/shm
ln -s /run/systemd/journal/dev-log /dev/log
echo ready
exec sleep 100000
`;
  const holder = new WatchedProcess('mount namespace', spawn('unshare', ['-m', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
  t.after(() => holder.stop());
  await holder.waitFor(/^ready$/m);
  return holder;
}

test('blocklistd-watch end to end: a real sshd, its file and its journal, the nftables back end', { skip, timeout: 240_000 }, async (t) => {
  const { srv, cli } = await network(t);
  const dir = tempDir('blocklistd-watch-e2e-');
  chmodSync(dir, 0o755);
  const holder = await mountNamespace(t, dir);
  const ns = (args: string[], netns?: string): string[] => [
    '-m',
    '-t',
    String(holder.child.pid),
    ...(netns === undefined ? [] : ['ip', 'netns', 'exec', netns]),
    ...args,
  ];
  const start = (name: string, args: string[], netns?: string, env: NodeJS.ProcessEnv = process.env): WatchedProcess => {
    const p = new WatchedProcess(name, spawn('nsenter', ns(args, netns), { stdio: ['ignore', 'pipe', 'pipe'], env }));
    t.after(() => p.stop());
    return p;
  };
  const inNs = (args: string[], netns?: string): Promise<RunResult> => run('nsenter', ns(args, netns));
  /** The clients run outside the mount namespace: only the server side needs its journal. */
  const inClient = (args: string[]): Promise<RunResult> => run('ip', ['netns', 'exec', cli, ...args]);

  // the daemon: the sample configuration, the nftables back end in its own table
  const db = join(dir, 'blocklistd.db');
  const sock = join(dir, 'blocklistd.sock');
  const helperConf = join(dir, 'blocklistd-helper.conf');
  writeFileSync(helperConf, `backend=nftables\nnft_table=${TABLE}\n`);
  const env = {
    ...process.env,
    BLOCKLISTD_BACKEND: 'nftables',
    BLOCKLISTD_HELPER_CONF: helperConf,
    BLOCKLISTD_HELPER_LOCK: join(dir, 'helper.lock'),
  };
  const daemon = start(
    'blocklistd',
    [
      process.execPath,
      join(repoRoot, 'bin/blocklistd'),
      '-d',
      '-c',
      join(repoRoot, 'etc/blocklistd.conf'),
      '-D',
      db,
      '-s',
      sock,
      '--control-group',
      String(NOBODY),
    ],
    srv,
    env,
  );
  await daemon.waitFor(/control socket /);

  // sshd: a key for the user's logins, passwords refused for root (wrong ones anyway)
  const key = join(dir, 'id');
  await succeeds(run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]), 'ssh-keygen');
  writeFileSync(join(dir, 'authorized_keys'), `${(await run('cat', [`${key}.pub`])).stdout}`);
  const sshdConfig = join(dir, 'sshd_config');
  writeFileSync(
    sshdConfig,
    [
      `ListenAddress ${SERVER}`,
      'HostKey /etc/ssh/ssh_host_ed25519_key',
      'UsePAM no',
      'PasswordAuthentication yes',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      'StrictModes no',
      'LogLevel INFO',
      `PidFile ${dir}/sshd.pid`,
      '',
    ].join('\n'),
  );
  mkdirSync('/run/sshd', { recursive: true });
  const sshOptions = [
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'ConnectTimeout=3',
    '-o',
    'LogLevel=ERROR',
  ];
  /** A wrong password for root from `from`: "Permission denied". */
  const wrongPassword = async (from: string): Promise<void> => {
    const r = await inClient([
      'sshpass',
      '-p',
      'wrong',
      'ssh',
      ...sshOptions,
      '-o',
      'PreferredAuthentications=password',
      '-o',
      'PubkeyAuthentication=no',
      '-b',
      from,
      `root@${SERVER}`,
      'true',
    ]);
    assert.match(r.stderr, /Permission denied/, `wrong password from ${from}: ${r.stdout}${r.stderr}`);
  };
  /** A login with the key from `from`: what it printed, or the error. */
  const keyLogin = async (from: string): Promise<string> => {
    const r = await inClient(['ssh', ...sshOptions, '-o', 'BatchMode=yes', '-i', key, '-b', from, `root@${SERVER}`, 'echo', 'logged-in']);
    return (r.stdout + r.stderr).trim();
  };
  const counted = (address: string, count: number, from: number): Promise<RegExpExecArray> =>
    daemon.waitFor(new RegExp(`process: final db state for ${escapeRegExp(address)}: count=${count}/3 `), from);
  const blocks = async (): Promise<string> => (await inNs(['nft', 'list', 'table', 'inet', TABLE], srv)).stdout;

  // the watcher as nobody: the journal's group, the daemon's control group
  const state = join(dir, 'watch-state');
  mkdirSync(state);
  chownSync(state, NOBODY, NOBODY);
  const shared = sharedTree();
  const journalGroup = (await succeeds(run('getent', ['group', 'systemd-journal']), 'getent group systemd-journal')).stdout.split(':')[2];
  const watcher = (args: string[]): WatchedProcess =>
    start('blocklistd-watch', [
      'setpriv',
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      `--groups=${journalGroup},${NOBODY}`,
      process.execPath,
      join(shared, 'bin/blocklistd-watch'),
      '-d',
      '-s',
      sock,
      '--patterns',
      join(shared, 'etc/blocklistd-watch.d'),
      '--state',
      join(state, 'state.json'),
      ...args,
    ]);

  await t.test('file source: sshd -E, the attacker blocked after two failed passwords, the user still logs in', async () => {
    const log = join(dir, 'sshd.log');
    writeFileSync(log, '');
    chmodSync(log, 0o644);
    const sshd = start('sshd', ['/usr/sbin/sshd', '-D', '-f', sshdConfig, '-E', log], srv);
    await new Promise((r) => setTimeout(r, 500));
    const w = watcher(['--file', log, '--pattern', 'sshd']);
    await w.waitFor(/watching file /);
    assert.equal(await keyLogin(USER), 'logged-in');

    let from = daemon.mark;
    await wrongPassword(ATTACKER);
    await counted(ATTACKER, 2, from);
    assert.match(
      daemon.text.slice(from),
      new RegExp(
        `remote=${escapeRegExp(ATTACKER)}:0 msg="Failed password for root from ${escapeRegExp(ATTACKER)} ` +
          `port \\d+ ssh2\\r?" uid=${NOBODY} gid=${NOBODY} report source=sshd`,
      ),
    );
    from = daemon.mark;
    await wrongPassword(ATTACKER);
    await counted(ATTACKER, 4, from);
    await daemon.waitFor(new RegExp(`blocked ${escapeRegExp(ATTACKER)}/32:22 for 21600 seconds`), from);
    assert.match(await blocks(), new RegExp(escapeRegExp(ATTACKER)));
    const r = await inClient(['ssh', ...sshOptions, '-o', 'ConnectTimeout=2', '-b', ATTACKER, `root@${SERVER}`, 'true']);
    assert.match(r.stderr, /timed out/, `the attacker's next connection: ${r.stderr}`);
    assert.equal(await keyLogin(USER), 'logged-in', 'another address still logs in');
    await w.stop();
    await sshd.stop();
  });

  await t.test(
    'journal source: a forged logger line blocks nothing; the attacker is blocked; a login resets; a restart goes on from the cursor',
    async () => {
      const journald = start('systemd-journald', [JOURNALD]);
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(journald.child.exitCode === null, journald.text);
      const sshd = start('sshd', ['/usr/sbin/sshd', '-D', '-f', sshdConfig], srv);
      await new Promise((r) => setTimeout(r, 500));
      let w = watcher(['--journal', '--pattern', 'sshd']);
      await w.waitFor(/watching journal/);
      await new Promise((r) => setTimeout(r, 500));

      // nobody forges sshd lines: SYSLOG_IDENTIFIER=sshd, but _COMM=logger, not ssh.service nor /usr/sbin/sshd
      let from = daemon.mark;
      for (let i = 0; i < 3; i++)
        await succeeds(
          inNs([
            'setpriv',
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            '--clear-groups',
            'logger',
            '-p',
            'auth.info',
            '-t',
            'sshd',
            `Failed password for root from ${ATTACKER2} port 4711 ssh2`,
          ]),
          'logger',
        );
      const forged = await inNs(['journalctl', '--no-pager', '-o', 'json', 'SYSLOG_IDENTIFIER=sshd']);
      assert.equal(
        forged.stdout.split('\n').filter((l) => l.includes(`from ${ATTACKER2} port 4711`)).length,
        3,
        'the forged lines are in the journal',
      );
      assert.equal(await keyLogin(USER), 'logged-in');
      await w.waitFor(new RegExp(`sshd: ok ${escapeRegExp(USER)} user root`));
      assert.equal(daemon.count(new RegExp(`remote=${escapeRegExp(ATTACKER2)}:`), from), 0, 'the forged lines reported nothing');

      // the attacker: two failed passwords, blocked
      from = daemon.mark;
      await wrongPassword(ATTACKER2);
      await counted(ATTACKER2, 2, from);
      await wrongPassword(ATTACKER2);
      await counted(ATTACKER2, 4, from);
      await daemon.waitFor(new RegExp(`blocked ${escapeRegExp(ATTACKER2)}/32:22 for 21600 seconds`), from);
      const r = await inClient(['ssh', ...sshOptions, '-o', 'ConnectTimeout=2', '-b', ATTACKER2, `root@${SERVER}`, 'true']);
      assert.match(r.stderr, /timed out/, `the attacker's next connection: ${r.stderr}`);

      // the user: a failure, a login (the count reset), a failure: 2, not 4
      from = daemon.mark;
      await wrongPassword(USER);
      await counted(USER, 2, from);
      assert.equal(await keyLogin(USER), 'logged-in');
      await counted(USER, 0, from);
      from = daemon.mark;
      await wrongPassword(USER);
      await counted(USER, 2, from);
      from = daemon.mark;
      assert.equal(await keyLogin(USER), 'logged-in', 'not blocked');
      await counted(USER, 0, from);

      // the watcher stops; a failure meanwhile; started again it reads that one entry from its cursor, and nothing before
      assert.equal(await w.stop(), 0);
      from = daemon.mark;
      await wrongPassword(USER);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(daemon.count(/report source=sshd/, from), 0);
      w = watcher(['--journal', '--pattern', 'sshd']);
      await counted(USER, 2, from);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(daemon.count(/report source=sshd/, from), 1, `one report after the restart:\n${daemon.text.slice(from)}`);
      await w.stop();
      await sshd.stop();
      await journald.stop();
    },
  );
});
