// The README's commands work as written on a fresh clone (issue 15 §7): every
// shell command of its code blocks names a program of the clone, an npm
// script that exists and paths inside the repository; the cheap ones run
// (blocklistctl config, test and --help, the demo's and the benchmark's
// --help); the examples that talk to the daemon name its socket; a run of
// some benchmarks leaves the committed full results alone.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, run } from './support.js';

const README = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const scripts = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
/** The clone's programs on PATH first, as the README's set-up says (`export PATH=$PWD/bin:$PATH`). */
const env = { PATH: `${join(repoRoot, 'bin')}:${process.env.PATH ?? ''}` };

interface Command {
  line: number;
  text: string;
  words: string[];
  /** A synopsis (`blocklistd [-v] ...`), not a command to type as it is. */
  synopsis: boolean;
}

/** The shell commands of the README's indented code blocks, comments cut, continuation lines of a synopsis joined. */
function commands(): Command[] {
  const out: Command[] = [];
  let fenced = false;
  let afterBlank = true;
  let inBlock = false;
  for (const [i, raw] of README.split('\n').entries()) {
    if (raw.startsWith('```')) fenced = !fenced;
    if (fenced || raw.startsWith('```')) continue;
    if (raw.trim() === '') {
      afterBlank = true;
      continue;
    }
    // an indented code block starts after a blank line (list items are indented by two)
    inBlock = raw.startsWith('    ') && (inBlock || afterBlank);
    afterBlank = false;
    if (!inBlock) continue;
    const text = raw.slice(4).replace(/\s+# .*$/, '');
    if (/^\s/.test(text) && out.length > 0) {
      // a synopsis continued on the next line
      const last = out[out.length - 1];
      last.text += ` ${text.trim()}`;
      last.words.push(...text.trim().split(/\s+/));
      continue;
    }
    out.push({ line: i + 1, text, words: text.trim().split(/\s+/), synopsis: text.includes(' [') });
  }
  return out;
}

/** The clone's programs, in bin/. */
const PROGRAMS = new Set(['blocklistd', 'blocklistctl', 'blocklistd-watch', 'blocklistd-helper']);
const CONTROL = new Set(['block', 'unblock', 'flush', 'reload', 'status', 'report']);
/** An address or a network (198.51.100.0/24), not a path. */
const ADDRESS = /^[\d.:a-f]+(\/\d+)?$/i;

test('the README has the commands of the walk-through', () => {
  const texts = commands().map((c) => c.text);
  for (const expected of [
    'npm ci',
    'npm test',
    'npm run demo',
    'npm start',
    'export PATH=$PWD/bin:$PATH',
    'blocklistctl status -s var/blocklistd.sock',
  ]) {
    assert.ok(texts.includes(expected), `README lacks \`${expected}\``);
  }
});

test('every command runs a program of the clone or of the system, an npm script that exists, and no file outside the repository', () => {
  const problems: string[] = [];
  for (const c of commands()) {
    const where = `README.md:${c.line}: ${c.text}`;
    const [program, ...args] = c.words;
    // a program named by its path is one of the clone's
    if (program.includes('/') && (program.startsWith('/') || !existsSync(join(repoRoot, program))))
      problems.push(`${where}: ${program} is not in the repository`);
    if (PROGRAMS.has(program) && !existsSync(join(repoRoot, 'bin', program))) problems.push(`${where}: no bin/${program}`);
    if (program === 'npm') {
      const script = args[0] === 'run' ? args[1] : args[0];
      if (script !== 'ci' && !(script in scripts)) problems.push(`${where}: no npm script ${script}`);
    }
    if (program === 'export') {
      for (const dir of c.text.matchAll(/\$PWD\/([^:\s]+)/g))
        if (!existsSync(join(repoRoot, dir[1]))) problems.push(`${where}: no ${dir[1]}`);
      continue;
    }
    for (const arg of args) {
      // system files (/etc/nftables.conf) are the host's; a scratch file or a sibling directory is nobody's
      if (arg.split('/').includes('..') || /^\/(tmp|home|root|work)\//.test(arg))
        problems.push(`${where}: ${arg} is outside the repository`);
      if (c.synopsis || arg.startsWith('-') || arg.startsWith('/') || ADDRESS.test(arg) || !arg.includes('/')) continue;
      // var/ is made by npm start and the demo
      if (!arg.startsWith('var/') && !existsSync(join(repoRoot, arg))) problems.push(`${where}: no ${arg} in the repository`);
    }
  }
  assert.deepEqual(problems, []);
});

test("the repository's files named in the text exist, and the text names none outside it", () => {
  const named = [...README.matchAll(/`(?:man )?(?:\.\/)?((?:bin|etc|man|pkg|src|test)\/[^`\s]*)`/g)].map((m) => m[1]);
  assert.ok(named.length >= 10, `${named.length} paths in the text`);
  assert.deepEqual(
    named.filter((p) => !existsSync(join(repoRoot, p))),
    [],
  );
  assert.deepEqual(
    [...README.matchAll(/`[^`]*\.\.\/[^`]*`/g)].map((m) => m[0]),
    [],
  );
});

test('the npm scripts named in the text exist', () => {
  const named = [...README.matchAll(/`npm run ([\w-]+)/g)].map((m) => m[1]);
  assert.ok(named.length >= 4, `${named.length} npm run commands in the text`);
  assert.deepEqual(
    named.filter((s) => !(s in scripts)),
    [],
  );
});

