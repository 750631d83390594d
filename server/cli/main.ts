import { parseArgs } from 'node:util';
import { HardcronError } from '../errors.ts';
import type { Command } from './command.ts';

/**
 * The subcommands, each loaded when it is used: `hardcron jobs` need not load the GraphQL
 * server's libraries, and a command refused for its configuration answers at once.
 */
const commands: Readonly<Record<string, { readonly summary: string; load(): Promise<Command> }>> = {
  migrate: { summary: 'install or upgrade hardcron in the database', load: async () => (await import('./migrate.ts')).migrateCommand },
  executor: {
    summary: 'run due jobs (a long-running process; run several for more throughput)',
    load: async () => (await import('./executor.ts')).executorCommand,
  },
  server: { summary: 'serve the GraphQL API and GraphiQL (a long-running process)', load: async () => (await import('./server.ts')).serverCommand },
  token: {
    summary: "print a JWT for a user, signed with JWT_SECRET or hardcron start's secret (for GraphiQL and scripts)",
    load: async () => (await import('./token.ts')).tokenCommand,
  },
  user: { summary: "add or remove an end user (a database role) as the database's $mgr", load: async () => (await import('./user.ts')).userCommand },
  jobs: { summary: 'list every job with its next run and last status (for an operator)', load: async () => (await import('./jobs.ts')).jobsCommand },
  start: {
    summary: 'everything on one machine: database, migrations, demo user, GraphQL server and an executor',
    load: async () => (await import('./start.ts')).startCommand,
  },
  uninstall: {
    summary: "remove hardcron from the database: its schemas and the database's roles (needs --yes)",
    load: async () => (await import('./uninstall.ts')).uninstallCommand,
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(10)} ${command.summary}`);
  return ['Usage: hardcron <command> [options]', '', 'Commands:', ...lines, '', 'Run hardcron <command> --help for details.'].join('\n');
}

/** Runs `hardcron <argv>` and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const entry = commands[name];
  if (!entry) {
    process.stderr.write(`hardcron: unknown command ${JSON.stringify(name)}\n${usage()}\n`);
    return 2;
  }
  const command = await entry.load();
  const { values } = parseArgs({ args: [...rest], options: { help: { type: 'boolean', short: 'h' } }, strict: false });
  if (values.help) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  try {
    // Only this module reads the process environment: each command makes its configuration from it.
    await command.run(rest, process.env);
    return 0;
  } catch (error) {
    process.stderr.write(`${describeError(error)}\n`);
    if (process.env.HARDCRON_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

/** One line a person can act on; never a stack trace (set HARDCRON_DEBUG=1 for that). */
export function describeError(error: unknown): string {
  if (error instanceof HardcronError) return `hardcron: ${error.message} [${error.code}]`;
  const message = error instanceof Error ? error.message : String(error);
  return `hardcron: unexpected error: ${message} [HC_INTERNAL]`;
}
