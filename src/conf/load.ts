// Loading a configuration path (config.md §1): a file and its `.d`
// directory beside it, or a directory; directory entries in byte order,
// dotfiles skipped (G39).  Every load builds a new rule set (G14).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { strerror } from '../protocol/native.js';
import { parseConfig, type ParseResult } from './parse.js';
import { buildRuleSet } from './ruleset.js';
import type { ConfEnv, Diagnostic, RuleSet } from './types.js';

export const DEFAULT_CONFIG_PATH = '/etc/blocklistd.conf';

export interface LoadResult {
  ruleSet: RuleSet;
  diagnostics: Diagnostic[];
  /** The files read, in order. */
  files: string[];
  /** False when neither the path nor its `.d` directory could be read: keep the rules you had. */
  found: boolean;
}

/** The C library's text for a failed read, as upstream logs it. */
function reason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return typeof err.errno === 'number' ? strerror(Math.abs(err.errno)) : err.message;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The entries of a configuration directory, in byte order, without dotfiles. */
function directoryEntries(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => !name.startsWith('.'))
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((name) => join(dir, name));
}

export function loadConfig(path: string, env: ConfEnv): LoadResult {
  const diagnostics: Diagnostic[] = [];
  const parsed: ParseResult[] = [];
  const files: string[] = [];
  /** Reads and parses one file; returns why it could not be read. */
  const read = (file: string): unknown => {
    try {
      const text = readFileSync(file, 'utf8');
      files.push(file);
      parsed.push(parseConfig(text, file, env));
      return undefined;
    } catch (e) {
      return e;
    }
  };
  const readAll = (dir: string): void => {
    for (const file of directoryEntries(dir)) {
      const error = read(file);
      if (error !== undefined) diagnostics.push({ source: { file, line: 0 }, severity: 'error', message: `Cannot open '${file}' (${reason(error)})` });
    }
  };

  let found = true;
  if (isDirectory(path)) {
    readAll(path);
  } else {
    const error = read(path);
    const dropIn = `${path}.d`;
    const hasDropIn = isDirectory(dropIn);
    // a missing file beside its .d directory is fine; an unreadable one is not
    if (error !== undefined && (!hasDropIn || (error as NodeJS.ErrnoException).code !== 'ENOENT')) {
      diagnostics.push({ source: { file: path, line: 0 }, severity: 'error', message: `Cannot open '${path}' (${reason(error)})` });
    }
    if (hasDropIn) readAll(dropIn);
    else found = error === undefined;
  }
  const built = buildRuleSet(parsed);
  // file-level errors first, then each file's lines, then what the merge and sort found
  return { ruleSet: built.ruleSet, diagnostics: [...diagnostics, ...parsed.flatMap((p) => p.diagnostics), ...built.diagnostics], files, found };
}
