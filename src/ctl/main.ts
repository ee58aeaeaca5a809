// blocklistctl: dump shows the state database (upstream's command, same
// options and messages), asking the running daemon or reading the file;
// config and test check a configuration; block, unblock, flush, report,
// reload and status talk to the daemon's control socket.  Exit 0, 1 for a
// failure, 2 for a usage error (src/cli.ts); --json output in one envelope
// (json.ts).  Each command's module is loaded when it runs: a dump loads
// neither the configuration's checks nor the control commands.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { EXIT_USAGE, HELP_CONFIG, VERSION, getoptMessage } from '../cli.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_RULE_NAME } from '../conf/defaults.js';
import { DEFAULT_CONTROL_PATH } from '../protocol/control.js';
import { DEFAULT_DB_PATH } from '../state/store.js';
import type { Output } from './conf.js';
import type { ControlOptions } from './control.js';
import { DUMP_USAGE, dumpCommand, dumpFromDaemon } from './dump.js';
import { envelope } from './json.js';

const stdio: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

const USAGE = [
  DUMP_USAGE,
  '       blocklistctl config [-c config] [-R rulename] [--json]',
  '       blocklistctl test [-c config] [-R rulename] [-u uid] [-t stream|dgram] [-l address] [-D dbname] [--json] address port',
  '       blocklistctl history [-c config] [-R rulename] [-n name] [-D dbname] [--json] [address]',
  '       blocklistctl block [-p port] [-P tcp|udp] [-n name] [-t duration] [--force] [control options] address[/mask] ... | - | --stdin',
  '       blocklistctl unblock [-p port] [-n name] [--if-present] [--forget] [control options] address[/mask] | --all',
  '       blocklistctl flush [control options] [name]',
  '       blocklistctl report -t fail|baduser|abuse|ok -p port [-P tcp|udp] [--source label] [control options] address [message]',
  '       blocklistctl reload [control options]',
  '       blocklistctl status [control options]',
  '       blocklistctl help [command]',
  '       control options: [-s sockpath] [--control path] [--json]',
].join('\n');

