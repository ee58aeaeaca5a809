// npm run package-deb (pkg/deb/package-deb): the .deb built from this tree
// installs with dpkg -i, its programs run from /usr/sbin and /usr/bin with
// their native modules and no build tools beside them, the daemon checks
// its configuration and serves, the manual pages are found by man; a
// changed conffile survives a reinstall and dpkg -r; dpkg -P leaves nothing
// behind.  Needs
// root and dpkg; it changes the system only between dpkg -i and dpkg -P
// (and the group blocklistd, removed again when the test made it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isRoot, repoRoot, run, tempDir, until } from './support.js';

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const LIB = '/usr/lib/blocklistd';
const PROGRAMS = [
  ['/usr/sbin/blocklistd', 'blocklistd'],
  ['/usr/sbin/blocklistd-helper', 'blocklistd-helper'],
  ['/usr/sbin/blocklistd-watch', 'blocklistd-watch'],
  ['/usr/bin/blocklistctl', 'blocklistctl'],
];
const CONFFILES = [
  '/etc/blocklistd.conf',
  '/etc/blocklistd-helper.conf',
  '/etc/blocklistd-watch.conf',
  '/etc/blocklistd-watch.d/sshd.conf',
];
/** What the package installs, all of it gone after dpkg -P. */
const INSTALLED = [
  LIB,
  ...PROGRAMS.map(([path]) => path),
  ...CONFFILES,
  '/etc/blocklistd-watch.d',
  '/lib/systemd/system/blocklistd.service',
  '/lib/systemd/system/blocklistd.socket',
  '/lib/systemd/system/blocklistd-control.socket',
  '/lib/systemd/system/blocklistd-watch.service',
  '/usr/lib/sysctl.d/blocklistd.conf',
  '/usr/share/man/man8/blocklistd.8.gz',
  '/usr/share/man/man5/blocklistd.conf.5.gz',
  '/usr/share/man/man3/blocklist.3.gz',
  '/usr/share/doc/blocklistd',
  '/var/lib/blocklistd',
];

const exists = (path: string): boolean => {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
};

/** Why the test cannot run here, or false. */
function reason(): string | false {
  if (!isRoot) return 'needs root (dpkg -i)';
  if (!existsSync('/usr/bin/dpkg-deb')) return 'no dpkg-deb: not a Debian system';
  // never replace a blocklistd the machine runs
  const present = ['/var/lib/dpkg/info/blocklistd.list', LIB, '/etc/blocklistd.conf'].find(exists);
  if (present !== undefined) return `blocklistd is installed here (${present}): the test would replace it`;
  return false;
}

