// The conventions every program follows (issue 15 §6): --version from
// package.json, exit 2 for a usage error, 1 for a failure, 0 for success;
// blocklistctl help [command]; blocklistd --help with its real defaults.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_DB_PATH } from '../src/state/store.js';
import { repoRoot, run } from './support.js';

const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
const bin = (name: string, ...args: string[]) => run(process.execPath, [join(repoRoot, 'bin', name), ...args]);

describe('command-line conventions', () => {
  test('--version and -V: the package version, exit 0, for blocklistd, blocklistctl and blocklistd-watch', async () => {
    for (const name of ['blocklistd', 'blocklistctl', 'blocklistd-watch']) {
      for (const flag of ['--version', '-V']) {
        const r = await bin(name, flag);
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, `${version}\n`, ''], `${name} ${flag}`);
      }
    }
  });

  test('a usage error exits 2, with the complaint and the usage on stderr, for every program', async () => {
    const cases: [string, string[], RegExp][] = [
      ['blocklistd', ['--no-such-option'], /^blocklistd: unrecognized option '--no-such-option'\nUsage: blocklistd /],
      ['blocklistd', ['-t', 'x'], /^blocklistd: Bad timeout 'x'/],
      ['blocklistctl', ['no-such-command'], /^blocklistctl: Missing\/unknown command\nUsage: blocklistctl /],
      ['blocklistctl', ['status', '--no-such-option'], /^status: unrecognized option '--no-such-option'\nUsage: /],
      ['blocklistctl', ['help', 'no-such-command'], /^help: unknown command 'no-such-command'\nUsage: /],
      ['blocklistd-watch', ['--no-such-option'], /^blocklistd-watch: unknown option '--no-such-option'\nusage: blocklistd-watch /],
      ['blocklistd-watch', ['test', 'file'], /^blocklistd-watch: required option '--pattern <name>' not specified\nusage: /],
    ];
    for (const [name, args, stderr] of cases) {
      const r = await bin(name, ...args);
      assert.equal(r.code, 2, `${name} ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, stderr);
      assert.equal(r.stdout, '');
    }
  });

  test('blocklistctl help: the overview; help <command>: its options, as --help prints them; exit 0', async () => {
    const overview = await bin('blocklistctl', 'help');
    assert.equal(overview.code, 0);
    assert.equal(overview.stdout, (await bin('blocklistctl', '--help')).stdout);
    assert.match(overview.stdout, /^Commands:\n {2}dump /m);
    assert.match(overview.stdout, /blocklistctl help <command>/);
    for (const command of ['dump', 'block', 'unblock', 'status']) {
      const r = await bin('blocklistctl', 'help', command);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, (await bin('blocklistctl', command, '--help')).stdout, command);
      assert.match(r.stdout, new RegExp(`^Usage: blocklistctl ${command} `));
    }
    assert.match((await bin('blocklistctl', 'help', 'dump')).stdout, new RegExp(`else read ${DEFAULT_DB_PATH.replace(/\//g, '\\/')}\\)`));
  });

  test('blocklistd --help: every default as the daemon uses it, unquoted', async () => {
    const r = await bin('blocklistd', '--help');
    assert.equal(r.code, 0);
    const help = r.stdout.replace(/\n\s+/g, ' ');
    for (const shown of [
      `state database (default: ${DEFAULT_DB_PATH})`,
      'configuration file or directory (default: /etc/blocklistd.conf)',
      '(default: /var/run/blocklistd.sock)',
      '(default: 15, 5 with -d)',
      'kill a helper call after this long (default: 30)',
      'socket (Linux, as root) (default: 1024)',
      '(0: no limit) (default: 1000)',
      'at once (default: 5000)',
      '(default: 1000000)',
      'default rule name (default: blocklistd)',
      `(default: ${join(repoRoot, 'bin/blocklistd-helper')})`,
    ]) {
      assert.ok(help.includes(shown), `${shown} in\n${r.stdout}`);
    }
    assert.doesNotMatch(r.stdout, /default: "|default: \[\]/);
  });
});