/** Standard input's lines, trimmed; blank ones and # comments left out. */
function stdinLines(): string[] {
  return readFileSync(0, 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter((l) => l !== '');
}

/** A command line that cannot be used: the complaint and the usage on stderr (and with --json the envelope on stdout), exit 2. */
function usage(complaint: string): never {
  if (process.argv.includes('--json'))
    process.stdout.write(envelope(process.argv[2] ?? '', { error: { code: 'usage', message: complaint } }));
  process.stderr.write(`${complaint}\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
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
    .version(VERSION, '-V, --version')
    .description('query and maintain blocklistd')
    .helpOption('-h, --help')
    // `help [command]` is handled below, not listed among the commands
    .helpCommand(false)
    .configureHelp(HELP_CONFIG)
    .addHelpText('after', '\n`blocklistctl help <command>` (or <command> --help) shows the options of a command.')
    .configureOutput({ writeErr: () => {} })
    .exitOverride();

  program
    .command('dump')
    .description('print the state database: entries counting failures (default), all (-a) or blocked (-b)')
    .option('-a', 'all entries')
    .option('-b', 'only blocked entries')
    .option('-d', 'debug: print each entry read on stderr (repeatable)', (_v: unknown, level: number) => level + 1, 0)
    .option('-n', 'no header')
    .option('-o', "an origin column: the host a block learned from the fleet came from (- for this host's)")
    .option('-r', 'remaining time instead of last access')
    .option('-w', 'wide address column')
    .option('-D <dbname>', `read this database file (default: ask the running daemon, else read ${DEFAULT_DB_PATH})`)
    .option('-s <sockpath>', "the daemon's notification socket: its control socket is beside it (.ctl for .sock)")
    .option('--control <path>', `the daemon's control socket (default: ${DEFAULT_CONTROL_PATH})`)
    .option('--json', 'JSON output: every field, times as epoch seconds and ISO-8601 (blocklistctl(8), JSON OUTPUT)')
    .option('--block-number', 'a last column with the number of an escalated block (blocklistd.conf(5), ESCALATION)')
    .allowExcessArguments(true) // upstream ignores extra words
    .exitOverride()
    .configureOutput({ writeErr: () => {} })
    .action(
      async (opts: {
        a?: boolean;
        b?: boolean;
        d: number;
        n?: boolean;
        o?: boolean;
        r?: boolean;
        w?: boolean;
        D?: string;
        s?: string;
        control?: string;
        json?: boolean;
        blockNumber?: boolean;
      }) => {
        const o = {
          all: opts.a === true,
          blocked: opts.b === true,
          debug: opts.d,
          noHeader: opts.n === true,
          remaining: opts.r === true,
          wide: opts.w === true,
          json: opts.json === true,
          blockNumber: opts.blockNumber === true,
          origin: opts.o === true,
        };
        // -D names a file: read it; else the daemon answers, and without one the default file is read
        const status =
          opts.D === undefined
            ? await dumpFromDaemon((await import('./control.js')).controlPath({ control: opts.control, socket: opts.s }), o, stdio)
            : dumpCommand(opts.D, o, stdio);
        process.exitCode = status === 'not_running' ? dumpCommand(DEFAULT_DB_PATH, o, stdio) : status;
      },
    );

  program
    .command('config')
    .description('check the configuration: print the rules as the daemon uses them and every diagnostic (exit 1 if a line is rejected)')
    .option('-c <config>', 'configuration file or directory', DEFAULT_CONFIG_PATH)
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action(async (opts: { c: string; R: string; json?: boolean }) => {
      const { configCommand } = await import('./conf.js');
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
    .option('-D <dbname>', 'the database whose history says what the next escalated block lasts', DEFAULT_DB_PATH)
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action(
      async (
        address: string,
        port: string,
        opts: { c: string; R: string; u: string; t: string; l?: string; D: string; json?: boolean },
      ) => {
        const { testCommand } = await import('./conf.js');
        process.exitCode = testCommand(
          address,
          port,
          { config: opts.c, ruleName: opts.R, uid: opts.u, type: opts.t, local: opts.l, db: opts.D, json: opts.json },
          stdio,
        );
      },
    );

  program
    .command('history')
    .description('the blocks each address had under a rule name (escalation), and the count forgiveness leaves now')
    .argument('[address]', 'only the histories that hold this address: its own, and those of networks (rules with a /mask)')
    .option('-c <config>', 'configuration file or directory: its [escalate] forgiveness', DEFAULT_CONFIG_PATH)
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option('-n <name>', 'only this rule name')
    .option('-D <dbname>', 'read this database file', DEFAULT_DB_PATH)
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action(async (address: string | undefined, opts: { c: string; R: string; n?: string; D: string; json?: boolean }) => {
      const { historyCommand } = await import('./history.js');
      process.exitCode = historyCommand(address, { db: opts.D, config: opts.c, ruleName: opts.R, name: opts.n, json: opts.json }, stdio);
    });

  /** The options every command of the daemon takes; `run` gets the arguments and the options. */
  const daemonCommand = (
    name: string,
    description: string,
    setup: (c: Command) => Command,
    run: (...a: unknown[]) => [string, Record<string, unknown>],
  ): void => {
    setup(program.command(name).description(description))
      .option('-s <sockpath>', "the daemon's notification socket: its control socket is beside it (.ctl for .sock)")
      .option('--control <path>', `the daemon's control socket (default: ${DEFAULT_CONTROL_PATH})`)
      .option('--json', 'the answer as JSON (blocklistctl(8), JSON OUTPUT)')
      .exitOverride()
      .action(async (...a: unknown[]) => {
        const opts = (a.at(-2) ?? {}) as { s?: string; control?: string; json?: boolean };
        const [command, { addresses, ...args }] = run(...a);
        const json = opts.json === true;
        // progress only for people watching a terminal: never in a pipe, a file or JSON
        const progress = (command === 'unblock' || Array.isArray(addresses)) && !json && process.stdout.isTTY && process.stderr.isTTY;
        const o: ControlOptions = { control: opts.control, socket: opts.s, json, progress };
        const { blockCommand, controlCommand } = await import('./control.js');
        process.exitCode = Array.isArray(addresses)
          ? await blockCommand(addresses as string[], args, o, stdio)
          : await controlCommand(command, args, o, stdio);
      });
  };
  daemonCommand(
    'block',
    'block addresses (or networks) now, in the packet filter and the database; released at expiry like any other',
    (c) =>
      c
        .argument('[address...]', 'address[/mask], several, or - to read them from standard input')
        .option('-p <port>', 'the local port or service (default: every port)')
        .option('-P <proto>', 'tcp (default) or udp, with -p')
        .option('-n <name>', 'rule name (default: that of the rule a failure would meet)')
        .option('-t <duration>', 'how long: seconds, 6h, 1d12h or forever (default: that of the rule a failure would meet)')
        .option('--stdin', 'read the addresses from standard input, one a line (# comments and blank lines skipped)')
        .option('--force', 'block loopback or an address of this host all the same'),
    (given, opts) => {
      const o = opts as { p?: string; P?: string; n?: string; t?: string; stdin?: boolean; force?: boolean };
      const list = given as string[];
      const dash = list.length === 1 && list[0] === '-';
      if (o.stdin === true && list.length > 0) usage('block: --stdin reads the addresses: give none on the command line');
      if (o.stdin !== true && list.length === 0) usage("block: missing required argument 'address'");
      const fromStdin = o.stdin === true || dash;
      const addresses = fromStdin ? stdinLines() : list;
      if (addresses.length === 0) usage('block: no address on standard input');
      const args = { port: o.p, proto: o.P, name: o.n, duration: o.t, ...(o.force === true ? { force: true } : {}) };
      // one address keeps the answer of one block; several (or any from stdin) get one answer per address
      return ['block', fromStdin || addresses.length > 1 ? { ...args, addresses } : { ...args, address: addresses[0] }];
    },
  );
  daemonCommand(
    'unblock',
    'lift the blocks that hold an address (or all), and forget its failures',
    (c) =>
      c
        .argument('[address]', 'address[/mask]')
        .option('-p <port>', 'only entries of this port')
        .option('-n <name>', 'only entries of this rule name')
        .option('--all', 'every entry')
        .option('--if-present', 'no entry for it is success (exit 0), not an error')
        .option('--forget', 'forget its history of blocks too (with --all: every history): its next block is a first one (escalation)'),
    (address, opts) => {
      const o = opts as { p?: string; n?: string; all?: boolean; ifPresent?: boolean; forget?: boolean };
      if ((address === undefined) === (o.all !== true)) usage('unblock: give an address, or --all');
      return [
        'unblock',
        {
          address,
          port: o.p,
          name: o.n,
          all: o.all === true,
          ...(o.ifPresent === true ? { ifPresent: true } : {}),
          ...(o.forget === true ? { forget: true } : {}),
        },
      ];
    },
  );
  daemonCommand(
    'flush',
    'remove every block of a rule name (default: all names) from the packet filter, and its entries',
    (c) => c.argument('[name]', 'rule name'),
    (name) => ['flush', { name }],
  );
  daemonCommand(
    'report',
    'report a failure (or a success) of a client as a server would: counted under the rule it meets, blocked at its limit',
    (c) =>
      c
        .argument('<address>', 'the client address')
        .argument('[message]', "text for the daemon's log line")
        .requiredOption('-t <type>', 'fail (+2), baduser (+1), abuse (block now) or ok (reset the count)')
        .requiredOption('-p <port>', 'the local port or service the client failed on')
        .option('-P <proto>', 'tcp (default) or udp')
        .option('--source <label>', "who saw it, for the daemon's log line (default: blocklistctl)"),
    (address, message, opts) => {
      const o = opts as { t: string; p: string; P?: string; source?: string };
      return ['report', { type: o.t, address, port: o.p, proto: o.P, message, source: o.source ?? 'blocklistctl' }];
    },
  );
  daemonCommand(
    'reload',
    're-read the configuration; with an error in it nothing changes (exit 1)',
    (c) => c,
    () => ['reload', {}],
  );
  daemonCommand(
    'status',
    "the daemon's state: sockets, rules, entries, helper queue, counters",
    (c) => c,
    () => ['status', {}],
  );

  const command = argv[2];
  if (command === 'help') {
    // `help` alone: the overview; `help <command>`: that command's options
    const topic = argv[3];
    const sub = program.commands.find((c) => c.name() === topic);
    if (argv.length > 4 || (topic !== undefined && sub === undefined))
      usage(`help: ${topic === undefined || sub !== undefined ? 'one command at most' : `unknown command '${topic}'`}`);
    (sub ?? program).outputHelp();
    return;
  }
  const known = program.commands.some((c) => c.name() === command) || ['-h', '--help', '-V', '--version'].includes(command ?? '');
  if (!known) usage('blocklistctl: Missing/unknown command');
  program.parseAsync(argv).catch((e: unknown) => {
    if (!(e instanceof CommanderError)) throw e;
    if (e.exitCode === 0) process.exit(0); // --help, --version
    // upstream's getopt complaint names the command, as it sees `dump` as its argv[0]
    usage(`${command}: ${getoptMessage(e)}`);
  });
}