test(
  'npm run package-deb: dpkg -i, the programs run (--check, --version, man -w, a block through the ' +
    'daemon), a reinstall and dpkg -r keep a changed conffile, dpkg -P removes everything',
  { skip: reason() },
  async (t) => {
    // the programs are run by /usr/bin/node, with native modules built for this node's major version
    const installedNode = await run('/usr/bin/node', ['-p', 'process.versions.node.split(".")[0]']).catch(() => undefined);
    const major = process.versions.node.split('.')[0];
    if (installedNode?.stdout.trim() !== major) {
      t.skip(`the package runs /usr/bin/node, which is not Node.js ${major} here`);
      return;
    }
    const hadGroup = (await run('getent', ['group', 'blocklistd'])).code === 0;
    t.after(async () => {
      await run('dpkg', ['--purge', 'blocklistd']);
      if (!hadGroup) await run('groupdel', ['blocklistd']);
    });

    const start = Date.now();
    const built = await run('sh', [join(repoRoot, 'pkg/deb/package-deb'), '--output', tempDir('blocklistd-deb-')]);
    assert.equal(built.code, 0, built.stderr);
    const deb = built.stdout.trim();
    t.diagnostic(`built ${deb} (${(lstatSync(deb).size / 2 ** 20).toFixed(1)} MiB) in ${((Date.now() - start) / 1000).toFixed(1)} s`);
    assert.match(deb, new RegExp(`/blocklistd_${version.replace(/\./g, '\\.')}_\\w+\\.deb$`));
    const depends = await run('dpkg-deb', ['-f', deb, 'Depends']);
    assert.match(depends.stdout, new RegExp(`^nodejs \\(>= ${major}~\\), nodejs \\(<< ${Number(major) + 1}~\\), passwd`));

    // a nodejs not from a package (the right version at /usr/bin/node all the same) does not satisfy dpkg
    const fromPackage = await run('dpkg-query', ['-W', '-f', '${Version}', 'nodejs']);
    const satisfied =
      fromPackage.code === 0 && (await run('dpkg', ['--compare-versions', fromPackage.stdout, 'ge', `${major}~`])).code === 0;
    // a host whose dpkg leaves out manual pages (path-exclude, as Docker images do) gets these ones all the same
    const install = await run('dpkg', [...(satisfied ? [] : ['--force-depends']), '--path-include=/usr/share/man/*', '-i', deb]);
    assert.equal(install.code, 0, `${install.stdout}${install.stderr}`);

    for (const [path, program] of PROGRAMS) assert.equal(readlinkSync(path), `${LIB}/bin/${program}`, path);
    for (const program of ['blocklistctl', 'blocklistd-watch'])
      assert.equal(readFileSync(`${LIB}/bin/${program}`, 'utf8').split('\n')[0], '#!/usr/bin/node', program);
    assert.equal(readFileSync(`${LIB}/bin/blocklistd`, 'utf8').split('\n')[0], '#!/usr/bin/node --max-semi-space-size=8');
    // the runtime tree: the native modules, no build tools, no tests
    for (const file of [
      'build/Release/blsock.node',
      'node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      'node_modules/unix-dgram/build/Release/unix_dgram.node',
    ]) {
      assert.ok(existsSync(join(LIB, file)), file);
    }
    for (const absent of [
      'node_modules/node-gyp',
      'node_modules/typescript',
      'node_modules/@types',
      'node_modules/fast-check',
      'node_modules/better-sqlite3/deps',
      'dist/test',
    ]) {
      assert.ok(!existsSync(join(LIB, absent)), `${absent} installed`);
    }
    const conffiles = (await run('dpkg-query', ['-W', '-f', '${Conffiles}', 'blocklistd'])).stdout;
    for (const f of CONFFILES) assert.match(conffiles, new RegExp(`^ ${f} [0-9a-f]{32}$`, 'm'), `${f} is not a conffile`);
    const unit = readFileSync('/lib/systemd/system/blocklistd.service', 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/sbin\/blocklistd --foreground /m);
    assert.match(readFileSync('/lib/systemd/system/blocklistd-watch.service', 'utf8'), /^ExecStart=\/usr\/sbin\/blocklistd-watch /m);
    assert.ok((await run('getent', ['group', 'blocklistd'])).code === 0, 'the group of the control socket');
    assert.equal(lstatSync('/var/lib/blocklistd').mode & 0o777, 0o700);
    assert.match(readFileSync('/usr/share/man/man8/blocklistd.8.gz').subarray(0, 2).toString('hex'), /^1f8b$/);
    assert.ok(existsSync('/usr/share/doc/blocklistd/README.md'));
    if (existsSync(join(repoRoot, 'etc/grafana/blocklistd.json')))
      assert.ok(existsSync('/usr/share/doc/blocklistd/grafana-dashboard.json'), 'the Grafana dashboard');

    // the daemon checks the shipped configuration (--check where the daemon has it)
    const help = await run('/usr/sbin/blocklistd', ['--help']);
    assert.equal(help.code, 0, help.stderr);
    if (/--check\b/.test(help.stdout)) {
      const check = await run('/usr/sbin/blocklistd', ['--check']);
      t.diagnostic(`blocklistd --check: ${check.stdout}${check.stderr}`);
      assert.equal(check.code, 0, `${check.stdout}${check.stderr}`);
    }
    const capabilities = await run('/usr/sbin/blocklistd-helper', ['capabilities'], { env: { BLOCKLISTD_BACKEND: 'log' } });
    assert.equal(capabilities.code, 0, capabilities.stderr);
    assert.match(capabilities.stdout, /^batch\b/);
    const ctlVersion = await run('/usr/bin/blocklistctl', ['--version']);
    assert.equal(ctlVersion.code, 0, ctlVersion.stderr);
    assert.match(ctlVersion.stdout, new RegExp(`^${version.replace(/\./g, '\\.')}$`, 'm'));
    if (existsSync('/usr/bin/man')) {
      const man = await run('man', ['-w', 'blocklistd']);
      assert.equal(man.stdout.trim(), '/usr/share/man/man8/blocklistd.8.gz', man.stderr);
    } else t.diagnostic('no man here (man-db): man -w not tried');

    // the installed daemon serves: a failure reported through blocklistctl, blocked by the installed helper (log back end)
    const dir = tempDir('blocklistd-deb-run-');
    const daemon = spawn('/usr/sbin/blocklistd', ['-d', '-c', '/etc/blocklistd.conf', '-D', join(dir, 'db'), '-s', join(dir, 'sock')], {
      env: { ...process.env, BLOCKLISTD_BACKEND: 'log' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    try {
      await until(() => /^control socket /m.test(log), 10_000);
      const report = await run('/usr/bin/blocklistctl', ['report', '-t', 'abuse', '-p', 'ssh', '-s', join(dir, 'sock'), '192.0.2.9']);
      assert.equal(report.code, 0, report.stderr);
      await until(() => log.includes('add returns OK'), 10_000);
      assert.match(log, /^run \/usr\/lib\/blocklistd\/bin\/blocklistd-helper \[control add blocklistd tcp 192\.0\.2\.9 32 22 \]$/m);
      const dump = await run('/usr/bin/blocklistctl', ['dump', '-b', '-n', '-D', join(dir, 'db')]);
      assert.match(dump.stdout, /192\.0\.2\.9\/32:22/);
    } finally {
      daemon.kill('SIGTERM');
      await exited;
    }

    // installing again (an upgrade) keeps the configuration the administrator changed, without asking; so does
    // dpkg -r; dpkg -P removes it and everything else
    writeFileSync('/etc/blocklistd.conf', '22 stream * * * 3 1h\n');
    const again = await run('dpkg', [...(satisfied ? [] : ['--force-depends']), '-i', deb]);
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    assert.equal(readFileSync('/etc/blocklistd.conf', 'utf8'), '22 stream * * * 3 1h\n');
    assert.doesNotMatch(again.stdout, /not started/, 'the first-install note is not repeated');
    const remove = await run('dpkg', ['--remove', 'blocklistd']);
    assert.equal(remove.code, 0, remove.stderr);
    assert.equal(readFileSync('/etc/blocklistd.conf', 'utf8'), '22 stream * * * 3 1h\n');
    assert.ok(!exists(LIB));
    const purge = await run('dpkg', ['--purge', 'blocklistd']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.deepEqual(INSTALLED.filter(exists), []);
    assert.notEqual((await run('dpkg-query', ['-W', '-f', '${Status}', 'blocklistd'])).stdout, 'install ok installed');
    t.diagnostic(`the whole test: ${((Date.now() - start) / 1000).toFixed(1)} s`);
  },
);
