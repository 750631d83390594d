import { parseArgs } from 'node:util';
import { HardcronError } from '../errors.ts';
import type { Command } from './command.ts';
import { executorCommand } from './executor.ts';
import { jobsCommand } from './jobs.ts';
import { migrateCommand } from './migrate.ts';
import { serverCommand } from './server.ts';
import { startCommand } from './start.ts';
import { tokenCommand } from './token.ts';
import { uninstallCommand } from './uninstall.ts';
import { userCommand } from './user.ts';

const commands: Readonly<Record<string, Command>> = {
  migrate: migrateCommand,
  executor: executorCommand,
  server: serverCommand,
  token: tokenCommand,
  user: userCommand,
  jobs: jobsCommand,
  start: startCommand,
  uninstall: uninstallCommand,
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
  const command = commands[name];
  if (!command) {
    process.stderr.write(`hardcron: unknown command ${JSON.stringify(name)}\n${usage()}\n`);
    return 2;
  }
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
