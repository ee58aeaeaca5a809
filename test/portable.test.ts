// The suite runs wherever the checkout lives.  A clone below a directory
// only its owner may enter (under /root, or in a mktemp -d) cannot be
// reached by another user, so code the tests run as another user comes
// from sharedTree(), a copy any user can read.  This test puts a checkout
// below a 0700 directory and runs such a case from there.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isRoot, repoRoot, run, tempDir } from './support.js';

const NOBODY = 65534;
const { version: VERSION } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

test(
  'from a checkout below a 0700 directory, code run as another user comes from sharedTree() and works',
  { skip: isRoot ? false : 'needs root to run as another user (setpriv)' },
  async () => {
    const parent = tempDir('blocklistd-private-');
    assert.equal(statSync(parent).mode & 0o777, 0o700);
    const checkout = join(parent, 'checkout');
    const copy = await run('sh', [
      '-c',
      'mkdir "$1" && cd "$2" && cp -R package.json bin dist build node_modules "$1"',
      'sh',
      checkout,
      repoRoot,
    ]);
    assert.equal(copy.code, 0, copy.stderr);

    // the test support of that checkout, as its own tests would use it
    const script = `
    import { join } from 'node:path';
    import { repoRoot, run, sharedTree } from ${JSON.stringify(join(checkout, 'dist/test/support.js'))};
    const asNobody = ['--reuid=${NOBODY}', '--regid=${NOBODY}', '--clear-groups', process.execPath];
    const direct = await run('setpriv', [...asNobody, join(repoRoot, 'bin/blocklistctl'), '--version']);
    const shared = await run('setpriv', [...asNobody, join(sharedTree(), 'bin/blocklistctl'), '--version']);
    const client = await run(process.execPath, ['--input-type=module', '-e',
      'import { Blocklist } from ' + JSON.stringify(join(sharedTree(), 'dist/src/index.js')) + '; console.log(typeof Blocklist)'],
      { uid: ${NOBODY}, gid: ${NOBODY} });
    console.log(JSON.stringify({ repoRoot, direct, shared, client }));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    const {
      repoRoot: seen,
      direct,
      shared,
      client,
    } = JSON.parse(r.stdout) as Record<string, { code: number; stdout: string; stderr: string }> & { repoRoot: string };
    assert.equal(seen, checkout);
    // the case the suite used to fail on: the checkout itself is out of reach
    assert.notEqual(direct.code, 0);
    assert.match(direct.stderr, /EACCES|permission denied|Cannot find module/i);
    assert.deepEqual([shared.code, shared.stdout], [0, `${VERSION}\n`], shared.stderr);
    assert.deepEqual([client.code, client.stdout], [0, 'function\n'], client.stderr);
  },
);
