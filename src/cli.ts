// What the command-line programs share: their version (package.json's, the
// one source), their exit statuses, how their --help shows defaults, and
// how they word a command line they cannot use.
import { createRequire } from 'node:module';
import type { CommanderError, HelpConfiguration, Option } from 'commander';

export const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** Exit statuses, as BSD tools have them: 0 success, 1 a failure, 2 a command line that cannot be used. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * --help shows each default as the program uses it: `(default: 30)`, not
 * commander's JSON `"30"`, nothing for an empty list; a description that
 * names its default itself, and a flag, are left alone.
 */
export const HELP_CONFIG: HelpConfiguration = {
  optionDescription(option: Option): string {
    // a flag (-d, counted) has no value to default
    if (!option.required && !option.optional) return option.description;
    const value =
      option.defaultValueDescription ??
      (Array.isArray(option.defaultValue) && option.defaultValue.length === 0 ? undefined : option.defaultValue);
    if (value === undefined || value === false || /\(default/.test(option.description)) return option.description;
    return `${option.description} (default: ${Array.isArray(value) ? value.join(', ') : String(value)})`;
  },
};

/**
 * A commander parse error in getopt(3)'s words, as upstream's tools complain:
 * `invalid option -- 'x'`, `unrecognized option '--xy'`, `option requires an
 * argument -- 'c'`, `option '--metrics' requires an argument`; any other in
 * commander's words.
 */
export function getoptMessage(e: CommanderError): string {
  const unknown = /unknown option '(-{1,2})([^']*)'/.exec(e.message);
  if (unknown !== null) return unknown[1] === '-' ? `invalid option -- '${unknown[2]}'` : `unrecognized option '--${unknown[2]}'`;
  const missing = /option '(-\w|--[\w-]+)[ ,]/.exec(e.message);
  if (e.code === 'commander.optionMissingArgument' && missing !== null) {
    const option = missing[1]!;
    return option.startsWith('--') ? `option '${option}' requires an argument` : `option requires an argument -- '${option.slice(1)}'`;
  }
  return e.message.replace(/^error: /, '');
}
