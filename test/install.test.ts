// npm run install-system (bin/install-system): the package installed from
// this built tree into a temporary prefix runs from there, through the
// links in sbin and libexec, with its own native addon and SQLite; the
// configuration is never overwritten; the systemd unit, the rc.d script and
// the manual pages get the prefix's paths.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { AUTH_FAIL } from '../src/index.js';
import { Reporter, freePort, repoRoot, run, tempDir, until, type RunResult } from './support.js';

const script = join(repoRoot, 'bin/install-system');

const install = (args: string[], env: Record<string, string> = {}): Promise<RunResult> => run('sh', [script, ...args], { env });

test('installed into a prefix: the daemon, blocklistctl and the helper run from there; the configuration is kept on upgrade', async (t) => {
  const root = tempDir('blocklistd-install-');
  const prefix = join(root, 'usr');
  const etc = join(root, 'etc');
  const first = await install(['--prefix', prefix, '--sysconfdir', etc, '--no-service']);
  assert.equal(first.code, 0, first.stderr);
  const lib = join(prefix, 'lib/blocklistd');
  for (const [link, target] of [
    ['sbin/blocklistd', 'bin/blocklistd'],
    ['sbin/blocklistctl', 'bin/blocklistctl'],
    ['sbin/blocklistd-watch', 'bin/blocklistd-watch'],
    ['libexec/blocklistd-helper', 'bin/blocklistd-helper'],
  ]) {
    assert.ok(lstatSync(join(prefix, link)).isSymbolicLink(), link);
    assert.equal(readlinkSync(join(prefix, link)), join(lib, target));
  }
  // the programs name the node that installed them, not env: they run with the PATH of a boot script, and without any
  for (const program of ['blocklistctl', 'blocklistd-watch']) {
    assert.equal(readFileSync(join(lib, 'bin', program), 'utf8').split('\n')[0], `#!${process.execPath}`, program);
  }
  // the daemon's heap size stays, the one argument of the #! line (doc/daemon.md §12)
  assert.equal(readFileSync(join(lib, 'bin/blocklistd'), 'utf8').split('\n')[0], `#!${process.execPath} --max-semi-space-size=8`);
  for (const program of ['sbin/blocklistctl', 'sbin/blocklistd']) {
    const atBoot = await run(join(prefix, program), ['--version'], { onlyEnv: { PATH: '/nonexistent' } });
    assert.equal(atBoot.code, 0, `${program}: ${atBoot.stderr}`);
  }
  // production packages only, no tests, no installer
  assert.ok(existsSync(join(lib, 'node_modules/better-sqlite3')));
  assert.ok(!existsSync(join(lib, 'node_modules/typescript')), 'typescript installed');
  assert.ok(!existsSync(join(lib, 'dist/test')));
  assert.ok(!existsSync(join(lib, 'bin/install-system')));
  // the manual pages, their paths those of the prefix
  const pages = readdirSync(join(repoRoot, 'man'));
  assert.deepEqual(pages.map((p) => p.replace(/^.*\./, '')).sort(), ['3', '5', '8', '8', '8', '8']);
  for (const name of pages) {
    const installed = join(prefix, `share/man/man${name.slice(name.lastIndexOf('.') + 1)}`, name);
    assert.equal(lstatSync(installed).mode & 0o777, 0o644, name);
    assert.equal(
      readFileSync(installed, 'utf8'),
      readFileSync(join(repoRoot, 'man', name), 'utf8')
        .split('/usr/local/')
        .join(`${prefix}/`),
      name,
    );
  }
  assert.ok(readFileSync(join(prefix, 'share/man/man8/blocklistd.8'), 'utf8').includes(`\n.It Pa ${prefix}/libexec/blocklistd-helper\n`));

  const conf = join(etc, 'blocklistd.conf');
  assert.equal(readFileSync(conf, 'utf8'), readFileSync(join(repoRoot, 'etc/blocklistd.conf'), 'utf8'));
  // the watcher's configuration and patterns, and the watcher running from the prefix with them
  assert.equal(readFileSync(join(etc, 'blocklistd-watch.conf'), 'utf8'), readFileSync(join(repoRoot, 'etc/blocklistd-watch.conf'), 'utf8'));
  assert.deepEqual(readdirSync(join(etc, 'blocklistd-watch.d')).sort(), readdirSync(join(repoRoot, 'etc/blocklistd-watch.d')).sort());
  const line = join(root, 'auth.log');
  writeFileSync(line, 'Dec  4 14:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 2 ssh2\n');
  const watchTest = await run(join(prefix, 'sbin/blocklistd-watch'), [
    'test',
    '--patterns',
    join(etc, 'blocklistd-watch.d'),
    '--pattern',
    'sshd',
    line,
  ]);
  assert.equal(watchTest.code, 0, watchTest.stderr);
  assert.match(watchTest.stdout, /^1: fail 192\.0\.2\.1 user=root\t/);
  const check = await run(join(prefix, 'sbin/blocklistctl'), ['config', '-c', conf]);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /^22\tstream\t\*\t\*\tblocklistd\t3\t6h/m);

  // the daemon from the prefix, its default helper the installed one (log back end)
  const port = await freePort();
  const dir = tempDir('blocklistd-installed-');
  writeFileSync(join(etc, 'blocklistd-helper.conf'), `backend=log\nlog_file=${join(dir, 'helper.log')}\n`);
  writeFileSync(conf, `${port} stream * * * 1 1h\n`);
  const daemon = spawn(join(prefix, 'sbin/blocklistd'), ['-d', '-c', conf, '-D', join(dir, 'db'), '-s', join(dir, 'sock')], {
    env: { ...process.env, BLOCKLISTD_HELPER_CONF: join(etc, 'blocklistd-helper.conf'), BLOCKLISTD_BACKEND: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => daemon.kill('SIGKILL'));
  let stderr = '';
  daemon.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  await until(() => stderr.includes('listening on'), 10_000);
  const reporter = await Reporter.connect(join(dir, 'sock'), port);
  t.after(() => reporter.close());
  reporter.report(AUTH_FAIL, 'installed');
  await until(() => existsSync(join(dir, 'helper.log')) && readFileSync(join(dir, 'helper.log'), 'utf8').includes('add'), 10_000);
  assert.equal(readFileSync(join(dir, 'helper.log'), 'utf8'), `add blocklistd tcp 127.0.0.1 32 ${port} \n`);
  const dump = await run(join(prefix, 'sbin/blocklistctl'), ['dump', '-b', '-n', '-D', join(dir, 'db')]);
  assert.match(dump.stdout, new RegExp(`127\\.0\\.0\\.1/32:${port}\\s+blocklistd:127\\.0\\.0\\.1/32:${port}\\s+\\d+/1`));

  // an upgrade replaces the package, not the configuration
  writeFileSync(join(lib, 'stale'), '');
  const again = await install(['--prefix', prefix, '--sysconfdir', etc, '--no-service']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /blocklistd\.conf kept/);
  assert.equal(readFileSync(conf, 'utf8'), `${port} stream * * * 1 1h\n`);
  assert.ok(!existsSync(join(lib, 'stale')));
});

test(
  'staged with --destdir: the systemd unit, the manual pages and, on a BSD, the rc.d script name the ' + 'prefix and the configuration',
  async () => {
    const stage = tempDir('blocklistd-stage-');
    const linux = await install(['--destdir', stage, '--prefix', '/opt/bl', '--sysconfdir', '/etc/bl']);
    assert.equal(linux.code, 0, linux.stderr);
    const unit = readFileSync(join(stage, 'etc/systemd/system/blocklistd.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/opt\/bl\/sbin\/blocklistd --foreground -c \/etc\/bl\/blocklistd\.conf -r /m);
    assert.match(unit, /^ExecStartPre=\/opt\/bl\/sbin\/blocklistd --check --foreground -c \/etc\/bl\/blocklistd\.conf -r /m);
    assert.match(unit, /^Environment=BLOCKLISTD_HELPER_CONF=\/etc\/bl\/blocklistd-helper\.conf$/m);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    const watchUnit = readFileSync(join(stage, 'etc/systemd/system/blocklistd-watch.service'), 'utf8');
    assert.match(
      watchUnit,
      /^ExecStart=\/opt\/bl\/sbin\/blocklistd-watch -c \/etc\/bl\/blocklistd-watch\.conf --patterns \/etc\/bl\/blocklistd-watch\.d /m,
    );
    assert.ok(existsSync(join(stage, 'etc/bl/blocklistd-watch.d/sshd.conf')));
    assert.ok(existsSync(join(stage, 'etc/bl/blocklistd.conf')));
    assert.equal(readlinkSync(join(stage, 'opt/bl/sbin/blocklistd')), '/opt/bl/lib/blocklistd/bin/blocklistd');
    for (const page of [
      'man3/blocklist.3',
      'man5/blocklistd.conf.5',
      'man8/blocklistd.8',
      'man8/blocklistctl.8',
      'man8/blocklistd-helper.8',
    ]) {
      const text = readFileSync(join(stage, 'opt/bl/share/man', page), 'utf8');
      assert.ok(!text.includes('/usr/local/'), page);
    }
    assert.match(
      readFileSync(join(stage, 'opt/bl/share/man/man8/blocklistd-helper.8'), 'utf8'),
      /^\.It Pa \/opt\/bl\/libexec\/blocklistd-helper$/m,
    );

    // FreeBSD, as far as the installer can tell
    const bin = tempDir('blocklistd-uname-');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'uname'), '#!/bin/sh\necho FreeBSD\n');
    chmodSync(join(bin, 'uname'), 0o755);
    const bsd = await install(['--destdir', stage, '--prefix', '/usr/local', '--sysconfdir', '/usr/local/etc'], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(bsd.code, 0, bsd.stderr);
    const rc = join(stage, 'usr/local/etc/rc.d/blocklistd');
    assert.equal(lstatSync(rc).mode & 0o777, 0o555);
    const text = readFileSync(rc, 'utf8');
    assert.match(text, /^command="\/usr\/local\/sbin\/\$\{name\}"$/m);
    assert.match(text, /^required_files="\/usr\/local\/etc\/\$\{name\}\.conf"$/m);
    assert.match(text, /^command_args="-c \/usr\/local\/etc\/\$\{name\}\.conf"$/m);
    // the start-up checks before the start, with the same flags and arguments
    assert.match(text, /^\tif ! _check=\$\(\$\{command\} --check \$\{rc_flags\} \$\{command_args\}\); then$/m);
    assert.match(text, /^export BLOCKLISTD_HELPER_CONF="\/usr\/local\/etc\/blocklistd-helper\.conf"$/m);
    assert.equal((await run('sh', ['-n', rc])).code, 0);
    const watchRc = readFileSync(join(stage, 'usr/local/etc/rc.d/blocklistd-watch'), 'utf8');
    assert.match(watchRc, /^procname="\/usr\/local\/sbin\/blocklistd-watch"$/m);
    // rc.subr matches the watcher's process as "<node> <script>": the node the installed scripts name
    assert.match(watchRc, new RegExp(`^command_interpreter="${process.execPath}"$`, 'm'));
    assert.equal(
      readFileSync(join(stage, 'usr/local/lib/blocklistd/bin/blocklistd-watch'), 'utf8').split('\n')[0],
      `#!${process.execPath}`,
    );
    assert.equal((await run('sh', ['-n', join(stage, 'usr/local/etc/rc.d/blocklistd-watch')])).code, 0);

    // --node names the target's node (a package built elsewhere), which need not exist here
    const other = tempDir('blocklistd-stage-node-');
    const named = await install(['--destdir', other, '--prefix', '/usr/local', '--node', '/usr/local/bin/node'], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(named.code, 0, named.stderr);
    assert.equal(
      readFileSync(join(other, 'usr/local/lib/blocklistd/bin/blocklistd'), 'utf8').split('\n')[0],
      '#!/usr/local/bin/node --max-semi-space-size=8',
    );
    assert.match(
      readFileSync(join(other, 'usr/local/etc/rc.d/blocklistd-watch'), 'utf8'),
      /^command_interpreter="\/usr\/local\/bin\/node"$/m,
    );
    const relative = await install(['--destdir', other, '--node', 'node']);
    assert.equal(relative.code, 2);
    assert.match(relative.stderr, /--node must be absolute/);
  },
);
