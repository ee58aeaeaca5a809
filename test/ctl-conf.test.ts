// blocklistctl config and blocklistctl test, run as a sysadmin runs them.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot, run, tempDir } from './support.js';

const ctl = (...args: string[]) => run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), ...args]);

describe('blocklistctl config and test', () => {
  const dir = tempDir();
  const good = join(dir, 'good.conf');
  writeFileSync(
    good,
    [
      '[local]',
      'ssh\tstream\t*\t*\t*\t3\t6h',
      '192.0.2.1:ssh\tstream\t*\t*\t-int/24\t10\t1h30m',
      'domain\tdgram\tudp\t*\t*\t3\t12h',
      '[remote]',
      '10.0.0.0/8:ssh\t*\t*\t*\t=\t*\t*',
      '',
    ].join('\n'),
  );
  const bad = join(dir, 'bad.conf');
  writeFileSync(bad, 'ssh stream * * * 3 6h\nftp stream * * * 3 6x\n');

  test('config prints the rules sorted as the daemon walks them, with their lines, and warnings; exit 0', async () => {
    const r = await ctl('config', '-c', good);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        '[local]',
        `192.0.2.1:22\tstream\t*\t*\tblocklistd-int/24\t10\t1h,30m\t# ${good}:3`,
        `53\tdgram\tudp\t*\tblocklistd\t3\t12h\t# ${good}:4`,
        `22\tstream\t*\t*\tblocklistd\t3\t6h\t# ${good}:2`,
        '[remote]',
        `10.0.0.0/8:22\t*\t*\t*\t=\t*\t*\t# ${good}:6`,
        '',
      ].join('\n'),
    );
    assert.equal(r.stderr, `${good}:3: warning: duration 1h30m is 5400 seconds; upstream blocklistd reads it as 3600 seconds\n`);
  });

  test('config exits 1 when a line is rejected, and says where', async () => {
    const r = await ctl('config', '-c', bad);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `${bad}:2: error: Bad number [6x]\n`);
    assert.match(r.stdout, /^\[local\]\n22\tstream/);
  });

  test('config --json', async () => {
    const r = await ctl('config', '-c', bad, '--json');
    assert.equal(r.code, 1);
    const {
      ok,
      command,
      result: doc,
      error,
    } = JSON.parse(r.stdout) as {
      ok: boolean;
      command: string;
      result: { files: string[]; local: { line: number; text: string; port: number; nfail: number }[]; diagnostics: unknown[] };
      error: unknown;
    };
    assert.deepEqual([ok, command, error], [false, 'config', { code: 'config_error', message: '1 error in the configuration' }]);
    assert.deepEqual(doc.files, [bad]);
    assert.deepEqual(
      doc.local.map((x) => [x.line, x.text, x.port, x.nfail]),
      [[1, '22\tstream\t*\t*\tblocklistd\t3\t6h', 22, 3]],
    );
    assert.deepEqual(doc.diagnostics, [{ file: bad, line: 2, severity: 'error', message: 'Bad number [6x]' }]);
  });

  test('config with a missing file', async () => {
    const r = await ctl('config', '-c', join(dir, 'none.conf'));
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `${join(dir, 'none.conf')}: error: Cannot open '${join(dir, 'none.conf')}' (No such file or directory)\n`);
  });

  test('test shows the local and remote rule and the effective values', async () => {
    let r = await ctl('test', '-c', good, '-l', '192.0.2.1', '198.51.100.77', 'ssh');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        `local rule   ${good}:3  192.0.2.1:22\tstream\t*\t*\tblocklistd-int/24\t10\t1h,30m`,
        'remote rule  none',
        'name         blocklistd-int',
        'address      198.51.100.0/24 port 22/tcp',
        'nfail        10: blocked at the 5th AUTH_FAIL (2 points each) or the 10th BAD_USER (1 point)',
        'duration     1h,30m (5400 s)',
        'owner        *',
        '',
      ].join('\n'),
    );
    r = await ctl('test', '-c', good, '10.1.2.3', '22');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /remote rule {2}.*10\.0\.0\.0\/8:22/);
    assert.match(r.stdout, /nfail {8}\*: never blocked\nduration {5}forever\n/);
  });

  test('test: UDP, JSON, and no rule', async () => {
    let r = await ctl('test', '-c', good, '-t', 'dgram', '--json', '203.0.113.9', 'domain');
    assert.equal(r.code, 0, r.stderr);
    const {
      ok,
      command,
      result: doc,
    } = JSON.parse(r.stdout) as {
      ok: boolean;
      command: string;
      result: { matched: boolean; effective: Record<string, unknown>; remote: unknown };
    };
    assert.deepEqual([ok, command], [true, 'test']);
    assert.equal(doc.matched, true);
    assert.equal(doc.remote, null);
    assert.deepEqual(
      {
        address: doc.effective.address,
        lmask: doc.effective.lmask,
        port: doc.effective.port,
        proto: doc.effective.proto,
        nfail: doc.effective.nfail,
        duration: doc.effective.duration,
      },
      { address: '203.0.113.9', lmask: 32, port: 53, proto: 17, nfail: 3, duration: 43200 },
    );
    r = await ctl('test', '-c', good, '203.0.113.9', '8080');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'no rule matched\n');
    r = await ctl('test', '-c', good, '--json', '203.0.113.9', '8080');
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.stdout), {
      ok: false,
      command: 'test',
      result: { matched: false },
      error: { code: 'no_match', message: 'no rule matched' },
    });
    r = await ctl('test', '-c', good, '--json', 'not-an-address', '22');
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.stdout), {
      ok: false,
      command: 'test',
      error: { code: 'bad_argument', message: "bad address 'not-an-address'" },
    });
    r = await ctl('test', '-c', good, 'not-an-address', '22');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "blocklistctl: bad address 'not-an-address'\n");
  });
});