test(
  "blocklistctl: each command the README uses exists; those that talk to the daemon name npm start's " +
    'socket; config, test and --help run',
  async () => {
    const help = await run(join(repoRoot, 'bin/blocklistctl'), ['--help'], { env });
    assert.equal(help.code, 0, help.stderr);
    const known = new Set([...help.stdout.matchAll(/^ {2}(\w+)\b/gm)].map((m) => m[1]));
    const uses = commands().filter((c) => c.words[0] === 'blocklistctl');
    assert.ok(uses.length >= 10, `${uses.length} blocklistctl commands`);
    for (const c of uses) {
      const sub = c.words[1];
      if (sub.startsWith('-')) continue;
      assert.ok(known.has(sub), `README.md:${c.line}: blocklistctl has no command ${sub}`);
      if (CONTROL.has(sub))
        assert.ok(
          c.words.includes('-s') || c.words.includes('--control'),
          `README.md:${c.line}: ${c.text}: no -s sockpath for the daemon of npm start`,
        );
      if (sub === 'config' || sub === 'test' || c.words.includes('--help')) {
        const r = await run('env', ['-C', repoRoot, 'sh', '-c', c.text], { env });
        assert.equal(r.code, 0, `README.md:${c.line}: ${c.text}: ${r.stderr}`);
      }
    }
  },
);

test("npx blocklistctl --help, as the README offers instead of PATH, runs the clone's blocklistctl", async () => {
  assert.match(README, /`npx blocklistctl --help`/);
  const r = await run('env', ['-C', repoRoot, 'npx', '--offline', 'blocklistctl', '--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: blocklistctl /);
});

test('npm run demo -- --help prints the usage and exits 0; an unknown option is a usage error (2)', async () => {
  const help = await run('env', ['-C', repoRoot, 'npm', 'run', '--silent', 'demo', '--', '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^usage: npm run demo -- \[--verbose\] \[--port N\]/);
  assert.equal(help.stderr, '');
  const bad = await run('env', ['-C', repoRoot, 'npm', 'run', '--silent', 'demo', '--', '--no-such-option']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /usage: npm run demo/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
});

test(
  'npm run bench -- NAME writes var/bench/RESULTS.md, not the committed test/bench/RESULTS.md; an ' + 'unknown name is a usage error',
  async () => {
    const bench = join(repoRoot, 'dist/test/bench/run.js');
    const committed = join(repoRoot, 'test/bench/RESULTS.md');
    const before = readFileSync(committed, 'utf8');
    const { BENCH_OUT: _, ...inherited } = process.env;
    const r = await run(process.execPath, [bench, 'conf'], { onlyEnv: inherited as Record<string, string> });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /written to \S*var\/bench\/RESULTS\.md/);
    assert.equal(readFileSync(committed, 'utf8'), before);
    assert.match(readFileSync(join(repoRoot, 'var/bench/RESULTS.md'), 'utf8'), /^# Benchmark results/);
    const unknown = await run(process.execPath, [bench, 'conf', 'nope']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no benchmark named nope/);
    assert.equal(readFileSync(committed, 'utf8'), before);
  },
);
