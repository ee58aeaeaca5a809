// blocklistctl: its commands (dump, config, test) come with the state and
// configuration issues; until then it only knows its name and version.
import { Command } from 'commander';
import { createRequire } from 'node:module';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

export function main(argv: string[]): void {
  new Command('blocklistctl')
    .version(version, '-V, --version')
    .description('query and maintain blocklistd (no commands yet)')
    .action(function (this: Command) {
      this.help({ error: true });
    })
    .parse(argv);
}
