// blocklistctl: dump reads the state database (upstream's command, same
// options and messages); config and test check a configuration.  The
// daemon's control commands come with a later issue.
import { Command, CommanderError } from 'commander';
import { createRequire } from 'node:module';
import { DEFAULT_CONFIG_PATH } from '../conf/load.js';
import { DEFAULT_RULE_NAME } from '../conf/system.js';
import { DEFAULT_DB_PATH } from '../state/store.js';
import { configCommand, testCommand, type Output } from './conf.js';
import { DUMP_USAGE, dumpCommand } from './dump.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

const stdio: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

const USAGE = [
  DUMP_USAGE,
  '       blocklistctl config [-c config] [-R rulename] [--json]',
  '       blocklistctl test [-c config] [-R rulename] [-u uid] [-t stream|dgram] [-l address] [--json] address port',
].join('\n');

function usage(complaint: string): never {
  process.stderr.write(`${complaint}\n${USAGE}\n`);
  process.exit(1);
}

export function main(argv: string[]): void {
  // `blocklistctl dump | head` closes the pipe early: that is not an error
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(0);
  });
  process.stderr.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
  const program = new Command('blocklistctl')
    .version(version, '-V, --version')
    .description('query and maintain blocklistd')
    .helpOption('-h, --help')
    .configureOutput({ writeErr: () => {} })
    .exitOverride();

  program
    .command('dump')
    .description('print the state database: entries counting failures (default), all (-a) or blocked (-b)')
    .option('-a', 'all entries')
    .option('-b', 'only blocked entries')
    .option('-d', 'debug: print each entry read on stderr (repeatable)', (_v: unknown, level: number) => level + 1, 0)
    .option('-n', 'no header')
    .option('-r', 'remaining time instead of last access')
    .option('-w', 'wide address column')
    .option('-D <dbname>', 'database file', DEFAULT_DB_PATH)
    .option('--json', 'machine-readable output: every field, times as epoch seconds and ISO-8601')
    .allowExcessArguments(true) // upstream ignores extra words
    .exitOverride()
    .configureOutput({ writeErr: () => {} })
    .action((opts: { a?: boolean; b?: boolean; d: number; n?: boolean; r?: boolean; w?: boolean; D: string; json?: boolean }) => {
      process.exitCode = dumpCommand(
        opts.D,
        { all: opts.a === true, blocked: opts.b === true, debug: opts.d, noHeader: opts.n === true, remaining: opts.r === true, wide: opts.w === true, json: opts.json === true },
        stdio,
      );
    });

  program
    .command('config')
    .description('check the configuration: print the rules as the daemon uses them and every diagnostic (exit 1 if a line is rejected)')
    .option('-c <config>', 'configuration file or directory', DEFAULT_CONFIG_PATH)
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action((opts: { c: string; R: string; json?: boolean }) => {
      process.exitCode = configCommand({ config: opts.c, ruleName: opts.R, json: opts.json }, stdio);
    });

  program
    .command('test')
    .description('show the rules a notification from <address> to local <port> meets (exit 1 if none)')
    .argument('<address>', 'the client address')
    .argument('<port>', 'the local port or service name')
    .option('-c <config>', 'configuration file or directory', DEFAULT_CONFIG_PATH)
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option('-u <uid>', 'uid or user name of the reporting server', '0')
    .option('-t <type>', 'socket type: stream or dgram', 'stream')
    .option('-l <address>', 'local address of the server socket (default: the unspecified address)')
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action((address: string, port: string, opts: { c: string; R: string; u: string; t: string; l?: string; json?: boolean }) => {
      process.exitCode = testCommand(address, port, { config: opts.c, ruleName: opts.R, uid: opts.u, type: opts.t, local: opts.l, json: opts.json }, stdio);
    });

  const command = argv[2];
  const known = program.commands.some((c) => c.name() === command) || ['-h', '--help', '-V', '--version'].includes(command ?? '');
  if (!known) usage('blocklistctl: Missing/unknown command');
  try {
    program.parse(argv);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    if (e.exitCode === 0) process.exit(0); // --help, --version
    const option = /unknown option '-{1,2}([^']*)'/.exec(e.message);
    const missing = /option '-(\w)[ ,]/.exec(e.message);
    // upstream's getopt complaint names the command, as it sees `dump` as its argv[0]
    if (option !== null) usage(option[1].length === 1 ? `${command}: invalid option -- '${option[1]}'` : `${command}: unrecognized option '--${option[1]}'`);
    if (e.code === 'commander.optionMissingArgument' && missing !== null) usage(`${command}: option requires an argument -- '${missing[1]}'`);
    usage(`${command}: ${e.message.replace(/^error: /, '')}`);
  }
}
