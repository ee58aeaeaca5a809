// blocklistctl: configuration checks now; the database (dump) and the
// daemon's control commands come with later issues.
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { DEFAULT_CONFIG_PATH } from '../conf/load.js';
import { DEFAULT_RULE_NAME } from '../conf/system.js';
import { configCommand, testCommand, type Output } from './conf.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

const stdio: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

export function main(argv: string[]): void {
  const program = new Command('blocklistctl')
    .version(version, '-V, --version')
    .description('query and maintain blocklistd')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 1));

  program
    .command('config')
    .description('check the configuration: print the rules as the daemon uses them and every diagnostic (exit 1 if a line is rejected)')
    .option('-c <config>', 'configuration file or directory', DEFAULT_CONFIG_PATH)
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option('--json', 'machine-readable output')
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
    .action((address: string, port: string, opts: { c: string; R: string; u: string; t: string; l?: string; json?: boolean }) => {
      process.exitCode = testCommand(address, port, { config: opts.c, ruleName: opts.R, uid: opts.u, type: opts.t, local: opts.l, json: opts.json }, stdio);
    });

  program.parse(argv);
}
