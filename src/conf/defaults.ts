// The configuration's defaults the command lines name in their --help, in a
// module of their own: blocklistctl's start loads neither the configuration's
// parser (load.ts) nor the addon (system.ts) to print them.
export const DEFAULT_CONFIG_PATH = '/etc/blocklistd.conf';
export const DEFAULT_RULE_NAME = 'blocklistd';
