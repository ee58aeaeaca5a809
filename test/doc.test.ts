// Every reference to the design notes resolves inside the repository
// (doc/README.md explains the forms): `daemon.md §5.2` needs a heading
// `§5.2` in doc/daemon.md, a bare `§6` is read against the last note named
// before it in the same file, `G25` needs a heading `G25` and `TODO 17` a
// heading `TODO 17` in doc/decisions.md.  Fast, no root.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from './support.js';

const DOC = join(repoRoot, 'doc');
/**
 * What is scanned: the code, the shipped files and the manuals; test/fixtures
 * holds data (log corpora), not prose, and this file's examples are not references.
 */
const SCANNED = ['src', 'bin', 'etc', 'test', 'man', 'pkg', 'README.md'];
const SKIPPED = new Set([join(repoRoot, 'test/fixtures'), join(repoRoot, 'test/doc.test.ts')]);

interface Reference {
  /** `file:line` of the reference. */
  where: string;
  /** The note (`daemon.md`) and the heading it needs (`§5.2`, `G25`), or none for a whole note. */
  note: string;
  heading?: string;
}

function files(path: string): string[] {
  if (SKIPPED.has(path) || !existsSync(path)) return [];
  if (statSync(path).isDirectory())
    return readdirSync(path)
      .sort()
      .flatMap((name) => files(join(path, name)));
  return [path];
}

/**
 * The references of one file's text, in order.  A note's name is a lower-case
 * `<name>.md` not inside a path (`doc/<name>.md` counts); `issue <n>` names the
 * issue tracker, so the `§` numbers after it are not ours.  Lists continue the
 * last name: `§4.3, §5, §6`, `§2-§4`, `G29-G35`, `TODO 10, 11`.
 */
export function references(text: string, file: string): Reference[] {
  const found: Reference[] = [];
  const token =
    /(?<![\w./-])(?:doc\/)?([a-z][a-z0-9-]*)\.md\b|\bissue \d+|§\s?(\d+(?:\.\d+)*)|\bG(\d+)\b|\bTODO (\d+(?:(?:, | and )\d+)*)/g;
  const lineStarts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lineStarts.push(i + 1);
  const lineOf = (offset: number): number => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  let note: string | undefined;
  for (const m of text.matchAll(token)) {
    const where = `${relative(repoRoot, file)}:${lineOf(m.index)}`;
    const [whole, name, section, decision, todos] = m;
    if (name !== undefined) {
      note = `${name}.md`;
      found.push({ where, note });
    } else if (whole.startsWith('issue')) {
      note = undefined;
    } else if (section !== undefined) {
      if (note !== undefined) found.push({ where, note, heading: `§${section}` });
    } else if (decision !== undefined) {
      found.push({ where, note: 'decisions.md', heading: `G${decision}` });
    } else if (todos !== undefined) {
      for (const n of todos.split(/, | and /)) found.push({ where, note: 'decisions.md', heading: `TODO ${n}` });
    }
  }
  return found;
}

/** The headings of a note, by their first word (`§5.2`, `G25`, `TODO 17`, `E2`). */
function headings(note: string): Set<string> | undefined {
  const path = join(DOC, note);
  if (!existsSync(path)) return undefined;
  const out = new Set<string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^#{1,6} (TODO \d+|\S+)/.exec(line);
    if (m) out.add(m[1]!.replace(/[:.]$/, ''));
  }
  return out;
}

describe('design notes (doc/)', () => {
  test('the reference scanner reads lists, ranges and contexts, and leaves other tokens alone', () => {
    const text = [
      '// see daemon.md §5.2, §5.3 and protocol.md §2-§4;',
      '// (§6) G29-G35, TODO 10, 11; issue 15 §1, §2',
      '// not ours: README.md, test/bench/RESULTS.md, /usr/share/x.md, 0x1G2, SIGUSR2, G7x',
      '// doc/helper.md §1.3',
    ].join('\n');
    const got = references(text, join(repoRoot, 'x.ts')).map((r) => `${r.where} ${r.note}${r.heading ? ` ${r.heading}` : ''}`);
    assert.deepEqual(got, [
      'x.ts:1 daemon.md',
      'x.ts:1 daemon.md §5.2',
      'x.ts:1 daemon.md §5.3',
      'x.ts:1 protocol.md',
      'x.ts:1 protocol.md §2',
      'x.ts:1 protocol.md §4',
      'x.ts:2 protocol.md §6',
      'x.ts:2 decisions.md G29',
      'x.ts:2 decisions.md G35',
      'x.ts:2 decisions.md TODO 10',
      'x.ts:2 decisions.md TODO 11',
      'x.ts:4 helper.md',
      'x.ts:4 helper.md §1.3',
    ]);
  });

  test('doc/README.md indexes every note', () => {
    const index = readFileSync(join(DOC, 'README.md'), 'utf8');
    const notes = readdirSync(DOC).filter((n) => n.endsWith('.md') && n !== 'README.md');
    assert.ok(notes.length >= 7, `notes: ${notes.join(', ')}`);
    for (const n of notes) assert.ok(index.includes(`(${n})`), `doc/README.md links ${n}`);
  });

  test('every reference in src/, bin/, etc/, test/, man/, pkg/ and README.md resolves to a note and heading in doc/', () => {
    const cache = new Map<string, Set<string> | undefined>();
    const unresolved: string[] = [];
    let count = 0;
    for (const file of SCANNED.flatMap((p) => files(join(repoRoot, p)))) {
      const text = readFileSync(file, 'utf8');
      if (text.includes('\0')) continue; // binary
      for (const r of references(text, file)) {
        count++;
        if (!cache.has(r.note)) cache.set(r.note, headings(r.note));
        const known = cache.get(r.note);
        if (known === undefined) unresolved.push(`${r.where}: ${r.note}: no doc/${r.note}`);
        else if (r.heading !== undefined && !known.has(r.heading))
          unresolved.push(`${r.where}: ${r.note} ${r.heading}: no such heading in doc/${r.note}`);
      }
    }
    assert.ok(count > 100, `only ${count} references found: the scanner is broken`);
    assert.deepEqual(unresolved, [], `${unresolved.length} unresolved references:\n${unresolved.join('\n')}`);
  });
});
